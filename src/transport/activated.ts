/**
 * systemd socket activation (docs/protocol.md, "Channels"): when systemd passes this process a
 * listening socket (sd_listen_fds(3): `LISTEN_PID` is our pid, `LISTEN_FDS=1`, the socket is
 * descriptor 3), the agent serves it instead of `-m/-p`, as the method declared for its socket
 * family (methods.ts): an AF_UNIX socket as unix-listen, an AF_VSOCK one as vsock-listen (only
 * the configured peer CIDs are served): one client at a time, the next one after the previous
 * disconnected. More than one socket, or any other kind of descriptor, is refused at start-up with
 * qemu-ga's messages.
 *
 * Deno cannot adopt an inherited descriptor, so everything goes through src/linux/: the socket is
 * inspected with getsockopt(2), marked close-on-exec (no hook or watchdog inherits it) and
 * non-blocking; an accept loop (_fd_loop.ts) waits in poll(2), off the event loop, while a client
 * is wanted and none is queued; each client is served as a descriptor connection (_fd_io.ts),
 * where end of file means the client has gone.
 *
 * Reading the environment is main.ts's job: it passes `LISTEN_FDS`/`LISTEN_PID` in and removes
 * them from its environment, so no child mistakes them for its own.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { SyscallError } from "../linux/errno.ts";
import { closeQuietly, setCloseOnExec, setNonBlocking } from "../linux/fd.ts";
import { lstat } from "../linux/files.ts";
import {
  getsockname,
  getsockoptInt,
  type SocketAddress,
  SocketOption,
  SocketType,
  SOL_SOCKET,
} from "../linux/sockets.ts";
import type { Logger } from "../log.ts";
import type { Connection, Transport } from "./_connection.ts";
import { type FdConnection, openFdConnection } from "./_fd_io.ts";
import { AcceptLoop } from "./_fd_loop.ts";
import { type Method, methodOfSocketFamily } from "./methods.ts";
import { describePeer, isAllowedVsockPeer } from "./socket.ts";

/** The first descriptor systemd passes (`SD_LISTEN_FDS_START`). */
export const SD_LISTEN_FDS_START = 3;

/** systemd's socket-activation variables, as main.ts read them (sd_listen_fds(3)). */
export interface ListenEnv {
  LISTEN_FDS?: string | undefined;
  LISTEN_PID?: string | undefined;
}

/** The listening socket systemd passed, checked: what it stands in for, and its address. */
export interface Activation {
  fd: number;
  /** The method whose socket family it has (unix-listen or vsock-listen). */
  method: Method;
  address: Deno.UnixAddr | Deno.VsockAddr;
}

/** The socket systemd passed cannot be served; the message is qemu-ga's where it has one. */
export class ActivationError extends Error {
  override name = "ActivationError";
}

/**
 * How many descriptors systemd passed to this process: 0 unless `LISTEN_PID` is `pid` and
 * `LISTEN_FDS` is set (sd_listen_fds(3); a variable meant for another process is ignored).
 * @throws {ActivationError} when `LISTEN_FDS` is meant for us but is not a count
 */
export function listenFdCount(env: ListenEnv, pid: number): number {
  if (env.LISTEN_PID === undefined || env.LISTEN_FDS === undefined) return 0;
  if (!/^[0-9]+$/.test(env.LISTEN_PID) || Number(env.LISTEN_PID) !== pid) return 0;
  if (!/^[0-9]+$/.test(env.LISTEN_FDS)) {
    throw new ActivationError(`invalid LISTEN_FDS: "${env.LISTEN_FDS}"`);
  }
  return Number(env.LISTEN_FDS);
}

/**
 * The listening socket systemd passed to process `pid`, checked and prepared (close-on-exec,
 * non-blocking), or `undefined` when the agent is not socket-activated.
 * @throws {ActivationError} for more than one socket, or a descriptor that is not a listening
 *   unix or vsock stream socket
 */
export function inheritedListener(env: ListenEnv, pid: number): Activation | undefined {
  const count = listenFdCount(env, pid);
  if (count === 0) return undefined;
  if (count > 1) throw new ActivationError("qemu-ga only supports listening on one socket");
  const activation = inspectListenFd(SD_LISTEN_FDS_START);
  // Before anything is spawned: a hook must not inherit the listener (it could accept on it).
  setCloseOnExec(activation.fd);
  // poll(2) says a client is queued, but it may be gone by accept4(2): that must not block.
  setNonBlocking(activation.fd);
  return activation;
}

/**
 * What a descriptor is, if the agent can serve it: a listening AF_UNIX or AF_VSOCK stream socket.
 * @throws {ActivationError} `unsupported listen fd type: …` for anything else
 */
