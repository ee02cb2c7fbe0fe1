/**
 * `guest-get-fsinfo`: the mounted local filesystems qemu-ga would freeze (its
 * `build_fs_mount_list`, shared with the freeze code in src/fsfreeze/mountinfo.ts), each with its
 * device name, sizes from statvfs(3) and the disks below it (disk_address.ts), as qemu-ga's
 * `qmp_guest_get_fsinfo` reports them.
 *
 * The list is the whole candidate list, not the freeze scope: it is information, and a host may
 * pass any of these mount points to `guest-fsfreeze-freeze-list` (the freeze then applies the
 * scope). statvfs(3) only reads sizes, so it runs through libc on every mount.
 *
 * @module
 */

import { type MountEntry, readMountinfo, selectFreezable } from "../../fsfreeze/mountinfo.ts";
import { type Statvfs, statvfs } from "../../linux/system.ts";
import {
  deviceDisks,
  type GuestDiskAddress,
  type SysfsSources,
  SYSTEM_SYSFS_SOURCES,
} from "./disk_address.ts";

/** `GuestFilesystemInfo` of the QAPI schema (sizes are uint64). */
export interface GuestFilesystemInfo {
  name: string;
  mountpoint: string;
  type: string;
  "used-bytes"?: bigint;
  "total-bytes"?: bigint;
  "total-bytes-privileged"?: bigint;
  disk: GuestDiskAddress[];
}

/** The three sizes qemu-ga derives from statvfs(3). */
export interface FilesystemSizes {
  /** Blocks in use (total minus free), in bytes. */
  "used-bytes": bigint;
  /** What an unprivileged user can fill: used plus available to them, in bytes. */
  "total-bytes": bigint;
  /** The whole filesystem, including the blocks reserved for root, in bytes (qemu-ga ≥ 9.1). */
  "total-bytes-privileged": bigint;
}

/** qemu-ga's arithmetic on a statvfs result. */
export function filesystemSizes(stats: Statvfs): FilesystemSizes {
  const used = stats.blocks - stats.bfree;
  return {
    "used-bytes": used * stats.frsize,
    "total-bytes": (used + stats.bavail) * stats.frsize,
    "total-bytes-privileged": stats.blocks * stats.frsize,
  };
}

/** What {@link guestFsinfo} reads. */
export interface FsinfoSources {
  /** The candidate mounts with `blockDevice` set, in mountinfo order. */
  mounts(): MountEntry[];
  /**
   * statvfs(3) of a mount point.
   * @throws {Error} when it fails (the sizes are then left out)
   */
  statvfs(path: string): Statvfs;
  sysfs: SysfsSources;
}

/** The real sources. */
export const SYSTEM_FSINFO_SOURCES: FsinfoSources = {
  mounts: () => selectFreezable(readMountinfo()),
  statvfs,
  sysfs: SYSTEM_SYSFS_SOURCES,
};

/** One mount's entry. */
export function filesystemInfo(mount: MountEntry, sources: FsinfoSources): GuestFilesystemInfo {
  const device = mount.blockDevice ?? { major: mount.major, minor: mount.minor };
  const devpath = `/sys/dev/block/${device.major}:${device.minor}`;
  const { name, disks } = deviceDisks(devpath, sources.sysfs);
  let sizes: FilesystemSizes | undefined;
  try {
    sizes = filesystemSizes(sources.statvfs(mount.mountPoint));
  } catch {
    sizes = undefined; // unmounted meanwhile or not reachable: qemu-ga leaves the sizes out
  }
  return {
    name: name ?? `${device.major}:${device.minor}`,
    mountpoint: mount.mountPoint,
    type: mount.fsType,
    ...sizes,
    disk: disks,
  };
}

/**
 * `guest-get-fsinfo`: in reverse mount order, as qemu-ga builds its list by prepending.
 * @throws {Error} when the mount table or sysfs cannot be read
 */
export function guestFsinfo(sources: FsinfoSources = SYSTEM_FSINFO_SOURCES): GuestFilesystemInfo[] {
  return sources.mounts().map((mount) => filesystemInfo(mount, sources)).reverse();
}
