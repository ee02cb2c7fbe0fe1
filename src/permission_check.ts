/**
 * Checks at start-up that the agent was granted what its effective configuration needs, so a
 * compiled binary run with options outside the configuration it was built for fails at once with
 * a clear message instead of at the first freeze. What it checks is exactly the permission set
 * (permissions.ts) of that configuration.
 *
 * @module
 */

import type { Config } from "./config/mod.ts";
import {
  currentOptions,
  permissionDescriptors,
  type PermissionOptions,
  permissionSet,
} from "./permissions.ts";

/**
 * The permissions `config` needs that are not granted, as `"<kind> <target>"` strings.
 * `options` default to this process's own (its executable and, under `deno run`, its sources).
 */
export function missingPermissions(
  config: Config,
  options: PermissionOptions = currentOptions(),
): string[] {
  return permissionDescriptors(permissionSet(config, options))
    .filter((descriptor) => Deno.permissions.querySync(descriptor).state !== "granted")
    .map(describe);
}

function describe(descriptor: Deno.PermissionDescriptor): string {
  switch (descriptor.name) {
    case "read":
    case "write":
    case "ffi":
      return `${descriptor.name} ${descriptor.path}`;
    case "run":
      return `run ${descriptor.command}`;
    case "net":
      return `net ${descriptor.host}`;
    case "env":
      return `env ${descriptor.variable}`;
    case "sys":
      return `sys ${descriptor.kind}`;
    default:
      return descriptor.name;
  }
}
