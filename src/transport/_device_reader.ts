/**
 * The read loop of a descriptor channel, run in its own Worker by device_reader_worker.ts, and the
 * messages and shared words it uses to talk to device.ts: a device (virtio-serial, isa-serial) or
 * a client accepted on a socket-activated listener (activated.ts).
 *
 * The loop blocks in poll(2) on the descriptor and on an eventfd (the doorbell device.ts rings to
 * stop it), so a quiet channel costs no wakeups and a stop is seen at once. What it reads it posts
 * to the main thread. What end of file means depends on the channel ({@link EndOfFile}):
 * - a device: end of file, POLLHUP without data and EIO (a pty whose other side closed) mean "no
 *   host": it reports a hangup once, then tries again every {@link HANGUP_RETRY_MS} (qemu-ga's
 *   `g_usleep(G_USEC_PER_SEC / 10)`, at most 10 wakeups/s);
 * - a socket: end of file (or a reset) means the client has gone: it reports "closed" once and
 *   reads no more, but keeps the descriptor open until the main thread stops it, so a reply the
 *   agent is still writing never lands on a reused descriptor number.
 *
 * Any other error is posted and ends the loop.
 *
 * Nothing here runs on the main thread except the type and constant exports.
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import { close, Poll, poll, type PollFd, read } from "../linux/fd.ts";

/** How long to wait before reading again after a hangup or EAGAIN (qemu-ga: 100 ms). */
export const HANGUP_RETRY_MS = 100;

/** Bytes asked for per read(2) (qemu-ga's `QGA_READ_COUNT_DEFAULT`). */
export const READ_SIZE = 4096;

/**
 * Chunks posted but not yet taken by the agent before the loop stops reading: a busy agent (a
 * FIFREEZE in progress) leaves further input in the kernel, where the host's writes wait for it.
 */
export const MAX_PENDING_CHUNKS = 16;

/** Indexes of the shared Int32 words. */
export const Control = {
  /** Chunks posted and not yet taken by the main thread. */
  PENDING: 0,
  /** 1 once the main thread asked the loop to stop. */
  STOP: 1,
  /** Who closes the descriptors: {@link Owner}. */
  OWNER: 2,
} as const;

/** Number of shared Int32 words. */
export const CONTROL_WORDS = 3;

/** Values of the {@link Control.OWNER} word: who closes the device descriptor. */
export const Owner = {
  /** The main thread (the loop has not started). */
  MAIN: 0,
  /** The loop: it closes the device when it ends. */
  READER: 1,
  /** The main thread closed it before the loop started; the loop must not touch it. */
  CLOSED: 2,
} as const;

/** What end of file means: the host is away for now (a device), or the client has gone (a socket). */
export type EndOfFile = "hangup" | "closed";

/** What device.ts sends to start the loop. */
export interface ReaderStart {
  /** The device or connected socket, non-blocking. */
  fd: number;
  /** What end of file means on it. */
  endOfFile: EndOfFile;
  /** An eventfd that becomes readable when the loop must stop. */
  wakeFd: number;
  /** For error messages. */
  path: string;
  /** {@link CONTROL_WORDS} Int32 words, indexed by {@link Control}. */
  control: SharedArrayBuffer;
}

/** What the loop posts. */
export type ReaderEvent =
  /** The Worker's modules have loaded (posted before any start message is taken). */
  | { type: "ready" }
  | { type: "data"; bytes: Uint8Array }
  | { type: "hangup" }
  /** End of file on a socket: the client has gone (posted once; the loop then waits for stop). */
  | { type: "closed" }
  | { type: "error"; syscall: string; errno: number; path: string }
  /** The loop ended (after a stop or an error) and closed the device, if it was its to close. */
  | { type: "stopped" };

/** Where the loop posts its events (the Worker's `postMessage`). */
export type PostEvent = (event: ReaderEvent, transfer?: Transferable[]) => void;

/**
 * What one read attempt found: go on at once, or after a pause, or end the loop now, or end it
 * once the main thread asks (the client has gone).
 */
type ReadOutcome = "next" | "pause" | "stop" | "ended";

/**
 * Runs the read loop until the main thread stops it or a read fails, then closes the device.
 * Blocks the calling thread: only a Worker calls it.
 */
export function runReader(start: ReaderStart, post: PostEvent): void {
  const control = new Int32Array(start.control);
  if (Atomics.compareExchange(control, Control.OWNER, Owner.MAIN, Owner.READER) !== Owner.MAIN) {
    post({ type: "stopped" }); // closed before we started: the device is not ours
    return;
  }
  try {
    new DeviceReader(start, control, post).run();
  } finally {
    // The eventfd stays open: the main thread may still ring it, and closes it on "stopped".
    closeQuietly(start.fd);
    post({ type: "stopped" });
  }
}