export function inspectListenFd(fd: number): Activation {
  let family: number;
  try {
    family = getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_DOMAIN);
  } catch (err) {
    if (err instanceof SyscallError && err.code === "ENOTSOCK") {
      throw unsupported(`fd ${fd} is not a socket`);
    }
    const reason = errorMessage(err);
    throw new ActivationError(`cannot use the socket passed by systemd (fd ${fd}): ${reason}`, {
      cause: err,
    });
  }
  const method = methodOfFamily(family);
  if (method === undefined) throw unsupported(`fd ${fd} is a socket of family ${family}`);
  const type = getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_TYPE);
  if (type !== SocketType.SOCK_STREAM) {
    throw unsupported(`fd ${fd} is not a stream socket (type ${type})`);
  }
  if (getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_ACCEPTCONN) === 0) {
    // What a socket unit with Accept=yes passes: one connection per process, which qemu-ga
    // does not do either.
    throw unsupported(`fd ${fd} is not listening (a socket unit with Accept=yes?)`);
  }
  const address = getsockname(fd);
  if (address.transport === "other") throw unsupported(`fd ${fd} has an unknown address`);
  return { fd, method, address };
}

/** The transport an address family stands in for (as qemu-ga), or undefined. */
export function methodOfFamily(family: number): Method | undefined {
  return methodOfSocketFamily(family)?.name;
}

function unsupported(detail: string): ActivationError {
  return new ActivationError(`unsupported listen fd type: ${detail}`);
}

/**
 * Whether a client of the activated socket may talk to the agent: any on a unix socket (the
 * socket unit's SocketMode/SocketUser decide who can connect), only `allowedCids` on vsock.
 */
export function isAllowedPeer(peer: SocketAddress, allowedCids: readonly number[]): boolean {
  if (peer.transport === "unix") return true;
  return peer.transport === "vsock" && isAllowedVsockPeer(peer, allowedCids);
}

/**
 * Serves the activated socket: sets up its accept loop.
 * @throws {SyscallError} when the accept loop's eventfd cannot be made
 */
export function openActivated(
  activation: Activation,
  allowedCids: readonly number[],
  log: Logger,
): ActivatedTransport {
  const acceptor = new AcceptLoop(activation.fd);
  const where = activation.address.transport === "vsock"
    ? { cid: activation.address.cid, port: activation.address.port }
    : { path: activation.address.path };
  log.info("channel opened", { method: activation.method, fd: activation.fd, ...where });
  warnIfOthersMayConnect(activation.address, log);
  const description = `${activation.method}:fd ${activation.fd} (${
    describePeer(activation.address)
  })`;
  return new ActivatedTransport(acceptor, description, allowedCids, log);
}

/**
 * Our own unix sockets are owner-only (socket.ts); an activated one has the socket unit's
 * SocketMode (0666 unless set), which lets any local user freeze filesystems: say so.
 */
function warnIfOthersMayConnect(address: SocketAddress, log: Logger): void {
  if (address.transport !== "unix" || !address.path.startsWith("/")) return;
  try {
    // Through libc: metadata only, and the agent has no Deno read permission on that path.
    const { mode } = lstat(address.path);
    if ((mode & 0o022) !== 0) {
      log.warn("socket-activated unix socket is accessible to other users (set SocketMode=0600)", {
        path: address.path,
        mode: (mode & 0o777).toString(8),
      });
    }
  } catch {
    // Gone or hidden from us (another mount namespace): nothing to report.
  }
}

/** The activated listener: hands out one client at a time. */
export class ActivatedTransport implements Transport, AsyncDisposable {
  readonly description: string;
  readonly #acceptor: AcceptLoop;
  readonly #allowedCids: readonly number[];
  readonly #log: Logger;
  #current: FdConnection | undefined;
  #closed = false;

  constructor(
    acceptor: AcceptLoop,
    description: string,
    allowedCids: readonly number[],
    log: Logger,
  ) {
    this.#acceptor = acceptor;
    this.description = description;
    this.#allowedCids = allowedCids;
    this.#log = log;
  }

  /**
   * The next allowed client (refused ones are logged and closed), or `null` once closed.
   * @throws {SyscallError} when accepting fails for good
   */
  async accept(): Promise<Connection | null> {
    while (!this.#closed) {
      const client = await this.#acceptor.next();
      if (client === null) return null;
      const peer = describePeer(client.peer);
      if (this.#closed) {
        closeQuietly(client.fd);
        return null;
      }
      if (!isAllowedPeer(client.peer, this.#allowedCids)) {
        this.#log.warn("refused connection from peer", { peer });
        closeQuietly(client.fd);
        continue;
      }
      const connection = openFdConnection(client.fd, { peer, endOfFile: "closed", log: this.#log });
      this.#current = connection;
      return connection;
    }
    return null;
  }

  /** Stops accepting and closes the client being served; the inherited listener stays open. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#acceptor.stop();
    this.#current?.close();
  }

  /** Settles once the accept loop and the last client's read loop have ended. */
  get finished(): Promise<void> {
    return Promise.all([this.#acceptor.finished, this.#current?.finished]).then(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await this.finished;
  }
}
