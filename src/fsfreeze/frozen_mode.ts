/**
 * Frozen mode, the agent's side of a cycle in force: log-file lines are held in memory (a write to
 * a frozen filesystem would block the agent, and then nothing could thaw it), only qemu-ga's
 * freeze-safe commands stay enabled (the dispatcher asks {@link FrozenMode.active}), the agent
 * looks for a thaw done by someone else (its watchdog, the local `thaw`) once a second, and, should
 * its watchdog not have thawed by the deadline, thaws itself a little after it.
 *
 * @module
 */

/** The log as frozen mode drives it (log.ts's AgentLogger). */
export interface HoldingLog {
  /** Whether there is a log file to hold (without one, holding is nothing to tell). */
  readonly writesFile: boolean;
  info(msg: string): void;
  holdFileWrites(): void;
  releaseFileWrites(): void;
}

/** How often a frozen agent looks for a thaw done by someone else. */
export const OUTSIDE_THAW_POLL_MS = 1000;
/** The agent thaws itself this long after a deadline its watchdog let pass. */
export const DEADLINE_GRACE_MS = 5000;

/** What frozen mode calls back. */
export interface FrozenModeHooks {
  /** Once a second while frozen. */
  poll(): void;
  /** The deadline (plus {@link DEADLINE_GRACE_MS}) passed while still frozen. */
  deadlinePassed(): void;
  /** Frozen mode ended (deferred pidfile, log file). */
  thawed?: () => void;
}

/** The agent's frozen mode. */
export class FrozenMode {
  readonly #log: HoldingLog;
  readonly #hooks: FrozenModeHooks;
  #active = false;
  #poll: ReturnType<typeof setInterval> | undefined;
  #deadline: ReturnType<typeof setTimeout> | undefined;

  constructor(log: HoldingLog, hooks: FrozenModeHooks) {
    this.#log = log;
    this.#hooks = hooks;
  }

  /** Whether the agent is frozen (only the freeze allowlist is enabled). */
  get active(): boolean {
    return this.#active;
  }

  /** Enters frozen mode (before the first FIFREEZE); `deadline` is epoch ms or null. */
  enter(deadline: number | null, now: number): void {
    if (this.#active) return;
    if (this.#log.writesFile) this.#log.info("disabling logging to files due to filesystem freeze");
    this.#log.holdFileWrites();
    this.#active = true;
    this.#poll = setInterval(() => this.#hooks.poll(), OUTSIDE_THAW_POLL_MS);
    Deno.unrefTimer(this.#poll);
    if (deadline !== null) {
      const delay = Math.max(0, deadline + DEADLINE_GRACE_MS - now);
      this.#deadline = setTimeout(() => this.#hooks.deadlinePassed(), delay);
      Deno.unrefTimer(this.#deadline);
    }
  }

  /** Leaves frozen mode (after the last FITHAW). */
  leave(): void {
    this.#stopTimers();
    if (!this.#active) return;
    this.#active = false;
    this.#log.releaseFileWrites();
    if (this.#log.writesFile) {
      this.#log.info("logging to files re-enabled due to filesystem unfreeze");
    }
    this.#hooks.thawed?.();
  }

  #stopTimers(): void {
    if (this.#poll !== undefined) clearInterval(this.#poll);
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    this.#poll = undefined;
    this.#deadline = undefined;
  }
}
