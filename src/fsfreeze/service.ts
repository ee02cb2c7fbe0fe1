/**
 * The freeze service the agent talks to: `guest-fsfreeze-status`, `-freeze`, `-freeze-list`,
 * `-thaw` and the report, crash recovery at start-up and the stop that never leaves filesystems
 * frozen. It owns the agent's frozen mode and runs one operation at a time (a rollback's deferred
 * thaw hook counts as part of the operation that failed); the steps of a cycle live in
 * freeze_cycle.ts and end_cycle.ts.
 *
 * @module
 */

import { genericError } from "../errors.ts";
import { CycleBusyError, endCycleThenRecord } from "./end_cycle.ts";
import { type Engine, lockWaitMs } from "./engine.ts";
import { restoreGracePeriods } from "./expedite.ts";
import { type Arming, freezeCycle } from "./freeze_cycle.ts";
import { FrozenMode, type HoldingLog } from "./frozen_mode.ts";
import { thawOrder } from "./ordering.ts";
import { type CycleReport, emptyReport, type ThawedBy } from "./report.ts";

/** What the freeze commands and the agent call. */
export interface FreezeService {
  /** Whether the agent is in frozen mode. */
  readonly frozen: boolean;
  /** The last (or current) cycle's report. */
  readonly report: CycleReport | undefined;
  /** `guest-fsfreeze-status`. */
  status(): "frozen" | "thawed";
  /** `guest-fsfreeze-freeze` and `guest-fsfreeze-freeze-list`. */
  freeze(command: string, mountpoints?: readonly string[]): Promise<number>;
  /** `guest-fsfreeze-thaw` (and every other way out of a cycle). */
  thaw(by: ThawedBy): Promise<number>;
}

/** What the service needs besides the engine. */
export interface ServiceOptions {
  /** The log whose file output frozen mode holds. */
  log: HoldingLog;
  /** Arms the watchdog (absent: no watchdog; the agent's own deadline timer still runs). */
  watchdog?: Arming | undefined;
  /** Frozen mode ended (deferred pidfile, log file). */
  onThawed?: () => void;
  /**
   * Runs work once the reply in progress is written (the agent's loop); resolves after it ran.
   * Default: right after the current step.
   */
  afterReply?: (work: () => void) => Promise<void>;
}

/** The freeze service of one agent. */
export class FreezeEngineService implements FreezeService {
  readonly #engine: Engine;
  readonly #watchdog: Arming | undefined;
  readonly #frozenMode: FrozenMode;
  readonly #afterReply: (work: () => void) => Promise<void>;
  #report: CycleReport | undefined;
  /** The operation in progress and its deferred work: the next one starts after it. */
  #queue: Promise<unknown> = Promise.resolve();
  #busy = 0;

