/**
 * The blocking descriptor loops the transports run in Workers (fd_loop_worker.ts), and the shared
 * words and messages they use with the main thread (_fd_io.ts):
 *
 * - the read loop of a descriptor channel: a device (virtio-serial, isa-serial) or a client
 *   accepted on a socket-activated listener;
 * - the accept loop of a socket-activated listener.
 *
 * Each loop blocks in poll(2) on its descriptor and on an eventfd (the doorbell the main thread
 * rings to stop it), so a quiet channel costs no wakeups and a stop is seen at once; poll(2),
 * read(2) and accept4(2) run synchronously, so errno is exact, while the agent's event loop stays
 * free. What a loop finds it posts to the main thread; a failed system call is posted and ends it.
 *
 * The read loop: what end of file means depends on the channel ({@link EndOfFile}):
 * - a device: end of file, POLLHUP without data and EIO (a pty whose other side closed) mean "no
 *   host": it reports a hangup once, then tries again every {@link HANGUP_RETRY_MS} (qemu-ga's
 *   `g_usleep(G_USEC_PER_SEC / 10)`, at most 10 wakeups/s);
 * - a socket: end of file (or a reset) means the client has gone: it reports "closed" once and
 *   reads no more, but keeps the descriptor open until the main thread stops it, so a reply the
 *   agent is still writing never lands on a reused descriptor number.
 *
 * The accept loop: one client at a time, as qemu-ga: it accepts only when the main thread asks for
 * the next client (the {@link Control.WANTED} word), so while a client is served further ones wait
 * in the listener's backlog; it accept4(2)s the client non-blocking and close-on-exec. The
 * listener itself is never closed here: it belongs to the process (systemd passed it), and a
 * `--retry-path` restart serves it again.
 *
 * Nothing here runs on the main thread except the type and constant exports.
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import { closeQuietly, Poll, poll, type PollFd, read } from "../linux/fd.ts";
import { accept4, SOCK_CLOEXEC, SOCK_NONBLOCK, type SocketAddress } from "../linux/sockets.ts";

/** How long to wait before reading again after a hangup or EAGAIN (qemu-ga: 100 ms). */
export const HANGUP_RETRY_MS = 100;

/** Bytes asked for per read(2) (qemu-ga's `QGA_READ_COUNT_DEFAULT`). */
export const READ_SIZE = 4096;

/**
 * Chunks posted but not yet taken by the agent before the read loop stops reading: a busy agent (a
 * FIFREEZE in progress) leaves further input in the kernel, where the host's writes wait for it.
 */
export const MAX_PENDING_CHUNKS = 16;

/** How long to wait before accepting again when out of descriptors or memory. */
export const ACCEPT_RETRY_MS = 100;

/** Indexes of the shared Int32 words. */
export const Control = {
  /** 1 once the main thread asked the loop to stop. */
  STOP: 0,
  /** Read loop: chunks posted and not yet taken by the main thread. */
  PENDING: 1,
  /** Read loop: who closes the descriptor, an {@link Owner}. */
  OWNER: 2,
  /** Accept loop: 1 while the main thread waits for the next client; the loop sets it back to 0. */
  WANTED: 3,
} as const;

/** Number of shared Int32 words. */
export const CONTROL_WORDS = 4;

/** Values of the {@link Control.OWNER} word: who closes the read loop's descriptor. */
export const Owner = {
  /** The main thread (the loop has not started). */
  MAIN: 0,
  /** The loop: it closes the descriptor when it ends. */
  READER: 1,
  /** The main thread closed it before the loop started; the loop must not touch it. */
  CLOSED: 2,
} as const;

/** What end of file means: the host is away for now (a device), or the client left (a socket). */
export type EndOfFile = "hangup" | "closed";

/** Which loop the main thread asks for, on which descriptor. */
export type LoopRequest =
  | {
    loop: "read";
    /** A device or connected socket, non-blocking. */
    fd: number;
    /** What end of file means on it. */
    endOfFile: EndOfFile;
    /** For error messages. */
    path: string;
  }
  | {
    loop: "accept";
    /** A listening socket, non-blocking. */
    fd: number;
  };

/** What the main thread sends to start a loop: the request, the doorbell and the shared words. */
export type LoopStart = LoopRequest & {
  /** An eventfd that becomes readable when the loop must stop. */
  wakeFd: number;
  /** {@link CONTROL_WORDS} Int32 words, indexed by {@link Control}. */
  control: SharedArrayBuffer;
};

