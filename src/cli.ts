/**
 * Local subcommands for an operator on the guest (docs/design.md #11): `status`
 * prints the last cycle's report from the state directory, `thaw` is the break-glass thaw; and
 * `watchdog`, the agent's thaw watchdog (started by systemd through its socket, or by the agent).
 * They work while the agent is frozen or dead.
 *
 * @module
 */

import type { Config, ExtraFlags } from "./config/mod.ts";
import { checkStatedir, localThaw, serveWatchdog, statePaths, statusText } from "./fsfreeze/mod.ts";
import type { Logger } from "./log.ts";
import { type ListenEnv, openTransport, socketActivation } from "./transport/mod.ts";
import { listenUnix } from "./transport/socket.ts";

const LOCAL_COMMANDS = ["status", "thaw", "watchdog"] as const;
/** A local subcommand name. */
export type LocalCommand = typeof LOCAL_COMMANDS[number];

/** Whether the first argument names a local subcommand. */
export function isLocalCommand(word: string): word is LocalCommand {
  return (LOCAL_COMMANDS as readonly string[]).includes(word);
}

/** Where a local command prints (main passes stdout). */
export type Print = (text: string) => void;

/** What main passes to a local command. */
export interface LocalIo {
  log: Logger;
  print: Print;
  signal: AbortSignal;
  /** systemd's socket-activation variables (the watchdog's socket). */
  listenEnv: ListenEnv;
}

/** Runs a local subcommand; returns the exit code. */
export async function runLocalCommand(
  command: LocalCommand,
  config: Config,
  extra: ExtraFlags,
  io: LocalIo,
): Promise<number> {
  checkStatedir(config.statedir);
  switch (command) {
    case "status":
      io.print(statusText(config, extra.json));
      return 0;
    case "thaw": {
      const { text, code } = await localThaw(config, io.log, extra.all);
      io.print(text);
      return code;
    }
    case "watchdog":
      await watchdog(config, io);
      return 0;
  }
}

/** The watchdog on the socket systemd passed (it stays), or on its own (it leaves when idle). */
async function watchdog(config: Config, io: LocalIo): Promise<void> {
  const activation = await socketActivation(io.listenEnv, Deno.pid);
  const transport = activation === undefined
    ? await listenUnix(statePaths(config.statedir).watchdogSocket, io.log)
    : await openTransport(config, io.log, activation);
  await serveWatchdog(config, io.log, {
    transport,
    persistent: activation !== undefined,
    signal: io.signal,
  });
}
