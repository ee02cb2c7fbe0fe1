/**
 * The agent's configuration: qemu-ga's options and `[general]` keys, plus our own settings
 * (docs/design.md) in the same file and as long options. What each transport method accepts is
 * declared in src/transport/methods.ts.
 *
 * {@link parseConfig} is pure: it takes argv, the environment and a file reader, and returns what
 * to do; it throws {@link UsageError} or {@link ConfigError} and never prints or exits.
 *
 * @module
 */

import { findTransportMethod, type Method } from "../transport/methods.ts";
import { errorMessage } from "../errors.ts";
import { ConfigError } from "./config_error.ts";
import { getoptLong, type OptionSpec, type ParsedOption, UsageError } from "./getopt.ts";
import {
  escapeKeyFileString,
  keyFileBoolean,
  KeyFileError,
  keyFileString,
  keyFileUnsigned,
  parseKeyFile,
  renderKeyFileGroup,
} from "./keyfile.ts";

export { ConfigError, UsageError };

/** The default `-p` of a device method, as its declaration says. */
function defaultPath(method: Method): string {
  return findTransportMethod(method)?.defaultPath ?? "";
}

/** Built-in defaults (production paths). */
export const DEFAULTS = {
  configPath: "/etc/qemu/qemu-ga.conf",
  fsfreezeHook: "/etc/qemu/fsfreeze-hook",
  virtioSerialPath: defaultPath("virtio-serial"),
  isaSerialPath: defaultPath("isa-serial"),
  pidfile: "/run/fsfreeze-agent.pid",
  statedir: "/run",
  fsfreezeHookTimeout: 60,
  fsfreezeTimeout: 600,
  fsfreezeScope: ["/"],
  vsockAllowedCids: [2],
  delegateTimeout: 60,
} as const;

/** The effective configuration. */
export interface Config {
  /** `-c` / `$QGA_CONF` / default; read first. */
  configPath: string;
  /** The config file was named with `-c` (then it must exist). */
  configRequired: boolean;
  daemonize: boolean;
  /** As given; checked against the transport declarations when the channel opens (as qemu-ga). */
  method: string;
  /** Device or socket path (`<cid>:<port>` for vsock); defaulted per method. */
  path: string;
  logfile: string | undefined;
  pidfile: string;
  /** The pidfile was set explicitly (we then write it even without `-d`). */
  pidfileExplicit: boolean;
  /** Hook path; `undefined` = no hook (qemu-ga: no `-F` and no key means none). */
  fsfreezeHook: string | undefined;
  statedir: string;
  verbose: boolean;
  debug: boolean;
  retryPath: boolean;
  blockRpcs: string[];
  allowRpcs: string[];
  /** Seconds a hook may run before its process group is killed; 0 = no limit. */
  fsfreezeHookTimeout: number;
  /** Seconds filesystems may stay frozen before the watchdog thaws them; 0 = never. */
  fsfreezeTimeout: number;
  /** Mount points (absolute paths) and fs types never frozen. */
  fsfreezeExclude: string[];
  /** Paths the agent may freeze under; they become its Deno read permission. */
  fsfreezeScope: string[];
  /** Expedite the kernel's RCU grace periods while the FIFREEZEs run (docs/design.md #45). */
  fsfreezeExpedite: boolean;
  /** vsock peers allowed to connect (CIDs); the host is 2. */
  vsockAllowedCids: number[];
  /** The delegate's unix socket (docs/design.md #36); `undefined` = no delegate. */
  delegateSocket: string | undefined;
  /** Seconds the delegate has to answer one forwarded command (at least 1). */
  delegateTimeout: number;
}

/** What the command line asks for. */
export type ParseResult =
  | { action: "run"; config: Config; positionals: string[]; extra: ExtraFlags }
  | { action: "dump"; config: Config }
  | { action: "help" }
  | { action: "version" }
  /** `-b help`, `-a help`: the rest of the command line is applied (it may name a delegate). */
  | { action: "list-commands"; config: Config };

/** Flags that only the local subcommands (`status`, `thaw`) use. */
export interface ExtraFlags {
  all: boolean;
  json: boolean;
  /** Internal: this process is the copy that `-d` started. */
  detachedChild: boolean;
}

/** How {@link parseConfig} reads the config file: returns `undefined` when it does not exist. */
export type ReadTextFile = (path: string) => string | undefined;

