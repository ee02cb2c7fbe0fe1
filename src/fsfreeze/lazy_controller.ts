/**
 * The freeze controller as the commands see it, loaded on first use: start-up loads neither the
 * freeze engine (controller, freezer, hooks, selection, libc) nor the watchdog launcher unless a
 * state file left by a previous instance calls for recovery. That keeps start-up and idle memory
 * close to Deno's own; the first freeze or thaw command pays the load (a few milliseconds) once.
 *
 * Until the engine is loaded nothing can be frozen by this agent, so the answers it gives without
 * it are the ones a fresh controller would give: thawed, and the report saved on disk. The engine
 * is loaded before the first freeze does anything, so no module is ever loaded while filesystems
 * are frozen (a `deno run` module load may write Deno's cache).
 *
 * @module
 */

import type { FreezeController } from "./controller.ts";
import { type CycleReport, loadReport, type ThawedBy } from "./report.ts";
import { stateExists, type StatePaths, statePaths } from "./state.ts";

/** What the freeze commands and the agent call on the controller. */
export interface FreezeService {
  /** Whether the agent is in frozen mode. */
  readonly frozen: boolean;
  /** The last (or current) cycle's report. */
  readonly report: CycleReport | undefined;
  /** `guest-fsfreeze-status`. */
  status(): "frozen" | "thawed";
  /** `guest-fsfreeze-freeze` and `guest-fsfreeze-freeze-list`. */
  freeze(command: string, mountpoints?: readonly string[]): Promise<number>;
  /** `guest-fsfreeze-thaw` (and every other way out of a cycle). */
  thaw(by: ThawedBy): Promise<number>;
}

/** A {@link FreezeService} that creates the real controller when first needed. */
export class LazyFreezeController implements FreezeService {
  readonly #create: () => Promise<FreezeController>;
  readonly #paths: StatePaths;
  #controller: FreezeController | undefined;
  #loading: Promise<FreezeController> | undefined;
  #savedReport: { report: CycleReport | undefined } | undefined;

  /** `create` imports and constructs the controller (called at most once). */
  constructor(statedir: string, create: () => Promise<FreezeController>) {
    this.#paths = statePaths(statedir);
    this.#create = create;
  }

  /** The controller, loading it on the first call. */
  load(): Promise<FreezeController> {
    this.#loading ??= this.#create().then((controller) => this.#controller = controller);
    return this.#loading;
  }

  /** Start-up: a state or claim file means a cycle to recover, which needs the controller. */
  async recover(): Promise<void> {
    if (!stateExists(this.#paths.state) && !stateExists(this.#paths.claim)) return;
    await (await this.load()).recover();
  }

  get frozen(): boolean {
    return this.#controller?.frozen ?? false;
  }

  get report(): CycleReport | undefined {
    if (this.#controller) return this.#controller.report;
    // Read once, as the controller's constructor does.
    this.#savedReport ??= { report: loadReport(this.#paths.report) };
    return this.#savedReport.report;
  }

  status(): "frozen" | "thawed" {
    return this.frozen ? "frozen" : "thawed";
  }

  async freeze(command: string, mountpoints?: readonly string[]): Promise<number> {
    return await (await this.load()).freeze(command, mountpoints);
  }

  async thaw(by: ThawedBy): Promise<number> {
    return await (await this.load()).thaw(by);
  }

  /** SIGTERM/SIGINT: only a loaded controller can have anything to undo. */
  async shutdown(): Promise<void> {
    await this.#controller?.shutdown();
  }
}
