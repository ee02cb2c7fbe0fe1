/**
 * Local subcommands for an operator on the guest (DESIGN.md item 11): `status` prints the last
 * cycle's report from the state directory, `thaw` is the break-glass thaw; and `watchdog`, the
 * mode the agent starts its thaw watchdog in. They work while the agent is frozen or dead.
 *
 * @module
 */

import type { Config, ExtraFlags } from "./config/mod.ts";
import type { Logger } from "./log.ts";
import { loadLibc } from "./linux/libc.ts";
import { thawClaimed } from "./fsfreeze/cycle.ts";
import { thawMounts } from "./fsfreeze/freezer.ts";
import { loadReport, renderReport } from "./fsfreeze/report.ts";
import { selectMounts, thawOrder } from "./fsfreeze/select.ts";
import { checkStatedir, claimState, readState, statePaths } from "./fsfreeze/state.ts";
import { runWatchdog } from "./fsfreeze/watchdog.ts";

const LOCAL_COMMANDS = ["status", "thaw", "watchdog"] as const;
/** A local subcommand name. */
export type LocalCommand = typeof LOCAL_COMMANDS[number];

/** Whether the first argument names a local subcommand. */
export function isLocalCommand(word: string): word is LocalCommand {
  return (LOCAL_COMMANDS as readonly string[]).includes(word);
}

/** Where a local command prints (main passes stdout). */
export type Print = (text: string) => void;

/** Runs a local subcommand; returns the exit code. */
export async function runLocalCommand(
  command: LocalCommand,
  config: Config,
  extra: ExtraFlags,
  positionals: readonly string[],
  io: { log: Logger; print: Print; signal: AbortSignal },
): Promise<number> {
  checkStatedir(config.statedir);
  switch (command) {
    case "status":
      return printStatus(config, extra, io.print);
    case "thaw":
      return await localThaw(config, extra, io.log, io.print);
    case "watchdog": {
      const cycle = positionals[0];
      if (cycle === undefined) throw new Error("watchdog: missing cycle id");
      loadLibc();
      await runWatchdog(config, cycle, io.log, io.signal);
      return 0;
    }
  }
}

function printStatus(config: Config, extra: ExtraFlags, print: Print): number {
  const paths = statePaths(config.statedir);
  const state = readState(paths.state) ?? readState(paths.claim);
  const report = loadReport(paths.report);
  const status = state ? "frozen" : "thawed";
  if (extra.json) {
    print(JSON.stringify({ status, state: state ?? null, report: report ?? null }, null, 2) + "\n");
    return 0;
  }
  print(`status: ${status}\n`);
  if (state) {
    const deadline = state.deadline === null ? "none" : new Date(state.deadline).toISOString();
    print(`frozen since ${new Date(state.startedAt).toISOString()}, auto-thaw: ${deadline}\n`);
    print(`mounts: ${state.mounts.join(" ") || "(none recorded)"}\n`);
  }
  if (report && (!state || report.cycle === state.cycle)) print(renderReport(report));
  else if (!state) print("no freeze cycle recorded\n");
  return 0;
}

async function localThaw(
  config: Config,
  extra: ExtraFlags,
  log: Logger,
  print: Print,
): Promise<number> {
  loadLibc();
  const paths = statePaths(config.statedir);
  const everything = extra.all ? thawOrder(selectMounts(config).waves) : [];
  const claimed = claimState(paths);
  if (!claimed) {
    if (!extra.all) {
      print("nothing to thaw: no freeze cycle recorded (use --all to thaw every mount)\n");
      return 0;
    }
    const count = thawMounts(everything).filter((o) => o.thawed).length;
    print(`thawed ${count} filesystems (no hook: no freeze cycle recorded)\n`);
    return 0;
  }
  const mounts = [...new Set([...claimed.mounts, ...everything])];
  const result = await thawClaimed(config, paths, claimed, mounts, "local", log, undefined);
  print(renderReport(result.report));
  return result.hook?.failure ? 1 : 0;
}
