/**
 * `deno task compile`: builds the release binaries with the permission set generated from a
 * configuration (src/permissions.ts), so a binary can do exactly what that configuration names.
 *
 * The configuration is the one the agent will see at run time: the site's config file (installed
 * where the agent reads it, /etc/qemu/qemu-ga.conf by default) plus the arguments of the systemd
 * unit's `ExecStart=` ({@link UNIT_ARGS}; `-- ARGS` replaces them for a site's own unit). The
 * binary's own installed path is granted `run`, because the agent starts its thaw watchdog as a
 * child of itself.
 *
 * `deno compile` embeds the program into `denort`, which Deno downloads from the internet; where
 * that is impossible, `DENORT_BIN` (or `DENORT_BIN_<ARCH>`) names a local copy. Without either the
 * build stops with a message that says so ({@link denortMessage}).
 *
 * This module never runs the agent's code: it imports only the configuration parser, the
 * permission set and the error-text helper.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Config, ConfigError, parseConfig, UsageError } from "../src/config/mod.ts";
import { errorMessage } from "../src/errors.ts";
import {
  AGENT_DENO_ENV,
  permissionFlags,
  type PermissionSet,
  permissionSet,
} from "../src/permissions.ts";

/** The architectures we release for, with their Rust target triples. */
export const TARGETS = {
  x86_64: "x86_64-unknown-linux-gnu",
  aarch64: "aarch64-unknown-linux-gnu",
} as const;

/** One release architecture. */
export type Arch = keyof typeof TARGETS;

const ARCHES = Object.keys(TARGETS) as Arch[];

/** Where `packaging/install.sh` puts the binary by default (`--prefix /usr/local`). */
export const DEFAULT_INSTALL_PATH = "/usr/local/sbin/fsfreeze-agent";

/** The vsock port of `packaging/fsfreeze-agent-vsock.service`. */
export const VSOCK_PORT = 1234;

/** VMADDR_CID_ANY: listen on whatever CID the guest has. */
const VSOCK_CID_ANY = 4294967295;

/** The channels we ship a unit for. */
export type Channel = "serial" | "vsock";

/** The agent arguments of each packaged unit's `ExecStart=` (a test keeps them in step). */
export const UNIT_ARGS: Readonly<Record<Channel, readonly string[]>> = {
  serial: ["-F", "-m", "virtio-serial", "-p", "/dev/virtio-ports/org.qemu.guest_agent.0"],
  vsock: ["-F", "-m", "vsock-listen", "-p", `${VSOCK_CID_ANY}:${VSOCK_PORT}`],
};

/** The socket of `packaging/fsfreeze-agent-delegate.service` (a test keeps them in step). */
export const DELEGATE_SOCKET = "/run/fsfreeze-agent-delegate/qga.sock";

/**
 * What `install.sh --delegate`'s drop-in adds to the unit's arguments, and `--delegate` to the
 * build's (docs/design.md #36).
 */
export const DELEGATE_ARGS: readonly string[] = [`--delegate-socket=${DELEGATE_SOCKET}`];

/** The file name of the binary for `arch` inside the output directory. */
export function binaryName(arch: Arch): string {
  return `fsfreeze-agent-${arch}`;
}

/** A bad command line or configuration for this tool (exit 2). */
export class CompileUsageError extends Error {
  override name = "CompileUsageError";
}

/** What the command line asks for. */
export interface CompileOptions {
  /** Site config file to build for; `undefined` = production defaults (no config file). */
  configFile: string | undefined;
  channel: Channel;
  /** `-- ARGS` given: they replace the channel's unit arguments. */
  agentArgs: string[] | undefined;
  /** Build for the delegate: {@link DELEGATE_ARGS} are added to the agent arguments. */
  delegate: boolean;
  /** `undefined` = all, or the architecture of `DENORT_BIN` when only that is set. */
  targets: Arch[] | undefined;
  installPath: string;
  outputDir: string;
  entry: string;
  printFlags: boolean;
  /** Build the launcher form (the Deno runtime, the sources and a script at the binary's path). */
  launcher: boolean;
  timeoutSeconds: number;
  help: boolean;
}

