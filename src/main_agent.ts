/**
 * Starting and stopping the agent process: permission check, crash recovery, pidfile, the serve
 * loop, and a stop that never leaves filesystems frozen.
 *
 * @module
 */

import { runAgent } from "./agent.ts";
import { createRegistry } from "./commands/mod.ts";
import { type Config, ConfigError } from "./config/mod.ts";
import type { FreezeController } from "./fsfreeze/controller.ts";
import { LazyFreezeController } from "./fsfreeze/lazy_controller.ts";
import type { AgentLogger } from "./log.ts";
import { missingPermissions } from "./permission_check.ts";
import type { SelfCommand } from "./self_exec.ts";
import { type ListenEnv, openTransport, socketActivation } from "./transport/mod.ts";
import { checkStatedir } from "./fsfreeze/state.ts";
import {
  checkDirectory,
  checkOwnFileOrAbsent,
  openOwnFile,
  UnsafePathError,
} from "./safe_files.ts";
import { dirname } from "node:path";

/** What main passes in. */
export interface StartOptions {
  /** The agent's own arguments, handed to its watchdog and daemon copies. */
  argv: readonly string[];
  /** Aborted on SIGTERM/SIGINT. */
  signal: AbortSignal;
  /** This process is the daemonized copy (do not fork again). */
  detachedChild: boolean;
  /** systemd's socket-activation variables (main.ts reads them and removes them from its env). */
  listenEnv?: ListenEnv;
}

/** Runs the agent until `signal` aborts; returns the exit code. */
export async function startAgent(
  config: Config,
  log: AgentLogger,
  options: StartOptions,
): Promise<number> {
  const missing = missingPermissions(config);
  if (missing.length > 0) {
    throw new ConfigError(
      `the configuration needs permissions this agent was not given: ${missing.join(", ")} ` +
        "(a compiled binary carries the permission set of the configuration it was built for; " +
        "rebuild it with: deno task compile --config <file>)",
    );
  }
  checkFileSafety(config);
  // systemd socket activation: the socket it passed replaces -m/-p; checked before anything runs.
  const activation = await socketActivation(options.listenEnv ?? {}, Deno.pid);
  if (config.daemonize && !options.detachedChild) {
    // A daemon copy could not inherit the socket; under systemd there is no need to fork.
    if (activation === undefined) return await daemonize(config, options.argv);
    log.warn("socket-activated: --daemonize ignored, serving in the foreground");
  }

  const registry = createRegistry();
  registry.setFilters(config.allowRpcs, config.blockRpcs);
  const pidfile = new Pidfile(config, log);
  // The freeze engine (and libc) load on the first freeze command, or now to recover a cycle.
  const freezer = new LazyFreezeController(config.statedir, async (): Promise<FreezeController> => {
    const [{ FreezeController }, { selfCommand }, { loadLibc }] = await Promise.all([
      import("./fsfreeze/controller.ts"),
      import("./self_exec.ts"),
      import("./linux/libc.ts"),
    ]);
    loadLibc();
    return new FreezeController({
      config,
      log,
      spawnWatchdog: (cycle) =>
        spawnWatchdog(selfCommand(config, ["watchdog", cycle, ...options.argv])),
      onThawed: () => {
        log.openFile();
        pidfile.writeIfDue();
      },
    });
  });
  await freezer.recover();
  if (!freezer.frozen) {
    log.openFile();
    pidfile.writeIfDue();
  }
  const ctx = { log, freezer, frozen: () => freezer.frozen };
  try {
    await runAgent({
      config,
      log,
      registry,
      ctx,
      signal: options.signal,
      openTransport: (cfg, logger) => openTransport(cfg, logger, activation),
    });
  } finally {
    await freezer.shutdown();
    pidfile.remove();
    log.info("agent stopped");
    log.close();
  }
  return 0;
}

/**
 * Start-up: refuses directories and entries another user could use to make the agent (root)
 * write through a planted link or into a file that is not its own.
 * @throws {ConfigError}
 */
function checkFileSafety(config: Config): void {
  try {
    checkStatedir(config.statedir);
    if (config.daemonize || config.pidfileExplicit) {
      checkFileAndDirectory(config.pidfile, "pidfile");
    }
    if (config.logfile !== undefined) checkFileAndDirectory(config.logfile, "log file");
  } catch (err) {
    if (err instanceof UnsafePathError) throw new ConfigError(err.message, { cause: err });
    throw err;
  }
}

function checkFileAndDirectory(path: string, what: string): void {
  checkDirectory(dirname(path), `${what} directory`);
  checkOwnFileOrAbsent(path, what);
}

function spawnWatchdog({ command, args }: SelfCommand): Deno.ChildProcess {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
    // Its own process group: a signal to the agent's group must not take the watchdog with it.
    detached: true,
  }).spawn();
  child.unref();
  return child;
}

async function daemonize(config: Config, argv: readonly string[]): Promise<number> {
  const { selfCommand } = await import("./self_exec.ts");
  const { command, args } = selfCommand(config, [...argv, "--detached-child"]);
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  return 0;
}

/** The pidfile: written when daemonizing (as qemu-ga) or when one was named explicitly. */
class Pidfile {
  #config: Config;
  #log: AgentLogger;
  #written = false;

  constructor(config: Config, log: AgentLogger) {
    this.#config = config;
    this.#log = log;
  }

  writeIfDue(): void {
    if (this.#written || !(this.#config.daemonize || this.#config.pidfileExplicit)) return;
    try {
      const file = openOwnFile(this.#config.pidfile, {
        append: false,
        mode: 0o644,
        what: "pidfile",
      });
      try {
        file.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
      } finally {
        file.close();
      }
      this.#written = true;
    } catch (err) {
      this.#log.error("cannot write pidfile", {
        path: this.#config.pidfile,
        error: (err as Error).message,
      });
    }
  }

  remove(): void {
    if (!this.#written) return;
    try {
      Deno.removeSync(this.#config.pidfile);
    } catch {
      // already gone
    }
  }
}