const OPTIONS: readonly OptionSpec[] = [
  { name: "help", short: "h", long: "help", arg: "none" },
  { name: "version", short: "V", long: "version", arg: "none" },
  { name: "config", short: "c", long: "config", arg: "required" },
  { name: "dump-conf", short: "D", long: "dump-conf", arg: "none" },
  { name: "logfile", short: "l", long: "logfile", arg: "required" },
  { name: "pidfile", short: "f", long: "pidfile", arg: "required" },
  { name: "fsfreeze-hook", short: "F", long: "fsfreeze-hook", arg: "optional" },
  { name: "verbose", short: "v", long: "verbose", arg: "none" },
  { name: "debug", long: "debug", arg: "none" },
  { name: "method", short: "m", long: "method", arg: "required" },
  { name: "path", short: "p", long: "path", arg: "required" },
  { name: "daemonize", short: "d", long: "daemonize", arg: "none" },
  { name: "block-rpcs", short: "b", long: "block-rpcs", arg: "required" },
  { name: "block-rpcs", long: "blacklist", arg: "required" },
  { name: "allow-rpcs", short: "a", long: "allow-rpcs", arg: "required" },
  { name: "statedir", short: "t", long: "statedir", arg: "required" },
  { name: "retry-path", short: "r", long: "retry-path", arg: "none" },
  // Our own settings (long options only, so no short letter can collide with qemu-ga's).
  { name: "fsfreeze-hook-timeout", long: "fsfreeze-hook-timeout", arg: "required" },
  { name: "fsfreeze-timeout", long: "fsfreeze-timeout", arg: "required" },
  { name: "fsfreeze-exclude", long: "fsfreeze-exclude", arg: "required" },
  { name: "fsfreeze-scope", long: "fsfreeze-scope", arg: "required" },
  { name: "fsfreeze-expedite", long: "fsfreeze-expedite", arg: "none" },
  { name: "vsock-allowed-cids", long: "vsock-allowed-cids", arg: "required" },
  { name: "delegate-socket", long: "delegate-socket", arg: "required" },
  { name: "delegate-timeout", long: "delegate-timeout", arg: "required" },
  // Local subcommand flags, and the mark of the daemonized copy.
  { name: "all", long: "all", arg: "none" },
  { name: "json", long: "json", arg: "none" },
  { name: "detachedChild", long: "detached-child", arg: "none" },
];

/** Parses argv (without the program name) into what to do, reading the config file first. */
export function parseConfig(
  argv: readonly string[],
  env: { QGA_CONF?: string | undefined },
  readTextFile: ReadTextFile,
): ParseResult {
  const { options, positionals } = getoptLong(argv, OPTIONS);
  const configOption = options.findLast((o) => o.name === "config");
  const config = defaultConfig(configOption?.value ?? env.QGA_CONF ?? DEFAULTS.configPath);
  config.configRequired = configOption !== undefined;
  loadConfigFile(config, readTextFile);
  const extra: ExtraFlags = { all: false, json: false, detachedChild: false };
  let dump = false;
  let list = false;
  for (const option of options) {
    const early = applyOption(config, option, extra);
    if (early === "dump") dump = true;
    else if (early === "list-commands") list = true;
    else if (early) return { action: early };
  }
  if (list) return { action: "list-commands", config };
  finishPath(config);
  checkDelegateSocket(config);
  if (dump) return { action: "dump", config };
  return { action: "run", config, positionals, extra };
}

function defaultConfig(configPath: string): Config {
  return {
    configPath,
    configRequired: false,
    daemonize: false,
    method: "virtio-serial",
    path: "",
    logfile: undefined,
    pidfile: DEFAULTS.pidfile,
    pidfileExplicit: false,
    fsfreezeHook: undefined,
    statedir: DEFAULTS.statedir,
    verbose: false,
    debug: false,
    retryPath: false,
    blockRpcs: [],
    allowRpcs: [],
    fsfreezeHookTimeout: DEFAULTS.fsfreezeHookTimeout,
    fsfreezeTimeout: DEFAULTS.fsfreezeTimeout,
    fsfreezeExclude: [],
    fsfreezeScope: [...DEFAULTS.fsfreezeScope],
    fsfreezeExpedite: false,
    vsockAllowedCids: [...DEFAULTS.vsockAllowedCids],
    delegateSocket: undefined,
    delegateTimeout: DEFAULTS.delegateTimeout,
  };
}