/** Parses this tool's arguments (everything after a `--` is the agent's). */
export function parseCompileArgs(argv: readonly string[]): CompileOptions {
  const split = argv.indexOf("--");
  const own = split === -1 ? argv : argv.slice(0, split);
  const { values } = parseArgs({
    args: [...own],
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: "string" },
      channel: { type: "string", default: "serial" },
      target: { type: "string" },
      "install-path": { type: "string", default: DEFAULT_INSTALL_PATH },
      output: { type: "string", default: "dist" },
      entry: { type: "string", default: "main.ts" },
      "print-flags": { type: "boolean", default: false },
      launcher: { type: "boolean", default: false },
      delegate: { type: "boolean", default: false },
      timeout: { type: "string", default: "600" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  return {
    configFile: values.config,
    channel: parseChannel(values.channel),
    agentArgs: split === -1 ? undefined : argv.slice(split + 1),
    delegate: values.delegate,
    targets: values.target === undefined ? undefined : parseTarget(values.target),
    installPath: parseInstallPath(values["install-path"]),
    outputDir: values.output,
    entry: values.entry,
    printFlags: values["print-flags"],
    launcher: values.launcher,
    timeoutSeconds: parseTimeout(values.timeout),
    help: values.help,
  };
}

function parseChannel(value: string): Channel {
  if (value === "serial" || value === "vsock") return value;
  throw new CompileUsageError(`--channel must be serial or vsock, not '${value}'`);
}

function parseTarget(value: string): Arch[] {
  if (value === "all") return [...ARCHES];
  if ((ARCHES as string[]).includes(value)) return [value as Arch];
  throw new CompileUsageError(`--target must be x86_64, aarch64 or all, not '${value}'`);
}

function parseInstallPath(value: string): string {
  if (!value.startsWith("/")) {
    throw new CompileUsageError(`--install-path must be absolute, not '${value}'`);
  }
  return value;
}

function parseTimeout(value: string): number {
  if (!/^\d{1,6}$/.test(value) || Number(value) === 0) {
    throw new CompileUsageError(`--timeout must be a positive number of seconds, not '${value}'`);
  }
  return Number(value);
}

/** The agent's effective configuration: the site's config text read where the agent reads it. */
export function buildConfig(agentArgs: readonly string[], configText: string | undefined): Config {
  let result;
  try {
    // Whatever path the agent would read (-c, or the default), it finds the site's file there.
    // The build host's $QGA_CONF is irrelevant: the unit does not set it.
    result = parseConfig(agentArgs, {}, () => configText);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UsageError) {
      throw new CompileUsageError(err.message, { cause: err });
    }
    throw err;
  }
  if (result.action !== "run") {
    throw new CompileUsageError(
      `the agent arguments must start the agent, not ask for '${result.action}'`,
    );
  }
  return result.config;
}

/** Everything one build needs, computed before anything runs. */
export interface BuildPlan {
  agentArgs: string[];
  config: Config;
  permissions: PermissionSet;
  /** `--no-prompt` and the `--allow-*` flags baked into the binary. */
  flags: string[];
}

/**
 * Derives the configuration and the permission flags for a build. The launcher form runs the
 * watchdog from its Deno runtime and loads its later modules from its sources, so those are granted
 * instead of the binary's own path (the rest is the same set).
 */
export function planBuild(options: CompileOptions, configText: string | undefined): BuildPlan {
  const agentArgs = [
    ...options.agentArgs ?? UNIT_ARGS[options.channel],
    ...options.delegate ? DELEGATE_ARGS : [],
  ];
  const config = buildConfig(agentArgs, configText);
  const payload = payloadDir(options.installPath);
  const permissions = permissionSet(
    config,
    options.launcher
      ? { selfExecutable: `${payload}/deno`, sourceDir: `${payload}/src` }
      : { selfExecutable: options.installPath },
  );
  return { agentArgs, config, permissions, flags: permissionFlags(permissions) };
}

/** Where the launcher form's payload is installed: `<prefix>/lib/fsfreeze-agent`. */
export function payloadDir(installPath: string): string {
  const sbin = installPath.slice(0, installPath.lastIndexOf("/"));
  const prefix = sbin.slice(0, sbin.lastIndexOf("/"));
  return `${prefix}/lib/fsfreeze-agent`;
}

/**
 * The launcher script installed at the binary's path: it runs the installed sources with the
 * installed Deno runtime and exactly the binary's permission flags. Deno's cache goes to tmpfs:
 * under `deno run` the runtime may write it while the agent runs, and a write to a frozen
 * filesystem would block the agent.
 */
export function launcherScript(plan: BuildPlan, installPath: string): string {
  const payload = payloadDir(installPath);
  const words = [`${payload}/deno`, "run", ...plan.flags, `${payload}/main.ts`].map(shellQuote);
  return [
    "#!/bin/sh",
    "# fsfreeze-agent, launcher form (deno task compile --launcher): stands in for the compiled",
    "# binary where deno compile cannot run. Same program, same permission flags.",
    `DENO_DIR=${shellQuote(LAUNCHER_DENO_DIR)}`,
    ...Object.entries(AGENT_DENO_ENV).map(([name, value]) => `${name}=${shellQuote(value)}`),
    `export DENO_DIR ${Object.keys(AGENT_DENO_ENV).join(" ")}`,
    `exec ${words.join(" ")} "$@"`,
    "",
  ].join("\n");
}

/** Deno's cache for the launcher form: on tmpfs, never on a filesystem that may be frozen. */
export const LAUNCHER_DENO_DIR = "/run/fsfreeze-agent/deno";

function shellQuote(word: string): string {
  if (word.includes("'")) throw new CompileUsageError(`cannot quote ${word} for the launcher`);
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word}'`;
}

