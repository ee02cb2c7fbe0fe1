/**
 * A private install of the hook dispatcher for tests: a temp directory holding a copy of
 * `hooks/fsfreeze-hook`, its `fsfreeze-hook.d/` (filled from `tests/testdata/hook.d/` fixtures or
 * `hooks/fsfreeze-hook.d/*.sample`), and a state directory, plus a runner that calls the
 * dispatcher (or one script) the way the agent does: stdin `/dev/null`, a new session,
 * `FSFREEZE_HOOK_DEADLINE` set, output captured.
 *
 * Disposal ends what the sample hooks may have left running (a MariaDB lock holder recorded in
 * the state directory, a fixture's background child) and removes the directory.
 *
 * @module
 */

const REPO = new URL("../../", import.meta.url).pathname;
/** The dispatcher under test. */
export const DISPATCHER = `${REPO}hooks/fsfreeze-hook`;
/** Where the shipped sample hooks live. */
export const SAMPLES_DIR = `${REPO}hooks/fsfreeze-hook.d`;
/** Where the dispatcher test fixtures live. */
export const FIXTURES_DIR = `${REPO}tests/testdata/hook.d`;

const decoder = new TextDecoder();

/** Options of {@link HookDir.run}. */
export interface HookRunOptions {
  /** `FSFREEZE_HOOK_DEADLINE` = now + this many seconds; `null` leaves it unset. @default 30 */
  deadlineSeconds?: number | null;
  /** Extra environment (the run otherwise gets only PATH and the FSFREEZE_* variables). */
  env?: Record<string, string>;
  /** Run this program instead of the dispatcher (e.g. one sample, to test it alone). */
  program?: string;
  /** Kill the run's process group if it has not finished by then. @default deadline + 20 s */
  timeoutMs?: number;
}

/** What one run produced. */
export interface HookRun {
  code: number;
  stdout: string;
  stderr: string;
  /** Wall-clock time of the run (for "finished within a bound" checks only). */
  ms: number;
}

/** A private dispatcher install; `await using` it. */
export interface HookDir extends AsyncDisposable {
  /** The temp directory holding everything below. */
  readonly dir: string;
  /** The copy of the dispatcher (`<dir>/fsfreeze-hook`). */
  readonly dispatcher: string;
  /** `<dir>/fsfreeze-hook.d`, where the dispatcher finds its scripts by default. */
  readonly hookD: string;
  /** `<dir>/run`, passed as `FSFREEZE_HOOK_RUNDIR` (the dispatcher creates it). */
  readonly runDir: string;
  /** Copies fixture `fixture` from tests/testdata/hook.d into hookD as `name`; returns its path. */
  addFixture(name: string, fixture: string, mode?: number): Promise<string>;
  /** Copies `hooks/fsfreeze-hook.d/<sample>` into hookD as `name` (mode 0700); returns its path. */
  addSample(name: string, sample: string): Promise<string>;
  /** The `<name> <phase>` lines the fixtures appended to hookD/calls.log, in order. */
  calls(): Promise<string[]>;
  /** Runs the dispatcher (or `options.program`) with `phase` as its only argument. */
  run(phase: string, options?: HookRunOptions): Promise<HookRun>;
}

class TempHookDir implements HookDir {
  readonly dir: string;
  readonly dispatcher: string;
  readonly hookD: string;
  readonly runDir: string;

  constructor(dir: string) {
    this.dir = dir;
    this.dispatcher = `${dir}/fsfreeze-hook`;
    this.hookD = `${dir}/fsfreeze-hook.d`;
    this.runDir = `${dir}/run`;
  }

  async addFixture(name: string, fixture: string, mode = 0o755): Promise<string> {
    return await this.#install(`${FIXTURES_DIR}/${fixture}`, name, mode);
  }

  async addSample(name: string, sample: string): Promise<string> {
    return await this.#install(`${SAMPLES_DIR}/${sample}`, name, 0o700);
  }

  async #install(source: string, name: string, mode: number): Promise<string> {
    const target = `${this.hookD}/${name}`;
    await Deno.copyFile(source, target);
    await Deno.chmod(target, mode);
    return target;
  }

  async calls(): Promise<string[]> {
    try {
      const text = await Deno.readTextFile(`${this.hookD}/calls.log`);
      return text.split("\n").filter((line) => line !== "");
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
  }

  async run(phase: string, options: HookRunOptions = {}): Promise<HookRun> {
    const deadlineSeconds = options.deadlineSeconds === undefined ? 30 : options.deadlineSeconds;
    const env: Record<string, string> = {
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      FSFREEZE_HOOK_RUNDIR: this.runDir,
      ...options.env,
    };
    if (deadlineSeconds !== null) {
      env.FSFREEZE_HOOK_DEADLINE = String(Math.floor(Date.now() / 1000) + deadlineSeconds);
    }
    const timeoutMs = options.timeoutMs ?? ((deadlineSeconds ?? 60) + 20) * 1000;
    return await runBounded(options.program ?? this.dispatcher, [phase], env, timeoutMs);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const pid of await this.#leftoverPids()) killProcess(pid);
    await Deno.remove(this.dir, { recursive: true });
  }

  /** PIDs a test may have left running: recorded lock holders, fixture background children. */
  async #leftoverPids(): Promise<number[]> {
    const pids: number[] = [];
    const files = [`${this.hookD}/background.pid`];
    try {
      for await (const entry of Deno.readDir(this.runDir)) {
        if (entry.name.endsWith(".state")) files.push(`${this.runDir}/${entry.name}`);
      }
    } catch {
      // no state directory: nothing ran
    }
    for (const file of files) {
      try {
        const pid = Number((await Deno.readTextFile(file)).trim().split(/\s+/)[0]);
        if (Number.isInteger(pid) && pid > 1) pids.push(pid);
      } catch {
        // not there
      }
    }
    return pids;
  }
}

function killProcess(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * Runs `program args` in a new session (as the agent does), stdin /dev/null, and collects its
 * output; if it is not done after `timeoutMs`, its process group is killed and this throws.
 */
export async function runBounded(
  program: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<HookRun> {
  const started = Date.now();
  const child = new Deno.Command(program, {
    args,
    env,
    clearEnv: true,
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true,
  }).spawn();
  const output = child.output();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), timeoutMs);
  });
  const first = await Promise.race([output, expired]);
  clearTimeout(timer);
  if (first === "expired") {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // group already gone
    }
    // A child outside the group may still hold the pipes: do not wait on them for long.
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 5000);
    });
    await Promise.race([output.catch(() => {}), grace]);
    clearTimeout(timer);
    throw new Error(`${program} ${args.join(" ")} did not finish within ${timeoutMs} ms`);
  }
  return {
    code: first.code,
    stdout: decoder.decode(first.stdout),
    stderr: decoder.decode(first.stderr),
    ms: Date.now() - started,
  };
}

/** Creates a private dispatcher install in a new `/tmp/agent_test_hooks_*` directory. */
export async function createHookDir(): Promise<HookDir> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_hooks_" });
  const hookDir = new TempHookDir(dir);
  await Deno.copyFile(DISPATCHER, hookDir.dispatcher);
  await Deno.chmod(hookDir.dispatcher, 0o755);
  await Deno.mkdir(hookDir.hookD, { mode: 0o755 });
  await Deno.chmod(hookDir.hookD, 0o755);
  return hookDir;
}
