/**
 * The freeze engine's front door. The agent gets its {@link FreezeService} here (loaded on first
 * use: start-up loads neither the engine nor libc's freeze side unless a recorded cycle calls for
 * recovery), and the local subcommands get `status`, `thaw` and `watchdog`. Everything that ends a
 * cycle — the host's thaw, the watchdog's deadline, the local `thaw` — goes through end_cycle.ts.
 *
 * How the engine is laid out (docs/architecture.md, "Freeze engine"): freeze_cycle.ts and
 * end_cycle.ts sequence a cycle; ordering.ts decides the order; selection.ts which mounts;
 * service.ts holds the agent's frozen mode; watchdog.ts and watchdog_link.ts the deadline;
 * report.ts the report; engine.ts declares the mechanism they use and mechanism.ts provides it.
 *
 * @module
 */

import { errorMessage } from "../errors.ts";
import { loadLater } from "../load_later.ts";
import type { Logger } from "../log.ts";
import type { Arming } from "./freeze_cycle.ts";
import type { HoldingLog } from "./frozen_mode.ts";
import { type CycleReport, renderReport, type ThawedBy } from "./report.ts";
import type { FreezeEngineService, FreezeService } from "./service.ts";
import { FileStateStore, type FrozenState } from "./state.ts";
import type { Config } from "../config/mod.ts";
import type { Transport } from "../transport/mod.ts";

export type { FreezeService } from "./service.ts";
export type { CycleReport, ThawedBy } from "./report.ts";
export { checkStatedir, statePaths, WATCHDOG_SOCKET } from "./state.ts";

/** Local commands' start: a cycle an earlier version left under its claim name is recorded again. */
export function adoptLegacyClaim(statedir: string): void {
  new FileStateStore(statedir).adoptLegacyClaim();
}

/** What the agent passes in. */
export interface AgentFreezeOptions {
  /** The log whose file output frozen mode holds. */
  log: HoldingLog & Logger;
  /** Starts the agent's own watchdog when no watchdog listens on its socket. */
  startWatchdog(): Promise<{ exited: Promise<unknown> }>;
  /** Frozen mode ended (deferred pidfile, log file). */
  onThawed(): void;
  /** Runs work once the reply in progress is written (the agent loop's AfterReply). */
  afterReply(work: () => void): Promise<void>;
}

/** The agent's freeze service: the engine is loaded before the first freeze does anything. */
export class LazyFreezeService implements FreezeService {
  readonly #config: Config;
  readonly #options: AgentFreezeOptions;
  readonly #store: FileStateStore;
  #service: FreezeEngineService | undefined;
  #loading: Promise<FreezeEngineService> | undefined;
  #savedReport: { report: CycleReport | undefined } | undefined;
  #watchdog: { close(): void } | undefined;

  constructor(config: Config, options: AgentFreezeOptions) {
    this.#config = config;
    this.#options = options;
    this.#store = new FileStateStore(config.statedir);
  }

