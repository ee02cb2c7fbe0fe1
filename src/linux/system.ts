/**
 * System information the guest-information commands (src/commands/system/) need and Deno has no
 * API for: uname(2), statvfs(3), clock_gettime(2). The layouts are glibc's for LP64 Linux,
 * identical on x86_64 and aarch64.
 *
 * @module
 */

import { cString, cStringAt, errnoError, libc } from "./_libc.ts";

/** `_UTSNAME_LENGTH`: each field of `struct utsname` is a NUL-terminated array of 65 bytes. */
const UTSNAME_FIELD_BYTES = 65;
/** The fields of `struct utsname` (<sys/utsname.h>), in memory order. */
const UTSNAME_FIELDS = [
  "sysname",
  "nodename",
  "release",
  "version",
  "machine",
  "domainname",
] as const;

/** What uname(2) reports, one string per field of `struct utsname`. */
export type Utsname = Record<typeof UTSNAME_FIELDS[number], string>;

/**
 * uname(2): kernel name, host name, release, version and machine.
 * @throws {SyscallError}
 */
export function uname(): Utsname {
  const buffer = new Uint8Array(UTSNAME_FIELD_BYTES * UTSNAME_FIELDS.length);
  if (libc().uname(buffer) === -1) throw errnoError("uname");
  const field = (index: number): string =>
    cStringAt(buffer.subarray(index * UTSNAME_FIELD_BYTES, (index + 1) * UTSNAME_FIELD_BYTES));
  return Object.fromEntries(UTSNAME_FIELDS.map((name, index) => [name, field(index)])) as Utsname;
}

/**
 * `sizeof(struct statvfs)` (<bits/statvfs.h>): eleven 64-bit fields, then 24 spare bytes.
 * Byte offsets: 0 f_bsize, 8 f_frsize, 16 f_blocks, 24 f_bfree, 32 f_bavail, 40 f_files,
 * 48 f_ffree, 56 f_favail, 64 f_fsid, 72 f_flag, 80 f_namemax.
 */
const STATVFS_SIZE = 112;
const STATVFS_FIELDS = [
  "bsize",
  "frsize",
  "blocks",
  "bfree",
  "bavail",
  "files",
  "ffree",
  "favail",
  "fsid",
  "flag",
  "namemax",
] as const;

/** `struct statvfs` without the spare ints; block counts are in units of `frsize`. */
export type Statvfs = Record<typeof STATVFS_FIELDS[number], bigint>;

/**
 * statvfs(3) of the filesystem that holds `path`.
 * @throws {SyscallError} ENOENT if `path` does not exist
 */
export function statvfs(path: string): Statvfs {
  const buffer = new Uint8Array(STATVFS_SIZE);
  if (libc().statvfs(cString(path), buffer) === -1) throw errnoError("statvfs", path);
  const view = new DataView(buffer.buffer);
  return Object.fromEntries(
    STATVFS_FIELDS.map((name, index) => [name, view.getBigUint64(index * 8, true)]),
  ) as Statvfs;
}

/** `CLOCK_REALTIME` (<linux/time.h>): the wall clock, in time since the Epoch. */
export const CLOCK_REALTIME = 0;
/** `sizeof(struct timespec)` on LP64: `time_t tv_sec` at 0, `long tv_nsec` at 8. */
const TIMESPEC_SIZE = 16;

/**
 * clock_gettime(2) in nanoseconds (a bigint: nanoseconds since the Epoch exceed 2^53).
 * @throws {SyscallError} EINVAL for an unknown clock
 */
export function clockGettime(clock: number): bigint {
  const buffer = new Uint8Array(TIMESPEC_SIZE);
  if (libc().clock_gettime(clock, buffer) === -1) throw errnoError("clock_gettime");
  const view = new DataView(buffer.buffer);
  return view.getBigInt64(0, true) * 1_000_000_000n + view.getBigInt64(8, true);
}
