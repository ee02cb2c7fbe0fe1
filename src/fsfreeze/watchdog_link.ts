/**
 * The agent's side of the watchdog (watchdog.ts): one connection to it over the socket in the
 * state directory, made at the first freeze and kept; if nothing listens there (no systemd unit
 * provides one), the agent starts a watchdog of its own, once.
 *
 * Arming a cycle is one line written before the first FIFREEZE; the freeze does not wait for the
 * answer (docs/design.md #42). Once the write returned, the line is in the watchdog's socket: the
 * kernel hands it over even if the agent dies the next moment, and the watchdog takes the deadline
 * from the state file, written before, so when it reads the line does not move the deadline. A
 * watchdog that has gone fails the write (EPIPE), and the agent arms a fresh one before anything
 * freezes. The answers are read in the background and checked: a refusal is logged.
 *
 * A watchdog that stops reading (stopped, or its cgroup frozen) must not hang the freeze: a write
 * that cannot complete within {@link ANSWER_WAIT_MS} fails the arming, and once an answer is that
 * much overdue the link doubts the watchdog: each arming then waits for its answer before anything
 * freezes, until one comes. A healthy watchdog answers within milliseconds, so only a stuck one
 * pays.
 *
 * A watchdog the agent has to start itself is not waited for before the FIFREEZEs (#44): once its
 * process runs, it holds the recorded cycle as it comes up (it arms itself from the state file).
 * The arming follows when it listens, and the freeze's reply waits for that: a watchdog that exits
 * or never listens fails the freeze, which is then rolled back.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { Clock } from "./engine.ts";
import type { Armed, Arming } from "./freeze_cycle.ts";
import type { FrozenState } from "./state.ts";
import type { WatchdogReply } from "./watchdog.ts";

/** How long a new watchdog may take to listen (a slow guest starts programs slowly). */
const START_WAIT_MS = 60_000;
/** How often to look for a new watchdog's socket (a failed connect costs microseconds). */
const RETRY_MS = 5;
/**
 * How long a write of an arming, or an answer, may take before the watchdog counts as stuck
 * (a healthy one answers in milliseconds, also in a slow guest).
 */
export const ANSWER_WAIT_MS = 5_000;

const encoder = new TextEncoder();
/** An arming that a running watchdog's socket holds. */
const CONFIRMED: Armed = { confirmed: Promise.resolve() };
const decoder = new TextDecoder();

/** What the link needs. */
export interface LinkOptions {
  socketPath: string;
  /**
   * Starts a watchdog that will listen on `socketPath` (the agent's own copy): resolves once its
   * process runs, with a promise that settles if that process exits.
   * @throws {Error} when it cannot be started
   */
  start(): Promise<{ exited: Promise<unknown> }>;
  clock: Clock;
  log: Logger;
  /** @default ANSWER_WAIT_MS */
  answerWaitMs?: number;
  /**
   * Whether `cycle` is still recorded. A refusal of a cycle that has ended since (a cycle that
   * froze nothing can be over before the watchdog reads its arming) is then no error.
   */
  inForce?: (cycle: string) => boolean;
}

/** An arming sent on the current connection and not answered yet. */
interface Unanswered {
  cycle: string;
  sentAt: number;
  /** Set while an arming waits for this answer (the watchdog is in doubt). */
  answered?: () => void;
}

/** The agent's connection to its watchdog. */
export class WatchdogLink implements Arming {
  readonly #options: LinkOptions;
  #conn: Deno.UnixConn | undefined;
  /** A watchdog the agent started and is waiting for (one at a time). */
  #starting: Promise<Deno.UnixConn> | undefined;
  /** Armings sent on the current connection whose answers have not been read yet. */
  #unanswered: Unanswered[] = [];
  /** An answer came too late, or a write could not complete: armings wait for their answers. */
  #doubted = false;
  /** The cycle armed last: one cycle at a time, so an earlier one has ended. */
  #newest: string | undefined;

  constructor(options: LinkOptions) {
    this.#options = options;
  }