  /**
   * The engine, loaded on the first call. Under `deno run` a module load may write Deno's cache,
   * so it happens before anything is frozen, never while. A load that failed is tried again by
   * the next call (a module or libc that was missing may be there now).
   */
  load(): Promise<FreezeEngineService> {
    this.#loading ??= this.#create().then(
      (service) => this.#service = service,
      (err) => {
        this.#loading = undefined;
        throw err;
      },
    );
    return this.#loading;
  }

  async #create(): Promise<FreezeEngineService> {
    const [{ FreezeEngineService }, { createEngine, systemClock }, { WatchdogLink }, { loadLibc }] =
      await Promise.all([
        load<typeof import("./service.ts")>("./service.ts"),
        load<typeof import("./mechanism.ts")>("./mechanism.ts"),
        load<typeof import("./watchdog_link.ts")>("./watchdog_link.ts"),
        load<typeof import("../linux/libc.ts")>("../linux/libc.ts"),
      ]);
    loadLibc();
    const engine = createEngine(this.#config, this.#options.log);
    const link = new WatchdogLink({
      socketPath: this.#store.paths.watchdogSocket,
      start: () => this.#options.startWatchdog(),
      clock: systemClock,
      log: this.#options.log,
      inForce: (cycle) => engine.store.read()?.cycle === cycle,
    });
    this.#watchdog = link;
    const watchdog: Arming | undefined = this.#config.fsfreezeTimeout > 0 ? link : undefined;
    return new FreezeEngineService(engine, {
      log: this.#options.log,
      watchdog,
      onThawed: this.#options.onThawed,
      afterReply: this.#options.afterReply,
    });
  }

  /**
   * Loads the engine ahead of the first freeze, and reads the mount table (kept until the kernel
   * says it changed), so that freeze does not pay for either. The watchdog
   * is left alone: it costs a process, which an agent that is never asked to freeze does not
   * need. A failure is logged here and met again by the freeze that needs the engine.
   */
  preload(): void {
    this.load().then((service) => service.readMountTable()).catch((err) => {
      this.#options.log.warn("cannot load the freeze engine", { error: errorMessage(err) });
    });
  }

  /** Start-up: a recorded cycle means recovery, which needs the engine. */
  async recover(): Promise<void> {
    this.#store.adoptLegacyClaim();
    if (!this.#store.exists()) return;
    await (await this.load()).recover();
  }

  get frozen(): boolean {
    return this.#service?.frozen ?? false;
  }

  get report(): CycleReport | undefined {
    if (this.#service) return this.#service.report;
    this.#savedReport ??= { report: this.#store.loadReport() };
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

  /** SIGTERM/SIGINT: only a loaded engine can have anything to undo. */
  async shutdown(): Promise<void> {
    await this.#service?.shutdown();
    this.#watchdog?.close();
  }
}

/** `fsfreeze-agent status [--json]`: the state and the last cycle's report. */
export function statusText(config: Config, json: boolean): string {
  const store = new FileStateStore(config.statedir);
  const state = store.read();
  const report = store.loadReport();
  const status = state ? "frozen" : "thawed";
  if (json) {
    return JSON.stringify({ status, state: state ?? null, report: report ?? null }, null, 2) + "\n";
  }
  let text = `status: ${status}\n`;
  if (state) text += describeState(state);
  if (report && (!state || report.cycle === state.cycle)) text += renderReport(report);
  else if (!state) text += "no freeze cycle recorded\n";
  return text;
}

function describeState(state: FrozenState): string {
  const deadline = state.deadline === null ? "none" : new Date(state.deadline).toISOString();
  return `frozen since ${new Date(state.startedAt).toISOString()}, auto-thaw: ${deadline}\n` +
    `mounts: ${state.mounts.join(" ") || "(none recorded)"}\n`;
}

/**
 * `fsfreeze-agent thaw [--all]`: the break-glass thaw of the recorded cycle (its hook included),
 * or with `all` also of every mount in scope. Returns what to print and the exit code.
 */
export async function localThaw(
  config: Config,
  log: Logger,
  all: boolean,
): Promise<{ text: string; code: number }> {
  const [{ createEngine }, { endCycle }, { thawOrder }, { lockWaitMs }, { loadLibc }] =
    await Promise
      .all([
        load<typeof import("./mechanism.ts")>("./mechanism.ts"),
        load<typeof import("./end_cycle.ts")>("./end_cycle.ts"),
        load<typeof import("./ordering.ts")>("./ordering.ts"),
        load<typeof import("./engine.ts")>("./engine.ts"),
        load<typeof import("../linux/libc.ts")>("../linux/libc.ts"),
      ]);
  loadLibc();
  const engine = createEngine(config, log);
  const ended = await endCycle(engine, "local", { waitMs: lockWaitMs(config) });
  if (ended !== undefined) {
    return { text: renderReport(ended.report), code: ended.hook?.failure ? 1 : 0 };
  }
  if (!all) {
    return {
      text: "nothing to thaw: no freeze cycle recorded (use --all to thaw every mount)\n",
      code: 0,
    };
  }
  const everything = thawOrder(engine.mounts.select().waves);
  const count = engine.freezer.thaw(everything).filter((o) => o.thawed).length;
  return { text: `thawed ${count} filesystems (no hook: no freeze cycle recorded)\n`, code: 0 };
}

/**
 * `fsfreeze-agent watchdog`: serves `transport` (the socket systemd passed, or one it binds in
 * the state directory) until stopped; `persistent` under systemd.
 */
export async function serveWatchdog(
  config: Config,
  log: Logger,
  options: { transport: Transport; persistent: boolean; signal: AbortSignal },
): Promise<void> {
  const [{ createEngine }, { runWatchdog }, { loadLibc }, { agentPriority }] = await Promise.all([
    load<typeof import("./mechanism.ts")>("./mechanism.ts"),
    load<typeof import("./watchdog.ts")>("./watchdog.ts"),
    load<typeof import("../linux/libc.ts")>("../linux/libc.ts"),
    load<typeof import("../priority.ts")>("../priority.ts"),
  ]);
  loadLibc();
  // As the agent's (docs/design.md #50): the thaw it may owe must not wait behind a busy guest.
  const priority = agentPriority.raise();
  log.debug(priority.raised ? "priority raised" : "priority kept", { nice: priority.nice });
  await runWatchdog(createEngine(config, log), options.transport, options);
}

/** A module of the engine, loaded on first use (`path` relative to this one). */
function load<Module>(path: string): Promise<Module> {
  return loadLater(new URL(path, import.meta.url));
}
