/**
 * The accept loop of a socket-activated listener, run in its own Worker by
 * listen_acceptor_worker.ts, and the messages and shared words it uses to talk to activated.ts.
 *
 * One client at a time, as qemu-ga: the loop accepts only when the main thread asks for the next
 * client (the {@link AcceptControl.WANTED} word), so while a client is served further ones wait in
 * the listener's backlog. Asked, it blocks in poll(2) on the listener and on an eventfd (the
 * doorbell activated.ts rings to stop it), then accept4(2)s the client non-blocking and
 * close-on-exec and posts its descriptor and address. The listener itself is never closed here:
 * it belongs to the process (systemd passed it), and a `--retry-path` restart serves it again.
 *
 * Nothing here runs on the main thread except the type and constant exports.
 *
 * @module
 */

import { Errno, errnoNumber, SyscallError } from "../linux/errno.ts";
import { accept4, SOCK_CLOEXEC, SOCK_NONBLOCK, type SocketAddress } from "../linux/sockets.ts";
import { Poll, poll, type PollFd } from "../linux/fd.ts";

/** How long to wait before accepting again when out of descriptors or memory. */
export const ACCEPT_RETRY_MS = 100;

/** Indexes of the shared Int32 words. */
export const AcceptControl = {
  /** 1 while the main thread waits for the next client; the loop sets it back to 0. */
  WANTED: 0,
  /** 1 once the main thread asked the loop to stop. */
  STOP: 1,
} as const;

/** Number of shared Int32 words. */
export const ACCEPT_CONTROL_WORDS = 2;

/** What activated.ts sends to start the loop. */
export interface AcceptorStart {
  /** The listening socket, non-blocking. */
  fd: number;
  /** An eventfd that becomes readable when the loop must stop. */
  wakeFd: number;
  /** {@link ACCEPT_CONTROL_WORDS} Int32 words, indexed by {@link AcceptControl}. */
  control: SharedArrayBuffer;
}

/** What the loop posts. */
export type AcceptorEvent =
  /** The Worker's modules have loaded (posted before any start message is taken). */
  | { type: "ready" }
  /** A client: its descriptor is the main thread's to close from now on. */
  | { type: "accepted"; fd: number; peer: SocketAddress }
  | { type: "error"; syscall: string; errno: number }
  /** The loop ended (after a stop or an error). */
  | { type: "stopped" };

/** Where the loop posts its events (the Worker's `postMessage`). */
export type PostAcceptorEvent = (event: AcceptorEvent) => void;

/**
 * Errors after which accepting again is right: a connection that went away while queued, a signal,
 * and the pending network errors accept(2) says to treat like EAGAIN on Linux.
 */
const RETRY_AT_ONCE: readonly number[] = [
  "EAGAIN",
  "EINTR",
  "ECONNABORTED",
  "EPROTO",
  "ENETDOWN",
  "ENOPROTOOPT",
  "EHOSTDOWN",
  "ENONET",
  "EHOSTUNREACH",
  "EOPNOTSUPP",
  "ENETUNREACH",
].map(errnoNumber);

/** Errors that last a while: the listener stays readable, so pause rather than spin. */
const RETRY_AFTER_PAUSE: readonly number[] = ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"].map(
  errnoNumber,
);

/**
 * Runs the accept loop until the main thread stops it or accepting fails for good. Blocks the
 * calling thread: only a Worker calls it.
 */
export function runAcceptor(start: AcceptorStart, post: PostAcceptorEvent): void {
  try {
    new Acceptor(start, post).run();
  } finally {
    post({ type: "stopped" });
  }
}

/** What one accept attempt found: go on at once, or after a pause, or end the loop. */
type AcceptOutcome = "next" | "pause" | "stop";

class Acceptor {
  readonly #start: AcceptorStart;
  readonly #control: Int32Array;
  readonly #post: PostAcceptorEvent;
  readonly #fds: PollFd[];

  constructor(start: AcceptorStart, post: PostAcceptorEvent) {
    this.#start = start;
    this.#control = new Int32Array(start.control);
    this.#post = post;
    this.#fds = [
      { fd: start.fd, events: Poll.POLLIN, revents: 0 },
      { fd: start.wakeFd, events: Poll.POLLIN, revents: 0 },
    ];
  }

  run(): void {
    while (this.#waitUntilWanted()) {
      const outcome = this.#acceptOnce();
      if (outcome === "stop") return;
      if (outcome === "pause") Atomics.wait(this.#control, AcceptControl.STOP, 0, ACCEPT_RETRY_MS);
    }
  }

  #stopped(): boolean {
    return Atomics.load(this.#control, AcceptControl.STOP) !== 0;
  }

  /** Waits until the main thread wants a client; false once asked to stop. */
  #waitUntilWanted(): boolean {
    for (;;) {
      if (this.#stopped()) return false;
      if (Atomics.load(this.#control, AcceptControl.WANTED) !== 0) return true;
      // Woken when a client is wanted, and by stop (which notifies every word).
      Atomics.wait(this.#control, AcceptControl.WANTED, 0);
    }
  }

  /** One poll(2) and, if a connection is queued, one accept4(2). */
  #acceptOnce(): AcceptOutcome {
    const [listener, wake] = this.#fds as [PollFd, PollFd];
    try {
      poll(this.#fds, -1);
    } catch (err) {
      if (isErrno(err, [Errno.EINTR])) return "next";
      return this.#fail(err);
    }
    if (wake.revents !== 0 || this.#stopped()) return "stop";
    if (listener.revents === 0) return "next";
    if ((listener.revents & Poll.POLLNVAL) !== 0) {
      return this.#fail(new SyscallError("poll", Errno.EBADF));
    }
    let client: { fd: number; peer: SocketAddress };
    try {
      client = accept4(this.#start.fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } catch (err) {
      if (isErrno(err, RETRY_AT_ONCE)) return "next";
      if (isErrno(err, RETRY_AFTER_PAUSE)) return "pause";
      return this.#fail(err);
    }
    Atomics.store(this.#control, AcceptControl.WANTED, 0);
    this.#post({ type: "accepted", fd: client.fd, peer: client.peer });
    return "next";
  }

  /** Posts a failed system call, which ends the loop; anything else is a bug and is thrown. */
  #fail(err: unknown): AcceptOutcome {
    if (!(err instanceof SyscallError)) throw err;
    this.#post({ type: "error", syscall: err.syscall, errno: err.errno });
    return "stop";
  }
}

function isErrno(err: unknown, errnos: readonly number[]): boolean {
  return err instanceof SyscallError && errnos.includes(err.errno);
}
