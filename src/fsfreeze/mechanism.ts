/**
 * The real mechanism behind the freeze policy (engine.ts): FIFREEZE/FITHAW through libc, the mount
 * table from /proc and sysfs, hooks as processes, the state directory on disk, the system clock.
 *
 * @module
 */

import { readTextFileRaw, writeKernelSetting } from "../linux/files.ts";
import type { Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import type { Clock, Engine, EngineConfig, GracePeriods } from "./engine.ts";
import { freezeMounts, thawMounts } from "./freezer.ts";
import { hookRunner } from "./hook_phase.ts";
import { MountinfoWatch, readMountinfoText, statBlockDevice } from "./mountinfo.ts";
import { MountSelector, type MountTable, type SelectionConfig } from "./selection.ts";
import { FileStateStore } from "./state.ts";
import { sysfsTopology } from "./topology.ts";

/** The system clock. */
export const systemClock: Clock = { now: () => Date.now(), sleep };

/** The mount table as the kernel shows it to this process (one change watch per table). */
export function kernelMountTable(): MountTable {
  const watch = new MountinfoWatch();
  return {
    readMountinfo: readMountinfoText,
    mayHaveChanged: () => watch.mayHaveChanged(),
    statBlockDevice,
    topology: () => sysfsTopology(),
    mayRead: (path) => Deno.permissions.querySync({ name: "read", path }).state === "granted",
  };
}

/** Where the kernel says whether RCU grace periods are expedited (machine-wide). */
export const RCU_EXPEDITED = "/sys/kernel/rcu_expedited";

/** The kernel's grace periods through `/sys/kernel/rcu_expedited` (libc: Deno refuses /sys). */
export function kernelGracePeriods(path = RCU_EXPEDITED): GracePeriods {
  return {
    expedited: () => readTextFileRaw(path).trim() !== "0",
    setExpedited: (on) => writeKernelSetting(path, on ? "1\n" : "0\n"),
  };
}

/** The engine of a configuration, on the real mechanism. */
export function createEngine(config: EngineConfig & SelectionConfig, log: Logger): Engine {
  return {
    config,
    log,
    clock: systemClock,
    freezer: {
      freeze: (waves) => freezeMounts(waves),
      thaw: (mounts) => thawMounts(mounts),
    },
    mounts: new MountSelector(config, kernelMountTable()),
    hooks: hookRunner(config.fsfreezeHookTimeout, log),
    store: new FileStateStore(config.statedir),
    gracePeriods: kernelGracePeriods(),
  };
}
