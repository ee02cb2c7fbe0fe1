/**
 * The protocol's own commands: `guest-sync`, `guest-sync-delimited`, `guest-ping`, `guest-info`
 * (docs/protocol.md, "The protocol commands").
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { delimited, type DispatchContext } from "../protocol/dispatch.ts";
import type { Registry } from "../protocol/registry.ts";
import { AGENT_VERSION } from "../version.ts";

/** What these commands need from the agent. */
export interface BasicContext extends DispatchContext {
  log: Logger;
}

/** Registers `guest-sync-delimited`, `guest-sync` and `guest-ping`, in qemu-ga's order. */
export function registerSyncCommands<Ctx extends BasicContext>(registry: Registry<Ctx>): void {
  registry.register({
    name: "guest-sync-delimited",
    args: [{ name: "id", type: "int" }],
    handler: (args) => delimited(args.id),
  });
  registry.register({
    name: "guest-sync",
    args: [{ name: "id", type: "int" }],
    handler: (args) => args.id,
  });
  registry.register({
    name: "guest-ping",
    handler: (_args, ctx) => {
      ctx.log.debug("guest-ping called");
      return {};
    },
  });
}

/** Registers `guest-info`, which lists every command registered (before or after it). */
export function registerInfoCommand<Ctx extends BasicContext>(registry: Registry<Ctx>): void {
  registry.register({
    name: "guest-info",
    handler: (_args, ctx) => ({
      version: AGENT_VERSION,
      // qemu-ga prepends while walking its registry, so its list is in reverse registration order.
      supported_commands: registry.list().reverse().map((spec) => ({
        name: spec.name,
        enabled: registry.isEnabled(spec.name, ctx.frozen()),
        "success-response": spec.successResponse !== false,
      })),
    }),
  });
}
