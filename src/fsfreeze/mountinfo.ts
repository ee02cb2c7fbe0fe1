/**
 * The mount table as qemu-ga reads it: `/proc/self/mountinfo` parsed into entries, qemu-ga's
 * choice of freezable mounts (`build_fs_mount_list`, docs/design.md #23), and our exclusions
 * (`fsfreeze-exclude`, docs/design.md #8). Pure functions plus one reader; no ordering (deps.ts)
 * and no freezing (freezer.ts) here.
 *
 * @module
 */

import { closeQuietly, O_RDONLY, open, Poll, poll } from "../linux/fd.ts";
import { major, minor, readTextFileRaw, stat } from "../linux/files.ts";
import { fileType } from "../linux/structs.ts";

/** A block device number. */
export interface DeviceNumber {
  major: number;
  minor: number;
}

/** One line of `/proc/self/mountinfo` (proc(5)), with octal escapes decoded. */
export interface MountEntry {
  mountId: number;
  parentId: number;
  /** `st_dev` of files on this mount (field 3); 0:N for anonymous devices (tmpfs, btrfs, …). */
  major: number;
  minor: number;
  /** The directory of the filesystem that forms this mount's root (bind mounts, subvolumes). */
  root: string;
  mountPoint: string;
  mountOptions: string;
  optionalFields: string[];
  fsType: string;
  source: string;
  superOptions: string;
  /**
   * Set by {@link selectFreezable}: the block device this entry freezes, i.e. `major:minor`, or
   * for btrfs the device its source names.
   */
  blockDevice?: DeviceNumber;
}

/** Returns the device number of a block device node, or undefined if `path` is not one. */
export type StatBlockDevice = (path: string) => DeviceNumber | undefined;

const MOUNTINFO_PATH = "/proc/self/mountinfo";

/** Decodes the kernel's `\ooo` escapes (space, tab, newline and backslash in paths). */
export function unescapeOctal(text: string): string {
  return text.replace(
    /\\([0-7]{3})/g,
    (_, octal: string) => String.fromCharCode(parseInt(octal, 8)),
  );
}

/** Parses one mountinfo line; undefined if it is malformed (qemu-ga skips those too). */
export function parseMountinfoLine(line: string): MountEntry | undefined {
  const fields = line.split(" ");
  const separator = fields.indexOf("-", 6);
  if (separator < 0 || fields.length < separator + 4) return undefined;
  const [mountId, parentId, device, root, mountPoint, mountOptions] = fields;
  const [fsType, source, superOptions] = fields.slice(separator + 1);
  const numbers = /^(\d+):(\d+)$/.exec(device ?? "");
  if (!numbers || root === undefined || mountPoint === undefined) return undefined;
  if (!/^\d+$/.test(mountId ?? "") || !/^\d+$/.test(parentId ?? "")) return undefined;
  return {
    mountId: Number(mountId),
    parentId: Number(parentId),
    major: Number(numbers[1]),
    minor: Number(numbers[2]),
    root: unescapeOctal(root),
    mountPoint: unescapeOctal(mountPoint),
    mountOptions: mountOptions ?? "",
    optionalFields: fields.slice(6, separator),
    fsType: unescapeOctal(fsType ?? ""),
    source: unescapeOctal(source ?? ""),
    superOptions: superOptions ?? "",
  };
}

/** Parses the text of `/proc/self/mountinfo`, in its order, skipping malformed lines. */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const entry = parseMountinfoLine(line);
    if (entry) entries.push(entry);
  }
  return entries;
}

/**
 * Reads and parses `/proc/self/mountinfo`, through libc: Deno refuses its own fs APIs under /proc
 * to anything but `--allow-all`.
 * @throws {SyscallError} when it cannot be read
 */
export function readMountinfo(): MountEntry[] {
  return parseMountinfo(readMountinfoText());
}

/**
 * The text of `/proc/self/mountinfo` (through libc, as {@link readMountinfo}).
 * @throws {SyscallError} when it cannot be read
 */
export function readMountinfoText(): string {
  return readTextFileRaw(MOUNTINFO_PATH);
}

