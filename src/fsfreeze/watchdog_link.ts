/**
 * The agent's side of the watchdog (watchdog.ts): one connection to it over the socket in the
 * state directory, made at the first freeze and kept; if nothing listens there (no systemd unit
 * provides one), the agent starts a watchdog of its own, once. Arming a cycle is one request and
 * its answer, before the first FIFREEZE.
 *
 * @module
 */

import type { Clock } from "./engine.ts";
import type { Arming } from "./freeze_cycle.ts";
import type { FrozenState } from "./state.ts";
import type { WatchdogReply } from "./watchdog.ts";

/** How long a new watchdog may take to listen (a slow guest starts programs slowly). */
const START_WAIT_MS = 60_000;
/** How long an armed watchdog may take to answer. */
const ANSWER_WAIT_MS = 30_000;
const RETRY_MS = 20;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the link needs. */
export interface LinkOptions {
  socketPath: string;
  /** Starts a watchdog that will listen on `socketPath` (the agent's own copy). */
  start(): void;
  clock: Clock;
}

/** The agent's connection to its watchdog. */
export class WatchdogLink implements Arming {
  readonly #options: LinkOptions;
  #conn: Deno.UnixConn | undefined;
  #connecting: Promise<Deno.UnixConn> | undefined;
  #buffer = "";

  constructor(options: LinkOptions) {
    this.#options = options;
  }

  /**
   * Arms the watchdog for `state`'s cycle (recorded in the state file already).
   * @throws {Error} when no watchdog could be reached or it refused
   */
  async arm(state: FrozenState): Promise<void> {
    let reply: WatchdogReply;
    try {
      reply = await this.#request({ arm: state.cycle });
    } catch {
      // The connection broke (the watchdog restarted): once more on a fresh one.
      this.close();
      try {
        reply = await this.#request({ arm: state.cycle });
      } catch (err) {
        this.close();
        throw err;
      }
    }
    if ("error" in reply) throw new Error(`the watchdog refused: ${reply.error}`);
    if (reply.armed !== state.cycle) throw new Error(`the watchdog armed ${reply.armed}`);
  }

  /** Drops the connection (a watchdog the agent started then exits when idle). */
  close(): void {
    if (this.#conn !== undefined) closeQuietly(this.#conn);
    this.#conn = undefined;
    this.#buffer = "";
  }

  async #request(request: { arm: string }): Promise<WatchdogReply> {
    const conn = await this.#connection();
    // The answer is awaited while the request is written: no turn of the event loop in between.
    // A failed write closes the connection, which ends the read.
    const writing = writeAll(conn, encoder.encode(JSON.stringify(request) + "\n"));
    writing.catch(() => closeQuietly(conn));
    const line = await this.#readLine(conn);
    await writing;
    return JSON.parse(line) as WatchdogReply;
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
    return conn;
  }

  async #readLine(conn: Deno.UnixConn): Promise<string> {
    const until = this.#options.clock.now() + ANSWER_WAIT_MS;
    const chunk = new Uint8Array(4096);
    for (;;) {
      const newline = this.#buffer.indexOf("\n");
      if (newline !== -1) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        return line;
      }
      const remaining = until - this.#options.clock.now();
      if (remaining <= 0) throw new Error("the watchdog did not answer");
      const count = await readWithin(conn, chunk, remaining);
      if (count === null) throw new Error("the watchdog closed the connection");
      this.#buffer += decoder.decode(chunk.subarray(0, count), { stream: true });
    }
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

async function readWithin(
  conn: Deno.UnixConn,
  buffer: Uint8Array,
  ms: number,
): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(resolve, ms, "timeout"));
  const reading = conn.read(buffer);
  reading.catch(() => {}); // a read left behind by the timeout ends when the connection closes
  try {
    const result = await Promise.race([reading, timeout]);
    if (result === "timeout") throw new Error("the watchdog did not answer");
    return result;
  } finally {
    clearTimeout(timer);
  }
}