/** What a loop posts. */
export type LoopEvent =
  /** The Worker's modules have loaded (posted before any start message is taken). */
  | { type: "ready" }
  | { type: "data"; bytes: Uint8Array }
  | { type: "hangup" }
  /** End of file on a socket: the client has gone (posted once; the loop then waits for stop). */
  | { type: "closed" }
  /** A client: its descriptor is the main thread's to close from now on. */
  | { type: "accepted"; fd: number; peer: SocketAddress }
  | { type: "error"; syscall: string; errno: number; path?: string | undefined }
  /** The loop ended (after a stop or an error) and closed what was its to close. */
  | { type: "stopped" };

/** Where a loop posts its events (the Worker's `postMessage`). */
export type PostEvent = (event: LoopEvent, transfer?: Transferable[]) => void;

/**
 * Runs the loop `start` asks for until the main thread stops it or a system call fails, then posts
 * "stopped". Blocks the calling thread: only a Worker calls it.
 */
export function runLoop(start: LoopStart, post: PostEvent): void {
  try {
    if (start.loop === "read") runReader(start, post);
    else new Acceptor(start, post).run();
  } finally {
    post({ type: "stopped" });
  }
}

/** The read loop owns the descriptor from its start (unless closed before), and closes it. */
function runReader(start: LoopStart & { loop: "read" }, post: PostEvent): void {
  const control = new Int32Array(start.control);
  if (Atomics.compareExchange(control, Control.OWNER, Owner.MAIN, Owner.READER) !== Owner.MAIN) {
    return; // closed before we started: the descriptor is not ours
  }
  try {
    new Reader(start, post).run();
  } finally {
    // The eventfd stays open: the main thread may still ring it, and closes it on "stopped".
    closeQuietly(start.fd);
  }
}

/** What one attempt found: go on at once, after a pause, end now, or end once asked to (read). */
type Outcome = "next" | "pause" | "stop" | "ended";

/** What both loops share: the words, the poll(2) on the descriptor and the doorbell, failures. */
abstract class FdLoop {
  protected readonly control: Int32Array;
  protected readonly post: PostEvent;
  readonly #fds: [PollFd, PollFd];
  readonly #path: string | undefined;

  constructor(start: LoopStart, post: PostEvent, path: string | undefined) {
    this.control = new Int32Array(start.control);
    this.post = post;
    this.#path = path;
    this.#fds = [
      { fd: start.fd, events: Poll.POLLIN, revents: 0 },
      { fd: start.wakeFd, events: Poll.POLLIN, revents: 0 },
    ];
  }

  protected stopped(): boolean {
    return Atomics.load(this.control, Control.STOP) !== 0;
  }

  /** Sleeps `ms`, or less if the main thread asks to stop (it notifies the STOP word). */
  protected pause(ms: number): void {
    Atomics.wait(this.control, Control.STOP, 0, ms);
  }

  /**
   * Waits while `blocked` holds for the value of `word`; false once asked to stop. Woken when the
   * main thread changes the word, and by a stop (which notifies every word).
   */
  protected waitWhile(word: number, blocked: (value: number) => boolean): boolean {
    for (;;) {
      if (this.stopped()) return false;
      const value = Atomics.load(this.control, word);
      if (!blocked(value)) return true;
      Atomics.wait(this.control, word, value);
    }
  }

  /** One poll(2): "ready" when the descriptor has events, else go on or stop. */
  protected waitForDescriptor(): Outcome | "ready" {
    const [channel, wake] = this.#fds;
    try {
      poll(this.#fds, -1);
    } catch (err) {
      if (isErrno(err, [Errno.EINTR])) return "next"; // a signal landed on this thread
      return this.fail(err);
    }
    if (wake.revents !== 0 || this.stopped()) return "stop";
    if (channel.revents === 0) return "next";
    if ((channel.revents & Poll.POLLNVAL) !== 0) {
      return this.fail(new SyscallError("poll", Errno.EBADF, this.#path));
    }
    return "ready";
  }

  /** Posts a failed system call, which ends the loop; anything else is a bug and is thrown. */
  protected fail(err: unknown): Outcome {
    if (!(err instanceof SyscallError)) throw err;
    const path = err.path ?? this.#path;
    this.post({ type: "error", syscall: err.syscall, errno: err.errno, path });
    return "stop";
  }
}

class Reader extends FdLoop {
  readonly #start: LoopStart & { loop: "read" };
  readonly #buffer = new Uint8Array(READ_SIZE);
  #hungUp = false;

  constructor(start: LoopStart & { loop: "read" }, post: PostEvent) {
    super(start, post, start.path);
    this.#start = start;
  }

  run(): void {
    // Waits while too many chunks are unread by the agent (woken when it takes one).
    while (this.waitWhile(Control.PENDING, (pending) => pending >= MAX_PENDING_CHUNKS)) {
      const outcome = this.#readOnce();
      if (outcome === "stop") return;
      if (outcome === "ended") return this.#waitForStop();
      if (outcome === "pause") this.pause(HANGUP_RETRY_MS);
    }
  }

  /** Holds the descriptor open until the main thread has closed the connection. */
  #waitForStop(): void {
    while (!this.stopped()) Atomics.wait(this.control, Control.STOP, 0);
  }

  /** One poll(2) and, if the descriptor is ready, one read(2). */
  #readOnce(): Outcome {
    const ready = this.waitForDescriptor();
    if (ready !== "ready") return ready;
    let count: number;
    try {
      count = read(this.#start.fd, this.#buffer, this.#start.path);
    } catch (err) {
      if (isErrno(err, [Errno.EINTR])) return "next";
      // qemu-ga pauses on EAGAIN as on EOF: a port that polls ready but has nothing must not spin.
      if (isErrno(err, [Errno.EAGAIN])) return "pause";
      if (this.#start.endOfFile === "closed") {
        if (isErrno(err, PEER_GONE)) return this.#closed();
      } else if (isErrno(err, [Errno.EIO])) {
        return this.#hangup(); // a pty whose other side closed
      }
      return this.fail(err);
    }
    if (count === 0) return this.#start.endOfFile === "closed" ? this.#closed() : this.#hangup();
    this.#hungUp = false;
    const bytes = this.#buffer.slice(0, count);
    Atomics.add(this.control, Control.PENDING, 1);
    this.post({ type: "data", bytes }, [bytes.buffer]);
    return "next";
  }

  /** Reports a hangup the first time, so the agent drops partial input; later ones are quiet. */
  #hangup(): Outcome {
    if (!this.#hungUp) {
      this.#hungUp = true;
      this.post({ type: "hangup" });
    }
    return "pause";
  }

  /** Reports that the client has gone; the loop reads no more. */
  #closed(): Outcome {
    this.post({ type: "closed" });
    return "ended";
  }
}

