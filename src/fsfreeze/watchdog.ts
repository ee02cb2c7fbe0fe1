/**
 * The thaw watchdog (docs/design.md #5): a separate process, started by the agent for each freeze
 * cycle with an auto-thaw deadline. It outlives the agent (own process group), so the deadline
 * holds even when the agent is SIGKILLed or OOM-killed while frozen.
 *
 * It only stats the state file until the deadline; then it claims the cycle (atomic rename: if
 * the agent or the local `thaw` got there first, it does nothing), thaws the recorded mounts, runs
 * the `thaw` hook the cycle is owed and leaves the report. It never writes while filesystems are
 * frozen. SIGTERM before the deadline (the agent thawed) makes it exit at once.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import type { Logger } from "../log.ts";
import { thawClaimed } from "./cycle.ts";
import { claimState, readState, stateExists, statePaths } from "./state.ts";
import { sleep } from "../sleep.ts";

/** How often the watchdog checks that its cycle is still in force. */
const CHECK_INTERVAL_MS = 1000;

/** What happened. */
export type WatchdogOutcome = "thawed" | "not-needed";

/** Waits for the deadline of `cycle`, then thaws it unless someone else did. */
export async function runWatchdog(
  config: Config,
  cycle: string,
  log: Logger,
  signal: AbortSignal,
): Promise<WatchdogOutcome> {
  const paths = statePaths(config.statedir);
  const state = readState(paths.state);
  if (!state || state.cycle !== cycle || state.deadline === null) return "not-needed";
  const deadline = state.deadline;
  while (Date.now() < deadline) {
    if (signal.aborted || !stateExists(paths.state)) return "not-needed";
    await sleep(Math.min(CHECK_INTERVAL_MS, deadline - Date.now()), signal);
  }
  if (signal.aborted) return "not-needed";
  const claimed = claimState(paths);
  if (!claimed) return "not-needed";
  if (claimed.cycle !== cycle) {
    // A newer cycle replaced ours between the check and the claim: it is not ours to end.
    Deno.renameSync(paths.claim, paths.state);
    return "not-needed";
  }
  log.warn("fsfreeze-timeout expired; thawing", {
    cycle,
    timeout: config.fsfreezeTimeout,
    mounts: claimed.mounts.length,
  });
  await thawClaimed(config, paths, claimed, claimed.mounts, "timeout", log, undefined);
  return "thawed";
}
