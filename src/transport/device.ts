/**
 * Device transports: virtio-serial (the default) and isa-serial. The device is opened once and
 * kept open for the agent's life, as qemu-ga does.
 *
 * virtio-serial reads return EOF (or EIO on a pty whose other side closed) while no host is
 * connected. That is a hangup, not the end: drop any partial input, then poll every 100 ms
 * (qemu-ga's `g_usleep(G_USEC_PER_SEC/10)`), so a disconnected port costs at most 10 wakeups/s.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { setRawMode } from "../linux/termios.ts";
import { type Connection, type ReadResult, type Transport, writeAll } from "./mod.ts";

/** How long to wait before reading again after EOF (qemu-ga: 100 ms). */
export const HANGUP_POLL_MS = 100;
const READ_SIZE = 4096; // QGA_READ_COUNT_DEFAULT

/** Opens a serial device; isa-serial is put into qemu-ga's raw mode. */
export async function openDevice(
  method: "virtio-serial" | "isa-serial",
  path: string,
  log: Logger,
): Promise<Transport> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    if (method === "isa-serial") setRawMode(path);
  } catch (err) {
    file.close();
    throw err;
  }
  log.info("channel opened", { method, path });
  return new DeviceTransport(new DeviceConnection(file, path), `${method}:${path}`);
}

class DeviceTransport implements Transport {
  #connection: DeviceConnection;
  #handedOut = false;
  readonly description: string;

  constructor(connection: DeviceConnection, description: string) {
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
}

class DeviceConnection implements Connection {
  #file: Deno.FsFile;
  #buffer = new Uint8Array(READ_SIZE);
  #hungUp = false;
  closed = false;
  readonly peer: string;

  constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.peer = path;
  }

  async read(): Promise<ReadResult> {
    while (!this.closed) {
      const count = await this.#readOnce();
      if (this.closed) break;
      if (count === null || count === 0) {
        if (!this.#hungUp) {
          this.#hungUp = true;
          return { type: "hangup" };
        }
        await new Promise((resolve) => setTimeout(resolve, HANGUP_POLL_MS));
        continue;
      }
      this.#hungUp = false;
      return { type: "data", bytes: this.#buffer.slice(0, count) };
    }
    return { type: "closed" };
  }

  async #readOnce(): Promise<number | null> {
    try {
      return await this.#file.read(this.#buffer);
    } catch (err) {
      // EIO: a pty whose other side closed reads like a disconnected virtio port.
      if (this.closed || isHangupError(err)) return null;
      throw err;
    }
  }

  write(bytes: Uint8Array): Promise<void> {
    return writeAll(this.#file, bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }
}

function isHangupError(err: unknown): boolean {
  return err instanceof Error && /os error 5\b|Input\/output error/.test(err.message);
}
