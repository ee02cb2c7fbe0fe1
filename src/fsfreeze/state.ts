/**
 * The crash-safe freeze state in the state directory, and the lock that serializes everyone who
 * acts on it.
 *
 * `qga.state.isfrozen` exists exactly while a freeze cycle is in force (qemu-ga checks only its
 * existence; we also record the cycle in it as JSON: which mounts, when, the auto-thaw deadline,
 * the hook owed its `thaw`). The agent, its watchdog and the local `thaw` command act on a cycle
 * only while holding `fsfreeze-agent.lock` (flock(2)): whoever holds it ends the cycle and removes
 * the file; the others, once they get the lock, find no cycle. The kernel drops the lock of a
 * process that dies, so a successor never waits on a dead holder, and a cycle whose ender died
 * half-way is still recorded and is ended by the next one (a `thawHookStarted` mark keeps the thaw
 * hook from running twice).
 *
 * The state file is written through libc (src/linux/own_files.ts, docs/design.md #46). A cycle's
 * first record is created in place, one open and one write: until that write returns the file is
 * empty, which reads as "frozen, no details", right for a moment when nothing is frozen and no
 * hook has run yet. Later records (the thaw hook's mark) and the report replace theirs by rename.
 *
 * @module
 */

import { Errno, SyscallError } from "../linux/errno.ts";
import { close } from "../linux/fd.ts";
import { flock, fstat, LOCK_EX, LOCK_NB, openLockFile } from "../linux/locks.ts";
import {
  createFileExclusive,
  entryExists,
  readOwnFile,
  removeFile,
  renameFile,
} from "../linux/own_files.ts";
import { fileType } from "../linux/structs.ts";
import { checkDirectory, checkOwnFileOrAbsent, writeFileAtomic } from "../safe_files.ts";
import type { CycleReport } from "./report.ts";

/** The state file name, as qemu-ga's. */
export const STATE_FILE = "qga.state.isfrozen";
/** Where an earlier version kept a cycle it was thawing; found at start-up, it means frozen. */
export const LEGACY_CLAIM_FILE = "qga.state.isfrozen.thawing";
/** The last cycle's report. */
export const REPORT_FILE = "fsfreeze-agent.report.json";
/** The lock held while a cycle is started or ended. */
export const LOCK_FILE = "fsfreeze-agent.lock";
/** The watchdog's socket. */
export const WATCHDOG_SOCKET = "fsfreeze-agent.watchdog.sock";

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
  /** Mount points planned for FIFREEZE (a thaw also covers every mount in scope). */
  mounts: string[];
  /** Set by whoever ends the cycle just before it runs the thaw hook: it never runs twice. */
  thawHookStarted?: boolean;
  /**
   * The cycle sets `/sys/kernel/rcu_expedited` to 1 around its FIFREEZEs (it was 0): whoever ends
   * or recovers the cycle puts the 0 back if it is still 1 (expedite.ts).
   */
  expeditedGracePeriods?: boolean;
}

/** Paths of the files in a state directory. */
export interface StatePaths {
  state: string;
  legacyClaim: string;
  report: string;
  lock: string;
  watchdogSocket: string;
}

