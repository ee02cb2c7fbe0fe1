/**
 * A descriptor channel as the agent's connection, which the device transports (device.ts) and
 * socket activation (activated.ts) share: {@link FdConnection} serves an open non-blocking
 * descriptor (a device, a connected socket); its read loop (_fd_loop.ts) reads, writes go straight
 * to the descriptor without blocking: a write that gets EAGAIN (a virtio port while the host is
 * away, a full pty) is retried after a growing pause of at most 100 ms, so the agent's event loop
 * never blocks on the host, and qemu-ga's busy-spin on EAGAIN is avoided.
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import { write } from "../linux/fd.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import type { Connection, ReadResult } from "./_connection.ts";
import { type EndOfFile, ReadLoop } from "./_fd_loop.ts";

/** The first pause after a write got EAGAIN; it doubles on each further EAGAIN. */
export const WRITE_RETRY_MIN_MS = 1;
/** The longest pause between write attempts (qemu-ga's 10 wakeups/s rule for a dead port). */
export const WRITE_RETRY_MAX_MS = 100;

const CLOSED: ReadResult = { type: "closed" };

/** Options of {@link openFdConnection}. */
export interface FdConnectionOptions {
  /** Who is on the other end (the device path, a peer address), for logs and errors. */
  peer: string;
  /** What end of file means: "hangup" for a device, "closed" for a socket's client. */
  endOfFile: EndOfFile;
  log: Logger;
}

/**
 * Serves an open non-blocking descriptor (a device, a connected socket) as a connection: a read
 * loop reads it, writes go straight to it. The connection owns `fd` from here on, also when this
 * throws: closing the connection closes it.
 * @throws {SyscallError} when the read loop's eventfd cannot be made
 */
export function openFdConnection(fd: number, options: FdConnectionOptions): FdConnection {
  return new FdConnection(fd, options);
}

/** An open descriptor: reads come from its read loop, writes go straight to the descriptor. */
export class FdConnection implements Connection {
  readonly peer: string;
  readonly #fd: number;
  readonly #loop: ReadLoop;
  readonly #log: Logger;
  /** Aborted by close(): ends the pauses of pending writes. */
  readonly #closing = new AbortController();
  readonly #queue: ReadResult[] = [];
  #waiting: { resolve(result: ReadResult): void; reject(err: Error): void } | undefined;
  #failure: Error | undefined;
  /** The loop saw a socket's end of file: every later read is "closed". */
  #peerGone = false;
  #writing: Promise<void> = Promise.resolve();
  /** Whether close() was called. */
  closed = false;

  /** @throws {SyscallError} when the read loop's eventfd cannot be made (`fd` is closed then) */
  constructor(fd: number, options: FdConnectionOptions) {
    this.peer = options.peer;
    this.#fd = fd;
    this.#log = options.log;
    this.#loop = new ReadLoop(fd, options.endOfFile, options.peer, {
      data: (bytes) => this.#deliver({ type: "data", bytes }),
      hangup: () => this.#deliver({ type: "hangup" }),
      closed: () => {
        this.#peerGone = true;
        this.#deliver(CLOSED);
      },
      failed: (err) => this.#fail(err),
    });
  }

  /** Settles once the read loop has ended and the descriptor is closed. */
  get finished(): Promise<void> {
    return this.#loop.finished;
  }

  /** The descriptors this connection owns (the channel and the loop's eventfd), for checks. */
  get descriptors(): readonly number[] {
    return this.#loop.descriptors;
  }

  /** poll(2) calls of the read loop that returned so far, for checks. */
  get wakeups(): number {
    return this.#loop.wakeups;
  }

  read(): Promise<ReadResult> {
    if (this.closed) return Promise.resolve(CLOSED);
    const next = this.#queue.shift();
    if (next !== undefined) return Promise.resolve(this.#take(next));
    if (this.#peerGone) return Promise.resolve(CLOSED);
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiting = { resolve, reject });
  }

  /**
   * Writes all of `bytes`, in order after earlier writes. Bytes still unwritten when the
   * connection is closed, when its read loop has ended, or when the other side has gone (EIO on a
   * pty, EPIPE or ECONNRESET on a socket), are dropped.
   * @throws {SyscallError} when the device fails (e.g. ENODEV after hot-unplug)
   */
  write(bytes: Uint8Array): Promise<void> {
    const done = this.#writing.then(() => this.#writeAll(bytes));
    this.#writing = done.catch(() => {});
    return done;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#closing.abort();
    this.#waiting?.resolve(CLOSED);
    this.#waiting = undefined;
    this.#loop.stop(); // the loop closes the descriptor once its wait has returned
  }

  #deliver(result: ReadResult): void {
    if (this.closed) return;
    if (this.#waiting === undefined) {
      this.#queue.push(result);
      return;
    }
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting.resolve(this.#take(result));
  }

  /** Hands a result to the agent; a data chunk taken makes room for the loop. */
  #take(result: ReadResult): ReadResult {
    if (result.type === "data") this.#loop.taken();
    return result;
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    // FFI takes views of ArrayBuffers; copy the rare view of a SharedArrayBuffer.
    const data = bytes.buffer instanceof ArrayBuffer
      ? bytes as Uint8Array<ArrayBuffer>
      : new Uint8Array(bytes);
    let offset = 0;
    let pauseMs = WRITE_RETRY_MIN_MS;
    // The loop's descriptor is checked on this thread right before each write(2): once it is
    // closed, its number may already belong to something else.
    while (offset < data.length && !this.closed && this.#loop.open) {
      try {
        offset += write(this.#fd, data.subarray(offset), this.peer);
        pauseMs = WRITE_RETRY_MIN_MS;
      } catch (err) {
        if (!(err instanceof SyscallError)) throw err;
        if (err.errno === Errno.EINTR) continue;
        if (OTHER_SIDE_GONE.includes(err.errno)) {
          this.#log.debug("reply dropped: the other side has gone", { peer: this.peer });
          return;
        }
        if (err.errno !== Errno.EAGAIN) throw err;
        await sleep(pauseMs, this.#closing.signal);
        pauseMs = Math.min(pauseMs * 2, WRITE_RETRY_MAX_MS);
      }
    }
  }
}

/** Write errors that mean nobody will read: EIO (a pty), EPIPE and ECONNRESET (a socket). */
const OTHER_SIDE_GONE: readonly number[] = [
  Errno.EIO,
  errnoNumber("EPIPE"),
  errnoNumber("ECONNRESET"),
];