/** The `deno compile` arguments (after the executable) for one target. */
export function compileArgs(
  plan: BuildPlan,
  arch: Arch,
  options: { output: string; entry: string; includes: readonly string[] },
): string[] {
  return [
    "compile",
    ...plan.flags,
    "--target",
    TARGETS[arch],
    ...options.includes.flatMap((path) => ["--include", path]),
    "--output",
    options.output,
    options.entry,
  ];
}

/** The one explanation for "no runtime to embed the program into". */
export function denortMessage(arch: Arch): string {
  const version = Deno.version.deno;
  return [
    `building the binary needs the Deno runtime 'denort' ${version} for ${TARGETS[arch]}:`,
    `  either internet access (deno compile downloads it from dl.deno.land),`,
    `  or DENORT_BIN=/path/to/denort (or DENORT_BIN_${arch.toUpperCase()}) naming a local copy,`,
    `  e.g. unpacked from https://dl.deno.land/release/v${version}/denort-${
      TARGETS[arch]
    }.zip fetched elsewhere.`,
  ].join("\n");
}

/** Whether `deno compile`'s error output says it could not get denort. */
export function isDenortFailure(stderr: string): boolean {
  return /denort|dl\.deno\.land|Setting up base binary/i.test(stderr);
}

/** The ELF machine field of a binary, as one of our architectures (or why not). */
export function elfArch(header: Uint8Array): Arch | string {
  const isElf = header.length >= 20 && header[0] === 0x7f && header[1] === 0x45 &&
    header[2] === 0x4c && header[3] === 0x46;
  if (!isElf) return "not an ELF executable";
  const machine = new DataView(header.buffer, header.byteOffset, 20).getUint16(18, true);
  if (machine === 62) return "x86_64";
  if (machine === 183) return "aarch64";
  return `an ELF executable for machine ${machine}`;
}

