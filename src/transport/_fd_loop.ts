/**
 * The descriptor loops the transports share (_fd_io.ts uses them):
 *
 * - the read loop of a descriptor channel: a device (virtio-serial, isa-serial) or a client
 *   accepted on a socket-activated listener;
 * - the accept loop of a socket-activated listener.
 *
 * A loop waits for its descriptor with poll(2) on a blocking thread of Deno's pool (fd.ts
 * `pollOffThread`), on the descriptor and on an eventfd (the doorbell `stop()` rings), so a quiet
 * channel costs no wakeups, the event loop stays free, and a stop is seen at once. Everything else
 * runs on the agent's thread: read(2) and accept4(2) on the non-blocking descriptor, so errno is
 * exact, and the decisions, so no other thread ever touches a descriptor and a closed one is never
 * used again. Only the wait is on another thread: no Worker, no message between threads per read.
 *
 * The read loop: what end of file means depends on the channel ({@link EndOfFile}):
 * - a device: end of file, POLLHUP without data and EIO (a pty whose other side closed) mean "no
 *   host": it reports a hangup once, then waits for the host (_host_return.ts): until SIGIO says
 *   the device is ready again (a virtio port, a tty, a FIFO), or tries again every
 *   {@link HANGUP_RETRY_MS} (qemu-ga's `g_usleep(G_USEC_PER_SEC / 10)`) when it sends none;
 * - a socket: end of file (or a reset) means the client has gone: it reports "closed" once and
 *   reads no more, but keeps the descriptor open until stopped, so a reply the agent is still
 *   writing to a client that only shut down its writing side still reaches it.
 * It owns its descriptor and closes it when it ends: after `stop()`, or at once after a failed
 * system call.
 *
 * The accept loop: one client at a time, as qemu-ga: it waits and accepts only when asked for the
 * next client, so while a client is served further ones wait in the listener's backlog; it
 * accept4(2)s the client non-blocking and close-on-exec. The listener itself is never closed
 * here: it belongs to the process (systemd passed it), and a `--retry-path` restart serves it again.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import {
  closeQuietly,
  EFD_NONBLOCK,
  eventfd,
  Poll,
  pollOffThread,
  read,
  write,
} from "../linux/fd.ts";
import { accept4, SOCK_CLOEXEC, SOCK_NONBLOCK, type SocketAddress } from "../linux/sockets.ts";
import { sleep } from "../sleep.ts";
import { HostReturn, type ReadySignal, signalsWhenReady } from "./_host_return.ts";

/** How long to wait before reading again after a hangup or EAGAIN (qemu-ga: 100 ms). */
export const HANGUP_RETRY_MS = 100;

/** Bytes asked for per read(2) (qemu-ga's `QGA_READ_COUNT_DEFAULT`). */
export const READ_SIZE = 4096;

/**
 * Chunks read but not yet taken by the agent before the read loop stops reading: a busy agent (a
 * FIFREEZE in progress) leaves further input in the kernel, where the host's writes wait for it.
 */
export const MAX_PENDING_CHUNKS = 16;

/** How long to wait before accepting again when out of descriptors or memory. */
export const ACCEPT_RETRY_MS = 100;

/** What end of file means: the host is away for now (a device), or the client left (a socket). */
export type EndOfFile = "hangup" | "closed";

/**
 * Waiting for one descriptor off the event loop, until stopped: the doorbell and the wait in
 * progress. The doorbell is closed only once no poll(2) uses it.
 */
class DescriptorWait {
  readonly wakeFd: number;
  readonly #stopping = new AbortController();
  #polling: Promise<unknown> | undefined;
  /** poll(2) calls that returned, for checks (a loop must not spin). */
  wakeups = 0;

  /** @throws {SyscallError} when the eventfd cannot be made */
  constructor() {
    this.wakeFd = eventfd(EFD_NONBLOCK);
  }

  get stopped(): boolean {
    return this.#stopping.signal.aborted;
  }

  /** Aborted by {@link stop}: ends a pause. */
  get signal(): AbortSignal {
    return this.#stopping.signal;
  }

  /**
   * Waits until `fd` has events: its `revents` (0: nothing yet, ask again), or `undefined` once
   * stopped.
   * @throws {SyscallError} when poll(2) fails (EINTR included: the caller asks again)
   */
  async until(fd: number): Promise<number | undefined> {
    if (this.stopped) return undefined;
    const fds = [
      { fd, events: Poll.POLLIN, revents: 0 },
      { fd: this.wakeFd, events: Poll.POLLIN, revents: 0 },
    ];
    const polling = pollOffThread(fds, -1);
    this.#polling = polling;
    try {
      await polling;
    } finally {
      this.#polling = undefined;
      this.wakeups++;
    }
    return this.stopped || fds[1]!.revents !== 0 ? undefined : fds[0]!.revents;
  }

