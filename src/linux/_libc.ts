/**
 * The only module that calls `Deno.dlopen`: the libc symbol table with each C prototype, the lazy
 * load, errno, and the C-string helpers the wrappers share. Private to src/linux/: the public
 * modules (fd.ts, files.ts, freeze.ts, process.ts, termios.ts, system.ts, sockets.ts) hold the
 * typed wrappers, one concern each, and nothing outside src/linux/ sees a raw symbol.
 *
 * The rule every wrapper follows: call the symbol, test the C convention (`-1` or `NULL`), and on
 * failure build the error with {@link errnoError} in the same synchronous step, before anything
 * else can run on this thread and change errno. Two symbols are `nonblocking` (`ioctl_int_offthread`,
 * freeze.ts; `poll_offthread`, fd.ts): they run on another thread, so their errno is never read.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { SyscallError } from "./errno.ts";

const SYMBOLS = {
  /** int open(const char *path, int flags, ...);  mode omitted: we never create files here */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** int open(const char *path, int flags, mode_t mode);  the O_CREAT shape of the variadic */
  open_create: { name: "open", parameters: ["buffer", "i32", "u32"], result: "i32" },
  /** int rename(const char *from, const char *to); */
  rename: { parameters: ["buffer", "buffer"], result: "i32" },
  /** int unlink(const char *path); */
  unlink: { parameters: ["buffer"], result: "i32" },
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
  /** int getpriority(int which, id_t who);  -1 is also a valid niceness: errno tells */
  getpriority: { parameters: ["i32", "u32"], result: "i32" },
  /** int setpriority(int which, id_t who, int prio); */
  setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
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
  /**
   * int poll(struct pollfd *fds, nfds_t nfds, int timeout);  on a blocking thread of Deno's pool,
   * so waiting for a channel leaves the event loop free. Its errno stays on that thread.
   */
  poll_offthread: {
    name: "poll",
    parameters: ["buffer", "usize", "i32"],
    result: "i32",
    nonblocking: true,
  },
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

/** The loaded symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
type SymbolName = keyof typeof SYMBOLS;

/** Every symbol, once {@link loadAllSymbols} ran. */
let symbols: Libc | undefined;
/** Until then: each symbol opened on its first use. */
let lazySymbols: Libc | undefined;
/** The candidate libc opened from. */
let libcPath: string | undefined;

/** libc could not be opened: names every path tried and why each failed. */
export class LibcLoadError extends Error {
  override name = "LibcLoadError";
}

/**
 * The libc symbols (pure modules and their tests never need `--allow-ffi`). Each opens on its
 * first use: a symbol costs start-up time to open, and a socket's start-up needs one or two of
 * them; {@link loadAllSymbols} opens the rest at once.
 * @throws {LibcLoadError} naming the paths tried
 */
export function libc(): Libc {
  return symbols ?? (lazySymbols ??= openLazily());
}

/**
 * Opens every symbol now (the freeze engine does, before anything is frozen: nothing is opened
 * later). Opening them again is a no-op.
 * @throws {LibcLoadError} naming the paths tried
 */
export function loadAllSymbols(): void {
  symbols ??= openFromCandidates(SYMBOLS);
}

/** Opened up front: reading errno must never open a symbol (that could change errno). */
const ERRNO_SYMBOLS = {
  __errno_location: SYMBOLS.__errno_location,
  memcpy_in: SYMBOLS.memcpy_in,
  memcpy_out: SYMBOLS.memcpy_out,
} as const;

function openLazily(): Libc {
  const table: Record<string, unknown> = { ...openFromCandidates(ERRNO_SYMBOLS) };
  for (const name of Object.keys(SYMBOLS) as SymbolName[]) {
    if (name in table) continue;
    Object.defineProperty(table, name, {
      configurable: true,
      enumerable: true,
      get: () => {
        const symbol = openOne(name);
        Object.defineProperty(table, name, { value: symbol, enumerable: true });
        return symbol;
      },
    });
  }
  return table as Libc;
}

function openOne(name: SymbolName): unknown {
  const one = { [name]: SYMBOLS[name] } as Deno.ForeignLibraryInterface;
  return (Deno.dlopen(libcPath as string, one).symbols as Record<string, unknown>)[name];
}

function openFromCandidates<S extends Deno.ForeignLibraryInterface>(
  table: S,
): Deno.DynamicLibrary<S>["symbols"] {
  const failures: string[] = [];
  for (const path of libcPath === undefined ? LIBC_CANDIDATES : [libcPath]) {
    try {
      const opened = Deno.dlopen(path, table).symbols;
      libcPath = path;
      return opened;
    } catch (err) {
      failures.push(`${path}: ${errorMessage(err)}`);
    }
  }
  throw new LibcLoadError(`cannot load libc; tried:\n  ${failures.join("\n  ")}`);
}

const errnoBuffer = new Int32Array(1);
const errnoBytes = new Uint8Array(errnoBuffer.buffer);

/** This thread's errno, as the last failed call left it. */
export function lastErrno(): number {
  const pointer = libc().__errno_location();
  if (pointer === null) return 0;
  libc().memcpy_in(errnoBytes, pointer, 4n);
  return errnoBuffer[0]!;
}

/**
 * The error for a call that just failed: errno read now. Call it right after the failing call,
 * in the same synchronous wrapper.
 */
export function errnoError(syscall: string, path?: string): SyscallError {
  return new SyscallError(syscall, lastErrno(), path);
}

/** Sets errno to 0, to tell a call that fails without a distinct result (readdir) from success. */
export function clearErrno(): void {
  const pointer = libc().__errno_location();
  if (pointer !== null) libc().memcpy_out(pointer, new Uint8Array(4), 4n);
}

/** Copies `bytes.length` bytes of C memory at `pointer` into `bytes`. */
export function copyFromPointer(pointer: Deno.PointerObject, bytes: Uint8Array<ArrayBuffer>): void {
  libc().memcpy_in(bytes, pointer, BigInt(bytes.length));
}

const encoder = new TextEncoder();

/** `text` as a NUL-terminated UTF-8 C string (sized in bytes, not UTF-16 units). */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text + "\0");
}

/** The text before the first NUL of `bytes` (or the first `length` bytes), as UTF-8. */
export function cStringAt(bytes: Uint8Array, length = bytes.indexOf(0)): string {
  return new TextDecoder().decode(bytes.subarray(0, length < 0 ? bytes.byteLength : length));
}
