/**
 * Test harness: runs the real agent (`deno run main.ts`) with exactly the permission flags the
 * compiled binary would carry for the same configuration (`agentFlags`), on a unix socket in a
 * private temp dir, and talks to it over that socket.
 *
 * Safety: every agent started here has an explicit `--fsfreeze-scope` that must not cover `/`;
 * without one it gets a scope that contains no mount at all.
 *
 * @module
 */

import { parseConfig } from "../../src/config/mod.ts";
import { AGENT_DENO_ENV, agentFlags, denoRunOptions } from "../../src/permissions.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Options for {@link spawnAgent}. */
export interface SpawnOptions {
  /** Mount points (or directories) the agent may freeze; never `/`. */
  scope?: string[];
  /** `-F<path>`. */
  hook?: string;
  /** Extra agent arguments. */
  args?: string[];
  /** Use this state dir (to restart an agent on the same state). */
  statedir?: string;
  /** Use this working dir (socket, config); created when absent. */
  dir?: string;
  /** Transport other than the default unix socket (then `args` names method and path). */
  customChannel?: boolean;
  /** Wait for the socket to accept connections. @default true */
  waitReady?: boolean;
  env?: Record<string, string>;
  /** A program (and its arguments) that runs the agent, e.g. `setpriv` to drop a capability. */
  wrapper?: string[];
}

