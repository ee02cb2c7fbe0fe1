/**
 * Device transports: virtio-serial (the default) and isa-serial. The device is opened once and
 * kept open for the agent's life, as qemu-ga does.
 *
 * Deno (2.9) refuses its file APIs on any path under /dev unless run with --allow-all
 * (denoland/deno#27980), so the device is opened through src/linux/fd.ts
 * (`O_RDWR|O_NOCTTY|O_NONBLOCK|O_CLOEXEC`; isa-serial is put into qemu-ga's raw mode) and served
 * as a descriptor connection (_fd_io.ts): a read loop that waits off the event loop, where end of file, POLLHUP
 * and EIO mean no host is connected — it reports a hangup once (the agent drops partial input)
 * and waits for the port's SIGIO (_host_return.ts), so a disconnected virtio port costs a wakeup
 * every few seconds and a connected, quiet port none — and writes that never block the agent's
 * event loop.
 *
 * @module
 */

import { closeQuietly, O_NOCTTY, O_NONBLOCK, O_RDWR, open } from "../linux/fd.ts";
import { setRawModeOnFd } from "../linux/termios.ts";
import type { Logger } from "../log.ts";
import type { Connection, Transport } from "./_connection.ts";
import { type FdConnection, openFdConnection } from "./_fd_io.ts";

/**
 * Opens a serial device; isa-serial is put into qemu-ga's raw mode.
 * @throws {SyscallError} when the device cannot be opened (or set up)
 */
export function openDevice(
  method: "virtio-serial" | "isa-serial",
  path: string,
  log: Logger,
): DeviceTransport {
  const fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
  try {
    if (method === "isa-serial") setRawModeOnFd(fd);
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  const connection = openFdConnection(fd, { peer: path, endOfFile: "hangup", log });
  log.info("channel opened", { method, path });
  return new DeviceTransport(connection, `${method}:${path}`);
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