/** The denort named for `arch` by the environment, if any. */
export function denortFor(
  arch: Arch,
  env: Readonly<Record<string, string | undefined>>,
): string | undefined {
  return env[`DENORT_BIN_${arch.toUpperCase()}`] ?? env.DENORT_BIN;
}

/** Which architectures to build: as asked, else all, else the one a lone `DENORT_BIN` serves. */
export function chooseTargets(
  asked: Arch[] | undefined,
  env: Readonly<Record<string, string | undefined>>,
  denortArch: (path: string) => Arch | string | undefined,
): Arch[] {
  const perArch = ARCHES.some((arch) => env[`DENORT_BIN_${arch.toUpperCase()}`] !== undefined);
  if (asked !== undefined || env.DENORT_BIN === undefined || perArch) return asked ?? [...ARCHES];
  const arch = denortArch(env.DENORT_BIN);
  if (arch === "x86_64" || arch === "aarch64") return [arch];
  return [...ARCHES];
}

/**
 * Every module under `src/`: `deno compile` embeds only what the entry imports by literal
 * specifier, and modules loaded on first use (src/load_later.ts) are not.
 */
export function findSourceModules(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(`${root}/${dir}`)];
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile && entry.name.endsWith(".ts")) found.push(path);
    }
  };
  walk("src");
  return found;
}

/** The build record written next to each binary; `packaging/install.sh` reads it. */
export function buildRecord(
  plan: BuildPlan,
  arch: Arch,
  options: CompileOptions,
  configSha256: string | null,
): Record<string, unknown> {
  return {
    binary: binaryName(arch),
    target: TARGETS[arch],
    form: options.launcher ? "launcher" : "binary",
    installPath: options.installPath,
    ...(options.launcher ? { payloadDir: payloadDir(options.installPath) } : {}),
    channel: options.agentArgs === undefined ? options.channel : "custom",
    agentArgs: plan.agentArgs,
    // install.sh --delegate installs only for a binary that may connect to the delegate's socket.
    delegateSocket: plan.config.delegateSocket ?? null,
    configFile: options.configFile ?? null,
    configSha256,
    deno: Deno.version.deno,
    flags: plan.flags,
    permissions: plan.permissions,
  };
}

const USAGE = `Usage: deno task compile [options] [-- AGENT_ARGS...]

Builds dist/fsfreeze-agent-<arch> with the Deno permissions generated from the configuration the
agent will run with: the config file (--config) plus the unit's ExecStart arguments.

  --config FILE        the site's config file, to be installed as /etc/qemu/qemu-ga.conf
                       (default: none, i.e. the production defaults)
  --channel CH         serial (fsfreeze-agent.service, default) or vsock
                       (fsfreeze-agent-vsock.service): selects the unit's arguments
  --delegate           for install.sh --delegate: the unit also passes
                       ${DELEGATE_ARGS.join(" ")}
                       (fsfreeze-agent-delegate.service, a private qemu-ga)
  -- AGENT_ARGS        the agent arguments of your own unit instead of the channel's
  --target T           x86_64, aarch64 or all (default: all; with only DENORT_BIN set,
                       its architecture)
  --install-path P     where the binary will be installed (default ${DEFAULT_INSTALL_PATH})
  --output DIR         output directory (default dist)
  --entry FILE         entry module (default main.ts)
  --timeout SEC        give up on one deno compile after SEC seconds (default 600)
  --print-flags        print the permission flags, one per line, and build nothing
  --launcher           build the launcher form instead (no denort needed; this machine's
                       architecture only): <output>/fsfreeze-agent-<arch> is a script that runs
                       <output>/fsfreeze-agent-<arch>.payload (the Deno runtime and the sources,
                       installed by install.sh as <prefix>/lib/fsfreeze-agent) with the same flags

Environment: DENORT_BIN, DENORT_BIN_X86_64, DENORT_BIN_AARCH64 name local denort binaries.
`;