/** A running agent. */
export class AgentProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly dir: string;
  readonly socketPath: string;
  readonly statedir: string;
  readonly argv: string[];
  #stderr = "";
  #stderrDone: Promise<void>;
  #status: Promise<Deno.CommandStatus>;
  #exited = false;

  #ownsDir: boolean;

  constructor(
    child: Deno.ChildProcess,
    dir: string,
    socketPath: string,
    statedir: string,
    argv: string[],
    ownsDir: boolean,
  ) {
    this.#ownsDir = ownsDir;
    this.child = child;
    this.dir = dir;
    this.socketPath = socketPath;
    this.statedir = statedir;
    this.argv = argv;
    this.#stderrDone = this.#collect(child.stderr);
    this.#status = child.status.then((s) => {
      this.#exited = true;
      return s;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Everything the agent wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) this.#stderr += decoder.decode(chunk, { stream: true });
    } catch {
      // cancelled
    }
  }

  /** Waits until stderr contains `text`. */
  async waitForLog(text: string | RegExp, timeoutMs = 10_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    const found = (): boolean =>
      typeof text === "string" ? this.#stderr.includes(text) : text.test(this.#stderr);
    while (!found()) {
      if (Date.now() > until) throw new Error(`no log line ${text} in:\n${this.#stderr}`);
      await delay(20);
    }
  }

  /** Connects a client. */
  async connect(): Promise<QgaClient> {
    return new QgaClient(await Deno.connect({ transport: "unix", path: this.socketPath }));
  }

  /** One request on a fresh connection; returns the parsed reply. */
  async request(request: unknown, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    using client = await this.connect();
    return await client.request(request, timeoutMs);
  }

  /** Sends a signal and waits for exit. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    if (!this.#exited) {
      try {
        this.child.kill(signal);
      } catch {
        // already gone
      }
    }
    return await withTimeout(this.#status, timeoutMs, "agent did not exit");
  }

  /** Waits for exit. */
  status(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // gone
      }
    }
    await this.#status;
    await withTimeout(this.#stderrDone, 2000, "stderr").catch(() => {});
    // Removing the state dir also makes a watchdog left by a killed agent exit (it polls it).
    if (this.#ownsDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** A protocol client on one connection. */
export class QgaClient implements Disposable {
  readonly conn: Deno.Conn;
  #buffer: Uint8Array = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Writes raw bytes or a string. */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** Sends one request (object → JSON) and reads one reply line, parsed. */
  async request(request: unknown, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    await this.send(typeof request === "string" ? request : JSON.stringify(request));
    return JSON.parse(await this.readLine(timeoutMs));
  }

  /** Reads up to and including the next `\n`; returns the line without it (raw bytes kept). */
  async readLineBytes(timeoutMs = 30_000): Promise<Uint8Array> {
    const until = Date.now() + timeoutMs;
    while (true) {
      const newline = this.#buffer.indexOf(0x0a);
      if (newline !== -1) {
        const line = this.#buffer.slice(0, newline);
        this.#buffer = this.#buffer.slice(newline + 1);
        return line;
      }
      const remaining = until - Date.now();
      if (remaining <= 0) throw new Error("timed out waiting for a reply line");
      const chunk = await this.#read(remaining);
      if (chunk === null) throw new Error("connection closed while waiting for a reply");
      this.#buffer = concat(this.#buffer, chunk);
    }
  }

  /** Reads the next line as text. */
  async readLine(timeoutMs = 30_000): Promise<string> {
    return decoder.decode(await this.readLineBytes(timeoutMs));
  }

  /** Reads whatever arrives within `ms` (for "no reply" assertions). */
  async readFor(ms: number): Promise<Uint8Array> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const chunk = await this.#read(until - Date.now()).catch(() => null);
      if (chunk === null) break;
      this.#buffer = concat(this.#buffer, chunk);
    }
    const out = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return out;
  }

  /** One read, racing a timeout; a read still pending at the timeout is kept for the next call. */
  async #read(timeoutMs: number): Promise<Uint8Array | null> {
    this.#inflight ??= this.#readChunk();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(timeoutMs, 0));
    });
    const result = await Promise.race([this.#inflight, timeout]);
    clearTimeout(timer);
    if (result === "timeout") throw new Error("read timeout");
    this.#inflight = undefined;
    return result;
  }

  async #readChunk(): Promise<Uint8Array | null> {
    const buffer = new Uint8Array(65536);
    const count = await this.conn.read(buffer).catch(() => null);
    return count === null ? null : buffer.slice(0, count);
  }

  #inflight: Promise<Uint8Array | null> | undefined;

  [Symbol.dispose](): void {
    try {
      this.conn.close();
    } catch {
      // closed
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Sleeps. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects when `promise` does not settle within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function assertSafeScope(scope: readonly string[]): void {
  for (const path of scope) {
    const normal = path.replace(/\/+$/, "");
    if (normal === "" || !normal.startsWith("/tmp/") || normal.split("/").length < 4) {
      throw new Error(
        `test freeze scope must be a test directory under /tmp/<dir>/..., not ${path}`,
      );
    }
  }
}

/** The flags `agentFlags` gives the agent for `argv` (what the tests and the binary share). */
export function flagsForArgv(argv: readonly string[], env: { QGA_CONF?: string }): string[] {
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

/** Starts the agent on a unix socket in a temp dir. */
export async function spawnAgent(options: SpawnOptions = {}): Promise<AgentProcess> {
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "agent_test_" });
  await Deno.mkdir(dir, { recursive: true });
  const statedir = options.statedir ?? `${dir}/state`;
  await Deno.mkdir(statedir, { recursive: true });
  const socketPath = `${dir}/qga.sock`;
  const scope = options.scope ?? [`${dir}/no-mounts-here`];
  assertSafeScope(scope);
  const argv = [
    ...(options.customChannel ? [] : ["-m", "unix-listen", "-p", socketPath]),
    "-t",
    statedir,
    `--fsfreeze-scope=${scope.join(",")}`,
    ...(options.hook ? [`-F${options.hook}`] : []),
    ...(options.args ?? []),
  ];
  const env = { QGA_CONF: `${dir}/qemu-ga.conf`, ...AGENT_DENO_ENV, ...options.env };
  const flags = flagsForArgv(argv, env);
  const [program, ...wrapperArgs] = options.wrapper ?? [];
  const command = [Deno.execPath(), "run", ...flags, MAIN, ...argv];
  const child = new Deno.Command(program ?? command[0]!, {
    args: program === undefined ? command.slice(1) : [...wrapperArgs, ...command],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const agent = new AgentProcess(child, dir, socketPath, statedir, argv, ownsDir);
  if (options.waitReady !== false && !options.customChannel) await waitForSocket(agent);
  return agent;
}

async function waitForSocket(agent: AgentProcess, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (agent.exited) throw new Error(`agent exited early:\n${agent.stderr}`);
    try {
      const conn = await Deno.connect({ transport: "unix", path: agent.socketPath });
      conn.close();
      return;
    } catch {
      await delay(20);
    }
  }
  throw new Error(`agent socket did not appear:\n${agent.stderr}`);
}

/** The watchdog `agentPid` started (its child running `watchdog`). */
export function watchdogOf(agentPid: number): number {
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const ppid = statField(stat, STAT_PPID);
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      if (ppid === agentPid && argv.includes("watchdog")) return pid;
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`agent ${agentPid} has no watchdog child`);
}

/** The niceness of each thread of process `pid` (field 19 of /proc/<pid>/task/<tid>/stat). */
export function threadNices(pid: number): number[] {
  const nices: number[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${entry.name}/stat`);
      nices.push(statField(stat, STAT_NICE));
    } catch {
      // the thread ended meanwhile
    }
  }
  return nices;
}

/** A wrapper (as `nice -n N`) that starts a program at niceness `nice`, whatever the runner's is. */
export function atNiceness(nice: number): string[] {
  // A child inherits the niceness of the thread that starts it: this one.
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  const own = statField(stat, STAT_NICE);
  return ["nice", "-n", String(nice - own)];
}

/** Fields of /proc/<pid>/stat, counted from the state after the command's closing parenthesis. */
export const STAT_PPID = 1;
export const STAT_NICE = 16;

/** A numeric field of a /proc stat line (the command name may hold spaces and parentheses). */
export function statField(stat: string, field: number): number {
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[field]);
}
