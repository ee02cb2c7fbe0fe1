/**
 * The one definition of the agent's Deno permission set, derived from its configuration.
 *
 * `deno task compile` bakes these flags into the binary, `deno task start` runs `main.ts` with
 * them, and the end-to-end tests spawn the agent with them: what is tested is what ships.
 * The read permission doubles as the freeze scope (docs/design.md #8): a mount point the agent may
 * not read is refused before the FFI `open`. What a channel needs comes from its transport's
 * declaration (src/transport/methods.ts); the start-up check (permission_check.ts) queries
 * exactly this set.
 *
 * @module
 */

import { type Config, writesPidfile } from "./config/mod.ts";
import { SHUTDOWN_PROGRAM } from "./commands/system/shutdown.ts";
import { LIBC_CANDIDATES } from "./linux/libc.ts";
import { SETSID_PROGRAM } from "./linux/process.ts";
import { findTransportMethod } from "./transport/methods.ts";
import { unixSocketTempPath } from "./transport/socket.ts";
import { statePaths } from "./fsfreeze/mod.ts";

/** The permission set as lists (for tests and the README), before it is rendered as flags. */
export interface PermissionSet {
  read: string[];
  write: string[];
  run: string[];
  ffi: string[];
  env: string[];
  /** `--allow-sys` API names. */
  sys: SysApi[];
  net: string[];
  /** `--unstable-vsock` is needed for the vsock transport. */
  unstableVsock: boolean;
}

/** Options of {@link permissionSet}. */
export interface PermissionOptions {
  /**
   * The program the watchdog is started from: the installed binary for `compile`, the `deno`
   * executable for `deno run` (with `main.ts` as its script).
   */
  selfExecutable: string;
  /**
   * Under `deno run` only: the agent's source directory, which its modules loaded on first use
   * come from (a compiled binary carries its modules inside and needs no read permission for them).
   */
  sourceDir?: string;
}

/** The options for running `main.ts` from this checkout with the `deno` executable running now. */
export function denoRunOptions(): PermissionOptions {
  return {
    selfExecutable: Deno.execPath(),
    sourceDir: new URL(".", import.meta.url).pathname.replace(/\/$/, ""),
  };
}

/**
 * The options this process was given its set with: a compiled binary starts its watchdog from
 * itself and carries its modules; under `deno run` (the launcher form too) it is
 * {@link denoRunOptions}.
 */
export function currentOptions(): PermissionOptions {
  return Deno.build.standalone ? { selfExecutable: Deno.execPath() } : denoRunOptions();
}

/** Environment variables the agent reads. */
export const AGENT_ENV_VARS: readonly string[] = ["QGA_CONF", "LISTEN_FDS", "LISTEN_PID"];

/** Deno system-information APIs the agent calls (`guest-get-host-name`, network interfaces). */
export const AGENT_SYS_APIS: readonly SysApi[] = ["hostname", "networkInterfaces", "uid"];

/** A Deno system-information API name (`--allow-sys`). */
export type SysApi = NonNullable<Deno.SysPermissionDescriptor["kind"]>;

/** Read-only system paths the agent needs besides the freeze scope. */
const SYSTEM_READ_PATHS: readonly string[] = [
  // Read through libc (Deno refuses /proc, /sys and /dev without --allow-all), so Deno cannot
  // enforce this entry; it stays to state what the agent reads. Sysfs (block-device stacking for
  // the freeze order) is read the same way and not listed.
  "/proc/self/mountinfo",
  // guest-get-osinfo, guest-get-timezone, guest-get-users, guest-get-fsinfo's disk serials.
  "/etc/os-release",
  "/usr/lib/os-release",
  "/etc/localtime",
  "/var/run/utmp",
  "/run/udev/data",
];

/** Derives the permission set from the effective configuration. */
export function permissionSet(config: Config, options: PermissionOptions): PermissionSet {
  const read = new Set<string>([
    config.configPath,
    ...SYSTEM_READ_PATHS,
    config.statedir,
    ...config.fsfreezeScope,
  ]);
  const write = new Set<string>([config.statedir]);
  const run = new Set<string>([options.selfExecutable, SHUTDOWN_PROGRAM]);
  if (options.sourceDir !== undefined) read.add(options.sourceDir);
  if (config.fsfreezeHook !== undefined) {
    read.add(config.fsfreezeHook); // stat() for the ownership check
    run.add(config.fsfreezeHook);
    run.add(SETSID_PROGRAM); // starts the hook in its own session (src/fsfreeze/hook.ts)
  }
  if (config.logfile !== undefined) write.add(config.logfile);
  if (writesPidfile(config)) write.add(config.pidfile);
  // An unknown method needs nothing: the agent refuses it when it opens the channel.
  const channel = findTransportMethod(config.method)?.permissions(config.path);
  for (const path of channel?.read ?? []) read.add(path);
  for (const path of channel?.write ?? []) write.add(path);
  // The delegate (docs/design.md #36): connecting to a unix socket takes read, write and net on it.
  if (config.delegateSocket !== undefined) {
    read.add(config.delegateSocket);
    write.add(config.delegateSocket);
  }
  return {
    read: [...read],
    write: [...write],
    run: [...run],
    ffi: [...LIBC_CANDIDATES],
    env: [...AGENT_ENV_VARS],
    sys: [...AGENT_SYS_APIS],
    net: [...channel?.net ?? [], ...watchdogSocket(config), ...delegateSocket(config)],
    unstableVsock: channel?.unstableVsock ?? false,
  };
}

