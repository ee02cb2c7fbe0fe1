/**
 * Runs the fsfreeze hook (the program named by `-F`) under our contract (docs/design.md #1, #2,
 * #9): the file is checked before it runs; it runs as `hook freeze|thaw` in its own session (qemu-ga
 * calls `setsid()`), cwd `/`, stdin `/dev/null`, no shell; a deadline kills its whole process
 * group (SIGTERM, then SIGKILL after a grace period); its output is captured, bounded, without
 * ever waiting for pipe EOF after it exits, because a background child may hold the pipes open.
 *
 * A group is never signalled after the hook exited on its own: a hook may leave a child holding an
 * application lock until `thaw` (qemu's MySQL sample does).
 *
 * Not here: when hooks run (freeze/thaw pairing) and logging; the caller owns both.
 *
 * @module
 */

import { getuid, kill, SETSID_PROGRAM, Signal } from "../linux/process.ts";
import { Errno, errnoNumber, strerror, SyscallError } from "../linux/errno.ts";
import { stat } from "../linux/files.ts";
import { agentPriority } from "../priority.ts";
import { fileType } from "../linux/structs.ts";

/** The argument a hook receives. */
export type HookPhase = "freeze" | "thaw";

/** The outcome of one hook run that started; failures are data here, not exceptions. */
export interface HookResult {
  /** The hook as configured. */
  path: string;
  /** The argument it was given. */
  phase: HookPhase;
  /** Its process id, which is also its process group id. */
  pid: number;
  /** Exit status; `null` when killed by a signal. */
  exitCode: number | null;
  /** The signal that ended it (`"SIGKILL"`), or `null`. */
  signal: string | null;
  /** True when the deadline expired or the run was aborted, and the group was signalled. */
  timedOut: boolean;
  /** True when the caller's AbortSignal (not the deadline) ended the run. */
  aborted: boolean;
  /** The deadline it ran under; 0 = none. */
  timeoutMs: number;
  /** Time from spawn to exit. */
  durationMs: number;
  /** stdout and stderr in arrival order, the last {@link HOOK_OUTPUT_LIMIT} bytes, lossy UTF-8. */
  output: string;
  /** True when earlier output was dropped to stay within {@link HOOK_OUTPUT_LIMIT}. */
  truncated: boolean;
  /** Spawn time, epoch milliseconds. */
  startedAt: number;
}

/** Options of {@link runHook}. */
export interface RunHookOptions {
  /** Deadline for the hook; 0 = no limit. */
  timeoutMs: number;
  /** Time between SIGTERM and SIGKILL to the group. @default 2000 */
  killGraceMs?: number;
  /** Added to the inherited environment (e.g. `FSFREEZE_HOOK_DEADLINE`). */
  env?: Record<string, string>;
  /** Aborting acts like the deadline expiring: the group is terminated. */
  signal?: AbortSignal;
  /** How long to keep reading the pipes after the hook exited. @default 100 */
  outputGraceMs?: number;
}

/** Bytes of hook output kept (the last ones). */
export const HOOK_OUTPUT_LIMIT = 64 * 1024;
const DEFAULT_KILL_GRACE_MS = 2000;
const DEFAULT_OUTPUT_GRACE_MS = 100;
/** How often a timed-out hook's group is checked for stragglers during the grace period. */
const GROUP_POLL_MS = 50;

/** qemu-ga's `desc` prefix for a failed hook (`ga_run_command`, action `execute fsfreeze hook`). */
const QEMU_FAILED_PREFIX = "child process has failed to execute fsfreeze hook";
const QEMU_ABNORMAL_TEXT = "child process has terminated abnormally";

/** A hook that could not be started: a failed safety check or a spawn error. */
export class HookError extends Error {
  override name = "HookError";
  /** The hook as configured. */
  readonly path: string;
  /** Why it could not start, e.g. `failed to exec '/x': No such file or directory`. */
  readonly reason: string;

  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.path = path;
    this.reason = reason;
  }
}

/**
 * Checks the hook file (DESIGN item 9): a regular file, executable, owned by root or the agent's
 * uid, not group- or world-writable; returns the reason it is refused, or `undefined` if fine.
 */
