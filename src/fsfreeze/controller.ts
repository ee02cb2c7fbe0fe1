/**
 * The agent's freeze/thaw policy (docs/design.md #3–8, #11, #12, #23–25): mount selection, the
 * state file, the watchdog, the hook contract (exactly one `thaw` for each `freeze` that ran),
 * FIFREEZE with rollback, frozen mode, crash recovery and the cycle report.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import { genericError } from "../errors.ts";
import type { AgentLogger } from "../log.ts";
import { kill, Signal } from "../linux/process.ts";
import { emptyReport, runPhase, thawClaimed } from "./cycle.ts";
import { freezeMounts, type FreezeOutcome, thawMounts } from "./freezer.ts";
import {
  type CycleReport,
  loadReport,
  micros,
  type MountReport,
  saveReport,
  type ThawedBy,
} from "./report.ts";
import { selectMounts, thawOrder } from "./select.ts";
import {
  claimState,
  type FrozenState,
  newCycleId,
  readState,
  removeIfExists,
  stateExists,
  type StatePaths,
  statePaths,
  writeState,
} from "./state.ts";
import { statedirFrozen } from "./statedir.ts";
import { sleep } from "../sleep.ts";

/** How often a frozen agent looks for a thaw done by someone else (watchdog, local `thaw`). */
const EXTERNAL_THAW_POLL_MS = 1000;

/** Starts the watchdog process for a cycle; returns its handle. */
export type SpawnWatchdog = (cycle: string) => Deno.ChildProcess;

/** Hooks into the rest of the agent. */
export interface ControllerDeps {
  config: Config;
  log: AgentLogger;
  /** Starts the watchdog (main wires it to a copy of this program). */
  spawnWatchdog: SpawnWatchdog;
  /** Called when the agent leaves frozen mode (deferred pidfile, flushed logs). */
  onThawed?: () => void;
}

/** Freeze state and operations of one agent. */
export class FreezeController {
  #deps: ControllerDeps;
  #paths: StatePaths;
  #frozen = false;
  #report: CycleReport | undefined;
  #watchdog: Deno.ChildProcess | undefined;
  #poll: ReturnType<typeof setInterval> | undefined;
  #busy = false;

  constructor(deps: ControllerDeps) {
    this.#deps = deps;
    this.#paths = statePaths(deps.config.statedir);
    this.#report = loadReport(this.#paths.report);
  }

  /** Whether the agent is in frozen mode (only the freeze allowlist is enabled). */
  get frozen(): boolean {
    this.#noticeExternalThaw();
    return this.#frozen;
  }

  /** The last (or current) cycle's report. */
  get report(): CycleReport | undefined {
    return this.#report;
  }

