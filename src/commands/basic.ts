/**
 * The protocol's own commands: `guest-sync`, `guest-sync-delimited`, `guest-ping`, `guest-info`
 * (docs/protocol.md, "The protocol commands").
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { delimited, type DispatchContext, type ForwardedCommand } from "../protocol/dispatch.ts";
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

/**
 * Registers `guest-info`, which lists every command registered (before or after it) and the
 * delegate's (docs/design.md #40).
 */
export function registerInfoCommand<Ctx extends BasicContext>(registry: Registry<Ctx>): void {
  registry.register({
    name: "guest-info",
    handler: (_args, ctx) => {
      const frozen = ctx.frozen();
      if (ctx.forwarder === undefined) return guestInfo(registry, [], frozen);
      return forwardedCommands(ctx, !frozen).then((list) => guestInfo(registry, list, frozen));
    },
  });
}

/** One entry of `supported_commands`, in qemu-ga's member names. */
interface SupportedCommand {
  name: string;
  enabled: boolean;
  "success-response": boolean;
}

function guestInfo<Ctx extends BasicContext>(
  registry: Registry<Ctx>,
  forwarded: readonly ForwardedCommand[],
  frozen: boolean,
): { version: string; supported_commands: SupportedCommand[] } {
  return {
    version: AGENT_VERSION,
    supported_commands: supportedCommands(registry, forwarded, frozen),
  };
}

/**
 * `guest-info`'s list. qemu-ga prepends while walking its registry, so it lists in reverse
 * registration order; the forwarded commands count as registered after ours, so they come first,
 * in the order the delegate lists them. A name we implement is listed once, as ours. A forwarded
 * command is enabled when the delegate says so and our allow, block and frozen rules agree.
 */
export function supportedCommands<Ctx>(
  registry: Registry<Ctx>,
  forwarded: readonly ForwardedCommand[],
  frozen: boolean,
): SupportedCommand[] {
  const own = registry.list();
  const theirs = forwarded
    .filter((command) => registry.get(command.name) === undefined)
    .map((command) => ({
      name: command.name,
      enabled: command.enabled && registry.isEnabled(command.name, frozen),
      "success-response": command.successResponse,
    }));
  return theirs.concat(
    own.reverse().map((spec) => ({
      name: spec.name,
      enabled: registry.isEnabled(spec.name, frozen),
      "success-response": spec.successResponse !== false,
    })),
  );
}

/**
 * The forwarder's commands: asked for when `ask` and it never listed them; when it cannot be
 * asked, what it listed last (guest-info always answers).
 */
async function forwardedCommands(
  ctx: DispatchContext,
  ask: boolean,
): Promise<readonly ForwardedCommand[]> {
  const forwarder = ctx.forwarder;
  if (forwarder === undefined) return [];
  try {
    return await forwarder.commands(ask);
  } catch {
    return await forwarder.commands(false);
  }
}