/**
 * Tells whether this process's mount table may have changed, without reading it: the kernel marks
 * an open `/proc/self/mountinfo` with POLLPRI once a mount, unmount, move or remount happened
 * since the mark was last taken (proc(5)). Propagation changes leave no mark; they change only
 * the optional fields, which the selection does not use.
 */
export class MountinfoWatch {
  #fd: number | undefined;

  /**
   * Whether the table may have changed since the previous call: true the first time, and when it
   * cannot be told. Takes the kernel's mark, so call it before reading the table.
   */
  mayHaveChanged(): boolean {
    try {
      if (this.#fd === undefined) {
        this.#fd = open(MOUNTINFO_PATH, O_RDONLY);
        return true;
      }
      const entry = { fd: this.#fd, events: Poll.POLLPRI, revents: 0 };
      poll([entry], 0);
      return (entry.revents & (Poll.POLLPRI | Poll.POLLERR | Poll.POLLNVAL)) !== 0;
    } catch {
      this.close();
      return true;
    }
  }

  /** Closes the descriptor (the next call starts over). */
  close(): void {
    if (this.#fd !== undefined) closeQuietly(this.#fd);
    this.#fd = undefined;
  }
}

/**
 * The real {@link StatBlockDevice}: `stat()` and `S_ISBLK`, as qemu-ga's `dev_major_minor`
 * (through libc: Deno refuses `Deno.statSync` under /dev to anything but `--allow-all`).
 */
export function statBlockDevice(path: string): DeviceNumber | undefined {
  try {
    const info = stat(path);
    if (fileType(info.mode) !== "block-device") return undefined;
    return { major: major(info.rdev), minor: minor(info.rdev) };
  } catch {
    return undefined; // not a path (e.g. "none") or vanished: not a candidate
  }
}

/**
 * qemu-ga's candidate list: entries with a real device (major ≠ 0), plus btrfs whose source is a
 * block device (then that device's numbers count); the first entry of each device wins, so bind
 * mounts and further subvolumes drop out. Returned in mountinfo order with `blockDevice` set.
 */
export function selectFreezable(
  entries: readonly MountEntry[],
  statDevice: StatBlockDevice = statBlockDevice,
): MountEntry[] {
  const seen = new Set<string>();
  const selected: MountEntry[] = [];
  for (const entry of entries) {
    const device = freezableDevice(entry, statDevice);
    if (device === undefined) continue;
    const key = `${device.major}:${device.minor}`;
    if (seen.has(key)) continue;
    seen.add(key);
    selected.push({ ...entry, blockDevice: device });
  }
  return selected;
}

function freezableDevice(entry: MountEntry, statDevice: StatBlockDevice): DeviceNumber | undefined {
  if (entry.major !== 0) return { major: entry.major, minor: entry.minor };
  if (entry.fsType !== "btrfs") return undefined;
  const device = statDevice(entry.source);
  // A block device numbered 0:N does not exist; treat it like qemu-ga's failed lookup.
  return device && device.major !== 0 ? device : undefined;
}

/** A mount left out by {@link applyExcludes}, and why. */
export interface ExcludedMount {
  mount: MountEntry;
  reason: string;
}

/**
 * Drops excluded mounts: an exclude entry starting with "/" names a mount point (exact string
 * match, as qemu-ga matches freeze-list paths), any other entry a filesystem type.
 */
export function applyExcludes(
  mounts: readonly MountEntry[],
  exclude: readonly string[],
): { kept: MountEntry[]; skipped: ExcludedMount[] } {
  const mountPoints = new Set(exclude.filter((item) => item.startsWith("/")));
  const fsTypes = new Set(exclude.filter((item) => !item.startsWith("/")));
  const kept: MountEntry[] = [];
  const skipped: ExcludedMount[] = [];
  for (const mount of mounts) {
    if (mountPoints.has(mount.mountPoint)) {
      skipped.push({
        mount,
        reason: `excluded by fsfreeze-exclude (mount point ${mount.mountPoint})`,
      });
    } else if (fsTypes.has(mount.fsType)) {
      skipped.push({ mount, reason: `excluded by fsfreeze-exclude (fs type ${mount.fsType})` });
    } else {
      kept.push(mount);
    }
  }
  return { kept, skipped };
}
