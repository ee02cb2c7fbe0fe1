/**
 * `fsfreeze-expedite` (off by default; docs/design.md #45): expedite the kernel's RCU grace
 * periods while a cycle's FIFREEZEs run. A FIFREEZE of a filesystem that was not frozen moments
 * before waits for grace periods, two of them while the filesystem already refuses writes; with
 * `/sys/kernel/rcu_expedited` at 1 they take microseconds instead of tens of milliseconds.
 *
 * The setting is the whole machine's, so the agent touches it only when it finds it at 0, and
 * says so in the state file before it sets it (`expeditedGracePeriods`). It puts the 0 back as soon
 * as the FIFREEZEs return; if the agent dies before that, whoever ends or recovers the cycle (the
 * agent's thaw, a restarted agent, the watchdog at the deadline, the local `thaw`) puts it back.
 * None of this ever fails a freeze or a thaw: a setting that cannot be read or written is logged,
 * and the freeze goes on at the kernel's normal pace.
 *
 * @module
 */

import type { Engine } from "./engine.ts";
import type { FrozenState } from "./state.ts";

/** Whether a cycle starting now will expedite the grace periods (decided before it is recorded). */
export function cycleExpedites(engine: Engine): boolean {
  if (engine.config.fsfreezeExpedite !== true || engine.gracePeriods === undefined) return false;
  try {
    if (!engine.gracePeriods.expedited()) return true;
    engine.log.info("kernel grace periods are expedited already; leaving the setting as it is");
  } catch (err) {
    engine.log.warn("cannot read whether kernel grace periods are expedited", {
      error: (err as Error).message,
    });
  }
  return false;
}

/** Just before the first FIFREEZE of a cycle recorded with `expeditedGracePeriods`. */
export function expediteGracePeriods(engine: Engine, state: FrozenState): void {
  if (state.expeditedGracePeriods !== true || engine.gracePeriods === undefined) return;
  try {
    engine.gracePeriods.setExpedited(true);
  } catch (err) {
    engine.log.warn("cannot expedite kernel grace periods; freezing at the normal pace", {
      error: (err as Error).message,
    });
  }
}

/**
 * After the FIFREEZEs, and whenever a cycle recorded with `expeditedGracePeriods` is ended or
 * recovered: the grace periods go back to normal if they are still expedited.
 */
export function restoreGracePeriods(engine: Engine, state: FrozenState): void {
  if (state.expeditedGracePeriods !== true || engine.gracePeriods === undefined) return;
  try {
    if (engine.gracePeriods.expedited()) engine.gracePeriods.setExpedited(false);
  } catch (err) {
    engine.log.error("cannot put kernel grace periods back to normal", {
      cycle: state.cycle,
      error: (err as Error).message,
    });
  }
}
