/**
 * The processes the bench compares: our agent (run exactly as tests/_util/agent.ts `spawnAgent`
 * runs it: the real `deno` executable, `agentFlags` for its command line, `QGA_CONF` naming a file
 * that does not exist), qemu-ga, and the Deno floor (an empty script, under the agent's V8 flags
 * like every Deno process of the bench: see compare.ts). Also readiness by first `guest-ping`
 * reply, and memory from `/proc/<pid>/status`.
 *
 * qemu-ga thaws every mount it can see on `guest-fsfreeze-thaw`. So that a benchmark thaw never
 * touches loop mounts other people's tests froze, the freeze runs start qemu-ga in a private mount
 * namespace in which every loop or /tmp mount but the bench's own is lazily unmounted (that affects
 * only the namespace). The bench never sends qemu-ga `guest-fsfreeze-freeze`, only
 * `guest-fsfreeze-freeze-list` with its own mounts.
 *
 * @module
 */

import { parseConfig } from "../src/config/mod.ts";
import { AGENT_DENO_ENV, AGENT_V8_FLAGS, agentFlags, denoRunOptions } from "../src/permissions.ts";
import { BenchClient, requestBytes } from "./_client.ts";

/** The agents compared. */
export type AgentKind = "ours" | "qemu-ga";

/** Where qemu-ga is installed on Debian. */
export const QEMU_GA = "/usr/sbin/qemu-ga";
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const PING = requestBytes("guest-ping");
const STDERR_TAIL = 16 * 1024;
const decoder = new TextDecoder();

/** Options of {@link spawnAgent}. */
export interface AgentOptions {
  /** A private temp dir for socket, state dir and config path. */
  dir: string;
  /** `-F<hook>`; none when absent. */
  hook?: string;
  /** Our agent's `--fsfreeze-scope` (qemu-ga has none); a path holding no mount when absent. */
  scope?: readonly string[];
  /** qemu-ga only: run it in a private mount namespace with these mounts unmounted. */
  hideMounts?: readonly string[];
  /** Ours only: more options, after the bench's own. */
  args?: readonly string[];
}

/** A running process under test. */
export class BenchProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** `performance.now()` just before the spawn. */
  readonly spawnedAt: number;
  readonly socketPath: string;
  #stderr = "";
  #exited = false;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<void>;

  constructor(child: Deno.ChildProcess, spawnedAt: number, socketPath: string) {
    this.child = child;
    this.spawnedAt = spawnedAt;
    this.socketPath = socketPath;
    this.#status = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#drained = this.#drain(child.stderr);
  }

  get pid(): number {
    return this.child.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** The last part of what the process wrote to stderr. */
  get stderr(): string {
    return this.#stderr;
  }

  /** The exit status, once it exits. */
  status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  // Drained continuously: a full pipe would block the agent's logging.
  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) {
        this.#stderr = (this.#stderr + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL);
      }
    } catch {
      // cancelled
    }
  }

  /** SIGTERM (our agent thaws before it exits), SIGKILL after `graceMs`; waits for exit. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.#exited) signal(this.child, "SIGTERM");
    const timer = setTimeout(() => signal(this.child, "SIGKILL"), graceMs);
    try {
      await this.#status;
    } finally {
      clearTimeout(timer);
    }
    await this.#drained;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

function signal(child: Deno.ChildProcess, name: Deno.Signal): void {
  try {
    child.kill(name);
  } catch {
    // already gone
  }
}

/** What the serve measurements start: the agents, and a minimal Deno ping server as the floor. */
export type ServeKind = AgentKind | "deno-floor";

/** Starts an agent on a unix socket in `options.dir`. */
export function spawnAgent(kind: AgentKind, options: AgentOptions): Promise<BenchProcess> {
  return kind === "ours" ? spawnOurs(options) : spawnQemuGa(options);
}

