/**
 * One snapshot cycle through the real agent, as a backup tool drives it: freeze the scene's loop
 * mount with `guest-fsfreeze-freeze`, read the load's acknowledged ids the moment the reply
 * arrives, copy the frozen loop image, thaw, and fetch the cycle's report. While the copy runs, a
 * child whose write to the mount must stay blocked proves that the filesystem was frozen for the
 * whole copy.
 *
 * Safety: the mount's watchdog is armed before every freeze, and any failure between freeze and
 * thaw thaws through the agent and then directly before it is rethrown.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { CycleReport } from "../../src/fsfreeze/report.ts";
import { type AgentProcess, withTimeout } from "./agent.ts";
import { type BlockedWrite, type LoopMounts, startBlockedWrite } from "./loopfs.ts";
import { copyImage, type ImageSnapshot } from "./snapshot.ts";
import type { WriteLoad } from "./write_load.ts";

/** The extension command that returns the last cycle's report. */
export const REPORT_COMMAND = "__io.github.fsfreeze-agent_guest-fsfreeze-report";
/** Seconds after each freeze at which the watchdog thaws the mount whatever happens. */
const WATCHDOG_SECONDS = 60;
const encoder = new TextEncoder();

/** The `return` of a command's reply; fails the test on an error reply. */
export async function returned(
  agent: AgentProcess,
  execute: string,
  timeoutMs = 60_000,
): Promise<unknown> {
  const reply = await agent.request({ execute }, timeoutMs);
  assert.ok("return" in reply, `${execute}: ${JSON.stringify(reply)}`);
  return reply.return;
}

/** The report of the agent's last freeze cycle. */
export async function lastReport(agent: AgentProcess): Promise<CycleReport> {
  return await returned(agent, REPORT_COMMAND) as CycleReport;
}

/**
 * The report once its cycle has ended (a failed freeze's thaw hook runs after the error reply),
 * waiting up to 60 s.
 */
export async function endedReport(agent: AgentProcess): Promise<CycleReport> {
  const until = Date.now() + 60_000;
  for (;;) {
    const report = await lastReport(agent);
    if (report.thaw !== undefined || Date.now() > until) return report;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Prints a line of test output (measurements) on stderr. */
export function note(line: string): void {
  Deno.stderr.writeSync(encoder.encode(`${line}\n`));
}

/** What one cycle produced. */
export interface FrozenCopy {
  /** The copy of the image, taken while frozen; the caller disposes it. */
  snapshot: ImageSnapshot;
  /** Ids the load had acknowledged when the freeze reply arrived. */
  acked: number[];
  /** The cycle's report, fetched after thaw. */
  report: CycleReport;
}

/**
 * Freezes `mounts.mounts[0]` (the agent's whole scope) through `agent`, copies
 * `mounts.images[0]`, thaws through the agent, and checks the agent's replies and report.
 */
export async function freezeCopyThaw(
  agent: AgentProcess,
  mounts: LoopMounts,
  load: WriteLoad,
): Promise<FrozenCopy> {
  const [mount, image] = [mounts.mounts[0], mounts.images[0]];
  assert.ok(mount !== undefined && image !== undefined && mounts.mounts.length === 1);
  await mounts.armWatchdog(WATCHDOG_SECONDS);
  let thawed = false;
  let snapshot: ImageSnapshot | undefined;
  let blocked: BlockedWrite | undefined;
  try {
    assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
    const acked = await load.acked();
    blocked = startBlockedWrite(`${mount}/snapshot-canary`);
    assert.equal(await blocked.waitUntilBlocked(), true, "the mount is not frozen");
    snapshot = await copyImage(image);
    assert.equal(blocked.isBlocked(), true, "the mount was thawed during the copy");
    assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
    thawed = true;
    await withTimeout(blocked.done, 10_000, "the blocked write after thaw");
    const report = await lastReport(agent);
    assert.equal(report.frozenCount, 1);
    assert.equal(report.thaw?.by, "host");
    return { snapshot, acked, report };
  } catch (err) {
    if (!thawed) await thawAnyway(agent, mounts);
    await Promise.resolve(snapshot?.[Symbol.asyncDispose]()).catch(() => {});
    throw err;
  } finally {
    if (blocked !== undefined && !blocked.finished()) await blocked.kill();
  }
}

/** Thaws after a failure: through the agent (it runs the thaw hook), then directly. */
async function thawAnyway(agent: AgentProcess, mounts: LoopMounts): Promise<void> {
  await agent.request({ execute: "guest-fsfreeze-thaw" }, 30_000).catch(() => {});
  await mounts.thawAll();
}

/** `min/median/max` of some microsecond values, in milliseconds. */
export function summarizeUs(values: number[]): string {
  const sorted = values.toSorted((a, b) => a - b);
  const ms = (us: number | undefined): string => ((us ?? NaN) / 1000).toFixed(1);
  return `min ${ms(sorted[0])} / median ${ms(sorted[Math.floor(sorted.length / 2)])} / ` +
    `max ${ms(sorted.at(-1))} ms`;
}
