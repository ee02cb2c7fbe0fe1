/**
 * Builds the command registry: the protocol commands and the freeze commands, registered in
 * qemu-ga's order (its `-b help` lists them in this order, `guest-info` in reverse).
 *
 * @module
 */

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