export function checkHookFile(path: string): string | undefined {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (err) {
    return execFailureReason(path, err);
  }
  if (!info.isFile) return `refusing to run '${path}': not a regular file`;
  // mode and uid are null only on Windows.
  if (info.mode === null || info.uid === null) return `refusing to run '${path}': no owner or mode`;
  const mode = info.mode & 0o7777;
  const uid = getuid();
  // The texts qemu-ga would give when exec fails stay the same; the rest say "refusing to run".
  if (!isExecutableBy(mode, info.uid, uid)) {
    return `failed to exec '${path}': ${strerror(Errno.EACCES)}`;
  }
  if (info.uid !== 0 && info.uid !== uid) {
    const allowed = uid === 0 ? "root" : `root or the agent's uid ${uid}`;
    return `refusing to run '${path}': owned by uid ${info.uid}, not by ${allowed}`;
  }
  if ((mode & 0o022) !== 0) {
    return `refusing to run '${path}': writable by group or others (mode ${
      mode.toString(8).padStart(4, "0")
    })`;
  }
  return undefined;
}

/**
 * Checks then runs `path phase` under the deadline; never throws for hook failures (they are in
 * the result).
 * @throws {HookError} when the hook cannot start (failed check, spawn error, already aborted)
 */
export async function runHook(
  path: string,
  phase: HookPhase,
  options: RunHookOptions,
): Promise<HookResult> {
  const refused = checkHookFile(path) ?? interpreterFailure(path);
  if (refused !== undefined) throw new HookError(path, refused);
  if (options.signal?.aborted) throw new HookError(path, "not started: the run was cancelled");

  const startedAt = Date.now();
  const spawnedAt = performance.now();
  const child = spawnHook(path, phase, options.env);
  const capture = new OutputCapture(HOOK_OUTPUT_LIMIT);
  const pumps = [pumpInto(child.stdout, capture), pumpInto(child.stderr, capture)];
  const deadline = new GroupDeadline(child.pid, options);
  let status: Deno.CommandStatus;
  try {
    status = await child.status;
  } finally {
    deadline.leaderExited();
  }
  const durationMs = Math.round(performance.now() - spawnedAt);
  await deadline.sweepStragglers();
  await drainOutput(pumps, options.outputGraceMs ?? DEFAULT_OUTPUT_GRACE_MS);

  return {
    path,
    phase,
    pid: child.pid,
    exitCode: status.signal === null ? status.code : null,
    signal: status.signal,
    timedOut: deadline.cause !== undefined,
    aborted: deadline.cause === "abort",
    timeoutMs: options.timeoutMs,
    durationMs,
    output: capture.text(),
    truncated: capture.truncated,
    startedAt,
  };
}

/** True when the hook exited 0 on its own. */
export function hookSucceeded(r: HookResult): boolean {
  return !r.timedOut && r.exitCode === 0;
}

/**
 * The `GenericError` desc for a failed hook: qemu-ga's texts (docs/protocol.md, "Freeze error
 * texts") for exec failures,
 * non-zero exits and signals; our own for a deadline or cancellation (qemu-ga has none).
 * @throws {RangeError} for a result that succeeded
 */
export function hookFailureText(failure: HookResult | HookError): string {
  if (failure instanceof HookError) return `${QEMU_FAILED_PREFIX}: ${failure.reason}`;
  const output = failure.output;
  const withOutput = output === "" ? "" : `: ${output}`;
  if (failure.timedOut) {
    const what = failure.aborted
      ? `was cancelled after ${seconds(failure.durationMs)} s`
      : `timed out after ${seconds(failure.timeoutMs)} s`;
    return `fsfreeze hook ${what}; its process group was killed${withOutput}`;
  }
  if (failure.signal !== null) return `${QEMU_ABNORMAL_TEXT}${withOutput}`;
  if (failure.exitCode !== 0) {
    return output === ""
      ? `${QEMU_FAILED_PREFIX}: exit status ${failure.exitCode}`
      : `${QEMU_FAILED_PREFIX}: ${output}`;
  }
  throw new RangeError("hookFailureText() was given a hook result that succeeded");
}

function seconds(ms: number): string {
  return String(Math.round(ms) / 1000);
}

