/**
 * The main thread's side of the descriptor loops (_fd_loop.ts), which the device transports
 * (device.ts) and socket activation (activated.ts) share: a loop runs in its own Worker
 * (fd_loop_worker.ts), is told to stop through shared words and an eventfd doorbell, and is
 * released when it ends. On top of that:
 *
 * - {@link FdConnection}: an open non-blocking descriptor (a device, a connected socket) as a
 *   connection; its read loop reads, writes go straight to the descriptor from this thread without
 *   blocking: a write that gets EAGAIN (a virtio port while the host is away, a full pty) is
 *   retried after a growing pause of at most 100 ms, so the agent's event loop never blocks on the
 *   host, and qemu-ga's busy-spin on EAGAIN is avoided;
 * - {@link ListenAcceptor}: a listening socket's accept loop, one client at a time.
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import { closeQuietly, EFD_NONBLOCK, eventfd, write } from "../linux/fd.ts";
import type { SocketAddress } from "../linux/sockets.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import type { Connection, ReadResult } from "./_connection.ts";
import {
  Control,
  CONTROL_WORDS,
  type EndOfFile,
  type LoopEvent,
  type LoopRequest,
  type LoopStart,
  Owner,
} from "./_fd_loop.ts";

/** The first pause after a write got EAGAIN; it doubles on each further EAGAIN. */
export const WRITE_RETRY_MIN_MS = 1;
/** The longest pause between write attempts (qemu-ga's 10 wakeups/s rule for a dead port). */
export const WRITE_RETRY_MAX_MS = 100;

const LOOP_MODULE = new URL("./fd_loop_worker.ts", import.meta.url).href;
const CLOSED: ReadResult = { type: "closed" };

/** What a {@link LoopWorker} tells its owner. */
interface LoopOwner {
  /** An event of the loop's own (data, hangup, closed, accepted). */
  event(event: LoopEvent): void;
  /** The loop failed: a system call (then it ends), or a bug in the Worker. */
  failed(err: Error): void;
  /** The Worker has ended and its doorbell is closed. */
  ended(): void;
}

