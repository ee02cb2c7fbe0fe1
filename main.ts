/**
 * Entry point: the only place that reads `Deno.args` and `Deno.env`, installs signal handlers and
 * calls `Deno.exit`. Everything else takes values and throws.
 *
 * Exit codes: 0 for a requested stop (and -h, -V, -D, -b help), 1 for a usage, configuration or
 * runtime failure (as qemu-ga).
 *
 * @module
 */

import type { LocalCommand } from "./src/cli.ts";
import { commandNames, createRegistry } from "./src/commands/mod.ts";
import { type Config, parseConfig, renderConfig, UsageError, usageText } from "./src/config/mod.ts";
import { errorMessage } from "./src/errors.ts";
import { createLogger, silentLogger } from "./src/log.ts";
import { loadLater } from "./src/load_later.ts";
import type { ForwardedCommand } from "./src/protocol/dispatch.ts";
import { startAgent } from "./src/main_agent.ts";
import type { ListenEnv } from "./src/transport/mod.ts";
import { VERSION_LINE } from "./src/version.ts";
import { readConfigFile } from "./src/config/read.ts";

const PROGRAM = "fsfreeze-agent";
const encoder = new TextEncoder();

function print(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text));
}

function printError(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}

/**
 * systemd's socket-activation variables, removed from the environment once read (as
 * sd_listen_fds(3) with `unset_environment`): children (hooks, the watchdog) inherit the agent's
 * environment and must not take them for their own. LISTEN_FDNAMES may stay: without LISTEN_PID
 * it means nothing.
 */
function takeListenEnv(): ListenEnv {
  const listenEnv = {
    LISTEN_FDS: Deno.env.get("LISTEN_FDS"),
    LISTEN_PID: Deno.env.get("LISTEN_PID"),
  };
  Deno.env.delete("LISTEN_FDS");
  Deno.env.delete("LISTEN_PID");
  return listenEnv;
}

/** SIGTERM and SIGINT abort the returned signal (a requested stop, exit 0). */
function stopSignal(): AbortSignal {
  const controller = new AbortController();
  for (const name of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(name, () => controller.abort(name));
  }
  return controller.signal;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  // Local subcommands are words, never options: only they load cli.ts and the freeze engine it
  // needs (the agent loads the engine on its first freeze command; start-up stays short).
  const cli = first !== undefined && !first.startsWith("-")
    ? await loadLater<typeof import("./src/cli.ts")>(new URL("./src/cli.ts", import.meta.url))
    : undefined;
  const local = cli?.isLocalCommand(first as string) ? first as LocalCommand : undefined;
  const env = { QGA_CONF: Deno.env.get("QGA_CONF") };
  const parsed = parseConfig(local ? rest : argv, env, readConfigFile);
  switch (parsed.action) {
    case "help":
      print(usageText(PROGRAM));
      return 0;
    case "version":
      print(`${VERSION_LINE}\n`);
      return 0;
    case "list-commands": {
      const names = commandNames(createRegistry(), await delegateCommands(parsed.config));
      print(names.map((name) => `${name}\n`).join(""));
      return 0;
    }
    case "dump":
      print(renderConfig(parsed.config));
      return 0;
  }
  const { config, extra } = parsed;
  const log = createLogger({ level: logLevel(config), logFile: config.logfile });
  const signal = stopSignal();
  const listenEnv = takeListenEnv();
  if (cli !== undefined && local !== undefined) {
    return await cli.runLocalCommand(local, config, extra, { log, print, signal, listenEnv });
  }
  return await startAgent(config, log, {
    argv,
    signal,
    detachedChild: extra.detachedChild,
    listenEnv,
  });
}

/**
 * The delegate's commands for `-b help` (docs/design.md #40): they can be blocked and allowed as
 * ours. A delegate that does not answer is reported; its commands are then not listed.
 */
async function delegateCommands(config: Config): Promise<readonly ForwardedCommand[]> {
  if (config.delegateSocket === undefined) return [];
  const { configuredDelegate } = await loadLater<typeof import("./src/commands/delegate/mod.ts")>(
    new URL("./src/commands/delegate/mod.ts", import.meta.url),
  );
  const delegate = configuredDelegate(config, silentLogger)!;
  try {
    return await delegate.commands(true);
  } catch (err) {
    printError(`${PROGRAM}: ${errorMessage(err)}; its commands are not listed\n`);
    return [];
  } finally {
    delegate.close();
  }
}

function logLevel(config: Config): "debug" | "info" {
  return config.verbose || config.debug ? "debug" : "info";
}

function reportFailure(err: unknown): void {
  printError(`${PROGRAM}: ${errorMessage(err)}\n`);
  if (err instanceof UsageError) {
    printError(`Unknown option, try '${PROGRAM} --help' for more information.\n`);
  }
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    reportFailure(err);
    code = 1;
  }
  Deno.exit(code);
}
