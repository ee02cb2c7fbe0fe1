/**
 * The freeze commands (docs/design.md #3–8) and our report command (docs/design.md #11).
 *
 * @module
 */

import type { FreezeService } from "../fsfreeze/mod.ts";
import type { DispatchContext } from "../protocol/dispatch.ts";
import type { Registry } from "../protocol/registry.ts";

/**
 * The report command's name follows QAPI's rule for downstream extensions (`__RFQDN_name`), so it
 * can never collide with a command upstream adds.
 */
export const REPORT_COMMAND = "__io.github.fsfreeze-agent_guest-fsfreeze-report";

/** What the freeze commands need from the agent. */
export interface FsfreezeContext extends DispatchContext {
  freezer: FreezeService;
}

/** Registers the freeze commands in qemu-ga's order, then the report command. */
export function registerFsfreezeCommands<Ctx extends FsfreezeContext>(
  registry: Registry<Ctx>,
): void {
  registry.register({
    name: "guest-fsfreeze-status",
    handler: (_args, ctx) => ctx.freezer.status(),
  });
  registry.register({
    name: "guest-fsfreeze-freeze",
    handler: (_args, ctx) => ctx.freezer.freeze("guest-fsfreeze-freeze"),
  });
  registry.register({
    name: "guest-fsfreeze-freeze-list",
    args: [{ name: "mountpoints", type: "str-list", optional: true }],
    handler: (args, ctx) =>
      ctx.freezer.freeze("guest-fsfreeze-freeze-list", args.mountpoints as string[] | undefined),
  });
  registry.register({
    name: "guest-fsfreeze-thaw",
    handler: (_args, ctx) => ctx.freezer.thaw("host"),
  });
  registry.register({
    name: REPORT_COMMAND,
    handler: (_args, ctx) => ctx.freezer.report ?? {},
  });
}
