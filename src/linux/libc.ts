/**
 * The only module that calls `Deno.dlopen`: libc symbols with their C prototypes, opened lazily,
 * and typed wrappers that read errno in the same synchronous call and throw {@link SyscallError}.
 *
 * No symbol is `nonblocking`: errno is thread-local, and a nonblocking call runs on another thread.
 * Work that may block (FIFREEZE on a dirty filesystem) calls these wrappers synchronously, on the
 * calling thread or in freezer.ts's Workers (which import this module: one dlopen per thread).
 *
 * @module
 */

import { SyscallError } from "./errno.ts";
import { FIFREEZE, FIONREAD, FITHAW } from "./ioctl.ts";

export { SyscallError };

const SYMBOLS = {
  /** int open(const char *path, int flags, ...);  mode omitted: we never create files here */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** int close(int fd); */
  close: { parameters: ["i32"], result: "i32" },
  /** int ioctl(int fd, unsigned long req, int arg);  variadic in C: one alias per argument shape */
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "i32"], result: "i32" },
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

function lastErrno(): number {
  const pointer = loadLibc().__errno_location();
  if (pointer === null) return 0;
  return new Deno.UnsafePointerView(pointer).getInt32();
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
