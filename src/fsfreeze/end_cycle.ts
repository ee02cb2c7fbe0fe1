/**
 * Ending a freeze cycle — the one way out of a cycle, used by the agent (host thaw, rollback,
 * SIGTERM, recovery), its watchdog (the deadline) and the local `thaw` command: under the cycle
 * lock, FITHAW (ordering.ts decides what and in which order), then the `thaw` hook the cycle is
 * owed — at most once, even if an earlier ender died half-way — then the report, then the state
 * file goes. A failing thaw hook is logged and reported, never turned into a failure
 * (docs/design.md #4).
 *
 * @module
 */

import { acquireLock, type Engine } from "./engine.ts";
import { restoreGracePeriods } from "./expedite.ts";
import type { ThawOutcome } from "./freezer.ts";
import type { PhaseResult } from "./hook_phase.ts";
import { thawList } from "./ordering.ts";
import { type CycleReport, emptyReport, micros, type ThawedBy, thawedReport } from "./report.ts";
import type { FrozenState } from "./state.ts";

/** How a cycle was ended. */
export interface CycleEnd {
  /** Filesystems FITHAW thawed. */
  count: number;
  outcomes: ThawOutcome[];
  hook: PhaseResult | undefined;
  report: CycleReport;
}

/** Options of {@link endCycle} and {@link thawLockedCycle}. */
export interface EndOptions {
  /** End only this cycle (a watchdog must not end a newer one). */
  cycle?: string;
  /** FITHAW exactly these (`[]`: a cycle that froze nothing); default: ordering.ts's thaw list. */
  mounts?: readonly string[];
  /** The freezing agent's own report of the cycle (else the saved one, else a bare one). */
  report?: CycleReport | undefined;
}

/** Someone else holds the cycle lock and did not finish in time. */
export class CycleBusyError extends Error {
  override name = "CycleBusyError";
}

/**
 * Takes the cycle lock (waiting up to `waitMs`) and ends the recorded cycle; `undefined` when
 * there is none (nothing frozen, or someone else ended it first).
 * @throws {CycleBusyError} when the lock stayed taken
 */
export async function endCycle(
  engine: Engine,
  by: ThawedBy,
  options: EndOptions & { waitMs: number; signal?: AbortSignal },
): Promise<CycleEnd | undefined> {
  const lock = await acquireLock(engine, options.waitMs, options.signal);
  if (lock === undefined) {
    throw new CycleBusyError("the freeze cycle is being ended by another process");
  }
  try {
    const state = engine.store.read();
    if (state === undefined) return undefined;
    if (options.cycle !== undefined && state.cycle !== options.cycle) return undefined;
    return await finishCycle(engine, thawLockedCycle(engine, state, by, options));
  } finally {
    lock.release();
  }
}

/**
 * {@link endCycle} for the agent: returns once the cycle has ended — thawed, its thaw hook run,
 * its state file removed — so the host's reply goes out at once; `record` saves its report, which
 * the agent does after the reply and before its next operation.
 * @throws {CycleBusyError} when the lock stayed taken
 */
export async function endCycleThenRecord(
  engine: Engine,
  by: ThawedBy,
  options: EndOptions & { waitMs: number; signal?: AbortSignal },
): Promise<{ end: CycleEnd; record: () => void } | undefined> {
  const lock = await acquireLock(engine, options.waitMs, options.signal);
  if (lock === undefined) {
    throw new CycleBusyError("the freeze cycle is being ended by another process");
  }
  let end: CycleEnd;
  try {
    const state = engine.store.read();
    if (state === undefined) return undefined;
    if (options.cycle !== undefined && state.cycle !== options.cycle) return undefined;
    end = await runThawHook(engine, thawLockedCycle(engine, state, by, options));
    engine.store.remove();
  } finally {
    lock.release();
  }
  return { end, record: () => saveReportQuietly(engine, end.report) };
}

/** A cycle thawed but not yet finished: its thaw hook, report and state removal are due. */
export interface ThawedCycle {
  state: FrozenState;
  by: ThawedBy;
  outcomes: ThawOutcome[];
  startedAt: number;
  report: CycleReport | undefined;
}

/** The first part of ending a cycle whose lock the caller holds: FITHAW. */
export function thawLockedCycle(
  engine: Engine,
  state: FrozenState,
  by: ThawedBy,
  options: EndOptions = {},
): ThawedCycle {
  const startedAt = performance.now();
  const mounts = options.mounts ?? thawList(currentWaves(engine), state.mounts);
  const outcomes = engine.freezer.thaw(mounts);
  restoreGracePeriods(engine, state); // a no-op unless the cycle's freezer died before it could
  const count = outcomes.filter((o) => o.thawed).length;
  engine.log.info("filesystems thawed", { by, count });
  return { state, by, outcomes, startedAt, report: options.report };
}

/**
 * The rest, still under the caller's lock: the thaw hook (marked started first, so a successor
 * never runs it again), the report, and the state file removed.
 */
export async function finishCycle(engine: Engine, thawed: ThawedCycle): Promise<CycleEnd> {
  const end = await runThawHook(engine, thawed);
  recordEnd(engine, end.report);
  return end;
}

/** The thaw hook the cycle is owed, and the report of the whole cycle. */
async function runThawHook(engine: Engine, thawed: ThawedCycle): Promise<CycleEnd> {
  const { state, by, outcomes } = thawed;
  const hook = await thawHookOnce(engine, state);
  const base = baseReport(engine, state, thawed.report);
  const report = thawedReport(base, {
    by,
    at: engine.clock.now(),
    count: outcomes.filter((o) => o.thawed).length,
    outcomes,
    durationUs: micros(performance.now() - thawed.startedAt),
    hook: hook?.report,
    hookFailure: hook?.failure,
  });
  return { count: report.thaw?.count ?? 0, outcomes, hook, report };
}

/** The cycle is over: its report kept, its state file gone. */
function recordEnd(engine: Engine, report: CycleReport): void {
  saveReportQuietly(engine, report);
  engine.store.remove();
}

async function thawHookOnce(engine: Engine, state: FrozenState): Promise<PhaseResult | undefined> {
  if (state.hook === null) return undefined;
  if (state.thawHookStarted) {
    engine.log.warn("the thaw hook was already started by an earlier thaw that did not finish", {
      cycle: state.cycle,
    });
    return undefined;
  }
  engine.store.write({ ...state, thawHookStarted: true });
  return await engine.hooks.run(state.hook, "thaw", null);
}

function baseReport(
  engine: Engine,
  state: FrozenState,
  own: CycleReport | undefined,
): CycleReport {
  if (own?.cycle === state.cycle) return own;
  const saved = engine.store.loadReport();
  return saved?.cycle === state.cycle ? saved : emptyReport(state);
}

function currentWaves(engine: Engine): string[][] | undefined {
  try {
    return engine.mounts.select().waves;
  } catch (err) {
    // The recorded mounts are still thawed.
    engine.log.warn("cannot list mounts for thaw", { error: (err as Error).message });
    return undefined;
  }
}

function saveReportQuietly(engine: Engine, report: CycleReport): void {
  try {
    engine.store.saveReport(report);
  } catch (err) {
    engine.log.warn("cannot save the cycle report", { error: (err as Error).message });
  }
}
