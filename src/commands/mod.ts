/**
 * Builds the command registry: the protocol commands and the freeze commands, registered in
 * qemu-ga's order (its `-b help` lists them in this order, `guest-info` in reverse). Commands we
 * do not implement may be served by the delegate (delegate/, docs/design.md #36).
 *
 * @module
 */

import type { ForwardedCommand } from "../protocol/dispatch.ts";
import { Registry } from "../protocol/registry.ts";
import { type BasicContext, registerInfoCommand, registerSyncCommands } from "./basic.ts";
import { type FsfreezeContext, registerFsfreezeCommands, REPORT_COMMAND } from "./fsfreeze.ts";
import {
  registerGuestInfoCommands,
  registerShutdownCommand,
  registerTimeCommands,
} from "./system/mod.ts";

/** Everything a command handler can reach. */
export interface AgentContext extends BasicContext, FsfreezeContext {}

/** A registry with every command; its handlers need an {@link AgentContext}. */
export function createRegistry(): Registry<AgentContext> {
  const registry = new Registry<AgentContext>([REPORT_COMMAND]);
  registerSyncCommands(registry);
  registerTimeCommands(registry);
  registerInfoCommand(registry);
  registerShutdownCommand(registry);
  registerFsfreezeCommands(registry);
  registerGuestInfoCommands(registry);
  return registry;
}

/**
 * Every command name in registration order, as `-b help` prints them: ours, then the forwarded
 * ones we do not implement. These count as registered after ours, and their `guest-info` lists
 * them in reverse registration order, so they are reversed here.
 */
export function commandNames<Ctx>(
  registry: Registry<Ctx>,
  forwarded: readonly ForwardedCommand[] = [],
): string[] {
  const theirs = forwarded
    .filter((command) => registry.get(command.name) === undefined)
    .map((command) => command.name)
    .reverse();
  return registry.list().map((spec) => spec.name).concat(theirs);
}