type EarlyAction = "help" | "version" | "list-commands" | "dump" | undefined;

function applyOption(config: Config, option: ParsedOption, extra: ExtraFlags): EarlyAction {
  const value = option.value ?? "";
  switch (option.name) {
    case "help":
      return "help";
    case "version":
      return "version";
    case "dump-conf":
      return "dump";
    case "block-rpcs":
    case "allow-rpcs":
      if (value === "help" || value === "?") return "list-commands";
      (option.name === "block-rpcs" ? config.blockRpcs : config.allowRpcs)
        .push(...splitList(value));
      return undefined;
    case "fsfreeze-hook":
      config.fsfreezeHook = value === "" ? DEFAULTS.fsfreezeHook : value;
      return undefined;
    case "all":
    case "json":
    case "detachedChild":
      extra[option.name] = true;
      return undefined;
    default:
      applySetting(config, option.name, value, "option");
      return undefined;
  }
}

/** Settings shared by the command line and the config file (same names). */
function applySetting(config: Config, name: string, value: string, from: "option" | "key"): void {
  switch (name) {
    case "method":
      config.method = value;
      return;
    case "path":
      config.path = value;
      return;
    case "logfile":
      config.logfile = value;
      return;
    case "pidfile":
      config.pidfile = value;
      config.pidfileExplicit = true;
      return;
    case "statedir":
      config.statedir = value;
      return;
    case "verbose":
      config.verbose = true;
      return;
    case "debug":
      config.debug = true;
      return;
    case "daemonize":
      config.daemonize = true;
      return;
    case "retry-path":
      config.retryPath = true;
      return;
    case "fsfreeze-expedite":
      config.fsfreezeExpedite = true;
      return;
    case "fsfreeze-hook-timeout":
      config.fsfreezeHookTimeout = parseSeconds(name, value, from);
      return;
    case "fsfreeze-timeout":
      config.fsfreezeTimeout = parseSeconds(name, value, from);
      return;
    case "fsfreeze-exclude":
      config.fsfreezeExclude.push(...splitList(value));
      return;
    case "fsfreeze-scope":
      config.fsfreezeScope = parseScope(value);
      return;
    case "vsock-allowed-cids":
      config.vsockAllowedCids = parseCids(value);
      return;
    case "delegate-socket":
      config.delegateSocket = parseDelegateSocket(value);
      return;
    case "delegate-timeout":
      config.delegateTimeout = parseDelegateTimeout(parseSeconds(name, value, from));
      return;
  }
}

function parseSeconds(name: string, value: string, from: "option" | "key"): number {
  if (from === "key") return keyFileUnsigned(value, name);
  if (!/^\d{1,9}$/.test(value)) {
    throw new UsageError(`option '--${name}' expects whole seconds, got '${value}'`);
  }
  return Number(value);
}

function parseScope(value: string): string[] {
  const paths = splitList(value);
  if (paths.length === 0) throw new ConfigError("fsfreeze-scope must name at least one path");
  for (const path of paths) {
    if (!path.startsWith("/")) {
      throw new ConfigError(`fsfreeze-scope entries must be absolute paths, got '${path}'`);
    }
  }
  return paths;
}

/** An empty value means no delegate, so `--delegate-socket=` switches off the config key's. */
function parseDelegateSocket(value: string): string | undefined {
  if (value === "") return undefined;
  if (!value.startsWith("/")) {
    throw new ConfigError(`delegate-socket must be an absolute path, got '${value}'`);
  }
  return value;
}

function parseDelegateTimeout(seconds: number): number {
  if (seconds < 1) throw new ConfigError("delegate-timeout must be at least 1 second");
  return seconds;
}

function parseCids(value: string): number[] {
  return splitList(value).map((text) => {
    if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffffffff) {
      throw new ConfigError(`vsock-allowed-cids: '${text}' is not a CID`);
    }
    return Number(text);
  });
}

/** Splits a comma-separated list, dropping empty items (qemu-ga `split_list`). */
export function splitList(value: string): string[] {
  return value.split(",").filter((item) => item !== "");
}