/** Read errors of a socket whose peer has gone: ECONNRESET, ETIMEDOUT (a dead vsock peer). */
const PEER_GONE: readonly number[] = [errnoNumber("ECONNRESET"), errnoNumber("ETIMEDOUT")];

/**
 * Accept errors after which accepting again is right: a connection that went away while queued, a
 * signal, and the pending network errors accept(2) says to treat like EAGAIN on Linux.
 */
const RETRY_AT_ONCE: readonly number[] = [
  "EAGAIN",
  "EINTR",
  "ECONNABORTED",
  "EPROTO",
  "ENETDOWN",
  "ENOPROTOOPT",
  "EHOSTDOWN",
  "ENONET",
  "EHOSTUNREACH",
  "EOPNOTSUPP",
  "ENETUNREACH",
].map(errnoNumber);

/** Accept errors that last a while: the listener stays readable, so pause rather than spin. */
const RETRY_AFTER_PAUSE: readonly number[] = ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"].map(
  errnoNumber,
);

class Acceptor extends FdLoop {
  readonly #fd: number;

  constructor(start: LoopStart & { loop: "accept" }, post: PostEvent) {
    super(start, post, undefined);
    this.#fd = start.fd;
  }

  run(): void {
    // Waits until the main thread wants a client.
    while (this.waitWhile(Control.WANTED, (wanted) => wanted === 0)) {
      const outcome = this.#acceptOnce();
      if (outcome === "stop") return;
      if (outcome === "pause") this.pause(ACCEPT_RETRY_MS);
    }
  }

  /** One poll(2) and, if a connection is queued, one accept4(2). */
  #acceptOnce(): Outcome {
    const ready = this.waitForDescriptor();
    if (ready !== "ready") return ready;
    let client: { fd: number; peer: SocketAddress };
    try {
      client = accept4(this.#fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } catch (err) {
      if (isErrno(err, RETRY_AT_ONCE)) return "next";
      if (isErrno(err, RETRY_AFTER_PAUSE)) return "pause";
      return this.fail(err);
    }
    Atomics.store(this.control, Control.WANTED, 0);
    this.post({ type: "accepted", fd: client.fd, peer: client.peer });
    return "next";
  }
}

function isErrno(err: unknown, errnos: readonly number[]): boolean {
  return err instanceof SyscallError && errnos.includes(err.errno);
}