  /**
   * Start-up: a state file left by a previous instance means frozen mode (as qemu-ga), keeping
   * that cycle's deadline: a new watchdog holds it, or, if it has passed, thaw at once.
   */
  async recover(): Promise<void> {
    const { log } = this.#deps;
    if (!stateExists(this.#paths.state) && stateExists(this.#paths.claim)) {
      // A thaw was interrupted: the cycle is still owed its thaw.
      Deno.renameSync(this.#paths.claim, this.#paths.state);
    }
    const state = readState(this.#paths.state);
    if (!state) return;
    log.warn(
      "previous instance appears to have exited with frozen filesystems; non-fsfreeze-safe " +
        `commands are disabled until guest-fsfreeze-thaw, or run 'fsfreeze-agent thaw'`,
      { state: this.#paths.state, cycle: state.cycle },
    );
    this.#enterFrozen();
    this.#report ??= emptyReport(state);
    if (state.deadline !== null && state.deadline <= Date.now()) {
      log.warn("fsfreeze deadline passed while the agent was down; thawing now");
      await this.thaw("recovery");
    } else if (state.deadline !== null) {
      try {
        this.#startWatchdog(state);
      } catch (err) {
        // The cycle stays recorded: the host's thaw, `fsfreeze-agent thaw` or a restart ends it.
        log.error("no thaw watchdog for the recovered cycle", { error: (err as Error).message });
      }
    }
  }

  /** `guest-fsfreeze-status`. */
  status(): "frozen" | "thawed" {
    return this.frozen ? "frozen" : "thawed";
  }

  /** `guest-fsfreeze-freeze` (no `mountpoints`) and `guest-fsfreeze-freeze-list`. */
  async freeze(command: string, mountpoints?: readonly string[]): Promise<number> {
    if (this.#busy) throw genericError("a freeze or thaw is already in progress");
    this.#busy = true;
    try {
      return await this.#freeze(command, mountpoints);
    } finally {
      this.#busy = false;
    }
  }

  async #freeze(command: string, mountpoints?: readonly string[]): Promise<number> {
    const { config, log } = this.#deps;
    log.info("guest-fsfreeze called", { command });
    const startedAt = Date.now();
    const selection = this.#select(mountpoints);
    const deadline = config.fsfreezeTimeout > 0 ? startedAt + config.fsfreezeTimeout * 1000 : null;
    const state: FrozenState = {
      version: 1,
      cycle: newCycleId(startedAt),
      agentPid: Deno.pid,
      startedAt,
      deadline,
      hook: config.fsfreezeHook ?? null,
      mounts: selection.mounts.map((m) => m.mountPoint),
      watchdogPid: null,
    };
    const report: CycleReport = {
      cycle: state.cycle,
      command,
      startedAt: new Date(startedAt).toISOString(),
      state: "freezing",
      frozenCount: 0,
      deadline: deadline === null ? null : new Date(deadline).toISOString(),
      hooks: [],
      mounts: [...selection.skipped],
    };
    this.#report = report;
    for (const skipped of selection.skipped) {
      log.info("not freezing", { mount: skipped.mountPoint, reason: skipped.reason });
    }
    this.#recordState(state);
    if (deadline !== null) {
      try {
        this.#startWatchdog(state);
      } catch (err) {
        removeIfExists(this.#paths.state); // nothing has run yet: no cycle to keep
        throw err;
      }
    }

    // The application stalls from the freeze hook's start (or the first FIFREEZE) until thaw.
    const hookStartedAt = performance.now();
    if (state.hook !== null) {
      const phase = await runPhase(config, state.hook, "freeze", deadline, log);
      report.hooks.push(phase.report);
      if (phase.failure !== undefined) {
        await this.#abandon(report, phase.failure);
        throw genericError(phase.failure);
      }
    }
    if (!stateExists(this.#paths.state)) {
      const error = "fsfreeze-timeout expired before the filesystems were frozen";
      this.#adoptExternalThaw();
      throw genericError(error);
    }

    this.#enterFrozen();
    const outcomes = await this.#freezeOrRollBack(selection.waves, report);
    report.freezeWindowUs = micros(performance.now() - hookStartedAt);
    report.mounts.push(...outcomes.map((o) => mountReport(o, selection.mounts)));
    const frozen = outcomes.filter((o) => o.status === "frozen");
    report.frozenCount = frozen.length;
    for (const o of outcomes) logOutcome(log, o);

    const failure = outcomes.find((o) => o.status === "failed");
    if (failure && failure.status === "failed") {
      const error = `failed to ${failure.step} ${failure.mountPoint}: ${failure.text}`;
      report.error = error;
      report.state = "failed";
      await this.thaw("rollback");
      throw genericError(error);
    }
    if (!stateExists(this.#paths.state)) {
      // The watchdog fired while FIFREEZE ran: undo what froze after its thaw pass.
      await this.thaw("timeout");
      throw genericError("fsfreeze-timeout expired while the filesystems were being frozen");
    }
    if (frozen.length === 0) {
      // qemu-ga leaves the freeze hook's locks held here; we owe it its thaw (docs/design.md #3).
      // Nothing is FITHAWed: a mount skipped as already frozen belongs to whoever froze it.
      report.state = "thawed";
      await this.#endUnfrozen(report, "nothing-frozen");
      return 0;
    }
    report.state = "frozen";
    this.#narrowState(state, frozen.map((o) => o.mountPoint), report);
    log.info("filesystems frozen", {
      count: frozen.length,
      windowMs: (report.freezeWindowUs ?? 0) / 1000,
    });
    return frozen.length;
  }

  async #freezeOrRollBack(waves: string[][], report: CycleReport): Promise<FreezeOutcome[]> {
    try {
      return await freezeMounts(waves);
    } catch (err) {
      report.state = "failed";
      report.error = `freeze failed: ${(err as Error).message}`;
      await this.thaw("rollback");
      throw genericError(report.error, { cause: err });
    }
  }

  /** `guest-fsfreeze-thaw` (and every other way out of a cycle). Returns how many thawed. */
  async thaw(by: ThawedBy): Promise<number> {
    const { config, log } = this.#deps;
    const claimed = claimState(this.#paths);
    const inScope = this.#thawCandidates();
    if (!claimed) {
      if (this.#frozen) await this.#waitForOtherThaw();
      // Nothing of ours is frozen: FITHAW anyway (qemu-ga counts what it thawed), no hook.
      const count = thawMounts(inScope).filter((o) => o.thawed).length;
      log.info("guest-fsthaw called", { by, count, hook: "not run (no freeze cycle)" });
      return count;
    }
    this.#stopWatchdog();
    const mounts = unique([...inScope, ...claimed.mounts.filter((m) => !inScope.includes(m))]);
    const report = this.#report?.cycle === claimed.cycle ? this.#report : undefined;
    const result = await thawClaimed(config, this.#paths, claimed, mounts, by, log, report);
    this.#report = result.report;
    this.#leaveFrozen();
    return result.count;
  }

  /** SIGTERM/SIGINT: never exit frozen (qemu-ga ignores the signal instead). */
  async shutdown(): Promise<void> {
    if (this.#frozen) {
      this.#deps.log.warn("stop requested while frozen; thawing first");
      await this.thaw("signal");
    }
    this.#stopPoll();
  }

  #select(mountpoints?: readonly string[]): ReturnType<typeof selectMounts> {
    try {
      return selectMounts(this.#deps.config, mountpoints);
    } catch (err) {
      throw genericError(`failed to list mounts: ${(err as Error).message}`, { cause: err });
    }
  }

  #thawCandidates(): string[] {
    try {
      return thawOrder(selectMounts(this.#deps.config).waves);
    } catch (err) {
      this.#deps.log.warn("cannot list mounts for thaw", { error: (err as Error).message });
      return [];
    }
  }

  #recordState(state: FrozenState): void {
    try {
      writeState(this.#paths, state);
    } catch (err) {
      throw genericError(
        `cannot record the freeze state in ${this.#deps.config.statedir}: ${
          (err as Error).message
        }`,
        { cause: err },
      );
    }
  }

  /** After the freeze: record exactly what froze, unless that would write to a frozen fs. */
  #narrowState(state: FrozenState, frozen: string[], report: CycleReport): void {
    if (statedirFrozen(this.#deps.config.statedir, frozen)) return;
    this.#recordState({ ...state, mounts: frozen, watchdogPid: this.#watchdog?.pid ?? null });
    saveReport(this.#paths.report, report);
  }

  /** The freeze hook failed: nothing was frozen; the hook still gets its `thaw`. */
  async #abandon(report: CycleReport, error: string): Promise<void> {
    report.state = "failed";
    report.error = error;
    await this.#endUnfrozen(report, "rollback");
  }

  /** Ends a cycle that froze nothing: no FITHAW, only the `thaw` hook it is owed. */
  async #endUnfrozen(report: CycleReport, by: ThawedBy): Promise<void> {
    const claimed = claimState(this.#paths);
    this.#stopWatchdog();
    if (!claimed) return this.#adoptExternalThaw();
    const result = await thawClaimed(
      this.#deps.config,
      this.#paths,
      { ...claimed, mounts: [] },
      [],
      by,
      this.#deps.log,
      report,
    );
    this.#report = result.report;
    this.#leaveFrozen();
  }

  /**
   * Starts the watchdog for `state`'s cycle. Its pid reaches the state file only with the
   * post-freeze record: rewriting the file here would cost every freeze a write, and on recovery
   * could write to a frozen filesystem.
   * @throws {AgentError} when the watchdog cannot be started
   */
  #startWatchdog(state: FrozenState): void {
    this.#stopWatchdog();
    let child: Deno.ChildProcess;
    try {
      child = this.#deps.spawnWatchdog(state.cycle);
    } catch (err) {
      throw genericError(`cannot start the thaw watchdog: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.#watchdog = child;
    child.status.then(() => {
      if (this.#watchdog === child) this.#watchdog = undefined;
      this.#noticeExternalThaw();
    });
  }

  #stopWatchdog(): void {
    const child = this.#watchdog;
    this.#watchdog = undefined;
    if (!child) return;
    try {
      kill(child.pid, Signal.SIGTERM);
    } catch {
      // already gone
    }
  }

  #enterFrozen(): void {
    if (this.#frozen) return;
    this.#deps.log.info("disabling logging to files due to filesystem freeze");
    this.#deps.log.holdFileWrites();
    this.#frozen = true;
    this.#poll = setInterval(() => this.#noticeExternalThaw(), EXTERNAL_THAW_POLL_MS);
    Deno.unrefTimer(this.#poll);
  }

  #leaveFrozen(): void {
    this.#stopPoll();
    if (!this.#frozen) return;
    this.#frozen = false;
    this.#deps.log.releaseFileWrites();
    this.#deps.log.info("logging to files re-enabled due to filesystem unfreeze");
    this.#deps.onThawed?.();
  }

  #stopPoll(): void {
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
  }

  /** A thaw done by the watchdog or `fsfreeze-agent thaw` ends frozen mode here too. */
  #noticeExternalThaw(): void {
    if (!this.#frozen || this.#busy) return;
    if (stateExists(this.#paths.state) || stateExists(this.#paths.claim)) return;
    this.#adoptExternalThaw();
  }

  #adoptExternalThaw(): void {
    const report = loadReport(this.#paths.report);
    if (report && report.cycle === this.#report?.cycle) this.#report = report;
    this.#deps.log.warn("filesystems were thawed outside the agent", {
      by: report?.thaw?.by ?? "unknown",
    });
    this.#watchdog = undefined;
    this.#leaveFrozen();
  }

  async #waitForOtherThaw(): Promise<void> {
    const limitMs = (this.#deps.config.fsfreezeHookTimeout + 10) * 1000;
    const until = Date.now() + limitMs;
    while (stateExists(this.#paths.claim) && Date.now() < until) {
      await sleep(50);
    }
    this.#adoptExternalThaw();
  }
}

function mountReport(
  outcome: FreezeOutcome,
  mounts: readonly { mountPoint: string; fsType: string }[],
): MountReport {
  const fsType = mounts.find((m) => m.mountPoint === outcome.mountPoint)?.fsType;
  const base = {
    mountPoint: outcome.mountPoint,
    ...(fsType ? { fsType } : {}),
    freezeUs: micros(outcome.durationMs),
  };
  switch (outcome.status) {
    case "frozen":
      return { ...base, status: "frozen" };
    case "skipped":
      return {
        ...base,
        status: "skipped",
        reason: outcome.code === "EBUSY" ? "already frozen" : "filesystem cannot freeze",
        errno: outcome.errno,
        code: outcome.code,
      };
    case "failed":
      return {
        ...base,
        status: "failed",
        reason: `${outcome.step}: ${outcome.text}`,
        errno: outcome.errno,
        code: outcome.code,
      };
  }
}

function logOutcome(log: AgentLogger, outcome: FreezeOutcome): void {
  const fields = { mount: outcome.mountPoint, ms: outcome.durationMs.toFixed(3) };
  if (outcome.status === "frozen") log.debug("frozen", fields);
  else log.info(`freeze ${outcome.status}`, { ...fields, code: outcome.code });
}

function unique(items: string[]): string[] {
  return [...new Set(items)];
}
