/**
 * Device transports: virtio-serial (the default) and isa-serial. The device is opened once and
 * kept open for the agent's life, as qemu-ga does.
 *
 * Deno (2.9) refuses its file APIs on any path under /dev unless run with --allow-all
 * (denoland/deno#27980), so the device is opened, read and written through src/linux/fd.ts:
 * - opened `O_RDWR|O_NOCTTY|O_NONBLOCK|O_CLOEXEC`; isa-serial is put into qemu-ga's raw mode;
 * - read by a Worker (device_reader_worker.ts) that blocks in poll(2) and posts what it reads.
 *   EOF, POLLHUP and EIO mean no host is connected: it reports a hangup once (the agent drops
 *   partial input) and retries every 100 ms, as qemu-ga, so a disconnected port costs at most 10
 *   wakeups/s; a connected, quiet port costs none;
 * - written from the calling thread without blocking: a write that gets EAGAIN (a virtio port
 *   while the host is away, a full pty) is retried after a growing pause of at most 100 ms, so the
 *   agent's event loop never blocks on the host, and qemu-ga's busy-spin on EAGAIN is avoided.
 *
 * The same connection serves a client accepted on a socket-activated listener (activated.ts,
 * through {@link openFdConnection}); there end of file means the client has gone ("closed").
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import {
  close,
  EFD_NONBLOCK,
  eventfd,
  O_NOCTTY,
  O_NONBLOCK,
  O_RDWR,
  open,
  write,
} from "../linux/fd.ts";
import { setRawModeOnFd } from "../linux/termios.ts";
import type { Logger } from "../log.ts";
import {
  Control,
  CONTROL_WORDS,
  type EndOfFile,
  Owner,
  type ReaderEvent,
  type ReaderStart,
} from "./_device_reader.ts";
import type { Connection, ReadResult, Transport } from "./mod.ts";
import { sleep } from "../sleep.ts";

export { HANGUP_RETRY_MS } from "./_device_reader.ts";

/** The first pause after a write got EAGAIN; it doubles on each further EAGAIN. */
export const WRITE_RETRY_MIN_MS = 1;
/** The longest pause between write attempts (qemu-ga's 10 wakeups/s rule for a dead port). */
export const WRITE_RETRY_MAX_MS = 100;

const READER_MODULE = new URL("./device_reader_worker.ts", import.meta.url).href;
const CLOSED: ReadResult = { type: "closed" };

/**
 * Opens a serial device; isa-serial is put into qemu-ga's raw mode.
 * @throws {SyscallError} when the device cannot be opened (or set up)
 * @throws {Error} when the reader Worker cannot start
 */