const BOOLEAN_KEYS: ReadonlyMap<string, (c: Config, v: boolean) => void> = new Map([
  ["daemon", (c, v) => c.daemonize = v],
  ["verbose", (c, v) => c.verbose ||= v],
  ["debug", (c, v) => c.debug ||= v],
  ["retry-path", (c, v) => c.retryPath = v],
  ["fsfreeze-expedite", (c, v) => c.fsfreezeExpedite = v],
]);

const STRING_KEYS: readonly string[] = [
  "method",
  "path",
  "logfile",
  "pidfile",
  "statedir",
  "fsfreeze-hook",
  "block-rpcs",
  "allow-rpcs",
  "fsfreeze-hook-timeout",
  "fsfreeze-timeout",
  "fsfreeze-exclude",
  "fsfreeze-scope",
  "vsock-allowed-cids",
  "delegate-socket",
  "delegate-timeout",
];

function loadConfigFile(config: Config, readTextFile: ReadTextFile): void {
  let text: string | undefined;
  try {
    text = readTextFile(config.configPath);
  } catch (err) {
    throw configLoadError(config.configPath, errorMessage(err));
  }
  if (text === undefined) {
    if (config.configRequired) {
      throw configLoadError(config.configPath, "No such file or directory");
    }
    return;
  }
  try {
    const general = parseKeyFile(text).get("general");
    if (!general) return;
    for (const [key, raw] of general) applyKey(config, key, raw);
  } catch (err) {
    if (err instanceof KeyFileError || err instanceof UsageError || err instanceof ConfigError) {
      throw configLoadError(config.configPath, err.message);
    }
    throw err;
  }
}

function applyKey(config: Config, key: string, raw: string): void {
  const setBoolean = BOOLEAN_KEYS.get(key);
  if (setBoolean) return setBoolean(config, keyFileBoolean(raw, key));
  if (!STRING_KEYS.includes(key)) return; // unknown keys are ignored, as in qemu-ga
  const value = keyFileString(raw, key);
  if (key === "block-rpcs") config.blockRpcs.push(...splitList(value));
  else if (key === "allow-rpcs") config.allowRpcs.push(...splitList(value));
  else if (key === "fsfreeze-hook") config.fsfreezeHook = value === "" ? undefined : value;
  else applySetting(config, key, value, "key");
}

function configLoadError(path: string, message: string): ConfigError {
  return new ConfigError(`error loading configuration from path: ${path}, ${message}`);
}

/** Fills in the method's default `-p`; an unknown method is left for the channel to refuse. */
function finishPath(config: Config): void {
  if (config.path !== "") return;
  const method = findTransportMethod(config.method);
  if (method === undefined) return;
  if (method.defaultPath === undefined) {
    throw new ConfigError("must specify a path for this channel");
  }
  config.path = method.defaultPath;
}

/**
 * The delegate is another agent: it must never be the agent's own socket (every command it does
 * not know would go round in a circle).
 * @throws {ConfigError}
 */
function checkDelegateSocket(config: Config): void {
  if (config.delegateSocket === undefined) return;
  if (config.method === "unix-listen" && config.delegateSocket === config.path) {
    throw new ConfigError("delegate-socket must not be the agent's own socket (-p)");
  }
}

/**
 * Whether the agent writes its pidfile: when daemonizing (as qemu-ga) or when one was named
 * (docs/design.md #19). Only then is it checked, granted and written.
 */
export function writesPidfile(config: Config): boolean {
  return config.daemonize || config.pidfileExplicit;
}

