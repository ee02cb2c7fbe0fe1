/**
 * `deno task start <qemu-ga options>`: runs the agent in the foreground with exactly the permission
 * set `deno task compile` bakes into the binary — both come from `agentFlags()` of the effective
 * configuration. Signals are passed on; the agent's exit code is ours.
 *
 * @module
 */

import { isLocalCommand } from "../src/cli.ts";
import { DEFAULTS, parseConfig, type ParseResult } from "../src/config/mod.ts";
import { AGENT_DENO_ENV, agentFlags, denoRunOptions } from "../src/permissions.ts";
import { isUnder } from "../src/fsfreeze/selection.ts";
import { readConfigFile } from "../src/config/read.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The permission flags for these agent arguments (none when they do not parse: the agent then
 *  only prints its usage error). */
export function flagsFor(argv: readonly string[], env: { QGA_CONF?: string }): string[] {
  const options = argv[0] !== undefined && isLocalCommand(argv[0]) ? argv.slice(1) : argv;
  // The agent prints its own usage or configuration error; it may read only its config file.
  const minimal = [
    "--no-prompt",
    "--allow-env=QGA_CONF",
    `--allow-read=${configPaths(options, env)}`,
  ];
  let parsed: ParseResult;
  try {
    parsed = parseConfig(options, env, readConfigFile);
  } catch {
    return minimal;
  }
  if (parsed.action === "run" || parsed.action === "dump") {
    return agentFlags(parsed.config, denoRunOptions());
  }
  // `-b help` lists the delegate's commands too: it may connect to the delegate's socket, and
  // loads the delegate's modules from the source directory (src/load_later.ts).
  const socket = parsed.action === "list-commands" ? parsed.config.delegateSocket : undefined;
  if (socket === undefined) return minimal;
  return [
    ...minimal.slice(0, 2),
    `${minimal[2]},${socket},${denoRunOptions().sourceDir}`,
    `--allow-write=${socket}`,
    `--allow-net=unix:${socket}`,
  ];
}

/**
 * Under `deno run` (not the compiled binary) Deno may write its caches in DENO_DIR while the agent
 * runs — a lazily loaded module, the code cache. If that directory is on a filesystem the agent
 * freezes, the write blocks and nothing can thaw it: say so before starting.
 */
export function denoDirWarning(
  argv: readonly string[],
  env: { QGA_CONF?: string; DENO_DIR?: string; HOME?: string; XDG_CACHE_HOME?: string },
): string | undefined {
  const options = argv[0] !== undefined && isLocalCommand(argv[0]) ? argv.slice(1) : argv;
  let parsed: ParseResult;
  try {
    parsed = parseConfig(options, env, readConfigFile);
  } catch {
    return undefined;
  }
  if (parsed.action !== "run") return undefined;
  const cache = env.DENO_DIR ?? `${env.XDG_CACHE_HOME ?? `${env.HOME ?? "/root"}/.cache`}/deno`;
  const covering = parsed.config.fsfreezeScope.find((base) => isUnder(cache, base));
  if (covering === undefined) return undefined;
  return `warning: Deno's cache ${cache} is inside the freeze scope (${covering}). Under deno run ` +
    "Deno may write there while filesystems are frozen, which would hang the agent. Narrow " +
    "--fsfreeze-scope, or set DENO_DIR to a tmpfs; the compiled binary has no such cache.\n";
}

/** Every config file the arguments could name (`-c`, `--config`), else $QGA_CONF or the default. */
function configPaths(argv: readonly string[], env: { QGA_CONF?: string }): string {
  const named: string[] = [];
  argv.forEach((arg, i) => {
    if ((arg === "-c" || arg === "--config") && argv[i + 1] !== undefined) named.push(argv[i + 1]!);
    else if (arg.startsWith("--config=")) named.push(arg.slice("--config=".length));
    else if (/^-c./.test(arg)) named.push(arg.slice(2));
  });
  return [...named, env.QGA_CONF ?? DEFAULTS.configPath].join(",");
}

if (import.meta.main) {
  const qgaConf = Deno.env.get("QGA_CONF");
  const flags = flagsFor(Deno.args, qgaConf === undefined ? {} : { QGA_CONF: qgaConf });
  const env: Record<string, string> = {};
  for (const name of ["QGA_CONF", "DENO_DIR", "HOME", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const warning = denoDirWarning(Deno.args, env);
  if (warning) Deno.stderr.writeSync(new TextEncoder().encode(warning));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, MAIN, ...Deno.args],
    env: { ...AGENT_DENO_ENV },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    // The agent decides how to stop (it thaws first when frozen); we only pass the signal on.
    Deno.addSignalListener(signal, () => {
      try {
        child.kill(signal);
      } catch {
        // already exited
      }
    });
  }
  const status = await child.status;
  Deno.exit(status.code);
}