  /**
   * Arms the watchdog for `state`'s cycle (recorded in the state file already): resolves once
   * the request is in a listening watchdog's socket, or once a watchdog has been started (the
   * request follows when it listens; it arms itself from the state file as it comes up).
   * @throws {Error} when no watchdog could be reached or started
   */
  async arm(state: FrozenState): Promise<Armed> {
    const line = encoder.encode(JSON.stringify({ arm: state.cycle }) + "\n");
    this.#newest = state.cycle;
    if (this.#answerOverdue()) this.#doubted = true;
    if (this.#conn !== undefined) {
      try {
        await this.#sendAndCheck(this.#conn, line, state.cycle);
        return CONFIRMED;
      } catch (err) {
        this.close(); // the watchdog has gone (restarted, or left): reach or start another
        if (err instanceof WatchdogStuck) throw err; // it still listens: reaching it again won't do
      }
    }
    const reached = await this.#reachOrStart();
    if ("conn" in reached) {
      await this.#sendAndCheck(reached.conn, line, state.cycle);
      return CONFIRMED;
    }
    return {
      confirmed: reached.starting.then((conn) => this.#sendAndCheck(conn, line, state.cycle)),
    };
  }

  /** Drops the connection (a watchdog the agent started then exits when idle). */
  close(): void {
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#conn = undefined;
    for (const { answered } of this.#unanswered) answered?.();
    this.#unanswered = [];
  }

  /** Sends the arming; while the watchdog is in doubt, also waits for its answer. */
  async #sendAndCheck(conn: Deno.UnixConn, line: Uint8Array, cycle: string): Promise<void> {
    const sent: Unanswered = { cycle, sentAt: this.#options.clock.now() };
    const answered = this.#doubted
      ? new Promise<boolean>((resolve) => sent.answered = () => resolve(conn === this.#conn))
      : undefined;
    await this.#send(conn, line, sent);
    if (answered === undefined) return;
    const inTime = await this.#within(answered);
    if (inTime === true) return;
    if (inTime === false) {
      throw new Error(`the watchdog on ${this.#options.socketPath} closed the connection`);
    }
    if (conn === this.#conn) this.close();
    throw new WatchdogStuck(
      `the watchdog on ${this.#options.socketPath} has not answered an arming for ${
        this.#waitMs / 1000
      } s`,
    );
  }

  async #send(conn: Deno.UnixConn, line: Uint8Array, sent: Unanswered): Promise<void> {
    this.#unanswered.push(sent);
    let written: boolean | undefined;
    try {
      written = await this.#within(writeAll(conn, line).then(() => true));
    } catch (err) {
      if (conn === this.#conn) this.close();
      throw err;
    }
    if (written) return;
    this.#doubted = true;
    if (conn === this.#conn) this.close(); // a write still pending fails with the connection
    throw new WatchdogStuck(
      `the watchdog on ${this.#options.socketPath} has not read its socket for ${
        this.#waitMs / 1000
      } s`,
    );
  }

  get #waitMs(): number {
    return this.#options.answerWaitMs ?? ANSWER_WAIT_MS;
  }

  /** What `promise` settles with, or `undefined` once the wait for an answer is over. */
  async #within<T>(promise: Promise<T>): Promise<T | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), this.#waitMs);
    });
    try {
      return await Promise.race([promise, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Whether the oldest arming on this connection has waited for its answer too long. */
  #answerOverdue(): boolean {
    const oldest = this.#unanswered[0];
    return oldest !== undefined && this.#options.clock.now() - oldest.sentAt > this.#waitMs;
  }

  /** A listening watchdog, or one started now (or earlier) that is still coming up. */
  async #reachOrStart(): Promise<{ conn: Deno.UnixConn } | { starting: Promise<Deno.UnixConn> }> {
    if (this.#starting === undefined) {
      const conn = await tryConnect(this.#options.socketPath);
      if (conn !== undefined) return { conn: this.#adopt(conn) };
      const { exited } = await this.#options.start();
      this.#starting = this.#waitForListener(exited).finally(() => this.#starting = undefined);
      this.#starting.catch(() => {}); // the arming that started it reports the failure
    }
    return { starting: this.#starting };
  }

  async #waitForListener(exited: Promise<unknown>): Promise<Deno.UnixConn> {
    const { socketPath, clock } = this.#options;
    let gone = false;
    exited.then(() => gone = true, () => gone = true);
    const until = clock.now() + START_WAIT_MS;
    for (;;) {
      const conn = await tryConnect(socketPath);
      if (conn !== undefined) return this.#adopt(conn);
      if (gone) {
        throw new Error(`the watchdog it started exited before it listened on ${socketPath}`);
      }
      if (clock.now() > until) throw new Error(`no watchdog listens on ${socketPath}`);
      await clock.sleep(RETRY_MS);
    }
  }

  #adopt(conn: Deno.UnixConn): Deno.UnixConn {
    this.#conn = conn;
    conn.unref(); // the answers alone never keep the agent running
    this.#readAnswers(conn).catch(() => {}); // ends when the connection does
    return conn;
  }

  /** Reads the answers of `conn` until it closes; a closed connection is replaced at the next arm. */
  async #readAnswers(conn: Deno.UnixConn): Promise<void> {
    const chunk = new Uint8Array(4096);
    let pending = "";
    for (;;) {
      const count = await conn.read(chunk);
      if (count === null) break;
      pending += decoder.decode(chunk.subarray(0, count), { stream: true });
      for (let newline = pending.indexOf("\n"); newline !== -1; newline = pending.indexOf("\n")) {
        if (conn === this.#conn) this.#answered(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
    }
    if (conn === this.#conn) this.close();
  }

  #answered(line: string): void {
    const sent = this.#unanswered.shift();
    this.#doubted = false; // it reads and answers
    sent?.answered?.();
    const cycle = sent?.cycle;
    let reply: WatchdogReply | undefined;
    try {
      reply = JSON.parse(line) as WatchdogReply;
    } catch {
      reply = undefined;
    }
    if (reply !== undefined && "armed" in reply && reply.armed === cycle) return;
    const answer = reply !== undefined && "error" in reply ? reply.error : line;
    if (cycle !== undefined && this.#endedSince(cycle)) {
      this.#options.log.debug("the thaw watchdog read an arming after its cycle ended", {
        cycle,
        answer,
      });
      return;
    }
    // The agent's own deadline timer still holds the cycle (service.ts).
    this.#options.log.error("the thaw watchdog did not arm the cycle", { cycle, answer });
  }

  /** Whether `cycle` is known to have ended (a failing look counts as "still in force"). */
  #endedSince(cycle: string): boolean {
    // An armed watchdog rests its socket (design #48): it may answer earlier cycles late.
    if (cycle !== this.#newest) return true;
    try {
      return this.#options.inForce?.(cycle) === false;
    } catch {
      return false;
    }
  }
}

/** The watchdog listens but does not read its socket, or does not answer. */
class WatchdogStuck extends Error {}

async function writeAll(conn: Deno.UnixConn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

function closeQuietly(conn: Deno.UnixConn): void {
  try {
    conn.close();
  } catch {
    // closed already
  }
}

/** A connection, or `undefined` when nothing listens (no socket, or a stale one). */
async function tryConnect(path: string): Promise<Deno.UnixConn | undefined> {
  try {
    return await Deno.connect({ transport: "unix", path });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.ConnectionRefused) {
      return undefined;
    }
    throw err;
  }
}
