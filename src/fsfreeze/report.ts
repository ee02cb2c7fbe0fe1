/**
 * The report of a freeze cycle (docs/design.md #11): per hook run (path, phase, exit,
 * duration, output tail), per mount (frozen / skipped and why / failed with errno, durations) and
 * who thawed; how its parts are assembled from the outcomes. Served by the report command, printed
 * by `fsfreeze-agent status`, and kept in the state directory (state.ts).
 *
 * @module
 */

import type { FreezeOutcome, ThawOutcome } from "./freezer.ts";
import type { HookResult } from "./hook.ts";
import type { FrozenState } from "./state.ts";

/** Who ended a cycle. */
export type ThawedBy =
  | "host"
  | "timeout"
  | "signal"
  | "recovery"
  | "local"
  | "rollback"
  | "nothing-frozen";

/** One hook run. */
export interface HookReport {
  path: string;
  phase: "freeze" | "thaw";
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  startedAt: string;
  durationUs: number;
  /** The last lines of its output. */
  outputTail: string;
  /** Set when the hook could not be started (failed safety check, missing file). */
  error?: string;
}

/** One mount's part in the cycle. */
export interface MountReport {
  mountPoint: string;
  fsType?: string;
  status: "frozen" | "skipped" | "failed" | "not-frozen";
  /** Why it was skipped or failed. */
  reason?: string;
  errno?: number;
  code?: string;
  freezeUs?: number;
  thawed?: boolean;
  thawUs?: number;
}

/** The thaw that ended the cycle. */
export interface ThawReport {
  by: ThawedBy;
  at: string;
  /** Filesystems FITHAW thawed. */
  count: number;
  durationUs: number;
  /** Set when thawing found problems (e.g. a failed thaw hook). */
  warning?: string;
}

/** A whole cycle. */
export interface CycleReport {
  cycle: string;
  command: string;
  startedAt: string;
  /** `frozen` while in force; the outcome afterwards. */
  state: "freezing" | "frozen" | "thawed" | "failed";
  /** Filesystems frozen by the freeze command. */
  frozenCount: number;
  /** Epoch-based auto-thaw deadline, if any. */
  deadline: string | null;
  /** From the freeze hook's start to the last FIFREEZE done (the application stall). */
  freezeWindowUs?: number;
  error?: string;
  hooks: HookReport[];
  mounts: MountReport[];
  thaw?: ThawReport;
}

const TAIL_LINES = 20;
const TAIL_BYTES = 4096;

/** The last lines of hook output, bounded. */
export function outputTail(output: string): string {
  const tail = output.length > TAIL_BYTES ? output.slice(-TAIL_BYTES) : output;
  return tail.split("\n").slice(-TAIL_LINES - 1).join("\n").trimEnd();
}

/** A hook report from a hook result. */
export function hookReport(result: HookResult): HookReport {
  return {
    path: result.path,
    phase: result.phase,
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    startedAt: new Date(result.startedAt).toISOString(),
    durationUs: micros(result.durationMs),
    outputTail: outputTail(result.output),
  };
}

/** A hook report for a hook that could not be started. */
export function hookStartFailure(
  path: string,
  phase: "freeze" | "thaw",
  startedAt: number,
  error: string,
): HookReport {
  return {
    path,
    phase,
    exitCode: null,
    signal: null,
    timedOut: false,
    startedAt: new Date(startedAt).toISOString(),
    durationUs: micros(Date.now() - startedAt),
    outputTail: "",
    error,
  };
}

/** Milliseconds as whole microseconds (report durations are integers: exact on the wire). */
export function micros(ms: number): number {
  return Math.round(ms * 1000);
}

function ms(us: number): string {
  return (us / 1000).toFixed(3);
}

/** A freeze outcome as a report entry; `mounts` gives the fs type. */
export function mountReport(
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

/** What ending a cycle did, for {@link thawedReport}. */
export interface ThawDone {
  by: ThawedBy;
  at: number;
  count: number;
  outcomes: readonly ThawOutcome[];
  durationUs: number;
  hook: HookReport | undefined;
  hookFailure: string | undefined;
}

/** The report of a cycle once it ended: `base` plus the thaw. */
export function thawedReport(base: CycleReport, thaw: ThawDone): CycleReport {
  return {
    ...base,
    state: base.state === "failed" ? "failed" : "thawed",
    hooks: thaw.hook ? [...base.hooks, thaw.hook] : base.hooks,
    mounts: mergeThaw(base, thaw.outcomes),
    thaw: {
      by: thaw.by,
      at: new Date(thaw.at).toISOString(),
      count: thaw.count,
      durationUs: thaw.durationUs,
      ...(thaw.hookFailure ? { warning: `thaw hook failed: ${thaw.hookFailure}` } : {}),
    },
  };
}

function mergeThaw(report: CycleReport, outcomes: readonly ThawOutcome[]): MountReport[] {
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

/** A human-readable rendering for `fsfreeze-agent status`. */
export function renderReport(report: CycleReport): string {
  const lines = [
    `cycle ${report.cycle}: ${report.state} (${report.command}, started ${report.startedAt})`,
    `  frozen: ${report.frozenCount}` +
    (report.freezeWindowUs === undefined ? "" : `, freeze window ${ms(report.freezeWindowUs)} ms`) +
    (report.deadline ? `, auto-thaw at ${report.deadline}` : ""),
  ];
  if (report.error) lines.push(`  error: ${report.error}`);
  for (const hook of report.hooks) {
    const outcome = hook.error ??
      (hook.timedOut
        ? "timed out"
        : hook.signal
        ? `killed by ${hook.signal}`
        : `exit ${hook.exitCode}`);
    lines.push(`  hook ${hook.phase} ${hook.path}: ${outcome} in ${ms(hook.durationUs)} ms`);
    for (const line of hook.outputTail.split("\n").filter((l) => l !== "")) {
      lines.push(`    | ${line}`);
    }
  }
  for (const mount of report.mounts) {
    const detail = [
      mount.reason,
      mount.code,
      mount.freezeUs === undefined ? undefined : `freeze ${ms(mount.freezeUs)} ms`,
      mount.thawUs === undefined ? undefined : `thaw ${ms(mount.thawUs)} ms`,
    ].filter((part) => part !== undefined).join(", ");
    lines.push(`  mount ${mount.mountPoint}: ${mount.status}${detail ? ` (${detail})` : ""}`);
  }
  if (report.thaw) {
    lines.push(
      `  thawed by ${report.thaw.by} at ${report.thaw.at}: ${report.thaw.count} filesystems in ` +
        `${ms(report.thaw.durationUs)} ms${report.thaw.warning ? ` (${report.thaw.warning})` : ""}`,
    );
  }
  return lines.join("\n") + "\n";
}