/** The `-D` output: a `[general]` key file of the effective configuration. */
export function renderConfig(config: Config): string {
  const entries: [string, string][] = [
    ["daemon", String(config.daemonize)],
    ["method", escapeKeyFileString(config.method)],
    ["path", escapeKeyFileString(config.path)],
  ];
  if (config.logfile !== undefined) entries.push(["logfile", escapeKeyFileString(config.logfile)]);
  entries.push(["pidfile", escapeKeyFileString(config.pidfile)]);
  if (config.fsfreezeHook !== undefined) {
    entries.push(["fsfreeze-hook", escapeKeyFileString(config.fsfreezeHook)]);
  }
  entries.push(
    ["statedir", escapeKeyFileString(config.statedir)],
    ["verbose", String(config.verbose)],
    ["debug", String(config.debug)],
    ["retry-path", String(config.retryPath)],
    ["block-rpcs", escapeKeyFileString(config.blockRpcs.join(","))],
    ["allow-rpcs", escapeKeyFileString(config.allowRpcs.join(","))],
    ["fsfreeze-hook-timeout", String(config.fsfreezeHookTimeout)],
    ["fsfreeze-timeout", String(config.fsfreezeTimeout)],
    ["fsfreeze-exclude", escapeKeyFileString(config.fsfreezeExclude.join(","))],
    ["fsfreeze-scope", escapeKeyFileString(config.fsfreezeScope.join(","))],
    ["fsfreeze-expedite", String(config.fsfreezeExpedite)],
    ["vsock-allowed-cids", config.vsockAllowedCids.join(",")],
  );
  if (config.delegateSocket !== undefined) {
    entries.push(["delegate-socket", escapeKeyFileString(config.delegateSocket)]);
  }
  entries.push(["delegate-timeout", String(config.delegateTimeout)]);
  return renderKeyFileGroup("general", entries);
}

/** The `--help` text. */
export function usageText(program: string): string {
  return `Usage: ${program} [-m <method> -p <path>] [<options>]
       ${program} status [<options>] [--json]     report of the last freeze cycle
       ${program} thaw [<options>] [--all]        break-glass local thaw
fsfreeze-agent: a QEMU guest agent for filesystem freeze and thaw.

  -m, --method      transport method: one of unix-listen, virtio-serial,
                    isa-serial, or vsock-listen (virtio-serial is the default)
  -p, --path        device/socket path (the default for virtio-serial is:
                    ${DEFAULTS.virtioSerialPath},
                    the default for isa-serial is: ${DEFAULTS.isaSerialPath}).
                    Socket addresses for vsock-listen are written as
                    <cid>:<port>.
  -l, --logfile     set logfile path, logs to stderr by default
  -f, --pidfile     specify pidfile (default is ${DEFAULTS.pidfile})
  -F, --fsfreeze-hook
                    enable fsfreeze hook. Accepts an optional argument that
                    specifies script to run on freeze/thaw. Script will be
                    called with 'freeze'/'thaw' arguments accordingly.
                    (default is ${DEFAULTS.fsfreezeHook})
                    If using -F with an argument, do not follow -F with a
                    space.
                    (for example: -F/var/run/fsfreezehook.sh)
  -t, --statedir    specify dir to store state information (absolute paths
                    only, default is ${DEFAULTS.statedir})
  -v, --verbose     log extra debugging information
      --debug       same as --verbose
  -V, --version     print version information and exit
  -d, --daemonize   become a daemon
  -c, --config      configuration file (default is $QGA_CONF or
                    ${DEFAULTS.configPath}); required when given
  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,
                    use "help" to list available RPCs)
  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,
                    use "help" to list available RPCs)
  -D, --dump-conf   dump a qemu-ga config file based on current config
                    options / command-line parameters to stdout
  -r, --retry-path  attempt re-opening path if it's unavailable or closed
                    due to an error which may be recoverable in the future
  -h, --help        display this help and exit

fsfreeze-agent settings (also keys of [general] in the config file):
      --fsfreeze-hook-timeout=SEC  kill the hook's process group after SEC
                    seconds (default ${DEFAULTS.fsfreezeHookTimeout}, 0 = no limit)
      --fsfreeze-timeout=SEC       thaw automatically SEC seconds after a
                    freeze (default ${DEFAULTS.fsfreezeTimeout}, 0 = never)
      --fsfreeze-exclude=LIST      mount points (absolute) and fs types never
                    frozen, comma-separated
      --fsfreeze-scope=LIST        paths under which mounts may be frozen
                    (default /); they are the agent's read permission
      --fsfreeze-expedite          expedite the kernel's RCU grace periods
                    (/sys/kernel/rcu_expedited, machine-wide) while the
                    filesystems are being frozen: a freeze long after the
                    last one takes milliseconds, not tens of them
      --vsock-allowed-cids=LIST    vsock peers allowed to connect (default 2,
                    the host)
      --delegate-socket=PATH       forward every command this agent does not
                    implement to the guest agent listening on this unix
                    socket (a private qemu-ga; default: none)
      --delegate-timeout=SEC       seconds the delegate has to answer one
                    command (default ${DEFAULTS.delegateTimeout})
`;
}