/** Starts `kind` on a unix socket in `dir`; the floor server runs `serverScript`. */
export async function spawnServer(
  kind: ServeKind,
  dir: string,
  serverScript: string,
): Promise<BenchProcess> {
  if (kind !== "deno-floor") return await spawnAgent(kind, { dir });
  const socketPath = `${dir}/floor.sock`;
  await Deno.mkdir(dir, { recursive: true });
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", AGENT_V8_FLAGS, serverScript, socketPath],
    env: { ...AGENT_DENO_ENV },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  const spawnedAt = performance.now();
  return new BenchProcess(command.spawn(), spawnedAt, socketPath);
}

async function spawnOurs(options: AgentOptions): Promise<BenchProcess> {
  const { socketPath, statedir } = await agentPaths(options.dir);
  const scope = options.scope ?? [`${options.dir}/no-mounts-here`];
  const argv = [
    "-m",
    "unix-listen",
    "-p",
    socketPath,
    "-t",
    statedir,
    `--fsfreeze-scope=${scope.join(",")}`,
    ...(options.hook ? [`-F${options.hook}`] : []),
    ...options.args ?? [],
  ];
  const env = { QGA_CONF: `${options.dir}/qemu-ga.conf` };
  const flags = flagsFor(argv, env);
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, MAIN, ...argv],
    env: { ...env, ...AGENT_DENO_ENV },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  const spawnedAt = performance.now();
  return new BenchProcess(command.spawn(), spawnedAt, socketPath);
}

/** What `agentFlags` gives our agent for `argv` (as tests/_util/agent.ts `flagsForArgv`). */
function flagsFor(argv: readonly string[], env: { QGA_CONF: string }): string[] {
  const parsed = parseConfig(argv, env, (path) => {
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return undefined;
    }
  });
  if (parsed.action !== "run") throw new Error(`not an agent command line: ${argv.join(" ")}`);
  return agentFlags(parsed.config, denoRunOptions());
}

async function spawnQemuGa(options: AgentOptions): Promise<BenchProcess> {
  const { socketPath, statedir } = await agentPaths(options.dir);
  const args = [
    "-m",
    "unix-listen",
    "-p",
    socketPath,
    "-t",
    statedir,
    ...(options.hook ? [`-F${options.hook}`] : []),
  ];
  const hidden = options.hideMounts;
  // The namespace is made private before the script runs, so its unmounts stay inside it.
  const command = hidden === undefined
    ? new Deno.Command(QEMU_GA, { args, stdin: "null", stdout: "null", stderr: "piped" })
    : new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        `n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do umount -l "$1" 2>/dev/null; ` +
        `shift; i=$((i + 1)); done; exec "$@"`,
        "hide-mounts",
        String(hidden.length),
        ...hidden,
        QEMU_GA,
        ...args,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    });
  const spawnedAt = performance.now();
  return new BenchProcess(command.spawn(), spawnedAt, socketPath);
}

async function agentPaths(dir: string): Promise<{ socketPath: string; statedir: string }> {
  const statedir = `${dir}/state`;
  await Deno.mkdir(statedir, { recursive: true });
  return { socketPath: `${dir}/qga.sock`, statedir };
}

/**
 * Connects as soon as the socket accepts and waits for the first `guest-ping` reply; returns the
 * connected client and the milliseconds since the spawn. A connect is tried whenever something
 * changes in the socket's directory (inotify: no polling interval to add to the measure), and
 * every few milliseconds besides.
 */
export async function firstPing(
  process: BenchProcess,
  timeoutMs = 20_000,
): Promise<{ client: BenchClient; ms: number }> {
  const until = performance.now() + timeoutMs;
  using watcher = Deno.watchFs(process.socketPath.replace(/\/[^/]*$/, ""), { recursive: false });
  const events = watcher[Symbol.asyncIterator]();
  let nextEvent = events.next();
  for (;;) {
    let client: BenchClient | undefined;
    try {
      client = await BenchClient.connect(process.socketPath);
    } catch {
      if (process.exited) throw new Error(`exited before answering:\n${process.stderr}`);
      if (performance.now() > until) throw new Error(`no socket after ${timeoutMs} ms`);
      if (await settlesWithin(nextEvent, 5)) nextEvent = events.next();
      continue;
    }
    await client.write(PING);
    await client.skipLines(1);
    return { client, ms: performance.now() - process.spawnedAt };
  }
}

