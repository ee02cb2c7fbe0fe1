/**
 * The agent's own small files in its state directory (the freeze state, the cycle report, their
 * temp names): created exclusively, read, renamed into place and removed through libc. Every freeze
 * and thaw touches them, and Deno's fs API resolves each path component by component for its
 * permission check before every call (a readlink(2) per component), which more than doubled the
 * system calls of a cycle (docs/design.md #46). Only whether one exists is asked of Deno first:
 * start-up asks it, and should not open libc for it (#47).
 *
 * Use them only for paths in a directory that passed `checkDirectory` (src/safe_files.ts): they
 * bypass Deno's permission check, as every libc call does.
 *
 * @module
 */

import { cString, errnoError, lastErrno, libc } from "./_libc.ts";
import { Errno, SyscallError } from "./errno.ts";
import {
  close,
  closeQuietly,
  O_CLOEXEC,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_WRONLY,
  write,
} from "./fd.ts";
import { readTextFileRaw } from "./files.ts";
import { AT_FDCWD, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, STATX_SIZE } from "./structs.ts";

/** The state file and the report are a few KiB; this bounds a read of a damaged one. */
const READ_LIMIT_BYTES = 1024 * 1024;

/**
 * Creates `path` with `mode` (`O_CREAT|O_EXCL|O_NOFOLLOW`: nothing that is there already, a
 * symlink included, is ever opened) and writes `bytes` to it. A file that could not be written
 * whole is removed again.
 * @throws {SyscallError} EEXIST when something is at `path`
 */
export function createFileExclusive(
  path: string,
  bytes: Uint8Array<ArrayBuffer>,
  mode: number,
): void {
  const flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  const fd = libc().open_create(cString(path), flags, mode);
  if (fd === -1) throw errnoError("open", path);
  try {
    writeAll(fd, bytes, path);
    close(fd);
  } catch (err) {
    closeQuietly(fd);
    removeFile(path);
    throw err;
  }
}

function writeAll(fd: number, bytes: Uint8Array<ArrayBuffer>, path: string): void {
  for (let offset = 0; offset < bytes.byteLength;) {
    try {
      offset += write(fd, bytes.subarray(offset), path);
    } catch (err) {
      if (!(err instanceof SyscallError) || err.errno !== Errno.EINTR) throw err;
    }
  }
}

/**
 * Reads a whole small file as UTF-8 (invalid bytes become U+FFFD), or `undefined` when there is
 * none. A symlink there is not followed (ELOOP).
 * @throws {SyscallError} for anything but ENOENT
 * @throws {RangeError} when it is larger than 1 MiB
 */
export function readOwnFile(path: string): string | undefined {
  try {
    return readTextFileRaw(path, { maxBytes: READ_LIMIT_BYTES, noFollow: true, regularFile: true });
  } catch (err) {
    if (err instanceof SyscallError && err.syscall === "open" && err.errno === Errno.ENOENT) {
      return undefined;
    }
    throw err;
  }
}

/**
 * rename(2): replaces whatever is at `to` (a symlink itself, never what it points at).
 * @throws {SyscallError}
 */
export function renameFile(from: string, to: string): void {
  if (libc().rename(cString(from), cString(to)) === -1) throw errnoError("rename", from);
}

/**
 * unlink(2) (a symlink itself, never what it points at): `false` when nothing was there.
 * @throws {SyscallError} for anything but ENOENT
 */
export function removeFile(path: string): boolean {
  if (libc().unlink(cString(path)) === 0) return true;
  if (lastErrno() === Errno.ENOENT) return false;
  throw errnoError("unlink", path);
}

/**
 * Whether anything is at `path`, a dangling symlink included. Deno's lstat answers "yes" and
 * "no": start-up asks this before anything else of these files, and libc, opened for it, would
 * delay the first reply by about a millisecond (design #47). Anything else (ENOTDIR, a path Deno
 * refuses such as one under /dev) is asked again through libc, for the exact errno.
 * @throws {SyscallError} for anything but ENOENT
 */
export function entryExists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    return entryExistsThroughLibc(path);
  }
}

/** {@link entryExists} through libc (an lstat that builds no error for the answer "no"). */
function entryExistsThroughLibc(path: string): boolean {
  const buffer = new Uint8Array(STATX_SIZE);
  const flags = AT_SYMLINK_NOFOLLOW;
  if (libc().statx(AT_FDCWD, cString(path), flags, STATX_BASIC_STATS, buffer) === 0) return true;
  if (lastErrno() === Errno.ENOENT) return false;
  throw errnoError("lstat", path);
}
