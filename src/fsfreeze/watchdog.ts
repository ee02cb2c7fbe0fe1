/**
 * The thaw watchdog (docs/design.md #5): a separate process that ends a cycle at
 * its deadline if nobody else did, so the deadline holds when the agent is SIGKILLed, OOM-killed,
 * or (under systemd, where it is a unit of its own) when the agent's whole unit is killed.
 *
 * It is started once, not per cycle: by systemd through its socket (fsfreeze-agent-watchdog.socket;
 * then it stays), or else by the agent at its first freeze (then it exits when that agent has gone
 * and no cycle is in force). The agent arms it before the first FIFREEZE of every cycle over the
 * socket in the state directory: one line `{"arm":"<cycle>"}`, answered `{"armed":"<cycle>",
 * "deadline":<ms>}` once the watchdog has read that cycle from the state file — the state file
 * stays the one record of the cycle. The agent does not wait for the answer (#42), so it may have
 * gone by the time the line is read: the cycle is held all the same. At start-up it arms itself for
 * a cycle already recorded. While armed it looks at the state file once a second; it never writes
 * while anything is frozen.
 *
 * While armed it leaves its socket unread for {@link READ_REST_MS} after each read (#48), so
 * back-to-back cycles wake it a few times a second, not once per cycle. That is safe because the
 * state file, not the line, is the record: at each look, and when a deadline it holds passes, it
 * holds whatever cycle the file records (a later one whose line is still unread, too), and a later
 * cycle's deadline is never earlier than the one it held before. Once nothing is armed it reads at
 * once.
 *
 * @module
 */

import { endCycle } from "./end_cycle.ts";
import { type Engine, lockWaitMs } from "./engine.ts";
import type { FrozenState } from "./state.ts";
import type { Connection, Transport } from "../transport/mod.ts";

/** How often an armed watchdog checks that its cycle is still in force. */
export const CHECK_INTERVAL_MS = 1000;
/**
 * How long an armed watchdog leaves its socket unread after a read: back-to-back cycles wake it
 * 20 times a second at most, and the ~280 armings its socket holds take over 5000 cycles a second
 * to fill it (a full socket would hold up the agent's next arming).
 */
export const READ_REST_MS = 50;

/** Options of {@link runWatchdog}. */
export interface WatchdogOptions {
  /** Stay when idle (systemd's); otherwise exit once the agent has gone and nothing is armed. */
  persistent: boolean;
  /**
   * Not persistent: how long to wait for the agent that started it to connect; with no client by
   * then and nothing armed, it leaves (the agent died before it connected).
   */
  firstClientWaitMs?: number;
  /** Aborting stops it (SIGTERM); an armed cycle is left to the agent or the next watchdog. */
  signal: AbortSignal;
  /** @default CHECK_INTERVAL_MS */
  checkIntervalMs?: number;
  /** @default READ_REST_MS */
  readRestMs?: number;
}

/**
 * How long a watchdog the agent started waits for it to connect: longer than the agent waits for
 * the watchdog to listen (watchdog_link.ts).
 */
const FIRST_CLIENT_WAIT_MS = 120_000;

/** A request on the watchdog's socket. */
export interface WatchdogRequest {
  arm: string;
}

