/**
 * What the freeze policy works with, as small interfaces: the clock, FIFREEZE/FITHAW, the mount
 * selection, hook phases and the state store. mechanism.ts builds the real ones; the policy's unit
 * tests pass fakes, so every policy question (rollback, exactly one thaw hook, recovery, races
 * between the agent, its watchdog and the local `thaw`) is answered without root.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import type { FreezeOutcome, ThawOutcome } from "./freezer.ts";
import type { HookRunner } from "./hook_phase.ts";
import type { Selection } from "./selection.ts";
import type { CycleLock, StateStore } from "./state.ts";

/** Time, as the policy sees it. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** FIFREEZE and FITHAW (freezer.ts). */
export interface Freezer {
  /** Freezes wave by wave; one outcome per mount tried. */
  freeze(waves: readonly (readonly string[])[]): Promise<FreezeOutcome[]>;
  /** FITHAW each mount until it fails, in the order given. */
  thaw(mounts: readonly string[]): ThawOutcome[];
}

/**
 * The kernel's RCU grace periods, machine-wide (`/sys/kernel/rcu_expedited`; expedite.ts).
 */
export interface GracePeriods {
  /** Whether they are expedited now. @throws {Error} when that cannot be read */
  expedited(): boolean;
  /** Makes them expedited (`true`) or normal again. @throws {Error} when that cannot be set */
  setExpedited(on: boolean): void;
}

/** The mount selection (selection.ts). */
export interface MountSource {
  /** @throws {Error} when the mount table cannot be read */
  select(requested?: readonly string[]): Selection;
}

/** The settings the policy reads. */
export interface EngineConfig {
  statedir: string;
  /** Seconds; 0 = never. */
  fsfreezeTimeout: number;
  /** Seconds; 0 = no limit. */
  fsfreezeHookTimeout: number;
  fsfreezeHook?: string | undefined;
  /** Expedite the kernel's grace periods while the FIFREEZEs run (expedite.ts). */
  fsfreezeExpedite?: boolean;
}

/** Everything the freeze policy needs. */
export interface Engine {
  config: EngineConfig;
  log: Logger;
  clock: Clock;
  freezer: Freezer;
  mounts: MountSource;
  hooks: HookRunner;
  store: StateStore;
  /** Absent where nothing can expedite them (the policy's unit tests that need none). */
  gracePeriods?: GracePeriods;
}

/** How often a waiter tries the cycle lock again. */
export const LOCK_RETRY_MS = 50;

/**
 * Takes the cycle lock, waiting up to `waitMs` for its holder (another agent operation, the
 * watchdog or the local `thaw`) to finish; `undefined` when it did not in time.
 */
export async function acquireLock(
  engine: Pick<Engine, "store" | "clock">,
  waitMs: number,
  signal?: AbortSignal,
): Promise<CycleLock | undefined> {
  const until = engine.clock.now() + waitMs;
  for (;;) {
    const lock = engine.store.tryLock();
    if (lock !== undefined) return lock;
    if (engine.clock.now() >= until || signal?.aborted) return undefined;
    await engine.clock.sleep(LOCK_RETRY_MS, signal);
  }
}

/** How long anyone waits for a cycle's current holder: a thaw hook's deadline, with room. */
export function lockWaitMs(config: EngineConfig): number {
  const hookMs = config.fsfreezeHookTimeout > 0 ? config.fsfreezeHookTimeout * 1000 : 600_000;
  return hookMs + 30_000;
}
