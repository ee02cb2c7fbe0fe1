/**
 * The only module that calls `Deno.dlopen`: libc symbols with their C prototypes, opened lazily,
 * and typed wrappers that read errno in the same synchronous call and throw {@link SyscallError}.
 *
 * One symbol is `nonblocking` (FIFREEZE off the calling thread, {@link fifreezeOffThread}); errno
 * is thread-local and a nonblocking call runs on another thread, so that wrapper reports only
 * success or failure and never reads errno. Every other wrapper is synchronous.
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "./errno.ts";
import { FIFREEZE, FIONREAD, FITHAW } from "./ioctl.ts";
import {
  DIRENT_RECLEN_OFFSET,
  type DirEntry,
  type FileStat,
  readDirent,
  readStatx,
  STATX_BASIC_STATS,
  STATX_SIZE,
} from "./structs.ts";

export { SyscallError };

const SYMBOLS = {
  /** int open(const char *path, int flags, ...);  mode omitted: we never create files here */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** int open(const char *path, int flags, mode_t mode);  the O_CREAT shape of the variadic */
  open_create: { name: "open", parameters: ["buffer", "i32", "u32"], result: "i32" },
  /** int close(int fd); */
  close: { parameters: ["i32"], result: "i32" },
  /** int flock(int fd, int operation); */
  flock: { parameters: ["i32", "i32"], result: "i32" },
  /** int malloc_trim(size_t pad);  glibc: hands free heap memory back to the kernel */
  malloc_trim: { parameters: ["usize"], result: "i32" },
  /** int ioctl(int fd, unsigned long req, int arg);  variadic in C: one alias per argument shape */
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "i32"], result: "i32" },
  /**
   * int ioctl(int fd, unsigned long req, int arg);  on a blocking thread of Deno's pool, so a
   * FIFREEZE that waits on the kernel's sync leaves the event loop free. Its errno stays on that
   * thread and is never read.
   */
  ioctl_int_offthread: {
    name: "ioctl",
    parameters: ["i32", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** int ioctl(int fd, unsigned long req, void *arg); */
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** int kill(pid_t pid, int sig); */
  kill: { parameters: ["i32", "i32"], result: "i32" },
  /** uid_t getuid(void); */
  getuid: { parameters: [], result: "u32" },
  /** int tcgetattr(int fd, struct termios *t); */
  tcgetattr: { parameters: ["i32", "buffer"], result: "i32" },
  /** int tcsetattr(int fd, int actions, const struct termios *t); */
  tcsetattr: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  /** int tcflush(int fd, int queue); */
  tcflush: { parameters: ["i32", "i32"], result: "i32" },
  /** int *__errno_location(void);  glibc */
  __errno_location: { parameters: [], result: "pointer" },
  /**
   * void *memcpy(void *dest, const void *src, size_t n);  one alias per direction. Reading C
   * memory with Deno.UnsafePointerView needs unrestricted --allow-ffi; memcpy into a buffer we own
   * only needs the (path-restricted) permission to call libc.
   */
  memcpy_in: { name: "memcpy", parameters: ["buffer", "pointer", "usize"], result: "pointer" },
  memcpy_out: { name: "memcpy", parameters: ["pointer", "buffer", "usize"], result: "pointer" },
  /** ssize_t read(int fd, void *buf, size_t count); */
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf); */
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  /** ssize_t readlink(const char *path, char *buf, size_t size);  no NUL appended */
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  /** char *realpath(const char *path, char *resolved);  resolved: PATH_MAX bytes */
  realpath: { parameters: ["buffer", "buffer"], result: "pointer" },
  /** DIR *opendir(const char *name); */
  opendir: { parameters: ["buffer"], result: "pointer" },
  /** struct dirent *readdir(DIR *dir);  NULL at the end (errno untouched) or on error */
  readdir: { parameters: ["pointer"], result: "pointer" },
  /** int closedir(DIR *dir); */
  closedir: { parameters: ["pointer"], result: "i32" },
  /** ssize_t write(int fd, const void *buf, size_t count); */
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** int poll(struct pollfd *fds, nfds_t nfds, int timeout); */
  poll: { parameters: ["buffer", "usize", "i32"], result: "i32" },
  /** int eventfd(unsigned int initval, int flags); */
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  /** int uname(struct utsname *buf); */
  uname: { parameters: ["buffer"], result: "i32" },
  /** int statvfs(const char *path, struct statvfs *buf); */
  statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
  /** int clock_gettime(clockid_t clock, struct timespec *tp); */
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  /** int fcntl(int fd, int cmd, int arg);  variadic in C: the integer-argument shape */
  fcntl_int: { name: "fcntl", parameters: ["i32", "i32", "i32"], result: "i32" },
  /** int getsockopt(int fd, int level, int name, void *value, socklen_t *length); */
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  /** int getsockname(int fd, struct sockaddr *address, socklen_t *length); */
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags); */
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Where libc is looked for, in order (Debian/Ubuntu multiarch, then RPM-style layouts). */
export const LIBC_CANDIDATES: readonly string[] = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib/aarch64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/lib/libc.so.6",
  "/usr/lib/libc.so.6",
];

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let libc: Libc | undefined;