/** Whether `promise` settles within `ms` (it keeps running either way). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resident memory of `pid` in KiB (`VmRSS`; a process's threads, Workers included, share it). */
export function rssKiB(pid: number): number {
  return statusKiB(pid, "VmRSS");
}

/**
 * The private part of it (`RssAnon`: heaps, stacks). The rest, `RssFile`, is mostly the `deno`
 * executable's own code paged in as it is used (shared with every other Deno process, clean).
 */
export function rssAnonKiB(pid: number): number {
  return statusKiB(pid, "RssAnon");
}

function statusKiB(pid: number, field: string): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (!match) throw new Error(`no ${field} for pid ${pid}`);
  return Number(match[1]);
}

/** Number of threads of `pid` (Workers show up here). */
export function threadCount(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1] ?? NaN);
}

/** Direct children of `pid` (e.g. our agent's watchdog while frozen). */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
      if (text !== "") children.push(...text.split(" ").map(Number));
    } catch {
      // the thread ended
    }
  }
  return children;
}

/** A script for the Deno floor. */
export type FloorScript = "empty" | "idle" | "server";

const FLOOR_SOURCE: Record<FloorScript, string> = {
  empty: "",
  // Stays alive with nothing to do, and says when it has loaded.
  idle: "setInterval(() => {}, 1 << 30);\nDeno.stdout.writeSync(new Uint8Array([10]));\n",
  // The least a Deno agent must do: one reply line per request (each ping has one "}").
  server: [
    "const reply = new TextEncoder().encode('{\"return\": {}}\\n');",
    "const listener = Deno.listen({ transport: 'unix', path: Deno.args[0] });",
    "for await (const conn of listener) {",
    "  const buffer = new Uint8Array(4096);",
    "  for (;;) {",
    "    const n = await conn.read(buffer).catch(() => null);",
    "    if (n === null) break;",
    "    for (let i = 0; i < n; i++) if (buffer[i] === 0x7d) await conn.write(reply);",
    "  }",
    "  conn.close();",
    "}",
    "",
  ].join("\n"),
};

/** Writes the floor scripts into `dir`; returns their paths. */
export async function writeFloorScripts(dir: string): Promise<Record<FloorScript, string>> {
  const paths = { empty: `${dir}/empty.ts`, idle: `${dir}/idle.ts`, server: `${dir}/server.ts` };
  for (const name of ["empty", "idle", "server"] as const) {
    await Deno.writeTextFile(paths[name], FLOOR_SOURCE[name]);
  }
  return paths;
}

/** Milliseconds from spawn to exit of `deno run <empty script>`. */
export async function floorRunMs(emptyScript: string): Promise<number> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", AGENT_V8_FLAGS, emptyScript],
    env: { ...AGENT_DENO_ENV },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  });
  const started = performance.now();
  const status = await command.spawn().status;
  const ms = performance.now() - started;
  if (!status.success) throw new Error(`deno run ${emptyScript} failed`);
  return ms;
}

/** VmRSS (KiB) of an idle `deno run`, `settleMs` after its script has loaded. */
export async function floorIdleRssKiB(idleScript: string, settleMs: number): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", AGENT_V8_FLAGS, idleScript],
    env: { ...AGENT_DENO_ENV },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    await reader.read(); // the "loaded" newline
    reader.releaseLock();
    await sleep(settleMs);
    return rssKiB(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel().catch(() => {});
  }
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A busy machine: one shell busy loop per CPU, children of the bench, ended by PID (SIGKILL) when
 * disposed.
 */
export function startCpuHogs(count = navigator.hardwareConcurrency): AsyncDisposable {
  const hogs = Array.from({ length: count }, () =>
    new Deno.Command("sh", {
      args: ["-c", "while :; do :; done"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn());
  return {
    async [Symbol.asyncDispose]() {
      for (const hog of hogs) signal(hog, "SIGKILL");
      await Promise.all(hogs.map((hog) => hog.status));
    },
  };
}