// Same rule as execve(2) for the owner and root; group membership is not looked up, so a
// root-owned hook with only group-x may still be refused by exec (then spawn reports EACCES).
function isExecutableBy(mode: number, owner: number, uid: number): boolean {
  if (uid === 0) return (mode & 0o111) !== 0;
  if (owner === uid) return (mode & 0o100) !== 0;
  return (mode & 0o011) !== 0;
}

/**
 * Why exec would fail on the `#!` interpreter of a script hook (the kernel's errno), found before
 * the spawn: {@link SETSID_PROGRAM} would only report it as its own exit status.
 */
function interpreterFailure(path: string): string | undefined {
  const interpreter = shebangInterpreter(path);
  if (interpreter === undefined) return undefined;
  let info;
  try {
    info = stat(interpreter); // libc's: the interpreter is outside the agent's read permissions
  } catch (err) {
    if (err instanceof SyscallError) return `failed to exec '${path}': ${strerror(err.errno)}`;
    throw err;
  }
  if (fileType(info.mode) !== "file" || !isExecutableBy(info.mode & 0o7777, info.uid, getuid())) {
    return `failed to exec '${path}': ${strerror(Errno.EACCES)}`;
  }
  return undefined;
}

/** The interpreter a `#!` line names (the kernel reads at most 256 bytes of it), if any. */
function shebangInterpreter(path: string): string | undefined {
  const head = new Uint8Array(256);
  let count: number | null;
  try {
    using file = Deno.openSync(path);
    count = file.readSync(head);
  } catch {
    return undefined; // exec will say why
  }
  const text = new TextDecoder().decode(head.subarray(0, count ?? 0));
  if (!text.startsWith("#!")) return undefined;
  const line = text.slice(2).split("\n", 1)[0] ?? "";
  const interpreter = line.trim().split(/[ \t]/, 1)[0] ?? "";
  return interpreter === "" ? undefined : interpreter;
}

/** `failed to exec '<hook>': <strerror>`, the text qemu-ga's child `perror()`s. */
function execFailureReason(path: string, err: unknown): string {
  return `failed to exec '${path}': ${osErrorText(err)}`;
}

function osErrorText(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) {
    try {
      return strerror(errnoNumber(code));
    } catch {
      // an errno name our table lacks: fall through to Deno's message
    }
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * Starts the hook in a session of its own through {@link SETSID_PROGRAM}: Deno's own `detached`
 * spawn forks the whole agent (its page tables, then copy-on-write faults that slow the FIFREEZEs
 * right after), while setsid(1) is spawned the light way and execs the hook in its own process, so
 * the hook's pid is still its process group's id (docs/design.md #41). Without setsid(1), Deno's
 * way.
 */
function spawnHook(
  path: string,
  phase: HookPhase,
  env: Record<string, string> | undefined,
): Deno.ChildProcess {
  try {
    return agentPriority.spawnAtStartPriority(() =>
      viaSetsid(path, phase, env) ?? hookCommand(path, [phase], env, true).spawn()
    );
  } catch (err) {
    throw new HookError(path, execFailureReason(path, err), { cause: err });
  }
}

/** The hook spawned through {@link SETSID_PROGRAM}, or `undefined` where that is not there. */
function viaSetsid(
  path: string,
  phase: HookPhase,
  env: Record<string, string> | undefined,
): Deno.ChildProcess | undefined {
  if (setsidUsable === false) return undefined;
  try {
    const child = hookCommand(SETSID_PROGRAM, ["--", path, phase], env, false).spawn();
    setsidUsable = true;
    return child;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotCapable)) throw err;
    setsidUsable = false; // no setsid here, or not in the permission set: Deno's own way
    return undefined;
  }
}

let setsidUsable: boolean | undefined;

function hookCommand(
  program: string,
  args: string[],
  env: Record<string, string> | undefined,
  detached: boolean,
): Deno.Command {
  return new Deno.Command(program, {
    args,
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached,
    ...(env ? { env } : {}),
  });
}

/** Sends `signal` to process group `pgid`; a group that is already gone is fine. */
function signalGroup(pgid: number, signal: number): void {
  try {
    kill(-pgid, signal);
  } catch (err) {
    // ESRCH: nothing left. Anything else (EPERM) cannot be helped from a timer callback.
    if (!(err instanceof SyscallError)) throw err;
  }
}

