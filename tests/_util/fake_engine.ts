/**
 * Fakes of the freeze engine's mechanism (src/fsfreeze/engine.ts) for the policy's unit tests:
 * an in-memory state store with a cycle lock, a freezer with scripted outcomes, hooks that record
 * and can fail or wait, a fixed mount selection and a clock the test moves. No root, no files.
 *
 * @module
 */

import type { Clock, Engine, EngineConfig, GracePeriods } from "../../src/fsfreeze/engine.ts";
import type { FreezeOutcome, ThawOutcome } from "../../src/fsfreeze/freezer.ts";
import type { HookPhase } from "../../src/fsfreeze/hook.ts";
import type { HookRunner, PhaseResult } from "../../src/fsfreeze/hook_phase.ts";
import type { CycleReport } from "../../src/fsfreeze/report.ts";
import type { Selection } from "../../src/fsfreeze/selection.ts";
import {
  type CycleLock,
  type FrozenState,
  type StatePaths,
  statePaths,
  type StateStore,
} from "../../src/fsfreeze/state.ts";
import type { Logger } from "../../src/log.ts";

/** A clock that moves only when told to (or by the time a sleeper asks for). */
export class FakeClock implements Clock {
  time = 1_700_000_000_000;

  now(): number {
    return this.time;
  }

  /** Advances by `ms` and yields to the event loop, so other tasks run meanwhile. */
  async sleep(ms: number): Promise<void> {
    this.time += ms;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** An in-memory state directory shared by every engine of one "guest". */
export class FakeStore implements StateStore {
  readonly paths: StatePaths = statePaths("/fake/state");
  state: FrozenState | undefined;
  savedReport: CycleReport | undefined;
  /** Who holds the lock (for assertions), if anyone. */
  holder: string | undefined;
  writes = 0;

  read(): FrozenState | undefined {
    return this.state === undefined ? undefined : structuredClone(this.state);
  }

  exists(): boolean {
    return this.state !== undefined;
  }

  record(state: FrozenState): boolean {
    if (this.state !== undefined) return false;
    this.write(state);
    return true;
  }

  write(state: FrozenState): void {
    this.writes++;
    this.state = structuredClone(state);
  }

  remove(): void {
    this.state = undefined;
  }

  tryLock(owner = "someone"): CycleLock | undefined {
    if (this.holder !== undefined) return undefined;
    this.holder = owner;
    let held = true;
    return {
      release: () => {
        if (held) this.holder = undefined;
        held = false;
      },
    };
  }

  loadReport(): CycleReport | undefined {
    return this.savedReport === undefined ? undefined : structuredClone(this.savedReport);
  }

  saveReport(report: CycleReport): void {
    this.savedReport = structuredClone(report);
  }

  onFilesystemOf(): boolean {
    return false;
  }
}

/** What FIFREEZE does to a mount in the fake. */
export type FakeOutcome = "frozen" | "EBUSY" | "EOPNOTSUPP" | "EPERM";

/** FIFREEZE/FITHAW on a set of fake filesystems. */
export class FakeFreezer {
  /** Mounts frozen (by anyone), with their freeze count. */
  readonly frozen = new Map<string, number>();
  /** Scripted outcomes; anything else freezes. */
  readonly outcomes = new Map<string, FakeOutcome>();
  readonly thawOrders: string[][] = [];
  freezes = 0;
  /** Called during freeze (e.g. to move the clock past a deadline). */
  duringFreeze: (() => void) | undefined;

  freeze(waves: readonly (readonly string[])[]): Promise<FreezeOutcome[]> {
    this.freezes++;
    this.duringFreeze?.();
    const results: FreezeOutcome[] = [];
    for (const wave of waves) {
      for (const mountPoint of wave) {
        const outcome = this.#freezeOne(mountPoint);
        results.push(outcome);
        if (outcome.status === "failed") return Promise.resolve(results);
      }
    }
    return Promise.resolve(results);
  }

  #freezeOne(mountPoint: string): FreezeOutcome {
    const scripted = this.outcomes.get(mountPoint) ?? "frozen";
    if (scripted === "EBUSY" || this.frozen.has(mountPoint)) {
      return { mountPoint, status: "skipped", errno: 16, code: "EBUSY", durationMs: 1 };
    }
    if (scripted === "EOPNOTSUPP") {
      return { mountPoint, status: "skipped", errno: 95, code: "EOPNOTSUPP", durationMs: 1 };
    }
    if (scripted === "EPERM") {
      return {
        mountPoint,
        status: "failed",
        step: "freeze",
        errno: 1,
        code: "EPERM",
        text: "Operation not permitted",
        durationMs: 1,
      };
    }
    this.frozen.set(mountPoint, 1);
    return { mountPoint, status: "frozen", durationMs: 1 };
  }

  /** Another tool froze `mountPoint` (fsfreeze -f). */
  freezeByOther(mountPoint: string): void {
    this.frozen.set(mountPoint, 1);
  }

  thaw(mounts: readonly string[]): ThawOutcome[] {
    this.thawOrders.push([...mounts]);
    return mounts.map((mountPoint) => {
      const thawed = this.frozen.delete(mountPoint);
      return { mountPoint, thawed, thaws: thawed ? 1 : 0, durationMs: 1 };
    });
  }
}

/** `/sys/kernel/rcu_expedited` as a value; every change is recorded, and either side can fail. */
export class FakeGracePeriods implements GracePeriods {
  value = false;
  readonly sets: boolean[] = [];
  reads = 0;
  failRead: string | undefined;
  failWrite: string | undefined;