/** One loop Worker, started and waiting for its start message. */
class LoopWorker {
  readonly #shared = new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
  /** The words shared with the loop, indexed by {@link Control}. */
  readonly control = new Int32Array(this.#shared);
  readonly #worker: Worker;
  readonly #wakeFd: number;
  readonly #finished = Promise.withResolvers<void>();
  #running = true;

  /**
   * Starts a loop Worker and waits until its modules have loaded (it posts "ready").
   * @throws {SyscallError} when the eventfd cannot be made
   * @throws {Error} when the Worker cannot start
   */
  static async start(name: string): Promise<LoopWorker> {
    const wakeFd = eventfd(EFD_NONBLOCK);
    try {
      return new LoopWorker(await startWorker(name), wakeFd);
    } catch (err) {
      closeQuietly(wakeFd);
      throw err;
    }
  }

  private constructor(worker: Worker, wakeFd: number) {
    this.#worker = worker;
    this.#wakeFd = wakeFd;
  }

  /** The doorbell, for checks. */
  get wakeFd(): number {
    return this.#wakeFd;
  }

  /** Whether the loop (or its Worker) is still there. */
  get running(): boolean {
    return this.#running;
  }

  /** Settles once the Worker has ended. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Starts the loop; `what` names it in errors ("reader of /dev/…", "listen acceptor"). */
  run(request: LoopRequest, what: string, owner: LoopOwner): void {
    this.#worker.onmessage = (event: MessageEvent<LoopEvent>) => {
      const data = event.data;
      if (data.type === "error") {
        owner.failed(new SyscallError(data.syscall, data.errno, data.path));
      } else if (data.type === "stopped") {
        this.#end(owner);
      } else if (data.type !== "ready") {
        owner.event(data);
      }
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // a loop bug fails its channel, not the whole agent at once
      owner.failed(new Error(`${what} failed: ${event.message}`));
      this.#end(owner);
    };
    const start: LoopStart = { ...request, wakeFd: this.#wakeFd, control: this.#shared };
    this.#worker.postMessage(start);
  }

  /** Asks the loop to stop: the STOP word, every word woken, and the doorbell rung. */
  stop(): void {
    Atomics.store(this.control, Control.STOP, 1);
    for (const word of Object.values(Control)) Atomics.notify(this.control, word);
    if (this.#running) ringDoorbell(this.#wakeFd); // wakes its poll(2)
  }

  /** The Worker is gone (it closed what was its to close): release the rest. */
  #end(owner: LoopOwner): void {
    if (!this.#running) return;
    this.#running = false;
    this.#worker.terminate();
    closeQuietly(this.#wakeFd);
    owner.ended();
    this.#finished.resolve();
  }
}

/** Starts a loop Worker and resolves once it posted "ready". */
function startWorker(name: string): Promise<Worker> {
  const worker = new Worker(LOOP_MODULE, { type: "module", name });
  return new Promise((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<LoopEvent>) => {
      if (event.data.type === "ready") resolve(worker);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // reported to the caller, not a crash of the agent
      worker.terminate();
      reject(new Error(`cannot start the ${name}: ${event.message}`));
    };
  });
}

/** Makes a loop's eventfd readable, which ends its poll(2). */
function ringDoorbell(wakeFd: number): void {
  try {
    write(wakeFd, new Uint8Array(new BigUint64Array([1n]).buffer)); // adds 1 to the counter
  } catch {
    // EAGAIN: the counter is already non-zero, the loop is already woken.
  }
}

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
 * @throws {SyscallError} when the eventfd cannot be made
 * @throws {Error} when the reader Worker cannot start
 */
export async function openFdConnection(
  fd: number,
  options: FdConnectionOptions,
): Promise<FdConnection> {
  let loop: LoopWorker;
  try {
    loop = await LoopWorker.start("fd-reader");
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  return new FdConnection(fd, loop, options);
}

/** An open descriptor: reads come from its read loop, writes go straight to the descriptor. */
export class FdConnection implements Connection {
  readonly peer: string;
  readonly #fd: number;
  readonly #loop: LoopWorker;
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

  constructor(fd: number, loop: LoopWorker, options: FdConnectionOptions) {
    this.peer = options.peer;
    this.#fd = fd;
    this.#loop = loop;
    this.#log = options.log;
    const request = { loop: "read", fd, endOfFile: options.endOfFile, path: options.peer } as const;
    loop.run(request, `reader of ${this.peer}`, {
      event: (event) => this.#receive(event),
      failed: (err) => this.#fail(err),
      ended: () => {
        if (!this.closed) this.#fail(new Error(`reader of ${this.peer} ended unexpectedly`));
      },
    });
  }

  /** Settles once the read loop has ended and the descriptor is closed. */
  get finished(): Promise<void> {
    return this.#loop.finished;
  }

  /** The descriptors this connection owns (the channel and the loop's eventfd), for checks. */
  get descriptors(): readonly number[] {
    return [this.#fd, this.#loop.wakeFd];
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
   * connection is closed, or when the other side has gone (EIO on a pty, EPIPE or ECONNRESET on
   * a socket), are dropped.
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
    const control = this.#loop.control;
    const owner = Atomics.compareExchange(control, Control.OWNER, Owner.MAIN, Owner.CLOSED);
    if (owner === Owner.MAIN) closeQuietly(this.#fd); // the loop never started: it won't touch it
    this.#loop.stop(); // a running loop closes the descriptor
  }

  #receive(event: LoopEvent): void {
    switch (event.type) {
      case "data":
        return this.#deliver({ type: "data", bytes: event.bytes });
      case "hangup":
        return this.#deliver({ type: "hangup" });
      case "closed":
        this.#peerGone = true;
        return this.#deliver(CLOSED);
    }
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
    if (result.type === "data") {
      Atomics.sub(this.#loop.control, Control.PENDING, 1);
      Atomics.notify(this.#loop.control, Control.PENDING);
    }
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
    while (offset < data.length && !this.closed) {
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

/** A client the accept loop took, not yet served. */
export interface AcceptedClient {
  fd: number;
  peer: SocketAddress;
}

/** A listening socket's accept loop: hands out one client at a time. */
export class ListenAcceptor {
  readonly #loop: LoopWorker;
  #waiting: PromiseWithResolvers<AcceptedClient | null> | undefined;
  #failure: Error | undefined;
  #stopping = false;

  /**
   * Starts the accept loop on listening socket `fd` (which stays open: it is not ours).
   * @throws {SyscallError} when the eventfd cannot be made
   * @throws {Error} when the Worker cannot start
   */
  static async start(fd: number): Promise<ListenAcceptor> {
    return new ListenAcceptor(fd, await LoopWorker.start("listen-acceptor"));
  }

  private constructor(fd: number, loop: LoopWorker) {
    this.#loop = loop;
    loop.run({ loop: "accept", fd }, "listen acceptor", {
      event: (event) => {
        if (event.type !== "accepted") return;
        // Nobody waits once stopped: the client is closed unserved.
        if (this.#waiting === undefined) return closeQuietly(event.fd);
        this.#settle({ fd: event.fd, peer: event.peer });
      },
      failed: (err) => this.#fail(err),
      ended: () => {
        if (!this.#stopping) this.#fail(new Error("listen acceptor ended unexpectedly"));
        this.#settle(null);
      },
    });
  }

  /** Settles once the Worker has ended. */
  get finished(): Promise<void> {
    return this.#loop.finished;
  }

  /** The next client; `null` once stopped. */
  next(): Promise<AcceptedClient | null> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#stopping || !this.#loop.running) return Promise.resolve(null);
    this.#waiting = Promise.withResolvers();
    Atomics.store(this.#loop.control, Control.WANTED, 1);
    Atomics.notify(this.#loop.control, Control.WANTED);
    return this.#waiting.promise;
  }

  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#settle(null);
    this.#loop.stop();
  }

  #settle(client: AcceptedClient | null): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.resolve(client);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
  }
}
