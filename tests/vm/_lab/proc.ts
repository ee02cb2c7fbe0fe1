/**
 * Host-side process helpers for the VM lab: commands with a deadline and their output, polling,
 * measurement notes, and exit cleanups that run even when the test process is cut short (so no
 * VM, daemon, loop device, mount or temp dir outlives it).
 *
 * @module
 */

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** What a finished command produced. */
export interface RunResult {
  code: number;
  /** The signal that ended it (e.g. after its deadline), or null. */
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  /** SIGKILL the command after this long. @default 120000 */
  timeoutMs?: number;
  /** Written to stdin (which is /dev/null otherwise). */
  input?: string;
  /** Return a failed result instead of throwing. @default false */
  allowFailure?: boolean;
  env?: Record<string, string>;
}

/** Runs `command args...`; throws (with its output) on failure unless `allowFailure`. */
export async function run(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const child = new Deno.Command(command, {
    args,
    stdin: options.input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env === undefined ? {} : { env: options.env }),
  }).spawn();
  const timer = setTimeout(() => killQuietly(child), timeoutMs);
  try {
    if (options.input !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(encoder.encode(options.input)).catch(() => {});
      await writer.close().catch(() => {});
    }
    const output = await child.output();
    const result: RunResult = {
      code: output.code,
      signal: output.signal,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
    if (!options.allowFailure && (result.code !== 0 || result.signal !== null)) {
      const why = result.signal === null ? `status ${result.code}` : `killed by ${result.signal}`;
      const text = `${result.stderr}${result.stdout}`.trim().slice(-4000);
      const late = result.signal === "SIGKILL" ? ` (deadline ${timeoutMs} ms)` : "";
      throw new Error(`${command} ${args.join(" ")}: ${why}${late}: ${text}`);
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

function killQuietly(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
}

/** stdout of a command that must succeed, trimmed. */
export async function output(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<string> {
  return (await run(command, args, options)).stdout.trim();
}

/** Runs a command synchronously, ignoring failures (for cleanups on the way out). */
export function runSyncQuietly(command: string, args: string[]): void {
  try {
    new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "null" })
      .outputSync();
  } catch {
    // best effort: the next cleanup still runs
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Options of {@link poll}. */
export interface PollOptions {
  timeoutMs: number;
  /** @default 1000 */
  intervalMs?: number;
}

/**
 * Calls `probe` until it returns a value other than undefined, and returns that value; returns
 * undefined if `timeoutMs` passed first. A probe that throws counts as "not yet".
 */
export async function poll<T>(
  probe: () => Promise<T | undefined>,
  options: PollOptions,
): Promise<T | undefined> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not yet
    }
    if (Date.now() >= deadline) return undefined;
    await sleep(options.intervalMs ?? 1000);
  }
}

/** Seconds since `startMs` (a `performance.now()` value), rounded to 0.1 s. */
export function secondsSince(startMs: number): number {
  return Math.round((performance.now() - startMs) / 100) / 10;
}

/** Prints a line of test output (measurements, what a baseline did) on stderr. */
export function note(line: string): void {
  Deno.stderr.writeSync(encoder.encode(`[vm] ${line}\n`));
}

/** Whether a process with this PID exists (and is not a zombie). */
export function processAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** The command line of a process, or "" when it is gone. */
export function processCmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
  } catch {
    return "";
  }
}

/**
 * Exit cleanups. A test run can end without running its teardown: a failed assertion in a
 * teardown, Ctrl-C (deno test exits without unload events or signal listeners), SIGKILL. So each
 * thing the lab creates registers a shell command that removes it, and a small reaper process
 * (its own session, started with the first registration) waits for this process to end and then
 * runs the commands still registered, newest first. The normal teardown unregisters each command
 * once it has done the same work, so after a clean run the reaper has nothing to do.
 */
const cleanups: { name: string; command: string }[] = [];
let manifest: string | undefined;

function writeManifest(): void {
  if (manifest === undefined) return;
  const lines = ["# VM lab exit cleanups (tests/vm/_lab/proc.ts), newest first"];
  for (const entry of cleanups.toReversed()) {
    lines.push(`# ${entry.name}`, `( ${entry.command} ) >/dev/null 2>&1 || true`);
  }
  Deno.writeTextFileSync(manifest, lines.join("\n") + "\n");
}

function startReaper(): void {
  manifest = `/var/tmp/fsfreeze-agent-vm-cleanup-${Deno.pid}.sh`;
  writeManifest();
  const reaper = new Deno.Command("setsid", {
    args: [
      "bash",
      "-c",
      'while kill -0 "$1" 2>/dev/null; do sleep 1; done; bash "$2"; rm -f "$2"',
      "fsfreeze-agent-vm-reaper",
      String(Deno.pid),
      manifest,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  reaper.unref();
}

/**
 * Registers `command` (bash) to run if this process ends while it is still registered. Returns a
 * function that unregisters it: call that once the normal teardown has done the same work.
 */
export function onExit(name: string, command: string): () => void {
  const entry = { name, command };
  cleanups.push(entry);
  if (manifest === undefined) startReaper();
  else writeManifest();
  return () => {
    const index = cleanups.indexOf(entry);
    if (index < 0) return;
    cleanups.splice(index, 1);
    writeManifest();
  };
}

/** Quotes a string for bash. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}