class DeviceReader {
  readonly #start: ReaderStart;
  readonly #control: Int32Array;
  readonly #post: PostEvent;
  readonly #buffer = new Uint8Array(READ_SIZE);
  readonly #fds: PollFd[];
  #hungUp = false;

  constructor(start: ReaderStart, control: Int32Array, post: PostEvent) {
    this.#start = start;
    this.#control = control;
    this.#post = post;
    this.#fds = [
      { fd: start.fd, events: Poll.POLLIN, revents: 0 },
      { fd: start.wakeFd, events: Poll.POLLIN, revents: 0 },
    ];
  }

  run(): void {
    while (this.#waitForRoom()) {
      const outcome = this.#readOnce();
      if (outcome === "stop") return;
      if (outcome === "ended") return this.#waitForStop();
      if (outcome === "pause") this.#sleep(HANGUP_RETRY_MS);
    }
  }

  /** Holds the descriptor open until the main thread has closed the connection. */
  #waitForStop(): void {
    while (!this.#stopped()) Atomics.wait(this.#control, Control.STOP, 0);
  }

  #stopped(): boolean {
    return Atomics.load(this.#control, Control.STOP) !== 0;
  }

  /** Sleeps `ms`, or less if the main thread asks to stop (it notifies the STOP word). */
  #sleep(ms: number): void {
    Atomics.wait(this.#control, Control.STOP, 0, ms);
  }

  /** Waits while too many chunks are unread by the agent; false once asked to stop. */
  #waitForRoom(): boolean {
    for (;;) {
      if (this.#stopped()) return false;
      const pending = Atomics.load(this.#control, Control.PENDING);
      if (pending < MAX_PENDING_CHUNKS) return true;
      // Woken when the main thread takes a chunk, and by close() (which notifies every word).
      Atomics.wait(this.#control, Control.PENDING, pending);
    }
  }

  /** One poll(2) and, if the device is ready, one read(2). */
  #readOnce(): ReadOutcome {
    const [device, wake] = this.#fds as [PollFd, PollFd];
    try {
      poll(this.#fds, -1);
    } catch (err) {
      if (isErrno(err, Errno.EINTR)) return "next"; // a signal landed on this thread
      return this.#fail(err);
    }
    if (wake.revents !== 0 || this.#stopped()) return "stop";
    if (device.revents === 0) return "next";
    if ((device.revents & Poll.POLLNVAL) !== 0) {
      return this.#fail(new SyscallError("poll", Errno.EBADF, this.#start.path));
    }
    let count: number;
    try {
      count = read(this.#start.fd, this.#buffer, this.#start.path);
    } catch (err) {
      if (isErrno(err, Errno.EINTR)) return "next";
      // qemu-ga pauses on EAGAIN as on EOF: a port that polls ready but has nothing must not spin.
      if (isErrno(err, Errno.EAGAIN)) return "pause";
      if (this.#start.endOfFile === "closed") {
        if (PEER_GONE.some((errno) => isErrno(err, errno))) return this.#closed();
      } else if (isErrno(err, Errno.EIO)) {
        return this.#hangup(); // a pty whose other side closed
      }
      return this.#fail(err);
    }
    if (count === 0) return this.#start.endOfFile === "closed" ? this.#closed() : this.#hangup();
    this.#hungUp = false;
    const bytes = this.#buffer.slice(0, count);
    Atomics.add(this.#control, Control.PENDING, 1);
    this.#post({ type: "data", bytes }, [bytes.buffer]);
    return "next";
  }

  /** Reports a hangup the first time, so the agent drops partial input; later ones are quiet. */
  #hangup(): ReadOutcome {
    if (!this.#hungUp) {
      this.#hungUp = true;
      this.#post({ type: "hangup" });
    }
    return "pause";
  }

  /** Reports that the client has gone; the loop reads no more. */
  #closed(): ReadOutcome {
    this.#post({ type: "closed" });
    return "ended";
  }

  /** Posts a failed system call, which ends the loop; anything else is a bug and is thrown. */
  #fail(err: unknown): ReadOutcome {
    if (!(err instanceof SyscallError)) throw err;
    const path = err.path ?? this.#start.path;
    this.#post({ type: "error", syscall: err.syscall, errno: err.errno, path });
    return "stop";
  }
}

/** Read errors of a socket whose peer has gone: ECONNRESET, ETIMEDOUT (a dead vsock peer). */
const PEER_GONE: readonly number[] = [errnoNumber("ECONNRESET"), errnoNumber("ETIMEDOUT")];

function isErrno(err: unknown, errno: number): boolean {
  return err instanceof SyscallError && err.errno === errno;
}

function closeQuietly(fd: number): void {
  try {
    close(fd);
  } catch {
    // Nothing to do about a failed close of a channel we are done with.
  }
}
