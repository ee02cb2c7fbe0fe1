/**
 * Raw descriptors: open, close, read, write, poll, eventfd and the descriptor flags. Deno refuses
 * `Deno.open` under /dev (denoland/deno#27980) and cannot adopt an inherited descriptor, so the
 * serial channels and socket-activated clients (src/transport/) are served through these.
 *
 * Nothing is retried here: EAGAIN and EINTR are thrown like any errno and the caller decides.
 *
 * @module
 */

import { cString, errnoError, libc } from "./_libc.ts";

/** open(2) flags (identical on x86_64 and aarch64). */
export const O_RDONLY = 0;
/** open(2): write only. */
export const O_WRONLY = 1;
/** open(2): read and write. */
export const O_RDWR = 2;
/** open(2): create the file if it is absent. */
export const O_CREAT = 0o100;
/** open(2), with O_CREAT: fail with EEXIST if anything is there (a symlink included). */
export const O_EXCL = 0o200;
/** open(2): a terminal does not become the controlling terminal. */
export const O_NOCTTY = 0o400;
/** open(2): reads and writes never block. */
export const O_NONBLOCK = 0o4000;
/** open(2): fail with ELOOP if the last component is a symbolic link. */
export const O_NOFOLLOW = 0o400000;
/** open(2): closed on exec; {@link open} always adds it. */
export const O_CLOEXEC = 0o2000000;

/**
 * open(2), always close-on-exec.
 * @throws {SyscallError}
 */
export function open(path: string, flags: number): number {
  const fd = libc().open(cString(path), flags | O_CLOEXEC);
  if (fd === -1) throw errnoError("open", path);
  return fd;
}

/**
 * close(2).
 * @throws {SyscallError}
 */
export function close(fd: number): void {
  if (libc().close(fd) === -1) throw errnoError("close");
}

/** close(2), ignoring a failure: nothing can be done about it for a descriptor we are done with. */
export function closeQuietly(fd: number): void {
  try {
    close(fd);
  } catch {
    // Nothing to do about a failed close of a descriptor we are done with.
  }
}

/** poll(2) event bits (<asm-generic/poll.h>). */
export const Poll = {
  POLLIN: 0x1,
  POLLPRI: 0x2,
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
  const buffer = pollBuffer(fds);
  const ready = libc().poll(buffer, BigInt(fds.length), timeoutMs);
  if (ready === -1) throw errnoError("poll");
  setRevents(fds, buffer);
  return ready;
}

/**
 * {@link poll} on a blocking thread of Deno's pool: the wait holds no thread of the event loop.
 * That thread's errno cannot be read here, so a failed wait is asked again on this thread without
 * waiting: that call's errno is exact, and if it succeeds (the other thread was interrupted by a
 * signal) its events are the answer.
 * @throws {SyscallError} when poll(2) fails on this thread too
 */
export async function pollOffThread(fds: PollFd[], timeoutMs: number): Promise<number> {
  const buffer = pollBuffer(fds);
  const ready = await libc().poll_offthread(buffer, BigInt(fds.length), timeoutMs);
  if (ready === -1) return poll(fds, 0);
  setRevents(fds, buffer);
  return ready;
}

/** `fds` as an array of `struct pollfd`. */
function pollBuffer(fds: readonly PollFd[]): Uint8Array<ArrayBuffer> {
  const buffer = new Uint8Array(POLLFD_SIZE * fds.length);
  const view = new DataView(buffer.buffer);
  fds.forEach((entry, index) => {
    view.setInt32(index * POLLFD_SIZE, entry.fd, true);
    view.setInt16(index * POLLFD_SIZE + 4, entry.events, true);
  });
  return buffer;
}

/** Copies each `revents` poll(2) set in `buffer` into `fds`. */
function setRevents(fds: PollFd[], buffer: Uint8Array<ArrayBuffer>): void {
  const view = new DataView(buffer.buffer);
  fds.forEach((entry, index) => entry.revents = view.getUint16(index * POLLFD_SIZE + 6, true));
}

/**
 * read(2) into `buffer` (a view at any offset): the byte count, 0 at end of file.
 * @throws {SyscallError} EAGAIN when a non-blocking descriptor has nothing to read
 */
export function read(fd: number, buffer: Uint8Array<ArrayBuffer>, path?: string): number {
  const count = Number(libc().read(fd, buffer, BigInt(buffer.byteLength)));
  if (count === -1) throw errnoError("read", path);
  return count;
}

/**
 * write(2) of `bytes` (a view at any offset): how many were written, possibly fewer.
 * @throws {SyscallError} EAGAIN when a non-blocking descriptor cannot take any now
 */
export function write(fd: number, bytes: Uint8Array<ArrayBuffer>, path?: string): number {
  const count = Number(libc().write(fd, bytes, BigInt(bytes.byteLength)));
  if (count === -1) throw errnoError("write", path);
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
  const fd = libc().eventfd(0, flags | O_CLOEXEC);
  if (fd === -1) throw errnoError("eventfd");
  return fd;
}

/** fcntl(2) commands: descriptor flags (FD_CLOEXEC) and file status flags (O_NONBLOCK). */
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const F_SETOWN = 8;
const FD_CLOEXEC = 1;
/** O_ASYNC (FASYNC): the kernel signals the descriptor's owner with SIGIO when it becomes ready. */
const O_ASYNC = 0o20000;

/**
 * Marks a descriptor close-on-exec, so no child (a hook, the watchdog) inherits it.
 * @throws {SyscallError} EBADF if `fd` is not open
 */
export function setCloseOnExec(fd: number): void {
  const flags = libc().fcntl_int(fd, F_GETFD, 0);
  if (flags === -1) throw errnoError("fcntl(F_GETFD)");
  if (libc().fcntl_int(fd, F_SETFD, flags | FD_CLOEXEC) === -1) throw errnoError("fcntl(F_SETFD)");
}

/**
 * Makes an open file's reads, writes and accepts non-blocking (for every descriptor sharing it).
 * @throws {SyscallError} EBADF if `fd` is not open
 */
export function setNonBlocking(fd: number): void {
  const flags = libc().fcntl_int(fd, F_GETFL, 0);
  if (flags === -1) throw errnoError("fcntl(F_GETFL)");
  if (libc().fcntl_int(fd, F_SETFL, flags | O_NONBLOCK) === -1) throw errnoError("fcntl(F_SETFL)");
}

/**
 * Asks the kernel to send this process SIGIO whenever `fd` becomes ready (`on`), or no longer.
 * A SIGIO listener must be in place before: the signal's default action ends the process.
 * @throws {SyscallError} EBADF if `fd` is not open
 */
export function setSignalWhenReady(fd: number, on: boolean): void {
  if (on && libc().fcntl_int(fd, F_SETOWN, Deno.pid) === -1) throw errnoError("fcntl(F_SETOWN)");
  const flags = libc().fcntl_int(fd, F_GETFL, 0);
  if (flags === -1) throw errnoError("fcntl(F_GETFL)");
  const wanted = on ? flags | O_ASYNC : flags & ~O_ASYNC;
  if (wanted !== flags && libc().fcntl_int(fd, F_SETFL, wanted) === -1) {
    throw errnoError("fcntl(F_SETFL)");
  }
}
