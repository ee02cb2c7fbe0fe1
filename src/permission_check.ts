/**
 * Checks at start-up that the agent was granted what its effective configuration needs, so a
 * compiled binary run with options outside the configuration it was built for fails at once with
 * a clear message instead of at the first freeze.
 *
 * @module
 */

import type { Config } from "./config/mod.ts";

/** The permissions `config` needs that are not granted, as `"<kind> <target>"` strings. */
export function missingPermissions(config: Config): string[] {
  const wanted: Deno.PermissionDescriptor[] = [
    { name: "read", path: "/proc/self/mountinfo" },
    { name: "read", path: config.statedir },
    { name: "write", path: config.statedir },
  ];
  if (config.logfile !== undefined) wanted.push({ name: "write", path: config.logfile });
  if (config.daemonize || config.pidfileExplicit) {
    wanted.push({ name: "write", path: config.pidfile });
  }
  if (config.fsfreezeHook !== undefined) {
    wanted.push({ name: "read", path: config.fsfreezeHook });
    wanted.push({ name: "run", command: config.fsfreezeHook });
  }
  if (config.method === "vsock-listen") {
    wanted.push({ name: "net", host: `vsock:${config.path}` });
  } else if (config.method === "unix-listen") {
    wanted.push({ name: "net", host: `unix:${config.path}` });
  } else {
    wanted.push({ name: "read", path: config.path }, { name: "write", path: config.path });
  }
  return wanted.filter((d) => Deno.permissions.querySync(d).state !== "granted").map(describe);
}

function describe(descriptor: Deno.PermissionDescriptor): string {
  switch (descriptor.name) {
    case "read":
    case "write":
      return `${descriptor.name} ${descriptor.path}`;
    case "run":
      return `run ${descriptor.command}`;
    case "net":
      return `net ${descriptor.host}`;
    default:
      return descriptor.name;
  }
}
