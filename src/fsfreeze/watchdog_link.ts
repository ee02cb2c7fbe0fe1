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
 * @module
 */

import type { Logger } from "../log.ts";
import type { Clock } from "./engine.ts";
import type { Arming } from "./freeze_cycle.ts";
import type { FrozenState } from "./state.ts";
import type { WatchdogReply } from "./watchdog.ts";

/** How long a new watchdog may take to listen (a slow guest starts programs slowly). */
const START_WAIT_MS = 60_000;
/** How often to look for a new watchdog's socket (a failed connect costs microseconds). */
const RETRY_MS = 5;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the link needs. */
export interface LinkOptions {
  socketPath: string;
  /** Starts a watchdog that will listen on `socketPath` (the agent's own copy). */
  start(): void;
  clock: Clock;
  log: Logger;
}

/** The agent's connection to its watchdog. */
export class WatchdogLink implements Arming {
  readonly #options: LinkOptions;
  #conn: Deno.UnixConn | undefined;
  #connecting: Promise<Deno.UnixConn> | undefined;
  /** Cycles armed on the current connection whose answers have not been read yet. */
  #unanswered: string[] = [];

  constructor(options: LinkOptions) {
    this.#options = options;
  }

  /**
   * Arms the watchdog for `state`'s cycle (recorded in the state file already): resolves once
   * the request is in the watchdog's socket.
   * @throws {Error} when no watchdog could be reached
   */
  async arm(state: FrozenState): Promise<void> {
    const line = encoder.encode(JSON.stringify({ arm: state.cycle }) + "\n");
    try {
      await this.#send(line, state.cycle);
    } catch {
      // The connection broke (the watchdog restarted): once more on a fresh one.
      this.close();
      try {
        await this.#send(line, state.cycle);
      } catch (err) {
        this.close();
        throw err;
      }
    }
  }

  /** Drops the connection (a watchdog the agent started then exits when idle). */
  close(): void {
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#conn = undefined;
    this.#unanswered = [];
  }

  async #send(line: Uint8Array, cycle: string): Promise<void> {
    const conn = await this.#connection();
    await writeAll(conn, line);
    this.#unanswered.push(cycle);
  }

  /** The kept connection, or the one being made (one at a time: one watchdog is started). */
  #connection(): Promise<Deno.UnixConn> {
    if (this.#conn !== undefined) return Promise.resolve(this.#conn);
    this.#connecting ??= this.#connect().finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  async #connect(): Promise<Deno.UnixConn> {
    const { socketPath, clock } = this.#options;
    let conn = await tryConnect(socketPath);
    if (conn === undefined) {
      this.#options.start();
      const until = clock.now() + START_WAIT_MS;
      while (conn === undefined) {
        if (clock.now() > until) throw new Error(`no watchdog listens on ${socketPath}`);
        await clock.sleep(RETRY_MS);
        conn = await tryConnect(socketPath);
      }
    }
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
