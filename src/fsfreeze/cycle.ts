/**
 * Steps shared by everyone who ends a freeze cycle — the agent, its watchdog process and the local
 * `thaw` command: running a hook phase with its deadline, and thawing a claimed cycle (FITHAW, then
 * the `thaw` hook it is owed, then the report).
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import type { Logger } from "../log.ts";
import { thawMounts, type ThawOutcome } from "./freezer.ts";
import { HookError, hookFailureText, type HookPhase, hookSucceeded, runHook } from "./hook.ts";
import {
  type CycleReport,
  type HookReport,
  hookReport,
  hookStartFailure,
  loadReport,
  micros,
  saveReport,
  type ThawedBy,
} from "./report.ts";
import { type FrozenState, releaseClaim, type StatePaths } from "./state.ts";

/** The outcome of one hook phase. */
export interface PhaseResult {
  report: HookReport;
  /** qemu-ga's error text when the hook failed. */
  failure: string | undefined;
}

/**
 * Runs `hook phase` under `fsfreeze-hook-timeout`. Hooks get `FSFREEZE_HOOK_DEADLINE` (epoch
 * seconds by which this run must end) and, while a cycle has an auto-thaw deadline,
 * `FSFREEZE_THAW_DEADLINE` (when the watchdog thaws if nobody else does).
 */
export async function runPhase(
  config: Config,
  hook: string,
  phase: HookPhase,
  thawDeadline: number | null,
  log: Logger,
): Promise<PhaseResult> {
  const startedAt = Date.now();
  const timeoutMs = config.fsfreezeHookTimeout * 1000;
  const env = hookEnvironment(startedAt, timeoutMs, thawDeadline);
  log.info("running fsfreeze hook", { hook, phase });
  try {
    const result = await runHook(hook, phase, { timeoutMs, env });
    const report = hookReport(result);
    const failure = hookSucceeded(result) ? undefined : hookFailureText(result);
    const fields = {
      hook,
      phase,
      exit: result.exitCode ?? result.signal ?? "?",
      ms: (report.durationUs / 1000).toFixed(3),
    };
    if (failure === undefined) log.info("fsfreeze hook done", fields);
    else log.warn("fsfreeze hook failed", { ...fields, error: failure });
    return { report, failure };
  } catch (err) {
    if (!(err instanceof HookError)) throw err;
    const failure = hookFailureText(err);
    log.warn("fsfreeze hook could not run", { hook, phase, error: failure });
    return { report: hookStartFailure(hook, phase, startedAt, failure), failure };
  }
}

/** The hook is told to finish this long before the agent kills it, so it can clean up itself. */
const HOOK_DEADLINE_MARGIN_MS = 3000;

function hookEnvironment(
  startedAt: number,
  timeoutMs: number,
  thawDeadline: number | null,
): Record<string, string> {
  const env: Record<string, string> = {};
  const margin = timeoutMs > 2 * HOOK_DEADLINE_MARGIN_MS ? HOOK_DEADLINE_MARGIN_MS : 0;
  const hookDeadline = timeoutMs > 0 ? startedAt + timeoutMs - margin : thawDeadline;
  if (hookDeadline !== null) env.FSFREEZE_HOOK_DEADLINE = String(Math.floor(hookDeadline / 1000));
  if (thawDeadline !== null) env.FSFREEZE_THAW_DEADLINE = String(Math.floor(thawDeadline / 1000));
  return env;
}

/** Who thawed, and what was done. */
export interface ThawResult {
  count: number;
  outcomes: ThawOutcome[];
  hook: PhaseResult | undefined;
  report: CycleReport;
}

/**
 * Thaws a claimed cycle: FITHAW on `mounts` (in the order given), then the `thaw` hook if the
 * state says a `freeze` hook ran, then saves the report and releases the claim. A failing thaw
 * hook is logged and reported, never turned into a failure (docs/design.md #4).
 */
export async function thawClaimed(
  config: Config,
  paths: StatePaths,
  state: FrozenState,
  mounts: readonly string[],
  by: ThawedBy,
  log: Logger,
  report: CycleReport | undefined,
): Promise<ThawResult> {
  const started = performance.now();
  const outcomes = thawMounts([...mounts]);
  const count = outcomes.filter((o) => o.thawed).length;
  log.info("filesystems thawed", { by, count });
  const hook = state.hook === null
    ? undefined
    : await runPhase(config, state.hook, "thaw", null, log);
  const full = report ?? loadReport(paths.report);
  const base: CycleReport = full?.cycle === state.cycle ? full : emptyReport(state);
  const thawed: CycleReport = {
    ...base,
    state: base.state === "failed" ? "failed" : "thawed",
    hooks: hook ? [...base.hooks, hook.report] : base.hooks,
    mounts: mergeThaw(base, outcomes),
    thaw: {
      by,
      at: new Date().toISOString(),
      count,
      durationUs: micros(performance.now() - started),
      ...(hook?.failure ? { warning: `thaw hook failed: ${hook.failure}` } : {}),
    },
  };
  saveReport(paths.report, thawed);
  releaseClaim(paths);
  return { count, outcomes, hook, report: thawed };
}

function mergeThaw(report: CycleReport, outcomes: readonly ThawOutcome[]): CycleReport["mounts"] {
  const mounts = report.mounts.map((m) => ({ ...m }));
  for (const outcome of outcomes) {
    let entry = mounts.find((m) => m.mountPoint === outcome.mountPoint);
    if (!entry) {
      if (!outcome.thawed) continue; // thawing an unfrozen mount is no news
      entry = { mountPoint: outcome.mountPoint, status: "not-frozen" };
      mounts.push(entry);
    }
    entry.thawed = outcome.thawed;
    entry.thawUs = micros(outcome.durationMs);
  }
  return mounts;
}

/** A report for a cycle whose freeze side is unknown (the agent that froze is gone). */
export function emptyReport(state: FrozenState): CycleReport {
  return {
    cycle: state.cycle,
    command: "guest-fsfreeze-freeze",
    startedAt: new Date(state.startedAt).toISOString(),
    state: "frozen",
    frozenCount: state.mounts.length,
    deadline: state.deadline === null ? null : new Date(state.deadline).toISOString(),
    hooks: [],
    mounts: state.mounts.map((mountPoint) => ({ mountPoint, status: "frozen" })),
  };
}
