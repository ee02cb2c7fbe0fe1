/**
 * `deno task start <qemu-ga options>`: runs the agent in the foreground with exactly the permission
 * set `deno task compile` bakes into the binary — both come from `agentFlags()` of the effective
 * configuration. Signals are passed on; the agent's exit code is ours.
 *
 * @module
 */

import { isLocalCommand } from "../src/cli.ts";
import { DEFAULTS, parseConfig, type ParseResult } from "../src/config/mod.ts";
import { agentFlags, denoRunOptions } from "../src/permissions.ts";
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
  return minimal;
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
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, MAIN, ...Deno.args],
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
