/**
 * The ordering policy, the one place that decides in which order filesystems are frozen and
 * thawed (docs/design.md #24):
 * - **freeze waves** from block-device stacking: mount A *holds* mount B when B's block device is
 *   stored on A — a loop device whose backing file lies on A, or a stacked device (dm, md, a
 *   partition) that resolves, level by level, to such a loop device or to A's own device — or
 *   when B's mount point lies below A's. B must be frozen before A: once A is frozen, writing B's
 *   dirty data back into A blocks, and FIFREEZE on B never returns. Mounts of one wave are
 *   independent and are frozen concurrently;
 * - **thaw order**: the waves reversed (holders first), as qemu-ga thaws in mount order;
 * - **what a thaw covers**: every mount of the current selection (qemu-ga thaws every freezable
 *   mount), then the recorded mounts of the cycle that the selection no longer lists.
 *
 * The topology comes through a small {@link BlockTopology} (topology.ts reads sysfs), so the graph
 * logic is tested with fixtures. No freezing here.
 *
 * @module
 */

import type { DeviceNumber, MountEntry } from "./mountinfo.ts";

/** A block device as sysfs names it: `"major:minor"`. */
export type DeviceId = string;

/** What the ordering needs to know about block devices; every answer may be "unknown". */
export interface BlockTopology {
  /** The backing file of a loop device, or undefined (not a loop device, or unknown). */
  loopBackingFile(device: DeviceId): string | undefined;
  /** The devices a stacked device (dm, md) is built on; empty if none or unknown. */
  slaves(device: DeviceId): DeviceId[];
  /** The whole disk a partition belongs to, or undefined if `device` is not a partition. */
  wholeDisk(device: DeviceId): DeviceId | undefined;
  /** `st_dev` of the filesystem holding `path`, or undefined if it cannot be stat()ed. */
  fileDevice(path: string): DeviceId | undefined;
}

/** The device id of a device number. */
export function deviceId(device: DeviceNumber): DeviceId {
  return `${device.major}:${device.minor}`;
}

/** Whether `path` lies strictly below the mount point `base`. */
function isBelow(path: string, base: string): boolean {
  if (path === base) return false;
  return path.startsWith(base === "/" ? "/" : `${base}/`);
}

/** The device a selected mount freezes (its `blockDevice`, else mountinfo's numbers). */
function blockDeviceOf(mount: MountEntry): DeviceId {
  return deviceId(mount.blockDevice ?? mount);
}

/**
 * For each mount, the mounts that hold it (directly or through further levels of stacking), as
 * indexes into `mounts`.
 */
export function holdersOf(mounts: readonly MountEntry[], topology: BlockTopology): Set<number>[] {
  // A file's st_dev is mountinfo's number (btrfs: the anonymous 0:N), so index both.
  const byDevice = new Map<DeviceId, number[]>();
  mounts.forEach((mount, index) => {
    for (const id of new Set([blockDeviceOf(mount), deviceId(mount)])) {
      byDevice.set(id, [...(byDevice.get(id) ?? []), index]);
    }
  });
  return mounts.map((mount, index) => {
    const holders = storageHolders(index, mounts, byDevice, topology);
    mounts.forEach((other, otherIndex) => {
      if (otherIndex !== index && isBelow(mount.mountPoint, other.mountPoint)) {
        holders.add(otherIndex);
      }
    });
    return holders;
  });
}

/** Walks everything `mounts[index]`'s device is stored on and collects the mounts found there. */
function storageHolders(
  index: number,
  mounts: readonly MountEntry[],
  byDevice: ReadonlyMap<DeviceId, number[]>,
  topology: BlockTopology,
): Set<number> {
  const mount = mounts[index] as MountEntry;
  const own = new Set([blockDeviceOf(mount), deviceId(mount)]);
  const holders = new Set<number>();
  const visited = new Set<DeviceId>();
  const queue: DeviceId[] = [blockDeviceOf(mount)];
  while (queue.length > 0) {
    const device = queue.shift() as DeviceId;
    if (visited.has(device)) continue;
    visited.add(device);
    if (!own.has(device)) {
      for (const holder of byDevice.get(device) ?? []) {
        if (own.has(blockDeviceOf(mounts[holder] as MountEntry))) continue; // same filesystem
        holders.add(holder);
        queue.push(blockDeviceOf(mounts[holder] as MountEntry));
      }
    }
    queue.push(...topology.slaves(device));
    const disk = topology.wholeDisk(device);
    if (disk !== undefined) queue.push(disk);
    const backingFile = topology.loopBackingFile(device);
    const fileDevice = backingFile === undefined ? undefined : topology.fileDevice(backingFile);
    if (fileDevice !== undefined) queue.push(fileDevice);
  }
  return holders;
}

/**
 * Topological waves for FREEZE: every mount comes in a wave strictly before any mount that holds
 * it; mounts of one wave are independent and may be frozen concurrently. Each wave lists its
 * mounts in reverse mountinfo order (qemu-ga's freeze order); thaw walks the waves reversed.
 * If the holds relation has a cycle, the result is qemu-ga's order, one mount per wave.
 */
export function freezeWaves(
  mounts: readonly MountEntry[],
  topology: BlockTopology,
): MountEntry[][] {
  const holders = holdersOf(mounts, topology);
  const holds = mounts.map(() => new Set<number>());
  holders.forEach((set, held) => set.forEach((holder) => holds[holder]?.add(held)));

  const remaining = new Set(mounts.map((_, index) => index));
  const waves: MountEntry[][] = [];
  while (remaining.size > 0) {
    // Ready: everything this mount holds is frozen in an earlier wave.
    const ready = [...remaining].filter((index) =>
      [...(holds[index] ?? [])].every((held) => !remaining.has(held))
    );
    if (ready.length === 0) return [...mounts].reverse().map((mount) => [mount]);
    ready.forEach((index) => remaining.delete(index));
    waves.push(ready.reverse().map((index) => mounts[index] as MountEntry));
  }
  return waves;
}

/** Thaw order: the freeze waves reversed, flattened (holders before the mounts stored on them). */
export function thawOrder(waves: readonly (readonly string[])[]): string[] {
  return [...waves].reverse().flat();
}

/**
 * The mounts a thaw acts on, in order: the current selection's thaw order (everything freezable
 * in scope, as qemu-ga's thaw), then the cycle's recorded mounts that are not among them (a mount
 * point that has since left the selection), in their recorded order.
 */
export function thawList(
  selectionWaves: readonly (readonly string[])[] | undefined,
  recorded: readonly string[],
): string[] {
  const current = thawOrder(selectionWaves ?? []);
  const seen = new Set(current);
  return [...current, ...recorded.filter((mount) => !seen.has(mount))];
}