/** libc could not be opened: names every path tried and why each failed. */
export class LibcLoadError extends Error {
  override name = "LibcLoadError";
}

/**
 * Opens libc once (main.ts calls it at start-up to fail fast).
 * @throws {LibcLoadError} naming the paths tried
 */
export function loadLibc(): Libc {
  if (libc) return libc;
  const failures: string[] = [];
  for (const path of LIBC_CANDIDATES) {
    try {
      libc = Deno.dlopen(path, SYMBOLS).symbols;
      return libc;
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message}`);
    }
  }
  throw new LibcLoadError(`cannot load libc; tried:\n  ${failures.join("\n  ")}`);
}

const errnoBuffer = new Int32Array(1);
const errnoBytes = new Uint8Array(errnoBuffer.buffer);

function lastErrno(): number {
  const pointer = loadLibc().__errno_location();
  if (pointer === null) return 0;
  loadLibc().memcpy_in(errnoBytes, pointer, 4n);
  return errnoBuffer[0]!;
}

/** Copies `bytes.length` bytes of C memory at `pointer` into `bytes`. */
function copyFromPointer(pointer: Deno.PointerObject, bytes: Uint8Array<ArrayBuffer>): void {
  loadLibc().memcpy_in(bytes, pointer, BigInt(bytes.length));
}

const encoder = new TextEncoder();
function cString(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text + "\0");
}

/** open(2) flags (identical on x86_64 and aarch64). */
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_NOCTTY = 0o400;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_CREAT = 0o100;
export const O_NOFOLLOW = 0o400000;

/**
 * open(2).
 * @throws {SyscallError}
 */
export function open(path: string, flags: number): number {
  const fd = loadLibc().open(cString(path), flags | O_CLOEXEC);
  if (fd === -1) throw new SyscallError("open", lastErrno(), path);
  return fd;
}

/**
 * close(2).
 * @throws {SyscallError}
 */
export function close(fd: number): void {
  if (loadLibc().close(fd) === -1) throw new SyscallError("close", lastErrno());
}

/**
 * ioctl(FIFREEZE) on an open fd of a mount point.
 * @throws {SyscallError} EBUSY if already frozen, EOPNOTSUPP if the fs cannot freeze
 */
export function fifreeze(fd: number, path?: string): void {
  if (loadLibc().ioctl_int(fd, FIFREEZE, 0) === -1) {
    throw new SyscallError("ioctl(FIFREEZE)", lastErrno(), path);
  }
}

/**
 * ioctl(FIFREEZE) on a blocking thread of Deno's pool (many can run at once): resolves `true` once
 * frozen, `false` if the call failed. Why it failed cannot be told (errno stayed on that thread):
 * {@link fifreeze} on the calling thread finds out (EBUSY, EOPNOTSUPP, EPERM fail again at once).
 * The fd must stay open until the promise settles.
 */
export async function fifreezeOffThread(fd: number): Promise<boolean> {
  return await loadLibc().ioctl_int_offthread(fd, FIFREEZE, 0) !== -1;
}

/**
 * ioctl(FITHAW) on an open fd of a mount point.
 * @throws {SyscallError} EINVAL if not frozen
 */
export function fithaw(fd: number, path?: string): void {
  if (loadLibc().ioctl_int(fd, FITHAW, 0) === -1) {
    throw new SyscallError("ioctl(FITHAW)", lastErrno(), path);
  }
}

/**
 * kill(2); a negative pid signals a whole process group. (Deno.kill needs unrestricted
 * `--allow-run`, which would let the agent run anything.)
 * @throws {SyscallError} ESRCH if no such process
 */
export function kill(pid: number, signal: number): void {
  if (loadLibc().kill(pid, signal) === -1) throw new SyscallError("kill", lastErrno());
}

/** getuid(2). (Deno.uid needs `--allow-sys`.) */
export function getuid(): number {
  return loadLibc().getuid();
}

/**
 * tcgetattr(3) into `termios` (a buffer of {@link TERMIOS_SIZE} bytes).
 * @throws {SyscallError}
 */
export function tcgetattr(fd: number, termios: Uint8Array<ArrayBuffer>): void {
  if (loadLibc().tcgetattr(fd, termios) === -1) throw new SyscallError("tcgetattr", lastErrno());
}

/**
 * tcsetattr(3).
 * @throws {SyscallError}
 */
export function tcsetattr(fd: number, actions: number, termios: Uint8Array<ArrayBuffer>): void {
  if (loadLibc().tcsetattr(fd, actions, termios) === -1) {
    throw new SyscallError("tcsetattr", lastErrno());
  }
}

/**
 * tcflush(3).
 * @throws {SyscallError}
 */
export function tcflush(fd: number, queue: number): void {
  if (loadLibc().tcflush(fd, queue) === -1) throw new SyscallError("tcflush", lastErrno());
}

/**
 * ioctl(FIONREAD): bytes waiting in a terminal's (or pipe's) input queue, without reading them.
 * @throws {SyscallError}
 */
export function fionread(fd: number): number {
  const count = new Int32Array(1);
  if (loadLibc().ioctl_ptr(fd, FIONREAD, new Uint8Array(count.buffer)) === -1) {
    throw new SyscallError("ioctl(FIONREAD)", lastErrno());
  }
  return count[0] ?? 0;
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

/** Signal numbers (identical on x86_64 and aarch64 Linux). */
export const Signal = { SIGKILL: 9, SIGTERM: 15 } as const;

// Files under /proc, /sys and /dev. Deno (2.9) refuses its fs APIs (read, stat, readLink,
// readDir, realPath) on any path there unless run with --allow-all, whatever --allow-read grants
// (denoland/deno#27564, #27980), so the agent reads the mount table and the block-device topology
// through these wrappers. They bypass Deno's read permission: use them only for those paths and
// for metadata (a loop device's backing file), never to read what the freeze scope guards.

export type { DirEntry, FileStat };

/** `AT_FDCWD`: resolve a relative path from the current directory. */
const AT_FDCWD = -100;
/** `AT_SYMLINK_NOFOLLOW`: lstat rather than stat. */
const AT_SYMLINK_NOFOLLOW = 0x100;
/** `PATH_MAX` (<linux/limits.h>): the longest path, with its NUL, that the kernel resolves. */
const PATH_MAX = 4096;
const READ_CHUNK_BYTES = 64 * 1024;
/** What {@link readSmallFile} reads at most unless told otherwise. */
export const READ_SMALL_FILE_LIMIT = 16 * 1024 * 1024;

/** Options of {@link readSmallFile}. */
export interface ReadSmallFileOptions {
  /** Fail with a RangeError beyond this many bytes. @default READ_SMALL_FILE_LIMIT */
  maxBytes?: number;
}

/** read(2) into `buffer`, retried on EINTR; 0 at end of file. */
function readChunk(fd: number, buffer: Uint8Array<ArrayBuffer>, path: string): number {
  for (;;) {
    const count = Number(loadLibc().read(fd, buffer, BigInt(buffer.byteLength)));
    if (count !== -1) return count;
    const errno = lastErrno();
    if (errno !== Errno.EINTR) throw new SyscallError("read", errno, path);
  }
}

/**
 * Reads a whole file with open/read/close until read(2) returns 0 (procfs and sysfs files report
 * size 0, so the size is never trusted).
 * @throws {SyscallError} when it cannot be opened or read
 * @throws {RangeError} when it is longer than `maxBytes`
 */
export function readSmallFile(path: string, options: ReadSmallFileOptions = {}): Uint8Array {
  const maxBytes = options.maxBytes ?? READ_SMALL_FILE_LIMIT;
  const fd = open(path, O_RDONLY);
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    const buffer = new Uint8Array(READ_CHUNK_BYTES);
    for (let count = readChunk(fd, buffer, path); count > 0; count = readChunk(fd, buffer, path)) {
      total += count;
      if (total > maxBytes) throw new RangeError(`"${path}" is larger than ${maxBytes} bytes`);
      chunks.push(buffer.slice(0, count));
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

function statxAt(syscall: string, path: string, flags: number): FileStat {
  const buffer = new Uint8Array(STATX_SIZE);
  if (loadLibc().statx(AT_FDCWD, cString(path), flags, STATX_BASIC_STATS, buffer) === -1) {
    throw new SyscallError(syscall, lastErrno(), path);
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

/** The text before the first NUL of `bytes`, as UTF-8. */
function cStringAt(bytes: Uint8Array, length = bytes.indexOf(0)): string {
  return new TextDecoder().decode(bytes.subarray(0, length < 0 ? bytes.byteLength : length));
}

/**
 * readlink(2): the target of a symbolic link, as stored.
 * @throws {SyscallError} EINVAL if `path` is not a symbolic link
 */
export function readlink(path: string): string {
  const buffer = new Uint8Array(PATH_MAX + 1);
  const length = Number(loadLibc().readlink(cString(path), buffer, BigInt(buffer.byteLength)));
  if (length === -1) throw new SyscallError("readlink", lastErrno(), path);
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
  if (loadLibc().realpath(cString(path), buffer) === null) {
    throw new SyscallError("realpath", lastErrno(), path);
  }
  return cStringAt(buffer);
}

/** Sets errno to 0, to tell readdir's end of directory from its failure. */
function clearErrno(): void {
  const pointer = loadLibc().__errno_location();
  if (pointer !== null) loadLibc().memcpy_out(pointer, new Uint8Array(4), 4n);
}

/**
 * opendir(3)/readdir(3)/closedir(3): the entries of a directory, without `.` and `..`, in the
 * order the filesystem returns them.
 * @throws {SyscallError} ENOTDIR if `path` is not a directory
 */
export function readDir(path: string): DirEntry[] {
  const directory = loadLibc().opendir(cString(path));
  if (directory === null) throw new SyscallError("opendir", lastErrno(), path);
  const entries: DirEntry[] = [];
  try {
    for (;;) {
      clearErrno();
      const record = loadLibc().readdir(directory);
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
    loadLibc().closedir(directory);
  }
}

// Channel I/O on raw descriptors: Deno.open is refused under /dev as well (see above), so the
// serial transports (src/transport/device.ts) open, poll, read and write their device through
// these. Nothing is retried here: EAGAIN and EINTR are thrown like any errno; the caller decides.

/** poll(2) event bits (<asm-generic/poll.h>). */
export const Poll = {
  POLLIN: 0x1,
  POLLOUT: 0x4,
  POLLERR: 0x8,
  POLLHUP: 0x10,
  POLLNVAL: 0x20,
} as const;

/** One entry of poll(2)'s array. */
export interface PollFd {
  fd: number;
  /** The {@link Poll} bits to wait for. */
  events: number;
  /** Set by {@link poll}: the bits that occurred (POLLERR, POLLHUP, POLLNVAL come unasked). */
  revents: number;
}

/** `struct pollfd { int fd; short events; short revents; }`: 8 bytes, at offsets 0, 4, 6. */
const POLLFD_SIZE = 8;

/**
 * poll(2): waits up to `timeoutMs` (-1: without limit) for the events of `fds` and sets each
 * entry's `revents`. Returns how many entries have events, 0 on timeout.
 * @throws {SyscallError} EINTR when a signal interrupted the wait
 */
export function poll(fds: PollFd[], timeoutMs: number): number {
  const buffer = new Uint8Array(POLLFD_SIZE * fds.length);
  const view = new DataView(buffer.buffer);
  fds.forEach((entry, index) => {
    view.setInt32(index * POLLFD_SIZE, entry.fd, true);
    view.setInt16(index * POLLFD_SIZE + 4, entry.events, true);
  });
  const ready = loadLibc().poll(buffer, BigInt(fds.length), timeoutMs);
  if (ready === -1) throw new SyscallError("poll", lastErrno());
  fds.forEach((entry, index) => entry.revents = view.getUint16(index * POLLFD_SIZE + 6, true));
  return ready;
}

/**
 * read(2) into `buffer` (a view at any offset): the byte count, 0 at end of file.
 * @throws {SyscallError} EAGAIN when a non-blocking descriptor has nothing to read
 */
export function read(fd: number, buffer: Uint8Array<ArrayBuffer>, path?: string): number {
  const count = Number(loadLibc().read(fd, buffer, BigInt(buffer.byteLength)));
  if (count === -1) throw new SyscallError("read", lastErrno(), path);
  return count;
}

/**
 * write(2) of `bytes` (a view at any offset): how many were written, possibly fewer.
 * @throws {SyscallError} EAGAIN when a non-blocking descriptor cannot take any now
 */
export function write(fd: number, bytes: Uint8Array<ArrayBuffer>, path?: string): number {
  const count = Number(loadLibc().write(fd, bytes, BigInt(bytes.byteLength)));
  if (count === -1) throw new SyscallError("write", lastErrno(), path);
  return count;
}

/** eventfd(2) flag: reads and writes never block (the value of `O_NONBLOCK`). */
export const EFD_NONBLOCK = O_NONBLOCK;

/**
 * eventfd(2), always close-on-exec: a counter that poll(2) reports readable once it is non-zero
 * (write 8 bytes to add, read 8 bytes to take and reset it).
 * @throws {SyscallError}
 */
export function eventfd(flags: number): number {
  const fd = loadLibc().eventfd(0, flags | O_CLOEXEC);
  if (fd === -1) throw new SyscallError("eventfd", lastErrno());
  return fd;
}

// System information for the guest-info commands (src/commands/system/). The layouts below are
// glibc's for LP64 Linux, identical on x86_64 and aarch64.

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
  if (loadLibc().uname(buffer) === -1) throw new SyscallError("uname", lastErrno());
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
  if (loadLibc().statvfs(cString(path), buffer) === -1) {
    throw new SyscallError("statvfs", lastErrno(), path);
  }
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
  if (loadLibc().clock_gettime(clock, buffer) === -1) {
    throw new SyscallError("clock_gettime", lastErrno());
  }
  const view = new DataView(buffer.buffer);
  return view.getBigInt64(0, true) * 1_000_000_000n + view.getBigInt64(8, true);
}

// Sockets handed over by systemd (socket activation, src/transport/activated.ts). Deno cannot
// adopt an inherited descriptor, so the agent inspects it, accepts on it and talks to its clients
// through these (reads and writes with read/write above). Values are the generic Linux ones,
// identical on x86_64 and aarch64 (<asm-generic/socket.h>, <bits/socket.h>).

/** Address families: `sa_family_t` values. */
export const AddressFamily = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_VSOCK: 40 } as const;
/** Socket types, as getsockopt(SO_TYPE) reports them. */
export const SocketType = { SOCK_STREAM: 1, SOCK_DGRAM: 2, SOCK_SEQPACKET: 5 } as const;
/** accept4(2) flag: the accepted socket is non-blocking (the value of `O_NONBLOCK`). */
export const SOCK_NONBLOCK = O_NONBLOCK;
/** accept4(2) flag: the accepted socket is close-on-exec (the value of `O_CLOEXEC`). */
export const SOCK_CLOEXEC = O_CLOEXEC;
/** getsockopt(2) level of the options below. */
export const SOL_SOCKET = 1;
/** getsockopt(2) options at {@link SOL_SOCKET} that hold an `int`. */
export const SocketOption = { SO_TYPE: 3, SO_ACCEPTCONN: 30, SO_DOMAIN: 39 } as const;

/** fcntl(2) commands: descriptor flags (FD_CLOEXEC) and file status flags (O_NONBLOCK). */
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const FD_CLOEXEC = 1;

/**
 * Marks a descriptor close-on-exec, so no child (a hook, the watchdog) inherits it.
 * @throws {SyscallError} EBADF if `fd` is not open
 */
export function setCloseOnExec(fd: number): void {
  const flags = loadLibc().fcntl_int(fd, F_GETFD, 0);
  if (flags === -1) throw new SyscallError("fcntl(F_GETFD)", lastErrno());
  if (loadLibc().fcntl_int(fd, F_SETFD, flags | FD_CLOEXEC) === -1) {
    throw new SyscallError("fcntl(F_SETFD)", lastErrno());
  }
}

/**
 * Makes an open file's reads, writes and accepts non-blocking (for every descriptor sharing it).
 * @throws {SyscallError} EBADF if `fd` is not open
 */
export function setNonBlocking(fd: number): void {
  const flags = loadLibc().fcntl_int(fd, F_GETFL, 0);
  if (flags === -1) throw new SyscallError("fcntl(F_GETFL)", lastErrno());
  if (loadLibc().fcntl_int(fd, F_SETFL, flags | O_NONBLOCK) === -1) {
    throw new SyscallError("fcntl(F_SETFL)", lastErrno());
  }
}

/**
 * getsockopt(2) of an `int` option, e.g. `SO_DOMAIN` (the address family).
 * @throws {SyscallError} ENOTSOCK if `fd` is not a socket, EBADF if it is not open
 */
export function getsockoptInt(fd: number, level: number, option: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([value.byteLength]);
  const result = loadLibc().getsockopt(
    fd,
    level,
    option,
    new Uint8Array(value.buffer),
    new Uint8Array(length.buffer),
  );
  if (result === -1) throw new SyscallError("getsockopt", lastErrno());
  return value[0]!;
}

/** A socket address in Deno's shapes; a family the agent does not decode keeps its number. */
export type SocketAddress = Deno.UnixAddr | Deno.VsockAddr | { transport: "other"; family: number };

/**
 * `sizeof(struct sockaddr_storage)`: room for any address. The two layouts decoded:
 *
 * ```c
 * struct sockaddr_un {          // offset
 *   sa_family_t sun_family;     //   0  u16, AF_UNIX
 *   char sun_path[108];         //   2  NUL-terminated; abstract if it starts with NUL;
 * };                            //      the returned length counts only the bytes used
 * struct sockaddr_vm {          // <linux/vm_sockets.h>
 *   sa_family_t svm_family;     //   0  u16, AF_VSOCK
 *   unsigned short svm_reserved1; // 2
 *   unsigned int svm_port;      //   4
 *   unsigned int svm_cid;       //   8
 *   __u8 svm_flags;             //  12
 *   unsigned char svm_zero[3];  //  13
 * };                            // size 16
 * ```
 */
const SOCKADDR_STORAGE_SIZE = 128;
const SUN_PATH_OFFSET = 2;
const SVM_PORT_OFFSET = 4;
const SVM_CID_OFFSET = 8;

/** Decodes the first `length` bytes of a `struct sockaddr` as getsockname/accept4 filled them. */
export function readSocketAddress(bytes: Uint8Array, length: number): SocketAddress {
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  const family = length >= 2 ? view.getUint16(0, true) : 0;
  if (family === AddressFamily.AF_VSOCK) {
    return {
      transport: "vsock",
      cid: view.getUint32(SVM_CID_OFFSET, true),
      port: view.getUint32(SVM_PORT_OFFSET, true),
    };
  }
  if (family !== AddressFamily.AF_UNIX) return { transport: "other", family };
  const path = bytes.subarray(SUN_PATH_OFFSET, length);
  // An abstract name starts with NUL and may hold any bytes; `ss -x` shows it with a leading "@".
  if (path[0] === 0) {
    return { transport: "unix", path: `@${new TextDecoder().decode(path.subarray(1))}` };
  }
  return { transport: "unix", path: cStringAt(path) };
}

/**
 * getsockname(2): the address a socket is bound to.
 * @throws {SyscallError} ENOTSOCK if `fd` is not a socket
 */
export function getsockname(fd: number): SocketAddress {
  const address = new Uint8Array(SOCKADDR_STORAGE_SIZE);
  const length = new Uint32Array([address.byteLength]);
  if (loadLibc().getsockname(fd, address, new Uint8Array(length.buffer)) === -1) {
    throw new SyscallError("getsockname", lastErrno());
  }
  return readSocketAddress(address, Math.min(length[0]!, address.byteLength));
}

/**
 * accept4(2): the next queued connection on a listening socket, as a new descriptor (with
 * `flags`: {@link SOCK_NONBLOCK}, {@link SOCK_CLOEXEC}) and the peer's address.
 * @throws {SyscallError} EAGAIN when a non-blocking listener has no connection queued
 */
export function accept4(fd: number, flags: number): { fd: number; peer: SocketAddress } {
  const address = new Uint8Array(SOCKADDR_STORAGE_SIZE);
  const length = new Uint32Array([address.byteLength]);
  const client = loadLibc().accept4(fd, address, new Uint8Array(length.buffer), flags);
  if (client === -1) throw new SyscallError("accept4", lastErrno());
  return { fd: client, peer: readSocketAddress(address, Math.min(length[0]!, address.byteLength)) };
}

// Advisory locks and memory.

/** flock(2) operations. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/**
 * Opens (creating it owner-only if absent) a lock file: never through a symlink, never blocking
 * on a FIFO planted there, close-on-exec so a hook never inherits the lock.
 * @throws {SyscallError} (ELOOP for a symlink)
 */
export function openLockFile(path: string): number {
  const flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  const fd = loadLibc().open_create(cString(path), flags, 0o600);
  if (fd === -1) throw new SyscallError("open", lastErrno(), path);
  return fd;
}

/**
 * flock(2); with LOCK_NB a lock held elsewhere gives `false` instead of blocking.
 * @throws {SyscallError} for anything but EWOULDBLOCK
 */
export function flock(fd: number, operation: number): boolean {
  if (loadLibc().flock(fd, operation) === 0) return true;
  const errno = lastErrno();
  if (errno === Errno.EAGAIN) return false; // EWOULDBLOCK
  throw new SyscallError("flock", errno);
}

/** `AT_EMPTY_PATH`: statx of the descriptor itself. */
const AT_EMPTY_PATH = 0x1000;

/**
 * fstat(2) (through statx(2)).
 * @throws {SyscallError}
 */
export function fstat(fd: number): FileStat {
  const buffer = new Uint8Array(STATX_SIZE);
  if (loadLibc().statx(fd, cString(""), AT_EMPTY_PATH, STATX_BASIC_STATS, buffer) === -1) {
    throw new SyscallError("fstat", lastErrno());
  }
  return readStatx(buffer);
}

/** glibc's malloc_trim(0): returns freed heap memory (of every arena) to the kernel. */
export function mallocTrim(): void {
  loadLibc().malloc_trim(0n);
}