  /** Ends the wait in progress (the doorbell) and any pause. */
  stop(): void {
    if (this.stopped) return;
    this.#stopping.abort();
    if (this.#polling !== undefined) ringDoorbell(this.wakeFd);
  }

  /** Resolves once stopped. */
  untilStopped(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      this.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  /** Closes the doorbell once the wait in progress (if any) has returned. */
  async close(): Promise<void> {
    await this.#polling?.catch(() => {});
    closeQuietly(this.wakeFd);
  }
}

/** Makes an eventfd readable, which ends a poll(2) on it. */
function ringDoorbell(wakeFd: number): void {
  try {
    write(wakeFd, new Uint8Array(new BigUint64Array([1n]).buffer)); // adds 1 to the counter
  } catch {
    // EAGAIN: the counter is already non-zero, the wait is already woken.
  }
}

/** Where the read loop delivers what it finds. */
export interface ReadSink {
  data(bytes: Uint8Array): void;
  /** A device's end of file (reported once until data comes again). */
  hangup(): void;
  /** A socket's end of file: the client has gone (reported once; no more reads). */
  closed(): void;
  /** A failed system call, or a bug: the loop ends. */
  failed(err: Error): void;
}

/** What one attempt found: go on at once, after a pause, end now, or end once stopped. */
type Outcome = "next" | "pause" | "stop" | "ended";

/** How a hung-up device waits for its host (tests change them). */
export interface HostWaitOptions {
  /** @default the process's SIGIO (_host_return.ts) */
  signal?: ReadySignal;
  /** @default _host_return.ts `HOST_AWAY_LOOK_MS` */
  lookMs?: number;
}

/** The read loop of a descriptor channel; it owns the descriptor. */
export class ReadLoop {
  readonly #fd: number;
  readonly #endOfFile: EndOfFile;
  readonly #path: string;
  readonly #sink: ReadSink;
  readonly #wait: DescriptorWait;
  readonly #buffer = new Uint8Array(READ_SIZE);
  #pending = 0;
  #room: PromiseWithResolvers<void> | undefined;
  #hungUp = false;
  /** How a hung-up device waits for its host; absent for a socket. */
  readonly #hostReturn: HostReturn | undefined;
  #open = true;
  /** Settles once the loop has ended and closed the descriptor and its doorbell. */
  readonly finished: Promise<void>;

  /**
   * Starts reading `fd` (open, non-blocking), which is the loop's from here on, also when this
   * throws.
   * @throws {SyscallError} when the eventfd cannot be made
   */
  constructor(
    fd: number,
    endOfFile: EndOfFile,
    path: string,
    sink: ReadSink,
    hostWait: HostWaitOptions = {},
  ) {
    this.#fd = fd;
    this.#endOfFile = endOfFile;
    this.#path = path;
    this.#sink = sink;
    this.#hostReturn = endOfFile === "hangup" && signalsWhenReady(fd)
      ? new HostReturn(fd, hostWait.signal, hostWait.lookMs)
      : undefined;
    try {
      this.#wait = new DescriptorWait();
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    this.finished = this.#run();
  }

  /** Whether the descriptor is still open: writes check it first. */
  get open(): boolean {
    return this.#open;
  }

  /** The descriptors the loop owns (the channel and its doorbell), for checks. */
  get descriptors(): readonly number[] {
    return [this.#fd, this.#wait.wakeFd];
  }

  /** poll(2) calls that returned so far, for checks. */
  get wakeups(): number {
    return this.#wait.wakeups;
  }

  /** Whether the signal that wakes a hung-up device's wait is asked for now, for checks. */
  get waitingForSignal(): boolean {
    return this.#hostReturn?.armed ?? false;
  }

  /** The agent took a chunk: room for one more. */
  taken(): void {
    this.#pending--;
    this.#room?.resolve();
  }

  /** Ends the loop; it closes the descriptor once its wait has returned. */
  stop(): void {
    this.#wait.stop();
    this.#room?.resolve();
  }

  async #run(): Promise<void> {
    try {
      while (await this.#roomForMore()) {
        const outcome = await this.#readOnce();
        if (outcome === "stop") break;
        if (outcome === "ended") {
          await this.#wait.untilStopped();
          break;
        }
        if (outcome === "pause") await this.#pause();
      }
    } catch (err) {
      this.#sink.failed(err instanceof Error ? err : new Error(errorMessage(err)));
    } finally {
      this.#hostReturn?.disarm();
      this.#open = false;
      closeQuietly(this.#fd);
      await this.#wait.close();
    }
  }

  /** After a hangup: until the host may be back; after EAGAIN: a short pause. */
  async #pause(): Promise<void> {
    if (this.#hungUp && this.#hostReturn !== undefined) {
      await this.#hostReturn.wait(HANGUP_RETRY_MS, this.#wait.signal);
    } else {
      await sleep(HANGUP_RETRY_MS, this.#wait.signal);
    }
  }

  /** Waits while too many chunks are untaken; false once stopped. */
  async #roomForMore(): Promise<boolean> {
    while (!this.#wait.stopped && this.#pending >= MAX_PENDING_CHUNKS) {
      this.#room = Promise.withResolvers();
      await this.#room.promise;
      this.#room = undefined;
    }
    return !this.#wait.stopped;
  }

  /** One wait for the descriptor and, if it is ready, one read(2). */
  async #readOnce(): Promise<Outcome> {
    let revents: number | undefined;
    try {
      revents = await this.#wait.until(this.#fd);
    } catch (err) {
      return isErrno(err, [Errno.EINTR]) ? "next" : this.#fail(err);
    }
    if (revents === undefined) return "stop";
    if (revents === 0) return "next";
    if ((revents & Poll.POLLNVAL) !== 0) {
      return this.#fail(new SyscallError("poll", Errno.EBADF, this.#path));
    }
    let count: number;
    try {
      count = read(this.#fd, this.#buffer, this.#path);
    } catch (err) {
      return this.#readFailed(err);
    }
    if (count === 0) return this.#endOfFile === "closed" ? this.#closed() : this.#hangup();
    if (this.#hungUp) {
      this.#hungUp = false;
      this.#hostReturn?.disarm();
    }
    this.#pending++;
    this.#sink.data(this.#buffer.slice(0, count));
    return "next";
  }

  #readFailed(err: unknown): Outcome {
    if (isErrno(err, [Errno.EINTR])) return "next";
    // qemu-ga pauses on EAGAIN as on EOF: a port that polls ready but has nothing must not spin.
    if (isErrno(err, [Errno.EAGAIN])) return "pause";
    if (this.#endOfFile === "closed") {
      if (isErrno(err, PEER_GONE)) return this.#closed();
    } else if (isErrno(err, [Errno.EIO])) {
      return this.#hangup(); // a pty whose other side closed
    }
    return this.#fail(err);
  }

  /** Reports a hangup the first time, so the agent drops partial input; later ones are quiet. */
  #hangup(): Outcome {
    if (!this.#hungUp) {
      this.#hungUp = true;
      this.#sink.hangup();
    }
    return "pause";
  }

  /** Reports that the client has gone; the loop reads no more. */
  #closed(): Outcome {
    this.#sink.closed();
    return "ended";
  }

