/**
 * One phase of the hook contract: `hook freeze` or `hook thaw` under `fsfreeze-hook-timeout`, with
 * the deadlines in its environment, turned into a report entry and, when it failed, qemu-ga's
 * error text. Running the process is hook.ts; when a phase runs is the cycle's policy.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { HookError, hookFailureText, type HookPhase, hookSucceeded, runHook } from "./hook.ts";
import { type HookReport, hookReport, hookStartFailure } from "./report.ts";

/** The outcome of one hook phase. */
export interface PhaseResult {
  report: HookReport;
  /** qemu-ga's error text when the hook failed. */
  failure: string | undefined;
}

/** Runs hook phases (the real one: {@link runPhase}; a fake in the policy's unit tests). */
export interface HookRunner {
  run(hook: string, phase: HookPhase, thawDeadline: number | null): Promise<PhaseResult>;
}

/** The hook runner of a configuration. */
export function hookRunner(hookTimeoutSeconds: number, log: Logger): HookRunner {
  return {
    run: (hook, phase, deadline) => runPhase(hook, phase, deadline, hookTimeoutSeconds, log),
  };
}

/**
 * Runs `hook phase` under `fsfreeze-hook-timeout`. Hooks get `FSFREEZE_HOOK_DEADLINE` (epoch
 * seconds by which this run must end) and, while a cycle has an auto-thaw deadline,
 * `FSFREEZE_THAW_DEADLINE` (when the watchdog thaws if nobody else does).
 */
export async function runPhase(
  hook: string,
  phase: HookPhase,
  thawDeadline: number | null,
  hookTimeoutSeconds: number,
  log: Logger,
): Promise<PhaseResult> {
  const startedAt = Date.now();
  const timeoutMs = hookTimeoutSeconds * 1000;
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
