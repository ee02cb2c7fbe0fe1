/**
 * The transport methods (`-m`), each declared once: its default `-p`, what a socket systemd passes
 * for it looks like, the Deno permissions serving it needs, and how it opens (checking `-p` on
 * the way). The configuration (src/config/mod.ts), the permission set (src/permissions.ts, which
 * the start-up check queries) and the transport factory (mod.ts) all read these declarations.
 *
 * A new transport is one more entry in {@link TRANSPORT_METHODS} and a module that opens it.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import { ConfigError } from "../config/config_error.ts";
import { AddressFamily } from "../linux/sockets.ts";
import { loadLater } from "../load_later.ts";
import type { Logger } from "../log.ts";
import type { Transport } from "./_connection.ts";
import { listenUnix, listenVsock, unixSocketTempPath } from "./socket.ts";

/** The transports qemu-ga knows. */
export type Method = "virtio-serial" | "isa-serial" | "unix-listen" | "vsock-listen";

/** The Deno permissions a channel needs. */
export interface ChannelPermissions {
  read: string[];
  write: string[];
  /** `unix:<path>` and `vsock:<cid>:<port>` entries. */
  net: string[];
  /** `--unstable-vsock` (Deno's vsock listener). */
  unstableVsock: boolean;
}

/** What the opener of a channel reads from the configuration. */
export type ChannelConfig = Pick<Config, "path" | "vsockAllowedCids">;

/** One transport method. */
export interface TransportMethod {
  /** The `-m` value. */
  readonly name: Method;
  /** `-p` when none is given; `undefined`: the method needs one (qemu-ga's error otherwise). */
  readonly defaultPath: string | undefined;
  /** The address family of a listening socket systemd passes in this method's place. */
  readonly socketFamily: number | undefined;
  /** The permissions serving `path` (the effective `-p`) needs. */
  permissions(path: string): ChannelPermissions;
  /**
   * Opens the channel.
   * @throws {ConfigError} when `-p` does not fit the method (vsock's `<cid>:<port>`)
   */
  open(config: ChannelConfig, log: Logger): Promise<Transport>;
}

/** A serial device: read and written as a file, kept open for the agent's life. */
function deviceMethod(name: "virtio-serial" | "isa-serial", defaultPath: string): TransportMethod {
  return {
    name,
    defaultPath,
    socketFamily: undefined,
    permissions: (path) => ({ read: [path], write: [path], net: [], unstableVsock: false }),
    // Loaded only for a serial channel: socket transports never pay for it at start-up.
    open: (config, log) =>
      loadLater<typeof import("./device.ts")>(new URL("./device.ts", import.meta.url))
        .then(({ openDevice }) => openDevice(name, config.path, log)),
  };
}

const UNIX_LISTEN: TransportMethod = {
  name: "unix-listen",
  defaultPath: undefined,
  socketFamily: AddressFamily.AF_UNIX,
  // The socket is bound under a temporary name and renamed into place (owner-only, atomic).
  // Deno asks for net permission on unix socket paths as well as read/write.
  permissions: (path) => {
    const paths = [path, unixSocketTempPath(path)];
    return {
      read: paths,
      write: paths,
      net: paths.map((p) => `unix:${p}`),
      unstableVsock: false,
    };
  },
  open: (config, log) => listenUnix(config.path, log),
};

const VSOCK_LISTEN: TransportMethod = {
  name: "vsock-listen",
  defaultPath: undefined,
  socketFamily: AddressFamily.AF_VSOCK,
  permissions: (path) => ({ read: [], write: [], net: [`vsock:${path}`], unstableVsock: true }),
  // async so that a bad `-p` rejects, as every opener's failures do
  // deno-lint-ignore require-await
  open: async (config, log) =>
    listenVsock(parseVsockAddress(config.path), config.vsockAllowedCids, log),
};

/** Every transport method, in qemu-ga's order. */
export const TRANSPORT_METHODS: readonly TransportMethod[] = [
  deviceMethod("virtio-serial", "/dev/virtio-ports/org.qemu.guest_agent.0"),
  deviceMethod("isa-serial", "/dev/ttyS0"),
  UNIX_LISTEN,
  VSOCK_LISTEN,
];

/** The declaration of `name`, or `undefined` for a method qemu-ga does not know. */
export function findTransportMethod(name: string): TransportMethod | undefined {
  return TRANSPORT_METHODS.find((method) => method.name === name);
}

/**
 * The declaration of `name`, checked (qemu-ga checks the method when it opens the channel, after
 * `-D`, so the configuration keeps whatever was given until then).
 * @throws {ConfigError} `unsupported channel method/type: <name>`
 */
export function transportMethod(name: string): TransportMethod {
  const method = findTransportMethod(name);
  if (method === undefined) throw new ConfigError(`unsupported channel method/type: ${name}`);
  return method;
}

/** The method a listening socket of address family `family` stands in for, if any. */
export function methodOfSocketFamily(family: number): TransportMethod | undefined {
  return TRANSPORT_METHODS.find((method) => method.socketFamily === family);
}

/**
 * Parses `<cid>:<port>` for vsock-listen.
 * @throws {ConfigError} for anything else
 */
export function parseVsockAddress(path: string): { cid: number; port: number } {
  const match = /^(\d{1,10}):(\d{1,10})$/.exec(path);
  const cid = Number(match?.[1]);
  const port = Number(match?.[2]);
  if (!match || cid > 0xffffffff || port > 0xffffffff) {
    throw new ConfigError(`invalid vsock address '${path}', expected <cid>:<port>`);
  }
  return { cid, port };
}
