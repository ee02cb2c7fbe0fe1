/**
 * Starting a freeze cycle, in order, under the cycle lock: select the mounts, record the cycle
 * (one state write), arm the watchdog (before anything is frozen), run `hook freeze`, enter frozen
 * mode, FIFREEZE wave by wave. Every way it can fail ends the cycle: what was frozen is thawed
 * before the host hears the error, and the `thaw` hook the cycle is owed runs right after — in the
 * background, so the host waits for at most one hook deadline (docs/design.md, "failed freeze").
 *
 * @module
 */

import { genericError } from "../errors.ts";
import { finishCycle, type ThawedCycle, thawLockedCycle } from "./end_cycle.ts";
import { acquireLock, type Engine } from "./engine.ts";
import { cycleExpedites, expediteGracePeriods, restoreGracePeriods } from "./expedite.ts";
import type { FreezeOutcome } from "./freezer.ts";
import { type CycleReport, micros, mountReport, type ThawedBy } from "./report.ts";
import type { Selection } from "./selection.ts";
import { type CycleLock, type FrozenState, newCycleId } from "./state.ts";

/** The watchdog, as the freeze needs it: armed for a recorded cycle before anything freezes. */
export interface Arming {
  /**
   * Arms a watchdog for `state`'s cycle (recorded already). Resolves once the cycle is held even
   * if the agent dies the next moment: the arming is in a running watchdog's socket, or a watchdog
   * has just been started, which takes the recorded cycle from the state file as it comes up.
   * @throws {Error} when no watchdog could be reached or started
   */
  arm(state: FrozenState): Promise<Armed>;
}

/** An arming made. */
export interface Armed {
  /** Settles once a running watchdog holds the cycle; rejects if the one started never came up. */
  confirmed: Promise<void>;
}

/** What a freeze does around the engine. */
export interface FreezeContext {
  engine: Engine;
  /** Absent when the cycle has no deadline to hold, or in unit tests that need none. */
  watchdog?: Arming | undefined;
  /** Enter frozen mode (just before the first FIFREEZE). */
  enterFrozen(deadline: number | null): void;
  /** Leave frozen mode (the cycle ended before the freeze returned). */
  leaveFrozen(): void;
  /** The cycle's report changed (the agent serves it). */
  reported(report: CycleReport): void;
  /** Work that must finish before the agent's next freeze or thaw (a rollback's thaw hook). */
  defer(work: Promise<unknown>): void;
  /** Whether `report`'s cycle is still the agent's current, frozen one. */
  stillInForce(report: CycleReport): boolean;
}

/** How long a freeze waits for the end of the previous cycle (a thaw hook still running). */
const PREVIOUS_CYCLE_WAIT_MS = 5000;

/**
 * `guest-fsfreeze-freeze` (`mountpoints` undefined) and `-freeze-list`. Returns how many
 * filesystems froze.
 * @throws {AgentError} with qemu-ga's texts where qemu-ga has them
 */
export async function freezeCycle(
  ctx: FreezeContext,
  command: string,
  mountpoints?: readonly string[],
): Promise<number> {
  const { engine } = ctx;
  engine.log.info("guest-fsfreeze called", { command });
  const selection = select(engine, mountpoints);
  const lock = await acquireLock(engine, PREVIOUS_CYCLE_WAIT_MS);
  if (lock === undefined) {
    throw genericError("the previous freeze cycle is still being thawed; try again");
  }
  let handedOver = false;
  try {
    const cycle = startCycle(ctx, command, selection);
    return await runCycle(ctx, cycle, lock);
  } catch (err) {
    if (!(err instanceof HandedOver)) throw err;
    handedOver = true;
    throw genericError(err.message);
  } finally {
    if (!handedOver) lock.release();
  }
}

interface StartedCycle {
  state: FrozenState;
  report: CycleReport;
  selection: Selection;
}

function select(engine: Engine, mountpoints?: readonly string[]): Selection {
  try {
    return engine.mounts.select(mountpoints);
  } catch (err) {
    throw genericError(`failed to list mounts: ${(err as Error).message}`, { cause: err });
  }
}