/** The state file paths for `statedir`. */
export function statePaths(statedir: string): StatePaths {
  const dir = statedir.endsWith("/") ? statedir.slice(0, -1) : statedir;
  return {
    state: `${dir}/${STATE_FILE}`,
    legacyClaim: `${dir}/${LEGACY_CLAIM_FILE}`,
    report: `${dir}/${REPORT_FILE}`,
    lock: `${dir}/${LOCK_FILE}`,
    watchdogSocket: `${dir}/${WATCHDOG_SOCKET}`,
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
  checkOwnFileOrAbsent(paths.legacyClaim, "state file");
  checkOwnFileOrAbsent(paths.report, "report file");
  checkOwnFileOrAbsent(paths.lock, "lock file");
}

/** A held cycle lock. */
export interface CycleLock {
  release(): void;
}

/** What the freeze engine keeps in the state directory (a fake in the policy's unit tests). */
export interface StateStore {
  readonly paths: StatePaths;
  /** The recorded cycle, if any. */
  read(): FrozenState | undefined;
  /** Whether a cycle is recorded (an lstat: never touches contents, as qemu-ga). */
  exists(): boolean;
  /**
   * Records a new cycle: creates the state file, never replacing one (then false, nothing
   * written) — one system call fewer than {@link exists} before {@link write}.
   */
  record(state: FrozenState): boolean;
  /** Rewrites the recorded cycle (temp file and rename: never half-written). */
  write(state: FrozenState): void;
  remove(): void;
  /** Takes the cycle lock if nobody holds it. */
  tryLock(): CycleLock | undefined;
  loadReport(): CycleReport | undefined;
  saveReport(report: CycleReport): void;
  /** Whether the state directory is on one of these (frozen) mounts' filesystems. */
  onFilesystemOf(mounts: readonly string[]): boolean;
}

/** The state store on files (the real one). */
export class FileStateStore implements StateStore {
  readonly paths: StatePaths;
  readonly #statedir: string;

  constructor(statedir: string) {
    this.paths = statePaths(statedir);
    this.#statedir = statedir;
  }

  read(): FrozenState | undefined {
    return readState(this.paths.state);
  }

  exists(): boolean {
    return entryExists(this.paths.state);
  }

  record(state: FrozenState): boolean {
    try {
      createFileExclusive(this.paths.state, encoder.encode(JSON.stringify(state) + "\n"), 0o600);
      return true;
    } catch (err) {
      if (err instanceof SyscallError && err.errno === Errno.EEXIST) return false;
      throw err;
    }
  }

  write(state: FrozenState): void {
    writeFileAtomic(this.paths.state, JSON.stringify(state) + "\n");
  }

  remove(): void {
    removeFile(this.paths.state);
  }

  /**
   * Start-up: a cycle an earlier version was thawing when it died is still owed its thaw; it
   * becomes the recorded cycle again (the state file wins if both exist).
   */
  adoptLegacyClaim(): void {
    if (!entryExists(this.paths.legacyClaim)) return;
    if (entryExists(this.paths.state)) removeFile(this.paths.legacyClaim);
    else renameFile(this.paths.legacyClaim, this.paths.state);
  }

  tryLock(): CycleLock | undefined {
    const fd = openLockFile(this.paths.lock);
    try {
      checkLockFile(fd, this.paths.lock);
      if (!flock(fd, LOCK_EX | LOCK_NB)) {
        close(fd);
        return undefined;
      }
    } catch (err) {
      close(fd);
      throw err;
    }
    let held = true;
    return {
      release: () => {
        if (held) close(fd); // closing the only descriptor drops the lock
        held = false;
      },
    };
  }

  loadReport(): CycleReport | undefined {
    try {
      const text = readOwnFile(this.paths.report);
      return text === undefined ? undefined : JSON.parse(text) as CycleReport;
    } catch {
      return undefined;
    }
  }

  saveReport(report: CycleReport): void {
    writeFileAtomic(this.paths.report, JSON.stringify(report, null, 2) + "\n");
  }

  onFilesystemOf(mounts: readonly string[]): boolean {
    return statedirFrozen(this.#statedir, mounts);
  }
}

/** The lock file must be a regular file of ours (openLockFile never follows a symlink). */
function checkLockFile(fd: number, path: string): void {
  const info = fstat(fd);
  if (fileType(info.mode) !== "file") {
    throw new Error(`lock file ${path} is not a regular file: remove it`);
  }
  if (info.uid !== 0 && info.uid !== Deno.uid()) {
    throw new Error(`lock file ${path} is owned by uid ${info.uid}: remove it`);
  }
}

/**
 * Reads a state file. An empty or unreadable file (written by qemu-ga, or damaged) still means
 * "frozen": it yields a state with no cycle details.
 */
export function readState(path: string): FrozenState | undefined {
  const text = readOwnFile(path);
  return text === undefined ? undefined : parseState(text);
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
  };
}

const encoder = new TextEncoder();

/** A new cycle id: time plus randomness, unique across restarts. */
export function newCycleId(now: number): string {
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16).padStart(8, "0");
  return `${now.toString(36)}-${random}`;
}

/**
 * Whether the state directory lives on one of `frozenMounts`' filesystems (or that cannot be
 * told): then nothing may be written there until thaw (a write would block, and nothing could
 * thaw it).
 */
export function statedirFrozen(statedir: string, frozenMounts: readonly string[]): boolean {
  let device: number;
  try {
    device = Deno.statSync(statedir).dev;
  } catch {
    return true; // unknown: assume the worst
  }
  return frozenMounts.some((mount) => {
    try {
      return Deno.statSync(mount).dev === device;
    } catch {
      return true;
    }
  });
}
