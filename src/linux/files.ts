/**
 * Files under /proc, /sys and /dev, and file metadata. Deno (2.9) refuses its fs APIs (read, stat,
 * readLink, readDir, realPath) on any path there unless run with --allow-all, whatever
 * --allow-read grants (denoland/deno#27564, #27980), so the agent reads the mount table and the
 * block-device topology through these.
 *
 * They bypass Deno's read permission: use them only for those paths and for metadata (a loop
 * device's backing file, the owner of a file the agent writes), never to read what the freeze
 * scope guards.
 *
 * @module
 */

import {
  clearErrno,
  copyFromPointer,
  cString,
  cStringAt,
  errnoError,
  lastErrno,
  libc,
} from "./_libc.ts";
import { Errno, errnoNumber, SyscallError } from "./errno.ts";
import { close, closeQuietly, O_NOFOLLOW, O_RDONLY, O_WRONLY, open, read, write } from "./fd.ts";
import {
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  DIRENT_RECLEN_OFFSET,
  type DirEntry,
  type FileStat,
  readDirent,
  readStatx,
  STATX_BASIC_STATS,
  STATX_SIZE,
} from "./structs.ts";

export type { DirEntry, FileStat };

/** `PATH_MAX` (<linux/limits.h>): the longest path, with its NUL, that the kernel resolves. */
const PATH_MAX = 4096;
const READ_CHUNK_BYTES = 64 * 1024;
/** What {@link readSmallFile} reads at most unless told otherwise. */
export const READ_SMALL_FILE_LIMIT = 16 * 1024 * 1024;

/** Options of {@link readSmallFile}. */
export interface ReadSmallFileOptions {
  /** Fail with a RangeError beyond this many bytes. @default READ_SMALL_FILE_LIMIT */
  maxBytes?: number;
  /** Refuse a symbolic link at `path` (ELOOP) instead of following it. @default false */
  noFollow?: boolean;
  /**
   * `path` is a regular file: a read(2) that returns less than asked is its end (one system call
   * fewer). Never for procfs or sysfs files, which are read in pieces. @default false
   */
  regularFile?: boolean;
}

/** One read buffer for every {@link readSmallFile} (synchronous: never used twice at once). */
let sharedReadBuffer: Uint8Array<ArrayBuffer> | undefined;

/** read(2) into `buffer`, retried on EINTR; 0 at end of file. */
function readChunk(fd: number, buffer: Uint8Array<ArrayBuffer>, path: string): number {
  for (;;) {
    try {
      return read(fd, buffer, path);
    } catch (err) {
      if (!(err instanceof SyscallError) || err.errno !== Errno.EINTR) throw err;
    }
  }
}

/**
 * Reads a whole file with open/read/close until read(2) returns 0, or, for a regular file, less
 * than asked (procfs and sysfs files report size 0, so the size is never trusted).
 * @throws {SyscallError} when it cannot be opened or read
 * @throws {RangeError} when it is longer than `maxBytes`
 */
