/**
 * The agent's scheduling priority (docs/design.md #50). A freeze stalls every writer in the guest
 * until the thaw, and on a guest whose CPUs are busy the agent's threads (one per FIFREEZE, and the
 * event loop between them) wait behind that load, stretching the stall. So an agent started at
 * the default niceness raises every thread of its own to {@link RAISED_NICE} once it is serving;
 * threads it starts later inherit that. An agent started at another niceness was placed there on
 * purpose (systemd's `Nice=`, nice(1)) and keeps it. What the agent starts on behalf of others (a
 * hook, a shutdown helper) runs at the niceness the agent started with, and so does the watchdog,
 * which then decides for itself.
 *
 * @module
 */

import { SyscallError } from "./linux/errno.ts";
import { ownThreadIds, setThreadNice, threadNice } from "./linux/process.ts";

/** The niceness a default-started agent raises itself to. */
export const RAISED_NICE = -10;

/** How many times the thread list is read again for threads that appeared meanwhile. */
const MAX_PASSES = 3;

/** The kernel calls the mechanism makes; real by default, fakes in the policy's unit tests. */
export interface PriorityMechanism {
  /** Niceness of thread `tid` (0: the calling thread). */
  threadNice(tid?: number): number;
  /** Sets the niceness of thread `tid` (0: the calling thread). */
  setThreadNice(tid: number, nice: number): void;
  /** The ids of the process's threads. */
  threadIds(): number[];
}

const LINUX: PriorityMechanism = { threadNice, setThreadNice, threadIds: ownThreadIds };

/** What {@link AgentPriority.raise} did. */
export type RaiseOutcome =
  | { readonly raised: true; readonly nice: number; readonly threads: number }
  | { readonly raised: false; readonly nice: number; readonly reason: string };

/** The agent's niceness: raised once, and lowered again around what it starts for others. */
export class AgentPriority {
  readonly #mechanism: PriorityMechanism;
  #startNice: number | undefined;
  #raised = false;

  constructor(mechanism: PriorityMechanism = LINUX) {
    this.#mechanism = mechanism;
  }

  /** Whether the agent's threads run at {@link RAISED_NICE}. */
  get raised(): boolean {
    return this.#raised;
  }

  /**
   * Raises every thread of the process, when it started at niceness 0. A refusal (no
   * CAP_SYS_NICE) leaves every thread as it was.
   */
  raise(): RaiseOutcome {
    if (this.#raised) return { raised: true, nice: RAISED_NICE, threads: 0 };
    const nice = this.#startNice ??= this.#mechanism.threadNice();
    if (nice !== 0) return { raised: false, nice, reason: "started at a chosen niceness" };
    const done = new Set<number>();
    try {
      for (let pass = 0; pass < MAX_PASSES && this.#raiseNew(done); pass++);
    } catch (err) {
      this.#lower(done);
      if (!(err instanceof SyscallError)) throw err;
      return { raised: false, nice, reason: err.message };
    }
    this.#raised = true;
    return { raised: true, nice: RAISED_NICE, threads: done.size };
  }

  /**
   * Runs `spawn` (which must start its process synchronously, as `Deno.Command`'s `spawn()` and
   * `output()` do on the calling thread) at the niceness the agent started with, so the child
   * inherits that rather than the agent's raised one.
   */
  spawnAtStartPriority<T>(spawn: () => T): T {
    if (!this.#raised) return spawn();
    this.#mechanism.setThreadNice(0, this.#startNice ?? 0);
    try {
      return spawn();
    } finally {
      this.#raiseCallingThread();
    }
  }

  /** Raises the threads not raised yet; whether there were any. */
  #raiseNew(done: Set<number>): boolean {
    let found = false;
    for (const tid of this.#mechanism.threadIds()) {
      if (done.has(tid)) continue;
      found = true;
      try {
        this.#mechanism.setThreadNice(tid, RAISED_NICE);
      } catch (err) {
        if (!isGone(err)) throw err;
      }
      done.add(tid);
    }
    return found;
  }

  #lower(tids: Iterable<number>): void {
    for (const tid of tids) {
      try {
        this.#mechanism.setThreadNice(tid, this.#startNice ?? 0);
      } catch {
        // A thread that has gone needs nothing; lowering is never refused.
      }
    }
  }

  #raiseCallingThread(): void {
    try {
      this.#mechanism.setThreadNice(0, RAISED_NICE);
    } catch {
      // Refused now (capabilities dropped since): this thread stays at the start niceness.
    }
  }
}

/** A thread that exited between the listing and the call. */
function isGone(err: unknown): boolean {
  return err instanceof SyscallError && err.code === "ESRCH";
}

/** The process's one instance: raised by the agent, asked by whatever starts a child. */
export const agentPriority: AgentPriority = new AgentPriority();
