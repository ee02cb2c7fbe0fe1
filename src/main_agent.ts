/**
 * Starting and stopping the agent process: permission check, crash recovery, pidfile, the serve
 * loop, and a stop that never leaves filesystems frozen.
 *
 * @module
 */

import { AfterReply, runAgent } from "./agent.ts";
import { createRegistry } from "./commands/mod.ts";
import type { Delegate } from "./commands/delegate/mod.ts";
import { type Config, ConfigError, writesPidfile } from "./config/mod.ts";
import { errorMessage } from "./errors.ts";
import { loadLater } from "./load_later.ts";
import { checkStatedir, LazyFreezeService } from "./fsfreeze/mod.ts";
import type { AgentLogger } from "./log.ts";
import { missingPermissions } from "./permission_check.ts";
import { type ListenEnv, openTransport, socketActivation } from "./transport/mod.ts";
import {
  checkDirectory,
  checkOwnFileOrAbsent,
  openOwnFile,
  parentDirectory,
  removeQuietly,
  UnsafePathError,
} from "./safe_files.ts";

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
  const afterReply = new AfterReply();
  const freezer = new LazyFreezeService(config, {
    log,
    startWatchdog: () => startOwnWatchdog(config, options.argv, log),
    onThawed: () => {
      log.openFile();
      pidfile.writeIfDue();
    },
    afterReply: (work) => afterReply.schedule(work),
  });
  await freezer.recover();
  // Start-up stays short; the engine loads once the first reply is out, not in the first freeze.
  afterReply.afterNextReply(() => {
    freezer.preload();
    raisePriority(log);
  });
  if (!freezer.frozen) {
    log.openFile();
    pidfile.writeIfDue();
  }
  const forwarder = await openDelegate(config, log, freezer.frozen);
  const ctx = { log, freezer, forwarder, frozen: () => freezer.frozen };
  try {
    await runAgent({
      config,
      log,
      registry,
      ctx,
      signal: options.signal,
      afterReply,
      openTransport: (cfg, logger) => openTransport(cfg, logger, activation),
    });
  } finally {
    forwarder?.close();
    await freezer.shutdown();
    pidfile.remove();
    log.info("agent stopped");
    log.close();
  }
  return 0;
}

/**
 * The delegate, when the configuration names one (docs/design.md #36). Its modules load here,
 * never on first use, which may come while frozen (#29); its session opens in the background,
 * unless the agent starts frozen.
 */
async function openDelegate(
  config: Config,
  log: AgentLogger,
  frozen: boolean,
): Promise<Delegate | undefined> {
  if (config.delegateSocket === undefined) return undefined;
  const { configuredDelegate } = await loadLater<typeof import("./commands/delegate/mod.ts")>(
    new URL("./commands/delegate/mod.ts", import.meta.url),
  );
  const delegate = configuredDelegate(config, log);
  if (!frozen) delegate?.start();
  return delegate;
}

/**
 * Start-up: refuses directories and entries another user could use to make the agent (root)
 * write through a planted link or into a file that is not its own.
 * @throws {ConfigError}
 */
function checkFileSafety(config: Config): void {
  try {
    checkStatedir(config.statedir);
    if (writesPidfile(config)) checkFileAndDirectory(config.pidfile, "pidfile");
    if (config.logfile !== undefined) checkFileAndDirectory(config.logfile, "log file");
  } catch (err) {
    if (err instanceof UnsafePathError) throw new ConfigError(err.message, { cause: err });
    throw err;
  }
}

function checkFileAndDirectory(path: string, what: string): void {
  checkDirectory(parentDirectory(path), `${what} directory`);
  checkOwnFileOrAbsent(path, what);
}

/**
 * Starts the agent's own thaw watchdog (when no systemd unit provides one): a copy of this
 * program in its own process group, so a signal to the agent's group does not take it along. It
 * leaves by itself once the agent has gone and no cycle is in force.
 */
async function startOwnWatchdog(
  config: Config,
  argv: readonly string[],
  log: AgentLogger,
): Promise<{ exited: Promise<unknown> }> {
  try {
    const [{ selfCommand }, { agentPriority }] = await Promise.all([
      loadSelfExec(),
      loadPriority(),
    ]);
    const { command, args } = selfCommand(config, ["watchdog", ...argv]);
    const watchdog = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
      detached: true,
    });
    // It starts where the agent started, and raises itself as the agent did.
    const child = agentPriority.spawnAtStartPriority(() => watchdog.spawn());
    child.unref();
    return { exited: child.status };
  } catch (err) {
    log.error("cannot start the thaw watchdog", { error: String(err) });
    throw err;
  }
}

/** Raises the agent's threads (docs/design.md #50); whatever happens, the agent serves on. */
function raisePriority(log: AgentLogger): void {
  loadPriority()
    .then(({ agentPriority }) => {
      const outcome = agentPriority.raise();
      if (outcome.raised) log.debug("priority raised", { nice: outcome.nice });
      else log.debug("priority kept", { nice: outcome.nice, reason: outcome.reason });
    })
    .catch((err) => log.warn("cannot raise the priority", { error: errorMessage(err) }));
}

function loadPriority(): Promise<typeof import("./priority.ts")> {
  return loadLater(new URL("./priority.ts", import.meta.url));
}

function loadSelfExec(): Promise<typeof import("./self_exec.ts")> {
  return loadLater(new URL("./self_exec.ts", import.meta.url));
}

async function daemonize(config: Config, argv: readonly string[]): Promise<number> {
  const { selfCommand } = await loadSelfExec();
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
    if (this.#written || !writesPidfile(this.#config)) return;
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
        error: errorMessage(err),
      });
    }
  }

  remove(): void {
    if (this.#written) removeQuietly(this.#config.pidfile);
  }
}