/** The set as the descriptors `Deno.permissions` queries, one per entry. */
export function permissionDescriptors(set: PermissionSet): Deno.PermissionDescriptor[] {
  return [
    ...set.read.map((path): Deno.PermissionDescriptor => ({ name: "read", path })),
    ...set.write.map((path): Deno.PermissionDescriptor => ({ name: "write", path })),
    ...set.run.map((command): Deno.PermissionDescriptor => ({ name: "run", command })),
    ...set.ffi.map((path): Deno.PermissionDescriptor => ({ name: "ffi", path })),
    ...set.env.map((variable): Deno.PermissionDescriptor => ({ name: "env", variable })),
    ...set.sys.map((kind): Deno.PermissionDescriptor => ({ name: "sys", kind })),
    ...set.net.map((host): Deno.PermissionDescriptor => ({ name: "net", host })),
  ];
}

/**
 * The thaw watchdog's socket in the state dir (read and write come with the state dir): the agent
 * connects to it, the watchdog (the same program, the same permissions) listens on it. Only a
 * configuration with an auto-thaw deadline has a watchdog.
 */
function watchdogSocket(config: Config): string[] {
  if (config.fsfreezeTimeout <= 0) return [];
  const path = statePaths(config.statedir).watchdogSocket;
  return [`unix:${path}`, `unix:${unixSocketTempPath(path)}`];
}

/** The delegate's socket, which the agent connects to (and never listens on). */
function delegateSocket(config: Config): string[] {
  return config.delegateSocket === undefined ? [] : [`unix:${config.delegateSocket}`];
}

/**
 * The environment the agent's Deno runtime gets under `deno run` (the launcher, `deno task start`,
 * the tests): a compiled binary never looks for a newer Deno; `deno run` would, over the network,
 * from a guest agent.
 */
export const AGENT_DENO_ENV: Readonly<Record<string, string>> = { DENO_NO_UPDATE_CHECK: "1" };

/**
 * V8 flags the agent runs with (not permissions, but part of the same one definition of how the
 * agent runs), each for the agent's long life (bench/README.md has the figures):
 * - `--expose-gc`: the agent hands memory back after a burst (src/memory.ts);
 * - `--no-lazy`: functions compile when their module loads, so the code cache covers them and the
 *   first requests do not pay for compilation;
 * - `--max-semi-space-size=1` (MiB): the young generation never grows past what a request needs;
 * - `--max-opt=2`: Maglev is the highest tier; TurboFan's code would stay resident for good after
 *   the first burst of requests, for no measurable gain on an agent's short handlers.
 */
export const AGENT_V8_FLAGS =
  "--v8-flags=--expose-gc,--no-lazy,--max-semi-space-size=1,--max-opt=2";

/** Renders a permission set as Deno CLI flags (`--no-prompt` first; never `-A`). */
export function permissionFlags(set: PermissionSet): string[] {
  const flags = ["--no-prompt", AGENT_V8_FLAGS];
  const add = (name: string, values: string[]): void => {
    if (values.length > 0) flags.push(`--allow-${name}=${values.map(checkFlagValue).join(",")}`);
  };
  add("read", set.read);
  add("write", set.write);
  add("run", set.run);
  add("ffi", set.ffi);
  add("env", set.env);
  add("sys", set.sys);
  add("net", set.net);
  if (set.unstableVsock) flags.push("--unstable-vsock");
  return flags;
}

/** Deno splits permission lists on commas, so a path containing one cannot be expressed. */
function checkFlagValue(value: string): string {
  if (value.includes(",")) {
    throw new RangeError(`path cannot be granted as a Deno permission (contains ','): ${value}`);
  }
  return value;
}

/** The flags for a configuration: {@link permissionSet} rendered by {@link permissionFlags}. */
export function agentFlags(config: Config, options: PermissionOptions): string[] {
  return permissionFlags(permissionSet(config, options));
}