/** Records the cycle and its report (under the lock). */
function startCycle(ctx: FreezeContext, command: string, selection: Selection): StartedCycle {
  const { engine } = ctx;
  const startedAt = engine.clock.now();
  const timeout = engine.config.fsfreezeTimeout;
  const deadline = timeout > 0 ? startedAt + timeout * 1000 : null;
  const state: FrozenState = {
    version: 1,
    cycle: newCycleId(startedAt),
    agentPid: Deno.pid,
    startedAt,
    deadline,
    hook: engine.config.fsfreezeHook ?? null,
    mounts: selection.mounts.map((m) => m.mountPoint),
  };
  if (cycleExpedites(engine)) state.expeditedGracePeriods = true;
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
  let recorded: boolean;
  try {
    recorded = engine.store.record(state);
  } catch (err) {
    throw genericError(
      `cannot record the freeze state in ${engine.config.statedir}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!recorded) {
    throw genericError(
      `a freeze cycle is already recorded in ${engine.store.paths.state}; thaw it first`,
    );
  }
  for (const skipped of selection.skipped) {
    engine.log.info("not freezing", { mount: skipped.mountPoint, reason: skipped.reason });
  }
  ctx.reported(report);
  return { state, report, selection };
}

async function runCycle(
  ctx: FreezeContext,
  cycle: StartedCycle,
  lock: CycleLock,
): Promise<number> {
  const { engine } = ctx;
  const { state, report } = cycle;
  const armed = await armWatchdog(ctx, state);

  // The application stalls from the freeze hook's start (or the first FIFREEZE) until thaw.
  const hookStartedAt = performance.now();
  if (state.hook !== null) {
    const phase = await engine.hooks.run(state.hook, "freeze", state.deadline);
    report.hooks.push(phase.report);
    if (phase.failure !== undefined) {
      fail(report, phase.failure);
      return failWith(ctx, cycle, lock, "rollback", [], phase.failure);
    }
  }
  if (deadlinePassed(engine, state)) {
    const error = "fsfreeze-timeout expired before the filesystems were frozen";
    fail(report, error);
    return failWith(ctx, cycle, lock, "timeout", [], error);
  }

  ctx.enterFrozen(state.deadline);
  let outcomes: FreezeOutcome[];
  expediteGracePeriods(engine, state);
  try {
    outcomes = await engine.freezer.freeze(cycle.selection.waves);
  } catch (err) {
    const error = `freeze failed: ${(err as Error).message}`;
    fail(report, error);
    return failWith(ctx, cycle, lock, "rollback", undefined, error);
  } finally {
    restoreGracePeriods(engine, state);
  }
  report.freezeWindowUs = micros(performance.now() - hookStartedAt);
  report.mounts.push(...outcomes.map((o) => mountReport(o, cycle.selection.mounts)));
  const frozen = outcomes.filter((o) => o.status === "frozen");
  report.frozenCount = frozen.length;
  for (const outcome of outcomes) logOutcome(engine, outcome);

  const failure = outcomes.find((o) => o.status === "failed");
  if (failure?.status === "failed") {
    const error = `failed to ${failure.step} ${failure.mountPoint}: ${failure.text}`;
    fail(report, error);
    return failWith(ctx, cycle, lock, "rollback", undefined, error);
  }
  const unarmed = await armingFailure(armed);
  if (unarmed !== undefined) {
    const error = `cannot start the thaw watchdog: ${unarmed}`;
    fail(report, error);
    return failWith(ctx, cycle, lock, "rollback", undefined, error);
  }
  if (deadlinePassed(engine, state)) {
    const error = "fsfreeze-timeout expired while the filesystems were being frozen";
    fail(report, error);
    return failWith(ctx, cycle, lock, "timeout", undefined, error);
  }
  if (frozen.length === 0) {
    // qemu-ga leaves the freeze hook's locks held here; the cycle is owed its thaw hook. Nothing
    // is FITHAWed: a mount skipped as already frozen belongs to whoever froze it.
    report.state = "thawed";
    const ended = thawLockedCycle(engine, state, "nothing-frozen", { mounts: [], report });
    ctx.reported((await finishCycle(engine, ended)).report);
    ctx.leaveFrozen();
    return 0;
  }
  report.state = "frozen";
  engine.log.info("filesystems frozen", {
    count: frozen.length,
    windowMs: (report.freezeWindowUs ?? 0) / 1000,
  });
  saveWhileInForce(ctx, report, frozen.map((o) => o.mountPoint));
  return frozen.length;
}

/**
 * Arms the watchdog before anything runs; a watchdog that is still starting is waited for only
 * before the reply (see {@link armingFailure}), while the hook and the FIFREEZEs run.
 */
async function armWatchdog(ctx: FreezeContext, state: FrozenState): Promise<Armed | undefined> {
  if (state.deadline === null || ctx.watchdog === undefined) return undefined;
  try {
    const armed = await ctx.watchdog.arm(state);
    armed.confirmed.catch(() => {}); // read by armingFailure, or moot once the cycle failed
    return armed;
  } catch (err) {
    ctx.engine.store.remove(); // nothing has run yet: no cycle to keep
    throw genericError(`cannot start the thaw watchdog: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Why the watchdog started for this cycle never came up, if it did not. */
async function armingFailure(armed: Armed | undefined): Promise<string | undefined> {
  try {
    await armed?.confirmed;
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

function deadlinePassed(engine: Engine, state: FrozenState): boolean {
  return state.deadline !== null && engine.clock.now() >= state.deadline;
}

function fail(report: CycleReport, error: string): void {
  report.state = "failed";
  report.error = error;
}

/**
 * A failed freeze: thaws now (`mounts` [] when nothing was frozen yet), leaves frozen mode and
 * throws the error for the host; the thaw hook and the rest of the cycle's end are deferred, and
 * release the lock when done.
 */
function failWith(
  ctx: FreezeContext,
  cycle: StartedCycle,
  lock: CycleLock,
  by: ThawedBy,
  mounts: readonly string[] | undefined,
  error: string,
): never {
  const { engine } = ctx;
  const options = mounts === undefined
    ? { report: cycle.report }
    : { mounts, report: cycle.report };
  const thawed: ThawedCycle = thawLockedCycle(engine, cycle.state, by, options);
  ctx.leaveFrozen();
  ctx.reported(cycle.report);
  const finishing = finishCycle(engine, thawed)
    .then((end) => ctx.reported(end.report))
    .catch((err) => engine.log.error("ending the failed cycle failed", { error: String(err) }))
    .finally(() => lock.release());
  ctx.defer(finishing);
  throw new HandedOver(error);
}

/** The thrown error of a failed freeze whose lock went to the deferred end of the cycle. */
class HandedOver extends Error {
  override name = "HandedOver";
}

/**
 * Saves the report of a frozen cycle off the freeze's path, right after the reply (the next
 * request does not wait for it), unless the cycle has ended meanwhile or the state dir is on a
 * frozen filesystem.
 */
function saveWhileInForce(ctx: FreezeContext, report: CycleReport, frozen: string[]): void {
  const { engine } = ctx;
  const timer = setTimeout(() => {
    if (!ctx.stillInForce(report) || engine.store.onFilesystemOf(frozen)) return;
    try {
      engine.store.saveReport(report);
    } catch (err) {
      engine.log.warn("cannot save the cycle report", { error: (err as Error).message });
    }
  }, 0);
  Deno.unrefTimer(timer);
}

function logOutcome(engine: Engine, outcome: FreezeOutcome): void {
  const fields = { mount: outcome.mountPoint, ms: outcome.durationMs.toFixed(3) };
  if (outcome.status === "frozen") engine.log.debug("frozen", fields);
  else engine.log.info(`freeze ${outcome.status}`, { ...fields, code: outcome.code });
}
