/**
 * How the agent starts another copy of itself (the thaw watchdog, the daemonized agent) with the
 * same permission set: the compiled binary just runs itself; under `deno run` the copy gets the
 * flags derived from the same configuration.
 *
 * @module
 */

import type { Config } from "./config/mod.ts";
import { agentFlags, denoRunOptions } from "./permissions.ts";

/** The program and leading arguments that start this agent again. */
export interface SelfCommand {
  command: string;
  args: string[];
}

/** Builds the command line that re-runs this program with `args`. */
export function selfCommand(config: Config, args: readonly string[]): SelfCommand {
  const executable = Deno.execPath();
  if (Deno.build.standalone) return { command: executable, args: [...args] };
  const main = new URL("../main.ts", import.meta.url).pathname;
  const flags = agentFlags(config, denoRunOptions());
  return { command: executable, args: ["run", ...flags, main, ...args] };
}