  /** Reports a failed system call, which ends the loop; anything else is a bug and is thrown. */
  #fail(err: unknown): Outcome {
    if (!(err instanceof SyscallError)) throw err;
    this.#sink.failed(new SyscallError(err.syscall, err.errno, err.path ?? this.#path));
    return "stop";
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

/** A client the accept loop took: its descriptor is the caller's to close. */
export interface AcceptedClient {
  fd: number;
  peer: SocketAddress;
}

/** The accept loop of a listening socket (which stays open: it is not ours). */
export class AcceptLoop {
  readonly #fd: number;
  readonly #wait: DescriptorWait;
  readonly #finished = Promise.withResolvers<void>();
  #accepting = false;
  #failure: Error | undefined;

  /** @throws {SyscallError} when the eventfd cannot be made */
  constructor(fd: number) {
    this.#fd = fd;
    this.#wait = new DescriptorWait();
  }

  /** The doorbell, for checks. */
  get wakeFd(): number {
    return this.#wait.wakeFd;
  }

  /** Settles once stopped and the doorbell is closed. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /**
   * The next queued client, waiting for one; `null` once stopped. One call at a time. A failure
   * is final: every later call rejects with it.
   * @throws {SyscallError} when waiting or accepting fails
   */
  async next(): Promise<AcceptedClient | null> {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#accepting) throw new Error("the accept loop is already waiting for a client");
    this.#accepting = true;
    try {
      for (;;) {
        const outcome = await this.#acceptOnce();
        if (outcome === null || typeof outcome === "object") return outcome;
        if (outcome === "pause") await sleep(ACCEPT_RETRY_MS, this.#wait.signal);
      }
    } catch (err) {
      this.#failure = err instanceof Error ? err : new Error(errorMessage(err));
      throw this.#failure;
    } finally {
      this.#accepting = false;
    }
  }

  /** Ends a wait in progress (it returns `null`) and closes the doorbell once that wait returned. */
  stop(): void {
    if (this.#wait.stopped) return;
    this.#wait.stop();
    this.#wait.close().then(this.#finished.resolve);
  }

  /** One wait for the listener and, if a connection is queued, one accept4(2). */
  async #acceptOnce(): Promise<AcceptedClient | null | "next" | "pause"> {
    let revents: number | undefined;
    try {
      revents = await this.#wait.until(this.#fd);
    } catch (err) {
      if (isErrno(err, [Errno.EINTR])) return "next";
      throw err;
    }
    if (revents === undefined) return null;
    if (revents === 0) return "next";
    if ((revents & Poll.POLLNVAL) !== 0) throw new SyscallError("poll", Errno.EBADF);
    try {
      return accept4(this.#fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } catch (err) {
      if (isErrno(err, RETRY_AT_ONCE)) return "next";
      if (isErrno(err, RETRY_AFTER_PAUSE)) return "pause";
      throw err;
    }
  }
}

function isErrno(err: unknown, errnos: readonly number[]): boolean {
  return err instanceof SyscallError && errnos.includes(err.errno);
}