  constructor(engine: Engine, options: ServiceOptions) {
    this.#engine = engine;
    this.#watchdog = options.watchdog;
    this.#afterReply = options.afterReply ?? ((work) => Promise.resolve().then(work));
    this.#frozenMode = new FrozenMode(options.log, {
      poll: () => this.#noticeOutsideThaw(),
      deadlinePassed: () => this.#ownDeadline(),
      ...(options.onThawed ? { thawed: options.onThawed } : {}),
    });
    this.#report = engine.store.loadReport();
  }

  get frozen(): boolean {
    this.#noticeOutsideThaw();
    return this.#frozenMode.active;
  }

  get report(): CycleReport | undefined {
    return this.#report;
  }

  status(): "frozen" | "thawed" {
    return this.frozen ? "frozen" : "thawed";
  }

  freeze(command: string, mountpoints?: readonly string[]): Promise<number> {
    return this.#exclusive(() =>
      freezeCycle(
        {
          engine: this.#engine,
          watchdog: this.#watchdog,
          enterFrozen: (deadline) => this.#frozenMode.enter(deadline, this.#engine.clock.now()),
          leaveFrozen: () => this.#frozenMode.leave(),
          reported: (report) => this.#report = report,
          defer: (work) => this.#defer(work),
          stillInForce: (report) =>
            this.#report === report && report.state === "frozen" && this.#frozenMode.active,
        },
        command,
        mountpoints,
      )
    );
  }

  thaw(by: ThawedBy): Promise<number> {
    return this.#exclusive(() => this.#thaw(by));
  }

  /**
   * Works out the mount selection now, off any freeze's path (the selector keeps it until the
   * kernel flags the mount table changed). A failure is left for the freeze to report.
   */
  readMountTable(): void {
    try {
      this.#engine.mounts.select();
    } catch {
      // the freeze that needs the table reads it again and says why it cannot
    }
  }

  /**
   * Start-up: a cycle left by a previous instance means frozen mode (as qemu-ga), keeping that
   * cycle's deadline: the watchdog is armed for it, or, if it has passed, the cycle ends now.
   * Nothing is written while the cycle stays in force (its filesystems may hold the state dir).
   */
  async recover(): Promise<void> {
    const { store, log, clock } = this.#engine;
    const state = store.read();
    if (state === undefined) return;
    restoreGracePeriods(this.#engine, state); // its FIFREEZEs ended with it
    log.warn(
      "previous instance appears to have exited with frozen filesystems; non-fsfreeze-safe " +
        `commands are disabled until guest-fsfreeze-thaw, or run 'fsfreeze-agent thaw'`,
      { state: store.paths.state, cycle: state.cycle },
    );
    const saved = this.#report?.cycle === state.cycle ? this.#report : undefined;
    this.#report = saved ?? emptyReport(state);
    this.#frozenMode.enter(state.deadline, clock.now());
    if (state.deadline !== null && state.deadline <= clock.now()) {
      log.warn("fsfreeze deadline passed while the agent was down; thawing now");
      await this.thaw("recovery");
    } else if (state.deadline !== null && this.#watchdog !== undefined) {
      try {
        await (await this.#watchdog.arm(state)).confirmed;
      } catch (err) {
        // The cycle stays recorded: the host's thaw, `fsfreeze-agent thaw`, or the agent's own
        // deadline timer ends it.
        log.error("no thaw watchdog for the recovered cycle", { error: (err as Error).message });
      }
    }
  }

  /** SIGTERM/SIGINT: finish what runs, and never exit frozen (qemu-ga ignores the signal). */
  async shutdown(): Promise<void> {
    await this.#queue;
    if (this.#frozenMode.active) {
      this.#engine.log.warn("stop requested while frozen; thawing first");
      await this.thaw("signal");
    }
    this.#frozenMode.leave();
    await this.settled();
  }

  /** Resolves once the operation in progress and its deferred work are done. */
  settled(): Promise<void> {
    return this.#queue.then(() => {});
  }

  async #thaw(by: ThawedBy): Promise<number> {
    const engine = this.#engine;
    let ended;
    try {
      ended = await endCycleThenRecord(engine, by, {
        report: this.#report,
        waitMs: lockWaitMs(engine.config),
      });
    } catch (err) {
      if (err instanceof CycleBusyError) throw genericError(err.message);
      throw err;
    }
    if (ended !== undefined) {
      // The report is saved after the reply; the next operation waits for it.
      this.#defer(this.#afterReply(ended.record));
      this.#report = ended.end.report;
      this.#frozenMode.leave();
      return ended.end.count;
    }
    if (this.#frozenMode.active) this.#adoptOutsideThaw();
    // Nothing of ours is frozen: FITHAW anyway (qemu-ga counts what it thawed), no hook.
    const count = engine.freezer.thaw(this.#thawCandidates()).filter((o) => o.thawed).length;
    engine.log.info("guest-fsthaw called", { by, count, hook: "not run (no freeze cycle)" });
    return count;
  }

  #thawCandidates(): string[] {
    try {
      return thawOrder(this.#engine.mounts.select().waves);
    } catch (err) {
      this.#engine.log.warn("cannot list mounts for thaw", { error: (err as Error).message });
      return [];
    }
  }

  /** Runs `operation` after everything before it, deferred work included. */
  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      this.#busy++;
      try {
        return await operation();
      } finally {
        this.#busy--;
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  #defer(work: Promise<unknown>): void {
    const previous = this.#queue;
    this.#queue = Promise.all([previous, work.catch(() => {})]);
  }

  /** A thaw done by the watchdog or `fsfreeze-agent thaw` ends frozen mode here too. */
  #noticeOutsideThaw(): void {
    if (!this.#frozenMode.active || this.#busy > 0) return;
    if (this.#engine.store.exists()) return;
    this.#adoptOutsideThaw();
  }

  #adoptOutsideThaw(): void {
    const saved = this.#engine.store.loadReport();
    if (saved !== undefined && saved.cycle === this.#report?.cycle) this.#report = saved;
    this.#engine.log.warn("filesystems were thawed outside the agent", {
      by: saved?.thaw?.by ?? "unknown",
    });
    this.#frozenMode.leave();
  }

  /** The watchdog let the deadline pass (it is gone, or slow): thaw here. */
  #ownDeadline(): void {
    if (!this.#frozenMode.active) return;
    this.#engine.log.warn("fsfreeze-timeout expired and the watchdog has not thawed; thawing");
    this.thaw("timeout").catch((err) => {
      this.#engine.log.error("thaw at the deadline failed", { error: (err as Error).message });
    });
  }
}