export async function openDevice(
  method: "virtio-serial" | "isa-serial",
  path: string,
  log: Logger,
): Promise<DeviceTransport> {
  const fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
  try {
    if (method === "isa-serial") setRawModeOnFd(fd);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  const connection = await openFdConnection(fd, { peer: path, endOfFile: "hangup", log });
  log.info("channel opened", { method, path });
  return new DeviceTransport(connection, `${method}:${path}`);
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
 * Serves an open non-blocking descriptor (a device, a connected socket) as a connection: a reader
 * Worker reads it, writes go straight to it. The connection owns `fd` from here on, also when this
 * throws: closing the connection closes it.
 * @throws {SyscallError} when the eventfd cannot be made
 * @throws {Error} when the reader Worker cannot start
 */
export async function openFdConnection(
  fd: number,
  options: FdConnectionOptions,
): Promise<FdConnection> {
  let wakeFd: number | undefined;
  try {
    wakeFd = eventfd(EFD_NONBLOCK);
    const worker = await startFdWorker(READER_MODULE, "fd-reader");
    return new FdConnection({ ...options, fd, wakeFd, worker });
  } catch (err) {
    closeQuietly(fd);
    if (wakeFd !== undefined) closeQuietly(wakeFd);
    throw err;
  }
}

/**
 * Starts a Worker that runs a blocking descriptor loop (a reader, an acceptor), and waits until
 * its modules have loaded (it posts `{ type: "ready" }`).
 * @throws {Error} when the Worker cannot start
 */
export function startFdWorker(module: string, name: string): Promise<Worker> {
  const worker = new Worker(module, { type: "module", name });
  return new Promise((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<{ type: string }>) => {
      if (event.data.type === "ready") resolve(worker);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // reported to the caller, not a crash of the agent
      worker.terminate();
      reject(new Error(`cannot start the ${name}: ${event.message}`));
    };
  });
}

/** The device as a transport: it hands out its one connection once. */
export class DeviceTransport implements Transport, AsyncDisposable {
  readonly #connection: FdConnection;
  #handedOut = false;
  readonly description: string;

  constructor(connection: FdConnection, description: string) {
    this.#connection = connection;
    this.description = description;
  }

  accept(): Promise<Connection | null> {
    // The device is the one connection; once it is closed there is no other.
    if (this.#handedOut || this.#connection.closed) return Promise.resolve(null);
    this.#handedOut = true;
    return Promise.resolve(this.#connection);
  }

  close(): void {
    this.#connection.close();
  }

  /** Settles once the reader has ended and the device is closed (some time after `close()`). */
  get finished(): Promise<void> {
    return this.#connection.finished;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.finished;
  }
}

interface FdParts extends FdConnectionOptions {
  fd: number;
  wakeFd: number;
  /** A loaded reader Worker, not yet started. */
  worker: Worker;
}

/** An open descriptor: reads come from the reader Worker, writes go straight to the descriptor. */
export class FdConnection implements Connection {
  readonly peer: string;
  readonly #fd: number;
  readonly #wakeFd: number;
  readonly #worker: Worker;
  readonly #log: Logger;
  readonly #shared = new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
  readonly #control = new Int32Array(this.#shared);
  /** Aborted by close(): ends the pauses of pending writes. */
  readonly #closing = new AbortController();
  readonly #queue: ReadResult[] = [];
  #waiting: { resolve(result: ReadResult): void; reject(err: Error): void } | undefined;
  #failure: Error | undefined;
  /** The reader saw a socket's end of file: every later read is "closed". */
  #peerGone = false;
  #readerRunning = true;
  readonly #finished = Promise.withResolvers<void>();
  #writing: Promise<void> = Promise.resolve();
  /** Whether close() was called. */
  closed = false;

  constructor(parts: FdParts) {
    this.peer = parts.peer;
    this.#fd = parts.fd;
    this.#wakeFd = parts.wakeFd;
    this.#worker = parts.worker;
    this.#log = parts.log;
    this.#worker.onmessage = (event: MessageEvent<ReaderEvent>) => this.#receive(event.data);
    this.#worker.onerror = (event: ErrorEvent) => {
      event.preventDefault(); // a reader bug fails the channel, not the whole agent at once
      this.#fail(new Error(`reader of ${this.peer} failed: ${event.message}`));
      this.#readerEnded();
    };
    const start: ReaderStart = {
      fd: parts.fd,
      endOfFile: parts.endOfFile,
      wakeFd: parts.wakeFd,
      path: parts.peer,
      control: this.#shared,
    };
    this.#worker.postMessage(start);
  }

  /** Settles once the reader has ended and the descriptor is closed. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** The descriptors this connection owns (the channel and the reader's eventfd), for checks. */
  get descriptors(): readonly number[] {
    return [this.#fd, this.#wakeFd];
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
    Atomics.store(this.#control, Control.STOP, 1);
    Atomics.notify(this.#control, Control.STOP);
    Atomics.notify(this.#control, Control.PENDING);
    const owner = Atomics.compareExchange(this.#control, Control.OWNER, Owner.MAIN, Owner.CLOSED);
    if (owner === Owner.MAIN) closeQuietly(this.#fd); // the loop never started: it won't touch it
    if (this.#readerRunning) ringDoorbell(this.#wakeFd); // wakes its poll(2); it closes the device
  }

  #receive(event: ReaderEvent): void {
    switch (event.type) {
      case "data":
        return this.#deliver({ type: "data", bytes: event.bytes });
      case "hangup":
        return this.#deliver({ type: "hangup" });
      case "closed":
        this.#peerGone = true;
        return this.#deliver(CLOSED);
      case "error":
        return this.#fail(new SyscallError(event.syscall, event.errno, event.path));
      case "stopped":
        return this.#readerEnded();
      case "ready":
        return;
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

  /** Hands a result to the agent; a data chunk taken makes room for the reader. */
  #take(result: ReadResult): ReadResult {
    if (result.type === "data") {
      Atomics.sub(this.#control, Control.PENDING, 1);
      Atomics.notify(this.#control, Control.PENDING);
    }
    return result;
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
  }

  /** The reader is gone (it closed the device if it had started): release the rest. */
  #readerEnded(): void {
    if (!this.#readerRunning) return;
    this.#readerRunning = false;
    this.#worker.terminate();
    closeQuietly(this.#wakeFd);
    if (!this.closed) this.#fail(new Error(`reader of ${this.peer} ended unexpectedly`));
    this.#finished.resolve();
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

/** Makes a Worker's eventfd readable, which ends its poll(2). */
export function ringDoorbell(wakeFd: number): void {
  try {
    write(wakeFd, new Uint8Array(new BigUint64Array([1n]).buffer)); // adds 1 to the counter
  } catch {
    // EAGAIN: the counter is already non-zero, the reader is already woken.
  }
}

/** close(2), ignoring a failure: nothing can be done about it for a channel we are done with. */
export function closeQuietly(fd: number): void {
  try {
    close(fd);
  } catch {
    // Nothing to do about a failed close of a channel we are done with.
  }
}