/** Its answer. */
export type WatchdogReply = { armed: string; deadline: number } | { error: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes `replies` (lines); false when the client has gone. */
async function answered(connection: Connection, replies: string): Promise<boolean> {
  try {
    await connection.write(encoder.encode(replies));
    return true;
  } catch {
    return false;
  }
}

/** Serves `transport` until stopped (or, when not persistent, until nobody needs it). */
export async function runWatchdog(
  engine: Engine,
  transport: Transport,
  options: WatchdogOptions,
): Promise<void> {
  const watchdog = new Watchdog(engine, transport, options);
  await watchdog.run();
}

class Watchdog {
  readonly #engine: Engine;
  readonly #transport: Transport;
  readonly #options: WatchdogOptions;
  #armed: { cycle: string; deadline: number } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #check: ReturnType<typeof setInterval> | undefined;
  #clients = 0;
  #ending: Promise<void> | undefined;
  #firstClientTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while the socket rests (armed): reads it then. */
  #readNow: (() => void) | undefined;
  #rest: ReturnType<typeof setTimeout> | undefined;

  constructor(engine: Engine, transport: Transport, options: WatchdogOptions) {
    this.#engine = engine;
    this.#transport = transport;
    this.#options = options;
  }

  async run(): Promise<void> {
    const stop = (): void => {
      this.#transport.close();
      this.#letReaderIn(); // the client's read then ends at once
    };
    this.#options.signal.addEventListener("abort", stop, { once: true });
    try {
      this.#armFromState();
      this.#awaitFirstClient();
      // One client at a time (the agent); timers run meanwhile.
      for (;;) {
        const connection = await this.#transport.accept();
        if (connection === null) break;
        clearTimeout(this.#firstClientTimer);
        this.#clients++;
        try {
          await this.#serve(connection);
        } finally {
          this.#clients--;
          connection.close();
        }
        this.#exitIfIdle();
      }
    } finally {
      clearTimeout(this.#firstClientTimer);
      this.#options.signal.removeEventListener("abort", stop);
      this.#disarm();
      await this.#ending;
    }
  }

  async #serve(connection: Connection): Promise<void> {
    let pending = "";
    for (;;) {
      await this.#readTurn();
      const result = await connection.read();
      if (result.type !== "data") return;
      pending += decoder.decode(result.bytes, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      if (lines.length > 0) {
        let state: { read: FrozenState | undefined } | undefined; // one look for all the lines
        const recorded = () => (state ??= { read: this.#engine.store.read() }).read;
        const replies = lines.map((line) => JSON.stringify(this.#answer(line, recorded)) + "\n");
        // The agent does not wait for the answers: it may have died since it armed (kept armed).
        if (!await answered(connection, replies.join(""))) return;
      }
      if (pending.length > 4096) return; // not our client
    }
  }

  /**
   * Resolves at once while nothing is armed (or once stopped); while armed, after the socket's
   * rest or at the disarming.
   */
  #readTurn(): Promise<void> {
    if (this.#armed === undefined || this.#options.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.#readNow = resolve;
      this.#rest = setTimeout(() => this.#letReaderIn(), this.#options.readRestMs ?? READ_REST_MS);
    });
  }

  #letReaderIn(): void {
    clearTimeout(this.#rest);
    this.#rest = undefined;
    const readNow = this.#readNow;
    this.#readNow = undefined;
    readNow?.();
  }

  #answer(line: string, recorded: () => FrozenState | undefined): WatchdogReply {
    let request: Partial<WatchdogRequest>;
    try {
      request = JSON.parse(line);
    } catch {
      return { error: "not a JSON request" };
    }
    if (typeof request.arm !== "string") return { error: "unknown request" };
    const state = recorded();
    if (state === undefined || state.cycle !== request.arm) {
      return { error: `cycle ${request.arm} is not recorded in ${this.#engine.store.paths.state}` };
    }
    if (state.deadline === null) return { error: `cycle ${state.cycle} has no deadline` };
    this.#arm(state.cycle, state.deadline);
    return { armed: state.cycle, deadline: state.deadline };
  }

  /** A cycle recorded before this watchdog started (a restart while frozen) is held too. */
  #armFromState(): void {
    const state = this.#engine.store.read();
    if (state?.deadline === null || state === undefined) return;
    this.#engine.log.info("holding the deadline of a recorded cycle", {
      cycle: state.cycle,
      deadline: new Date(state.deadline).toISOString(),
    });
    this.#arm(state.cycle, state.deadline);
  }

  #arm(cycle: string, deadline: number): void {
    this.#disarm();
    this.#armed = { cycle, deadline };
    const delay = Math.max(0, deadline - this.#engine.clock.now());
    this.#timer = setTimeout(() => this.#deadlineReached(cycle), delay);
    this.#check = setInterval(
      () => this.#checkInForce(),
      this.#options.checkIntervalMs ?? CHECK_INTERVAL_MS,
    );
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#check !== undefined) clearInterval(this.#check);
    this.#timer = undefined;
    this.#check = undefined;
    this.#armed = undefined;
    this.#letReaderIn();
  }

  /**
   * The look once a second: a cycle ended some other way (host thaw, local thaw, its state dir
   * removed) is let go, or a later one whose arming is still unread is held.
   */
  #checkInForce(): void {
    const armed = this.#armed;
    if (armed === undefined || this.#ending !== undefined) return;
    const recorded = this.#recorded();
    if (recorded?.cycle === armed.cycle) return;
    this.#disarm();
    if (recorded !== undefined) this.#arm(recorded.cycle, recorded.deadline);
    this.#exitIfIdle();
  }

  /** The cycle the state file records, if it has a deadline (a failing read counts as none). */
  #recorded(): { cycle: string; deadline: number } | undefined {
    try {
      const state = this.#engine.store.read();
      if (state === undefined || state.deadline === null) return undefined;
      return { cycle: state.cycle, deadline: state.deadline };
    } catch {
      return undefined;
    }
  }

  #deadlineReached(cycle: string): void {
    const engine = this.#engine;
    if (this.#check !== undefined) clearInterval(this.#check);
    this.#check = undefined;
    this.#ending = this.#endCycle(engine, cycle).finally(() => {
      this.#ending = undefined;
      this.#disarm();
      // A later cycle whose arming is still unread (the socket rests).
      const recorded = this.#recorded();
      if (recorded !== undefined && recorded.cycle !== cycle) {
        this.#arm(recorded.cycle, recorded.deadline);
      }
      this.#exitIfIdle();
    });
  }

  async #endCycle(engine: Engine, cycle: string): Promise<void> {
    try {
      const state = engine.store.read();
      if (state?.cycle !== cycle) return;
      engine.log.warn("fsfreeze-timeout expired; thawing", {
        cycle,
        timeout: engine.config.fsfreezeTimeout,
        mounts: state.mounts.length,
      });
      // Whoever holds the lock (the agent's own thaw, a local thaw) finishes first; then the
      // cycle is gone, or still ours to end.
      const ended = await endCycle(engine, "timeout", {
        cycle,
        waitMs: lockWaitMs(engine.config),
      });
      if (ended === undefined) engine.log.info("the cycle was ended by someone else", { cycle });
    } catch (err) {
      engine.log.error("thaw at the deadline failed", { cycle, error: (err as Error).message });
    }
  }

  /** An agent that started this watchdog and died before connecting leaves it nothing to do. */
  #awaitFirstClient(): void {
    if (this.#options.persistent) return;
    const waitMs = this.#options.firstClientWaitMs ?? FIRST_CLIENT_WAIT_MS;
    this.#firstClientTimer = setTimeout(() => this.#exitIfIdle(), waitMs);
  }

  /** A watchdog the agent started leaves once that agent has gone and nothing is armed. */
  #exitIfIdle(): void {
    if (this.#options.persistent) return;
    if (this.#clients > 0 || this.#armed !== undefined || this.#ending !== undefined) return;
    this.#transport.close();
  }
}
