/**
 * Transports: how bytes reach the agent (docs/protocol.md, "Channels"). A transport hands out
 * connections one at a time; a device (virtio-serial, isa-serial) is one connection that lives as
 * long as the agent, a listening socket (unix, vsock) yields the next client after the previous
 * one left. A socket passed by systemd (socket activation, activated.ts) replaces `-m/-p`.
 *
 * Each method is declared in methods.ts; this module opens the one the configuration names.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import type { Logger } from "../log.ts";
import type { Connection, ReadResult, Transport } from "./_connection.ts";
import type { Activation, ListenEnv } from "./activated.ts";
import { loadLater } from "../load_later.ts";
import { transportMethod } from "./methods.ts";

export { connectUnix } from "./socket.ts";
export type { Activation, Connection, ListenEnv, ReadResult, Transport };

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
  const { inheritedListener } = await loadActivated();
  return inheritedListener(env, pid);
}

/**
 * Opens the transport the configuration names, or serves `activation` (from
 * {@link socketActivation}) instead when given: then `-m/-p` are ignored.
 * @throws {ConfigError} for a method qemu-ga does not know, or a `-p` that does not fit it
 */
export async function openTransport(
  config: Config,
  log: Logger,
  activation?: Activation,
): Promise<Transport> {
  if (activation !== undefined) {
    const { openActivated } = await loadActivated();
    return openActivated(activation, config.vsockAllowedCids, log);
  }
  return await transportMethod(config.method).open(config, log);
}

function loadActivated(): Promise<typeof import("./activated.ts")> {
  return loadLater(new URL("./activated.ts", import.meta.url));
}
