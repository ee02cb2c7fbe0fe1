/**
 * Advisory locks on files (flock(2)): the cycle lock that serializes everyone who starts or ends a
 * freeze cycle. The kernel drops a lock with the last descriptor of its holder, so a process that
 * dies never leaves one behind.
 *
 * @module
 */

import { cString, errnoError, lastErrno, libc } from "./_libc.ts";
import { Errno } from "./errno.ts";
import { O_CLOEXEC, O_CREAT, O_NOFOLLOW, O_NONBLOCK, O_RDWR } from "./fd.ts";
import { type FileStat, readStatx, STATX_BASIC_STATS, STATX_SIZE } from "./structs.ts";

/** flock(2) operations. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;

/** `AT_EMPTY_PATH`: statx of the descriptor itself. */
const AT_EMPTY_PATH = 0x1000;

/**
 * Opens (creating it owner-only if absent) a lock file: never through a symlink (ELOOP), never
 * blocking on a FIFO planted there, close-on-exec so a hook never inherits the lock.
 * @throws {SyscallError}
 */
export function openLockFile(path: string): number {
  const flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  const fd = libc().open_create(cString(path), flags, 0o600);
  if (fd === -1) throw errnoError("open", path);
  return fd;
}

/**
 * flock(2); with LOCK_NB a lock held elsewhere gives `false` instead of blocking.
 * @throws {SyscallError} for anything but EWOULDBLOCK
 */
export function flock(fd: number, operation: number): boolean {
  if (libc().flock(fd, operation) === 0) return true;
  if (lastErrno() === Errno.EAGAIN) return false; // EWOULDBLOCK
  throw errnoError("flock");
}

/**
 * fstat(2) (through statx(2)): what an open descriptor is.
 * @throws {SyscallError}
 */
export function fstat(fd: number): FileStat {
  const buffer = new Uint8Array(STATX_SIZE);
  if (libc().statx(fd, cString(""), AT_EMPTY_PATH, STATX_BASIC_STATS, buffer) === -1) {
    throw errnoError("fstat");
  }
  return readStatx(buffer);
}
