/**
 * The guest-information and power commands hosts expect of a QEMU guest agent: KubeVirt counts
 * the agent as supported only when `guest-info` lists them enabled (docs/design.md #27), libvirt's
 * `virDomainGetGuestInfo` and KubeVirt's pollers call them (`guest-get-load` included).
 *
 * Each reply follows the QAPI schema (qga/qapi-schema.json) and qemu-ga's Linux behaviour; the
 * modules here hold the details. Registered in qemu-ga's order, in three groups, so that
 * commands/mod.ts can place them among the others.
 *
 * @module
 */

import { genericError } from "../../errors.ts";
import { loadLater } from "../../load_later.ts";
import { CLOCK_REALTIME, clockGettime } from "../../linux/system.ts";
import { readTextFileRaw } from "../../linux/files.ts";
import { errorReason } from "../../linux/errno.ts";
import type { Logger } from "../../log.ts";
import type { DispatchContext } from "../../protocol/dispatch.ts";
import type { Registry } from "../../protocol/registry.ts";
import { parseShutdownMode, runHelper, shutdownArgv } from "./shutdown.ts";

/** What these commands need from the agent. */
export interface SystemContext extends DispatchContext {
  log: Logger;
}

/** `guest-get-time` (qemu-ga registers it right after `guest-ping`). */
export function registerTimeCommands<Ctx extends SystemContext>(registry: Registry<Ctx>): void {
  registry.register({
    name: "guest-get-time",
    // Nanoseconds since the Epoch (qemu-ga: GLib's microseconds × 1000).
    handler: () => clockGettime(CLOCK_REALTIME),
  });
}

/** `guest-shutdown` (qemu-ga registers it right after `guest-info`). */
export function registerShutdownCommand<Ctx extends SystemContext>(
  registry: Registry<Ctx>,
): void {
  registry.register({
    name: "guest-shutdown",
    // The schema types `mode` as a plain string; the handler checks it with qemu-ga's text.
    args: [{ name: "mode", type: "str", optional: true }],
    successResponse: false,
    handler: async (args, ctx) => {
      const mode = parseShutdownMode(args.mode as string | undefined);
      ctx.log.info("guest-shutdown called", { mode });
      await runHelper(shutdownArgv(mode), "shutdown");
    },
  });
}

/**
 * The read-only guest information commands, in qemu-ga's order: `guest-network-get-interfaces`,
 * `guest-get-fsinfo`, `guest-get-host-name`, `guest-get-users`, `guest-get-timezone`,
 * `guest-get-osinfo`, `guest-get-load`.
 */
export function registerGuestInfoCommands<Ctx extends SystemContext>(
  registry: Registry<Ctx>,
): void {
  // The implementations load on first use: they are polled every few minutes at most, and
  // loading them up front would cost every start-up.
  registry.register({
    name: "guest-network-get-interfaces",
    handler: async () =>
      (await loadLater<typeof import("./network.ts")>(new URL("./network.ts", import.meta.url)))
        .guestNetworkInterfaces(),
  });
  registry.register({
    name: "guest-get-fsinfo",
    handler: async () =>
      (await loadLater<typeof import("./fsinfo.ts")>(new URL("./fsinfo.ts", import.meta.url)))
        .guestFsinfo(),
  });
  registry.register({ name: "guest-get-host-name", handler: () => ({ "host-name": hostName() }) });
  registry.register({
    name: "guest-get-users",
    handler: async () =>
      (await loadLater<typeof import("./users.ts")>(new URL("./users.ts", import.meta.url)))
        .guestUsers(),
  });
  registry.register({
    name: "guest-get-timezone",
    handler: async () =>
      (await loadLater<typeof import("./timezone.ts")>(new URL("./timezone.ts", import.meta.url)))
        .guestTimezone(),
  });
  registry.register({
    name: "guest-get-osinfo",
    handler: async () =>
      (await loadLater<typeof import("./os_info.ts")>(new URL("./os_info.ts", import.meta.url)))
        .guestOsInfo(),
  });
  registry.register({ name: "guest-get-load", handler: () => guestLoad() });
}

/** gethostname(2), or "localhost" when it fails (qemu-ga's fallback). */
function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

/** `GuestLoadAverage` of the QAPI schema. */
export interface GuestLoadAverage {
  load1m: number;
  load5m: number;
  load15m: number;
}

/** The first three fields of `/proc/loadavg` (what glibc's getloadavg(3) parses). */
export function parseLoadavg(text: string): GuestLoadAverage {
  const [load1m, load5m, load15m] = text.trim().split(/\s+/, 3).map(Number);
  if ([load1m, load5m, load15m].some((value) => value === undefined || Number.isNaN(value))) {
    throw new RangeError(`unexpected /proc/loadavg: ${text}`);
  }
  return { load1m: load1m!, load5m: load5m!, load15m: load15m! };
}

/**
 * `guest-get-load`: glibc's getloadavg(3) figures, read from the same file.
 * @throws {AgentError} `cannot query load average: <reason>`
 */
function guestLoad(): GuestLoadAverage {
  try {
    return parseLoadavg(readTextFileRaw("/proc/loadavg", { maxBytes: 4096 }));
  } catch (err) {
    throw genericError(`cannot query load average: ${errorReason(err)}`, { cause: err });
  }
}