function groupExists(pgid: number): boolean {
  try {
    kill(-pgid, 0); // signal 0: existence check only
    return true;
  } catch (err) {
    return !(err instanceof SyscallError && err.errno === Errno.ESRCH);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One hook run's deadline: SIGTERM to the group on expiry or abort, SIGKILL after the grace. */
class GroupDeadline {
  /** Why the group was signalled, if it was. */
  cause: "timeout" | "abort" | undefined;
  #pgid: number;
  #graceMs: number;
  #signal: AbortSignal | undefined;
  #leaderGone = false;
  #firedAt = 0;
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #onAbort = (): void => this.#fire("abort");

  constructor(pgid: number, options: RunHookOptions) {
    this.#pgid = pgid;
    this.#graceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
    this.#signal = options.signal;
    if (options.timeoutMs > 0) {
      this.#deadlineTimer = setTimeout(() => this.#fire("timeout"), options.timeoutMs);
    }
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** The hook exited: from now on its group is left alone unless the deadline already fired. */
  leaderExited(): void {
    this.#leaderGone = true;
    clearTimeout(this.#deadlineTimer);
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }

  /**
   * After a deadline only: gives the rest of the group the remainder of the grace period to exit
   * on SIGTERM, then SIGKILLs whatever is left. Returns at once if the deadline never fired.
   */
  async sweepStragglers(): Promise<void> {
    clearTimeout(this.#killTimer);
    if (this.cause === undefined) return;
    const graceEnd = this.#firedAt + this.#graceMs;
    while (groupExists(this.#pgid) && performance.now() < graceEnd) await delay(GROUP_POLL_MS);
    if (groupExists(this.#pgid)) signalGroup(this.#pgid, Signal.SIGKILL);
  }

  #fire(cause: "timeout" | "abort"): void {
    if (this.#leaderGone || this.cause !== undefined) return;
    this.cause = cause;
    this.#firedAt = performance.now();
    signalGroup(this.#pgid, Signal.SIGTERM);
    this.#killTimer = setTimeout(() => {
      if (!this.#leaderGone) signalGroup(this.#pgid, Signal.SIGKILL);
    }, this.#graceMs);
  }
}

/** Keeps the last `limit` bytes of everything appended. */
class OutputCapture {
  truncated = false;
  #limit: number;
  #chunks: Uint8Array[] = [];
  #size = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  append(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#size > this.#limit) {
      const first = this.#chunks[0]!;
      const excess = this.#size - this.#limit;
      this.truncated = true;
      if (first.length <= excess) {
        this.#chunks.shift();
        this.#size -= first.length;
      } else {
        this.#chunks[0] = first.subarray(excess);
        this.#size -= excess;
      }
    }
  }

  text(): string {
    const bytes = new Uint8Array(this.#size);
    let offset = 0;
    for (const chunk of this.#chunks) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    // After a cut, skip a partial UTF-8 sequence rather than start with U+FFFD.
    let start = 0;
    if (this.truncated) {
      while (start < 3 && start < bytes.length && (bytes[start]! & 0xc0) === 0x80) start++;
    }
    return new TextDecoder().decode(bytes.subarray(start));
  }
}

interface OutputPump {
  /** Settles when the pipe reached EOF or was cancelled. */
  done: Promise<void>;
  cancel(): Promise<void>;
}

function pumpInto(stream: ReadableStream<Uint8Array>, capture: OutputCapture): OutputPump {
  const reader = stream.getReader();
  const done = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        capture.append(value);
      }
    } catch {
      // A cancelled or broken pipe ends the capture; what arrived is kept.
    }
  })();
  return { done, cancel: () => reader.cancel().catch(() => {}) };
}

/** Waits for EOF on the pipes at most `graceMs`, then stops reading (never blocks on EOF). */
async function drainOutput(pumps: OutputPump[], graceMs: number): Promise<void> {
  const allDone = Promise.all(pumps.map((pump) => pump.done));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const graceOver = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
  await Promise.race([allDone, graceOver]);
  clearTimeout(timer);
  await Promise.all(pumps.map((pump) => pump.cancel()));
  await allDone;
}
