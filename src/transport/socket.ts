/**
 * Listening-socket transports: unix-listen and vsock-listen. One client at a time, as qemu-ga
 * (backlog 1): the next client is accepted after the previous one disconnected. Also the one
 * connecting side the agent has: its session with the delegate ({@link connectUnix}).
 *
 * A unix socket is owner-only (0600): it is bound under a temporary name, chmod-ed, then renamed
 * into place, so no other user ever sees it with looser permissions. A stale socket left by a dead
 * agent is replaced; a live one (someone answers) or a path that is not a socket is refused.
 * A vsock listener accepts only the configured peers (the host, CID 2, by default): a local process
 * could otherwise reach the guest's own listener and freeze its filesystems.
 *
 * @module
 */

import type { SocketAddress } from "../linux/sockets.ts";
import type { Logger } from "../log.ts";
import { checkDirectory, parentDirectory, removeQuietly } from "../safe_files.ts";
import type { Connection, ReadResult, Transport } from "./_connection.ts";

const READ_SIZE = 4096;

/**
 * Where a unix socket is bound before it is renamed to its configured path (the permission set
 * grants both names).
 */
export function unixSocketTempPath(path: string): string {
  return `${path}.new`;
}

/** Listens on a unix socket path. */
export async function listenUnix(path: string, log: Logger): Promise<Transport> {
  checkDirectory(parentDirectory(path), "socket directory");
  await clearStaleSocket(path);
  const temp = unixSocketTempPath(path);
  removeStaleEntry(temp);
  const listener = Deno.listen({ transport: "unix", path: temp });
  // Synchronous calls: each of these is quick, and an async op costs a turn of the event loop
  // on the way to the first reply.
  try {
    Deno.chmodSync(temp, 0o600);
    Deno.renameSync(temp, path);
  } catch (err) {
    listener.close();
    removeQuietly(temp);
    throw err;
  }
  log.info("channel opened", { method: "unix-listen", path });
  return new ListenerTransport(listener, `unix-listen:${path}`, () => true, log, path);
}

/** Listens on vsock `<cid>:<port>`, accepting only `allowedCids`. */
export function listenVsock(
  address: { cid: number; port: number },
  allowedCids: readonly number[],
  log: Logger,
): Transport {
  const listener = Deno.listen({ transport: "vsock", cid: address.cid, port: address.port });
  log.info("channel opened", { method: "vsock-listen", cid: address.cid, port: address.port });
  const allowed = (peer: Deno.Addr): boolean => isAllowedVsockPeer(peer, allowedCids);
  return new ListenerTransport(
    listener,
    `vsock-listen:${address.cid}:${address.port}`,
    allowed,
    log,
  );
}

/**
 * Connects to a listening unix socket: the agent's side of a session with another agent (the
 * delegate, docs/design.md #36), read and written as a host's client is.
 */
export async function connectUnix(path: string): Promise<Connection> {
  return new SocketConnection(await Deno.connect({ transport: "unix", path }));
}

/** Whether a vsock peer may talk to the agent. */
export function isAllowedVsockPeer(peer: Deno.Addr, allowedCids: readonly number[]): boolean {
  return peer.transport === "vsock" && allowedCids.includes(peer.cid);
}

async function clearStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSocket) throw new Error(`refusing to replace ${path}: it is not a socket`);
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
    throw new Error(`another agent is already listening on ${path}`);
  } catch (err) {
    if (!(err instanceof Deno.errors.ConnectionRefused)) throw err;
  }
  Deno.removeSync(path);
}

/**
 * Clears the temporary name: whatever is there (a socket left by a crash, or a planted symlink,
 * FIFO or file) is unlinked, never followed; bind(2) then creates the socket itself.
 */
function removeStaleEntry(path: string): void {
  try {
    if (!Deno.lstatSync(path).isDirectory) Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

class ListenerTransport implements Transport {
  #listener: Deno.Listener;
  #isAllowed: (peer: Deno.Addr) => boolean;
  #log: Logger;
  #socketPath: string | undefined;
  #closed = false;
  readonly description: string;

  constructor(
    listener: Deno.Listener,
    description: string,
    isAllowed: (peer: Deno.Addr) => boolean,
    log: Logger,
    socketPath?: string,
  ) {
    this.#listener = listener;
    this.description = description;
    this.#isAllowed = isAllowed;
    this.#log = log;
    this.#socketPath = socketPath;
  }

  async accept(): Promise<Connection | null> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closed) return null;
        throw err;
      }
      if (this.#isAllowed(conn.remoteAddr)) return new SocketConnection(conn);
      this.#log.warn("refused connection from peer", { peer: describePeer(conn.remoteAddr) });
      conn.close();
    }
    return null;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
    if (this.#socketPath !== undefined) removeQuietly(this.#socketPath);
  }
}

class SocketConnection implements Connection {
  #conn: Deno.Conn;
  #buffer = new Uint8Array(READ_SIZE);
  #closed = false;
  readonly peer: string;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.peer = describePeer(conn.remoteAddr);
  }

  async read(): Promise<ReadResult> {
    if (this.#closed) return { type: "closed" };
    let count: number | null;
    try {
      count = await this.#conn.read(this.#buffer);
    } catch (err) {
      if (this.#closed || isDisconnect(err)) return { type: "closed" };
      throw err;
    }
    if (count === null) return { type: "closed" };
    return { type: "data", bytes: this.#buffer.slice(0, count) };
  }

  write(bytes: Uint8Array): Promise<void> {
    return writeAll(this.#conn, bytes);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** Writes every byte of `bytes` (a socket write may take fewer). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

function isDisconnect(err: unknown): boolean {
  return err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted;
}

/** How a peer is named in logs (a Deno address, or one decoded from a socket systemd passed). */
export function describePeer(peer: Deno.Addr | SocketAddress): string {
  switch (peer.transport) {
    case "vsock":
      return `vsock:${peer.cid}:${peer.port}`;
    case "tcp":
    case "udp":
      return `${peer.hostname}:${peer.port}`;
    case "other":
      return `family ${peer.family}`;
    default:
      return peer.path === "" ? "unix" : `unix:${peer.path}`;
  }
}
