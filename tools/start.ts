/**
 * `deno task start <qemu-ga options>`: runs the agent in the foreground with exactly the permission
 * set `deno task compile` bakes into the binary — both come from `agentFlags()` of the effective
 * configuration. Signals are passed on; the agent's exit code is ours.
 *
 * @module
 */

import { isLocalCommand } from "../src/cli.ts";
import { parseConfig, type ParseResult } from "../src/config/mod.ts";
import { agentFlags, denoRunOptions } from "../src/permissions.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function readConfigFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/** The permission flags for these agent arguments (none when they do not parse: the agent then
 *  only prints its usage error). */
export function flagsFor(argv: readonly string[], env: { QGA_CONF?: string }): string[] {
  const options = argv[0] !== undefined && isLocalCommand(argv[0]) ? argv.slice(1) : argv;
  let parsed: ParseResult;
  try {
    parsed = parseConfig(options, env, readConfigFile);
  } catch {
    return ["--no-prompt", "--allow-env=QGA_CONF"];
  }
  if (parsed.action === "run" || parsed.action === "dump") {
    return agentFlags(parsed.config, denoRunOptions());
  }
  return ["--no-prompt", "--allow-env=QGA_CONF", "--allow-read"];
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