  expedited(): boolean {
    this.reads++;
    if (this.failRead !== undefined) throw new Error(this.failRead);
    return this.value;
  }

  setExpedited(on: boolean): void {
    if (this.failWrite !== undefined) throw new Error(this.failWrite);
    this.sets.push(on);
    this.value = on;
  }
}

/** Hooks that record each call and can fail `freeze` or hold `thaw` until released. */
export class FakeHooks implements HookRunner {
  readonly calls: HookPhase[] = [];
  failFreeze: string | undefined;
  #gate: PromiseWithResolvers<void> | undefined;

  /** Makes the next thaw hooks wait until {@link releaseThaw}. */
  holdThaw(): void {
    this.#gate = Promise.withResolvers<void>();
  }

  releaseThaw(): void {
    this.#gate?.resolve();
    this.#gate = undefined;
  }

  async run(hook: string, phase: HookPhase): Promise<PhaseResult> {
    this.calls.push(phase);
    if (phase === "thaw" && this.#gate) await this.#gate.promise;
    const failure = phase === "freeze" ? this.failFreeze : undefined;
    return {
      report: {
        path: hook,
        phase,
        exitCode: failure === undefined ? 0 : 1,
        signal: null,
        timedOut: false,
        startedAt: new Date(0).toISOString(),
        durationUs: 1,
        outputTail: "",
      },
      failure,
    };
  }
}

/** A logger that keeps the lines (and holds nothing: frozen mode's file output is a no-op). */
export class FakeLog implements Logger {
  readonly lines: string[] = [];
  held = false;
  writesFile = true;
  debug(msg: string): void {
    this.lines.push(`debug ${msg}`);
  }
  info(msg: string): void {
    this.lines.push(`info ${msg}`);
  }
  warn(msg: string): void {
    this.lines.push(`warn ${msg}`);
  }
  error(msg: string): void {
    this.lines.push(`error ${msg}`);
  }
  holdFileWrites(): void {
    this.held = true;
  }
  releaseFileWrites(): void {
    this.held = false;
  }
}

/** One guest: the state dir, filesystems and hooks that every engine on it shares. */
export interface FakeGuest {
  store: FakeStore;
  freezer: FakeFreezer;
  hooks: FakeHooks;
  clock: FakeClock;
  gracePeriods: FakeGracePeriods;
  /** Mount points in scope, in mountinfo order (each its own freeze wave unless waves set). */
  mounts: string[];
  waves?: string[][];
}

/** A guest with `mounts` in scope. */
export function fakeGuest(mounts: string[]): FakeGuest {
  return {
    store: new FakeStore(),
    freezer: new FakeFreezer(),
    hooks: new FakeHooks(),
    clock: new FakeClock(),
    gracePeriods: new FakeGracePeriods(),
    mounts,
  };
}

/** An engine on `guest` (the agent's, its watchdog's or the local `thaw`'s). */
export function fakeEngine(
  guest: FakeGuest,
  config: Partial<EngineConfig> = {},
  log: Logger = new FakeLog(),
): Engine {
  return {
    config: {
      statedir: "/fake/state",
      fsfreezeTimeout: 600,
      fsfreezeHookTimeout: 60,
      fsfreezeHook: "/etc/qemu/fsfreeze-hook",
      ...config,
    },
    log,
    clock: guest.clock,
    freezer: guest.freezer,
    mounts: { select: (requested) => selection(guest, requested) },
    hooks: guest.hooks,
    store: guest.store,
    gracePeriods: guest.gracePeriods,
  };
}

function selection(guest: FakeGuest, requested?: readonly string[]): Selection {
  const wanted = (mountPoint: string): boolean =>
    requested === undefined || requested.includes(mountPoint);
  const mounts = guest.mounts.filter(wanted).map((mountPoint) => ({
    mountId: 0,
    parentId: 0,
    major: 8,
    minor: 0,
    root: "/",
    mountPoint,
    mountOptions: "rw",
    optionalFields: [],
    fsType: "ext4",
    source: "/dev/fake",
    superOptions: "rw",
  }));
  const waves = (guest.waves ?? [[...guest.mounts].reverse()])
    .map((wave) => wave.filter(wanted))
    .filter((wave) => wave.length > 0);
  return { mounts, waves, skipped: [] };
}
