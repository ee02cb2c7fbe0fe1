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
}

/** The agent's connection to its watchdog. */
export class WatchdogLink implements Arming {
  readonly #options: LinkOptions;
  #conn: Deno.UnixConn | undefined;
  /** A watchdog the agent started and is waiting for (one at a time). */
  #starting: Promise<Deno.UnixConn> | undefined;
  /** Cycles armed on the current connection whose answers have not been read yet. */
  #unanswered: string[] = [];

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
    if (this.#conn !== undefined) {
      try {
        await this.#send(this.#conn, line, state.cycle);
        return CONFIRMED;
      } catch {
        this.close(); // the watchdog has gone (restarted, or left): reach or start another
      }
    }
    const reached = await this.#reachOrStart();
    if ("conn" in reached) {
      await this.#send(reached.conn, line, state.cycle);
      return CONFIRMED;
    }
    return { confirmed: reached.starting.then((conn) => this.#send(conn, line, state.cycle)) };
  }

  /** Drops the connection (a watchdog the agent started then exits when idle). */
  close(): void {
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#conn = undefined;
    this.#unanswered = [];
  }

  async #send(conn: Deno.UnixConn, line: Uint8Array, cycle: string): Promise<void> {
    try {
      await writeAll(conn, line);
    } catch (err) {
      if (conn === this.#conn) this.close();
      throw err;
    }
    this.#unanswered.push(cycle);
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
    this.#unanswered = [];
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
    const cycle = this.#unanswered.shift();
    let reply: WatchdogReply | undefined;
    try {
      reply = JSON.parse(line) as WatchdogReply;
    } catch {
      reply = undefined;
    }
    if (reply !== undefined && "armed" in reply && reply.armed === cycle) return;
    const answer = reply !== undefined && "error" in reply ? reply.error : line;
    // The agent's own deadline timer still holds the cycle (service.ts).
    this.#options.log.error("the thaw watchdog did not arm the cycle", { cycle, answer });
  }
}

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