const encoder = new TextEncoder();

function out(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
}

function err(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text.endsWith("\n") ? text : `${text}\n`));
}

function readConfigFile(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      throw new CompileUsageError(
        `no permission to read ${path}: the compile task may read the checkout only; copy the` +
          ` file into it, or run tools/compile.ts with --allow-read=.,${path}`,
      );
    }
    throw new CompileUsageError(`cannot read --config ${path}: ${errorMessage(error)}`);
  }
}

function readElfArch(path: string): Arch | string | undefined {
  try {
    using file = Deno.openSync(path);
    const header = new Uint8Array(20);
    const read = file.readSync(header) ?? 0;
    return elfArch(header.subarray(0, read));
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined; // deno compile still checks it exists
    return `unreadable (${errorMessage(error)})`;
  }
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** timeout(1)'s exit status when the time ran out. */
const TIMEOUT_EXIT = 124;
/** timeout(1)'s exit status when the command ignored SIGTERM and was killed (128 + SIGKILL). */
const KILLED_EXIT = 137;
/** Seconds between timeout's SIGTERM and its SIGKILL. */
const KILL_GRACE_SECONDS = 10;

/** The variables naming local denort binaries (the only ones this tool reads). */
const DENORT_VARS = ["DENORT_BIN", ...ARCHES.map((arch) => `DENORT_BIN_${arch.toUpperCase()}`)];

function denortEnvironment(): Record<string, string | undefined> {
  return Object.fromEntries(DENORT_VARS.map((name) => [name, Deno.env.get(name) || undefined]));
}

/** Checks a denort named for `arch` before handing it to deno compile. */
function checkDenort(arch: Arch, env: Record<string, string | undefined>): void {
  const path = denortFor(arch, env);
  if (path === undefined) return;
  const found = readElfArch(path);
  if (found === undefined) {
    err(`note: cannot check the architecture of ${path} (no read permission)`);
    return;
  }
  if (found !== arch) {
    throw new CompileUsageError(
      `denort ${path} is ${found}, not ${arch}: name a ${arch} denort with` +
        ` DENORT_BIN_${arch.toUpperCase()}, or choose another --target`,
    );
  }
}

async function compileOne(
  plan: BuildPlan,
  arch: Arch,
  options: CompileOptions,
  env: Record<string, string | undefined>,
): Promise<boolean> {
  const output = `${options.outputDir}/${binaryName(arch)}`;
  const args = compileArgs(plan, arch, {
    output,
    entry: options.entry,
    includes: findSourceModules("."),
  });
  const denort = denortFor(arch, env);
  // deno compile reads DENORT_BIN only: hand it the one for this architecture.
  const childEnv: Record<string, string> = denort === undefined ? {} : { DENORT_BIN: denort };
  out(`building ${output} (${TARGETS[arch]})`);
  // coreutils timeout runs deno compile in its own process group and kills all of it when the
  // time is up (a download can hang). It also lets the compile task grant run on `timeout` only,
  // whatever path this deno has.
  const child = new Deno.Command("timeout", {
    args: [`--kill-after=${KILL_GRACE_SECONDS}`, String(options.timeoutSeconds), Deno.execPath()]
      .concat(args),
    env: childEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const result = await child.output();
  const stderr = new TextDecoder().decode(result.stderr);
  Deno.stdout.writeSync(result.stdout);
  if (result.success) return true;
  err(stderr);
  const timedOut = result.code === TIMEOUT_EXIT || result.code === KILLED_EXIT;
  if (timedOut) {
    err(`deno compile did not finish within ${options.timeoutSeconds} s and was stopped.`);
  }
  if (timedOut || isDenortFailure(stderr)) err(denortMessage(arch));
  return false;
}

function makeOutputDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    throw new CompileUsageError(
      `no permission to write ${dir}: the compile task may write dist/ only; run` +
        ` tools/compile.ts with --allow-write=${dir} for another --output`,
    );
  }
}

async function writeRecord(
  plan: BuildPlan,
  arch: Arch,
  options: CompileOptions,
  configText: string | undefined,
): Promise<void> {
  const sha = configText === undefined ? null : await sha256Hex(configText);
  const record = buildRecord(plan, arch, options, sha);
  const path = `${options.outputDir}/${binaryName(arch)}.build.json`;
  Deno.writeTextFileSync(path, JSON.stringify(record, null, 2) + "\n");
}

async function main(argv: string[]): Promise<number> {
  const options = parseCompileArgs(argv);
  if (options.help) {
    out(USAGE);
    return 0;
  }
  const configText = readConfigFile(options.configFile);
  const plan = planBuild(options, configText);
  if (options.printFlags) {
    out(plan.flags.join("\n"));
    return 0;
  }
  if (options.launcher) return buildLauncher(plan, options, configText);
  const env = denortEnvironment();
  const targets = chooseTargets(options.targets, env, readElfArch);
  out(`agent arguments: ${plan.agentArgs.join(" ") || "(none)"}`);
  out(`config file: ${options.configFile ?? "(none: production defaults)"}`);
  out(`permissions:\n  ${plan.flags.join("\n  ")}`);
  for (const arch of targets) checkDenort(arch, env);
  makeOutputDir(options.outputDir);
  for (const arch of targets) {
    if (!await compileOne(plan, arch, options, env)) return 1;
    await writeRecord(plan, arch, options, configText);
  }
  return 0;
}

/** The architecture of the Deno running this tool, which the launcher form ships. */
function hostArch(): Arch {
  const arch = Deno.build.arch;
  if (arch === "x86_64" || arch === "aarch64") return arch;
  throw new CompileUsageError(`the launcher form cannot be built on ${arch}`);
}

/** Builds the launcher form: the script, its payload and the build record. */
async function buildLauncher(
  plan: BuildPlan,
  options: CompileOptions,
  configText: string | undefined,
): Promise<number> {
  const arch = hostArch();
  if (options.targets !== undefined && !options.targets.every((t) => t === arch)) {
    throw new CompileUsageError(`the launcher form ships this machine's Deno: --target ${arch}`);
  }
  makeOutputDir(options.outputDir);
  const output = `${options.outputDir}/${binaryName(arch)}`;
  const payload = `${output}.payload`;
  out(`building ${output} (launcher form, ${TARGETS[arch]}; payload ${payload})`);
  removeTree(payload);
  copyPayload(payload);
  Deno.writeTextFileSync(output, launcherScript(plan, options.installPath), { mode: 0o755 });
  Deno.chmodSync(output, 0o755);
  await writeRecord(plan, arch, options, configText);
  return 0;
}

function removeTree(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** The Deno runtime, `main.ts` and every module under `src/`. */
function copyPayload(payload: string): void {
  Deno.mkdirSync(payload, { recursive: true });
  Deno.copyFileSync(Deno.execPath(), `${payload}/deno`);
  Deno.chmodSync(`${payload}/deno`, 0o755);
  Deno.copyFileSync("main.ts", `${payload}/main.ts`);
  const walk = (dir: string): void => {
    Deno.mkdirSync(`${payload}/${dir}`, { recursive: true });
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile && entry.name.endsWith(".ts")) {
        Deno.copyFileSync(path, `${payload}/${path}`);
      }
    }
  };
  walk("src");
}

/** node:util parseArgs reports a bad command line as a TypeError with an ERR_PARSE_ARGS_* code. */
function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof TypeError && typeof code === "string" &&
    code.startsWith("ERR_PARSE_ARGS");
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    if (error instanceof CompileUsageError || isParseArgsError(error)) {
      err(`compile: ${errorMessage(error)}\n\n${USAGE}`);
      code = 2;
    } else {
      throw error;
    }
  }
  Deno.exit(code);
}
