/**
 * Transports: how bytes reach the agent (QGA.md §2). A transport hands out connections one at a
 * time; a device (virtio-serial, isa-serial) is one connection that lives as long as the agent,
 * a listening socket (unix, vsock) yields the next client after the previous one left. A socket
 * passed by systemd (socket activation, activated.ts) replaces `-m/-p`.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import { parseVsockAddress, validateMethod } from "../config/mod.ts";
import type { Logger } from "../log.ts";
import type { Activation, ListenEnv } from "./activated.ts";
import { listenUnix, listenVsock } from "./socket.ts";

export type { Activation, ListenEnv };

/** The result of one read from a connection. */
export type ReadResult =
  | { type: "data"; bytes: Uint8Array }
  /** The peer went away but the channel stays (virtio-serial host disconnect): drop partial input. */
  | { type: "hangup" }
  /** The connection is over; the transport will hand out the next one. */
  | { type: "closed" };

/** One client (or the device). */
export interface Connection {
  /** Who is on the other end, for logs. */
  readonly peer: string;
  read(): Promise<ReadResult>;
  /** Writes all bytes. */
  write(bytes: Uint8Array): Promise<void>;
  close(): void;
}

/** A source of connections. */
export interface Transport {
  /** What is being served, for logs. */
  readonly description: string;
  /** The next connection, or `null` once the transport is closed. */
  accept(): Promise<Connection | null>;
  /** Stops accepting, closes the device or listener and removes what it created. */
  close(): void;
}

/**
 * The listening socket systemd passed to process `pid` (sd_listen_fds(3)), checked, or
 * `undefined` when the agent is not socket-activated. Call it once, at start-up.
 * @throws {ActivationError} for more than one socket or one the agent cannot serve
 */
export async function socketActivation(
  env: ListenEnv,
  pid: number,
): Promise<Activation | undefined> {
  if (env.LISTEN_FDS === undefined || env.LISTEN_PID === undefined) return undefined;
  // Loaded only when systemd passed something: libc and the accept machinery.
  const { inheritedListener } = await import("./activated.ts");
  return inheritedListener(env, pid);
}

/**
 * Opens the transport the configuration names, or serves `activation` (from
 * {@link socketActivation}) instead when given: then `-m/-p` are ignored.
 */
export function openTransport(
  config: Config,
  log: Logger,
  activation?: Activation,
): Promise<Transport> {
  if (activation !== undefined) {
    return import("./activated.ts").then(({ openActivated }) =>
      openActivated(activation, config.vsockAllowedCids, log)
    );
  }
  const method = validateMethod(config.method);
  switch (method) {
    case "virtio-serial":
    case "isa-serial":
      // Loaded only for a serial channel: socket transports never pay for it at start-up.
      return import("./device.ts").then(({ openDevice }) => openDevice(method, config.path, log));
    case "unix-listen":
      return listenUnix(config.path, log);
    case "vsock-listen":
      return Promise.resolve(
        listenVsock(parseVsockAddress(config.path), config.vsockAllowedCids, log),
      );
  }
}

/** Writes every byte of `bytes` to a Deno writer. */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await writer.write(bytes.subarray(offset));
}
