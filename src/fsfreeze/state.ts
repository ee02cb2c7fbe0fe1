/**
 * The crash-safe freeze state in the state directory.
 *
 * `qga.state.isfrozen` exists exactly while a freeze cycle is in force (qemu-ga checks only its
 * existence; we also record the cycle in it as JSON: which mounts, when, the auto-thaw deadline).
 * Whoever thaws first *claims* the cycle by renaming it to `qga.state.isfrozen.thawing` — an atomic
 * rename has one winner, so the agent, its watchdog and the local `thaw` command never both run the
 * thaw hook. The claim file is removed when the thaw is complete; finding it at start-up means a
 * thaw was interrupted, which is treated like frozen.
 *
 * @module
 */

import { checkDirectory, checkOwnFileOrAbsent, writeFileAtomic } from "../safe_files.ts";

/** The state file name, as qemu-ga's. */
export const STATE_FILE = "qga.state.isfrozen";
/** The claimed (thaw in progress) state file. */
export const CLAIM_FILE = "qga.state.isfrozen.thawing";
/** The last cycle's report. */
export const REPORT_FILE = "fsfreeze-agent.report.json";

/** What the state file records. */
export interface FrozenState {
  version: 1;
  /** Unique id of the freeze cycle. */
  cycle: string;
  /** The agent that froze. */
  agentPid: number;
  /** When the cycle started (epoch ms). */
  startedAt: number;
  /** When the watchdog thaws (epoch ms); `null` = never. */
  deadline: number | null;
  /** The hook whose `freeze` ran (or is running): it is owed exactly one `thaw`. */
  hook: string | null;
  /** Mount points to thaw: planned before FIFREEZE, narrowed to the frozen ones afterwards. */
  mounts: string[];
  /** The watchdog process, if one was started. */
  watchdogPid: number | null;
}

/** Paths of the state files in a state directory. */
export interface StatePaths {
  state: string;
  claim: string;
  report: string;
}

/** The state file paths for `statedir`. */
export function statePaths(statedir: string): StatePaths {
  const dir = statedir.endsWith("/") ? statedir.slice(0, -1) : statedir;
  return {
    state: `${dir}/${STATE_FILE}`,
    claim: `${dir}/${CLAIM_FILE}`,
    report: `${dir}/${REPORT_FILE}`,
  };
}

/**
 * Refuses a state directory where another user could plant or replace the state files, and state
 * files that are not regular files of ours (a symlink, a FIFO, another user's file).
 * @throws {UnsafePathError}
 */
export function checkStatedir(statedir: string): void {
  checkDirectory(statedir, "state directory");
  const paths = statePaths(statedir);
  checkOwnFileOrAbsent(paths.state, "state file");
  checkOwnFileOrAbsent(paths.claim, "state file");
  checkOwnFileOrAbsent(paths.report, "report file");
}

/** Records the cycle (creating or replacing the state file). */
export function writeState(paths: StatePaths, state: FrozenState): void {
  writeFileAtomic(paths.state, JSON.stringify(state) + "\n");
}

/**
 * Reads a state or claim file. An empty or unreadable file (written by qemu-ga, or damaged) still
 * means "frozen": it yields a state with no cycle details.
 */
export function readState(path: string): FrozenState | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return parseState(text);
}

function parseState(text: string): FrozenState {
  try {
    const value = JSON.parse(text) as Partial<FrozenState>;
    if (value.version === 1 && typeof value.cycle === "string" && Array.isArray(value.mounts)) {
      return value as FrozenState;
    }
  } catch {
    // fall through: not ours
  }
  return {
    version: 1,
    cycle: "unknown",
    agentPid: 0,
    startedAt: 0,
    deadline: null,
    hook: null,
    mounts: [],
    watchdogPid: null,
  };
}

/** Whether the state file exists (an lstat: never touches file contents, as qemu-ga). */
export function stateExists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Claims the cycle for thawing. Returns the claimed state, or `undefined` when there was nothing
 * to claim (someone else claimed it first, or nothing is frozen).
 */
export function claimState(paths: StatePaths): FrozenState | undefined {
  try {
    Deno.renameSync(paths.state, paths.claim);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  return readState(paths.claim);
}

/** Ends a claimed cycle. */
export function releaseClaim(paths: StatePaths): void {
  removeIfExists(paths.claim);
}

/** Removes a file; a missing file is fine. */
export function removeIfExists(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** A new cycle id: time plus randomness, unique across restarts. */
export function newCycleId(now: number): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16).padStart(8, "0");
  return `${now.toString(36)}-${random}`;
}