export function readSmallFile(path: string, options: ReadSmallFileOptions = {}): Uint8Array {
  const maxBytes = options.maxBytes ?? READ_SMALL_FILE_LIMIT;
  const fd = open(path, options.noFollow === true ? O_RDONLY | O_NOFOLLOW : O_RDONLY);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    const buffer = sharedReadBuffer ??= new Uint8Array(READ_CHUNK_BYTES);
    for (let count = readChunk(fd, buffer, path); count > 0; count = readChunk(fd, buffer, path)) {
      total += count;
      if (total > maxBytes) throw new RangeError(`"${path}" is larger than ${maxBytes} bytes`);
      chunks.push(buffer.slice(0, count));
      if (options.regularFile === true && count < buffer.byteLength) break;
    }
  } finally {
    close(fd);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * {@link readSmallFile} decoded as UTF-8 (invalid bytes become U+FFFD, as `Deno.readTextFile`).
 * @throws {SyscallError} when it cannot be opened or read
 * @throws {RangeError} when it is longer than `maxBytes`
 */
export function readTextFileRaw(path: string, options: ReadSmallFileOptions = {}): string {
  return new TextDecoder().decode(readSmallFile(path, options));
}

/**
 * Writes `text` to an existing kernel file (a sysfs or procfs setting) with open/write/close; the
 * kernel takes a setting in one write(2), so a short write is an error.
 * @throws {SyscallError} when it cannot be opened or written (EACCES, EINVAL for a bad value)
 */
export function writeKernelSetting(path: string, text: string): void {
  const bytes = new TextEncoder().encode(text);
  const fd = open(path, O_WRONLY);
  try {
    const count = write(fd, bytes, path);
    if (count !== bytes.byteLength) throw new SyscallError("write", errnoNumber("EIO"), path);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  close(fd);
}

function statxAt(syscall: string, path: string, flags: number): FileStat {
  const buffer = new Uint8Array(STATX_SIZE);
  if (libc().statx(AT_FDCWD, cString(path), flags, STATX_BASIC_STATS, buffer) === -1) {
    throw errnoError(syscall, path);
  }
  return readStatx(buffer);
}

/**
 * stat(2) (through statx(2), see structs.ts): follows symbolic links.
 * @throws {SyscallError} ENOENT if there is no such file
 */
export function stat(path: string): FileStat {
  return statxAt("stat", path, 0);
}

/**
 * lstat(2) (through statx(2)): a symbolic link describes itself.
 * @throws {SyscallError} ENOENT if there is no such file
 */
export function lstat(path: string): FileStat {
  return statxAt("lstat", path, AT_SYMLINK_NOFOLLOW);
}

/**
 * readlink(2): the target of a symbolic link, as stored.
 * @throws {SyscallError} EINVAL if `path` is not a symbolic link
 */
export function readlink(path: string): string {
  const buffer = new Uint8Array(PATH_MAX + 1);
  const length = Number(libc().readlink(cString(path), buffer, BigInt(buffer.byteLength)));
  if (length === -1) throw errnoError("readlink", path);
  // No kernel path is longer than PATH_MAX; a full buffer would mean a truncated answer.
  if (length > PATH_MAX) throw new SyscallError("readlink", errnoNumber("ENAMETOOLONG"), path);
  return cStringAt(buffer, length);
}

/**
 * realpath(3): the absolute path with every symbolic link, `.` and `..` resolved.
 * @throws {SyscallError} ENOENT if a component does not exist
 */
export function realpath(path: string): string {
  const buffer = new Uint8Array(PATH_MAX);
  if (libc().realpath(cString(path), buffer) === null) throw errnoError("realpath", path);
  return cStringAt(buffer);
}

/**
 * opendir(3)/readdir(3)/closedir(3): the entries of a directory, without `.` and `..`, in the
 * order the filesystem returns them.
 * @throws {SyscallError} ENOTDIR if `path` is not a directory
 */
export function readDir(path: string): DirEntry[] {
  const directory = libc().opendir(cString(path));
  if (directory === null) throw errnoError("opendir", path);
  const entries: DirEntry[] = [];
  try {
    for (;;) {
      clearErrno();
      const record = libc().readdir(directory);
      if (record === null) {
        const errno = lastErrno();
        if (errno !== 0) throw new SyscallError("readdir", errno, path);
        return entries;
      }
      const header = new Uint8Array(DIRENT_RECLEN_OFFSET + 2);
      copyFromPointer(record, header);
      const recordLength = new DataView(header.buffer).getUint16(DIRENT_RECLEN_OFFSET, true);
      const bytes = new Uint8Array(recordLength);
      copyFromPointer(record, bytes);
      const entry = readDirent(bytes);
      if (entry.name !== "." && entry.name !== "..") entries.push(entry);
    }
  } finally {
    libc().closedir(directory);
  }
}

// glibc's dev_t encoding (<sys/sysmacros.h>): 12 bits of major and 20 of minor, split so that old
// 16-bit values keep their meaning. Pure arithmetic: Deno.statSync returns `dev`/`rdev` already.

/** `major(dev)` of a `dev_t` as `Deno.statSync` returns it in `dev` or `rdev`. */
export function major(dev: number): number {
  const value = BigInt(dev);
  return Number(((value >> 8n) & 0xfffn) | ((value >> 32n) & ~0xfffn));
}

/** `minor(dev)` of a `dev_t` as `Deno.statSync` returns it in `dev` or `rdev`. */
export function minor(dev: number): number {
  const value = BigInt(dev);
  return Number((value & 0xffn) | ((value >> 12n) & ~0xffn));
}
