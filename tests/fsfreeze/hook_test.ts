/**
 * Tests for src/fsfreeze/hook.ts with real processes: the fixture scripts in tests/testdata/hooks/
 * and temporary copies of them with other modes and owners (the tests run as root).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkHookFile,
  HOOK_OUTPUT_LIMIT,
  HookError,
  hookFailureText,
  type HookResult,
  hookSucceeded,
  runHook,
} from "../../src/fsfreeze/hook.ts";

const HOOKS_DIR = new URL("../testdata/hooks/", import.meta.url).pathname;
const NOBODY_UID = 65534;

function hook(name: string): string {
  return HOOKS_DIR + name;
}

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "agent_test_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** Copies a fixture into `dir` with `mode` (chmod, so the umask does not interfere). */
async function copyHook(dir: string, name: string, mode: number): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.copyFile(hook(name), path);
  await Deno.chmod(path, mode);
  return path;
}

/** `[state, ppid, pgrp]` of a process from /proc/<pid>/stat, or undefined if it is gone. */
function procStat(pid: number): [string, number, number] | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return [state!, Number(ppid), Number(pgrp)];
}

/** Processes of group `pgid` that are not zombies (this container's init does not reap). */
function liveGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid)) continue;
    const stat = procStat(pid);
    if (stat && stat[2] === pgid && stat[0] !== "Z") members.push(pid);
  }
  return members;
}

function isAlive(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat[0] !== "Z";
}

/** Waits (bounded) for a SIGKILLed group to finish dying: kill() returns before the exit. */
async function waitForGroupGone(pgid: number, limitMs: number): Promise<number[]> {
  const until = Date.now() + limitMs;
  let members = liveGroupMembers(pgid);
  while (members.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    members = liveGroupMembers(pgid);
  }
  return members;
}

/** After a failed deadline test: SIGKILLs the groups of any run of `fixture` still alive. */
function killFixtureGroups(fixture: string): void {
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid)) continue;
    let cmdline: string;
    try {
      cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    } catch {
      continue;
    }
    const stat = procStat(pid);
    if (stat && stat[0] !== "Z" && cmdline.split("\0").includes(fixture)) {
      Deno.kill(-stat[2], "SIGKILL");
    }
  }
}

/** Fails the test instead of hanging it when `promise` takes longer than `limitMs`. */
async function within<T>(limitMs: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${limitMs} ms`)), limitMs);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

async function startFailure(path: string): Promise<HookError> {
  const err = await runHook(path, "freeze", { timeoutMs: 5000 }).then(
    () => assert.fail("runHook() should have thrown"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof HookError, `expected HookError, got ${err}`);
  return err;
}

function resultWith(fields: Partial<HookResult>): HookResult {
  return {
    path: "/etc/qemu/fsfreeze-hook",
    phase: "freeze",
    pid: 1234,
    exitCode: 0,
    signal: null,
    timedOut: false,
    aborted: false,
    timeoutMs: 60_000,
    durationMs: 10,
    output: "",
    truncated: false,
    startedAt: 0,
    ...fields,
  };
}

Deno.test("runHook() passes the phase, cwd / and both output streams when the hook succeeds", async () => {
  const result = await runHook(hook("ok.sh"), "freeze", { timeoutMs: 5000 });
  assert.equal(result.exitCode, 0);
  assert.equal(result.signal, null);
  assert.equal(result.timedOut, false);
  assert.equal(result.truncated, false);
  assert.ok(hookSucceeded(result));
  assert.match(result.output, /^phase=freeze$/m);
  assert.match(result.output, /^cwd=\/$/m);
  assert.match(result.output, /^to stderr$/m);
  assert.match(result.output, /^deadline=unset$/m);
  assert.ok(liveGroupMembers(result.pid).length === 0);
});

Deno.test("runHook() runs the hook as the leader of a session and process group of its own", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/ids.sh`;
  // Fields 1, 5 and 6 of /proc/<pid>/stat: pid, process group, session (comm is "(ids.sh)").
  await Deno.writeTextFile(path, '#!/bin/sh\nread -r stat < /proc/$$/stat\necho "$stat"\n');
  await Deno.chmod(path, 0o755);
  const result = await runHook(path, "freeze", { timeoutMs: 5000 });
  assert.ok(hookSucceeded(result), result.output);
  const [pid, , , , pgrp, session] = result.output.trim().split(" ").map(Number);
  assert.equal(pid, result.pid, "the hook itself is the process the agent started");
  assert.equal(pgrp, result.pid);
  assert.equal(session, result.pid);
  assert.notEqual(session, Deno.pid);
});

Deno.test("runHook() adds options.env to the inherited environment when given", async () => {
  const result = await runHook(hook("ok.sh"), "thaw", {
    timeoutMs: 5000,
    env: { FSFREEZE_HOOK_DEADLINE: "1767225600" },
  });
  assert.ok(hookSucceeded(result));
  assert.match(result.output, /^phase=thaw$/m);
  assert.match(result.output, /^deadline=1767225600$/m);
  assert.ok(result.output.includes(`path=${Deno.env.get("PATH")}\n`));
});

Deno.test("hookFailureText() quotes the output when the hook exits 3 with output", async () => {
  const result = await runHook(hook("fail.sh"), "freeze", { timeoutMs: 5000 });
  assert.equal(result.exitCode, 3);
  assert.equal(hookSucceeded(result), false);
  assert.equal(
    hookFailureText(result),
    "child process has failed to execute fsfreeze hook: no freeze today\n",
  );
});

Deno.test("hookFailureText() gives the exit status when the hook exits 3 silently", async () => {
  const result = await runHook(hook("fail_silent.sh"), "freeze", { timeoutMs: 5000 });
  assert.equal(result.exitCode, 3);
  assert.equal(result.output, "");
  assert.equal(
    hookFailureText(result),
    "child process has failed to execute fsfreeze hook: exit status 3",
  );
});

Deno.test("hookFailureText() says terminated abnormally when the hook is killed by a signal", async () => {
  const result = await runHook(hook("kill_self.sh"), "freeze", { timeoutMs: 5000 });
  assert.equal(result.exitCode, null);
  assert.equal(result.signal, "SIGKILL");
  assert.equal(result.timedOut, false);
  assert.equal(hookSucceeded(result), false);
  assert.equal(hookFailureText(result), "child process has terminated abnormally: about to die\n");
});

Deno.test("hookFailureText() gives qemu-ga's bare texts when a failed hook printed nothing", () => {
  assert.equal(
    hookFailureText(resultWith({ exitCode: null, signal: "SIGSEGV" })),
    "child process has terminated abnormally",
  );
  assert.equal(
    hookFailureText(resultWith({ exitCode: 1 })),
    "child process has failed to execute fsfreeze hook: exit status 1",
  );
  assert.equal(
    hookFailureText(resultWith({ exitCode: null, signal: "SIGTERM", timedOut: true })),
    "fsfreeze hook timed out after 60 s; its process group was killed",
  );
  assert.throws(() => hookFailureText(resultWith({})), RangeError);
});

Deno.test("runHook() throws HookError with qemu-ga's exec text when the hook is missing", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/missing`;
  const err = await startFailure(path);
  assert.equal(
    hookFailureText(err),
    `child process has failed to execute fsfreeze hook: failed to exec '${path}': No such file or directory`,
  );
});

Deno.test("runHook() throws HookError with qemu-ga's exec text when the hook is not executable", async () => {
  await using dir = await tempDir();
  const path = await copyHook(dir.path, "ok.sh", 0o644);
  const err = await startFailure(path);
  assert.equal(
    hookFailureText(err),
    `child process has failed to execute fsfreeze hook: failed to exec '${path}': Permission denied`,
  );
});

Deno.test("runHook() refuses the hook when it is group- or world-writable", async () => {
  await using dir = await tempDir();
  for (const mode of [0o775, 0o757]) {
    const path = await copyHook(dir.path, "ok.sh", mode);
    const err = await startFailure(path);
    assert.equal(
      hookFailureText(err),
      `child process has failed to execute fsfreeze hook: refusing to run '${path}': ` +
        `writable by group or others (mode 0${mode.toString(8)})`,
    );
  }
});

Deno.test("runHook() refuses the hook when another uid owns it", async () => {
  await using dir = await tempDir();
  const path = await copyHook(dir.path, "ok.sh", 0o755);
  await Deno.chown(path, NOBODY_UID, null);
  const err = await startFailure(path);
  assert.equal(
    err.reason,
    `refusing to run '${path}': owned by uid ${NOBODY_UID}, not by root`,
  );
});

Deno.test("runHook() refuses the hook when it is a directory", async () => {
  await using dir = await tempDir();
  const err = await startFailure(dir.path);
  assert.equal(err.reason, `refusing to run '${dir.path}': not a regular file`);
});

Deno.test("runHook() throws HookError with the exec errno when the spawn itself fails", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/bad_interpreter`;
  await Deno.writeTextFile(path, "#!/nonexistent/interpreter\n");
  await Deno.chmod(path, 0o755);
  assert.equal(checkHookFile(path), undefined);
  const err = await startFailure(path);
  assert.equal(err.reason, `failed to exec '${path}': No such file or directory`);
});

Deno.test("runHook() throws HookError with exec's text when the interpreter cannot run", async () => {
  await using dir = await tempDir();
  const interpreter = `${dir.path}/not_executable`;
  await Deno.writeTextFile(interpreter, "");
  await Deno.chmod(interpreter, 0o644);
  const path = `${dir.path}/script`;
  await Deno.writeTextFile(path, `#!${interpreter} -e\n`);
  await Deno.chmod(path, 0o755);
  const err = await startFailure(path);
  assert.equal(err.reason, `failed to exec '${path}': Permission denied`);
});

Deno.test("checkHookFile() accepts a root-owned 0755 and an owner-only 0700 hook", async () => {
  await using dir = await tempDir();
  assert.equal(checkHookFile(hook("ok.sh")), undefined);
  assert.equal(checkHookFile(await copyHook(dir.path, "ok.sh", 0o700)), undefined);
});

Deno.test("runHook() throws HookError without starting the hook when already aborted", async () => {
  const err = await runHook(hook("ok.sh"), "freeze", {
    timeoutMs: 5000,
    signal: AbortSignal.abort(),
  }).catch((e: unknown) => e);
  assert.ok(err instanceof HookError);
});

Deno.test("runHook() kills the whole process group when the deadline expires", async () => {
  const timeoutMs = 300;
  const killGraceMs = 500;
  try {
    const result = await within(
      timeoutMs + killGraceMs + 1000,
      runHook(hook("sleep_forever.sh"), "freeze", { timeoutMs, killGraceMs }),
    );
    assert.equal(result.timedOut, true);
    assert.equal(result.aborted, false);
    assert.equal(result.signal, "SIGTERM");
    assert.equal(hookSucceeded(result), false);
    assert.deepEqual(await waitForGroupGone(result.pid, 1000), []);
    const text = hookFailureText(result);
    assert.ok(text.startsWith("fsfreeze hook timed out after 0.3 s"), text);
    assert.ok(text.endsWith(": children started\n"), text);
  } finally {
    killFixtureGroups(hook("sleep_forever.sh"));
  }
});

Deno.test("runHook() SIGKILLs the group after the grace when the hook ignores SIGTERM", async () => {
  const timeoutMs = 300;
  const killGraceMs = 500;
  try {
    const result = await within(
      timeoutMs + killGraceMs + 1000,
      runHook(hook("ignore_term.sh"), "freeze", { timeoutMs, killGraceMs }),
    );
    assert.equal(result.timedOut, true);
    assert.equal(result.signal, "SIGKILL");
    assert.equal(result.output, "ignoring SIGTERM\n");
    // SIGKILL came only once SIGTERM had had its grace period.
    assert.ok(result.durationMs >= timeoutMs + killGraceMs - 50, `ran ${result.durationMs} ms`);
    assert.deepEqual(await waitForGroupGone(result.pid, 1000), []);
  } finally {
    killFixtureGroups(hook("ignore_term.sh"));
  }
});

Deno.test("runHook() kills the group when options.signal aborts", async () => {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 200);
  try {
    const result = await within(
      2000,
      runHook(hook("sleep_forever.sh"), "thaw", {
        timeoutMs: 0,
        killGraceMs: 500,
        signal: controller.signal,
      }),
    );
    assert.equal(result.timedOut, true);
    assert.equal(result.aborted, true);
    assert.ok(hookFailureText(result).startsWith("fsfreeze hook was cancelled after "));
    assert.deepEqual(await waitForGroupGone(result.pid, 1000), []);
  } finally {
    clearTimeout(timer);
    killFixtureGroups(hook("sleep_forever.sh"));
  }
});

Deno.test("runHook() returns promptly and spares the child when a background child holds stdout", async () => {
  const timeoutMs = 1000;
  const result = await within(2000, runHook(hook("background_stdout.sh"), "freeze", { timeoutMs }));
  const childPid = Number(/^child=(\d+)$/m.exec(result.output)?.[1]);
  try {
    assert.ok(hookSucceeded(result));
    assert.ok(Number.isInteger(childPid) && childPid > 0, result.output);
    assert.equal(procStat(childPid)?.[2], result.pid, "the child is in the hook's group");
    // Past the deadline the group must still be left alone: the hook exited on its own.
    await new Promise((resolve) => setTimeout(resolve, timeoutMs + 500));
    assert.ok(isAlive(childPid), "the background child survived");
  } finally {
    if (isAlive(childPid)) Deno.kill(childPid, "SIGKILL");
  }
});

Deno.test("runHook() keeps the last 64 KiB when the hook prints more", async () => {
  const result = await runHook(hook("big_output.sh"), "freeze", { timeoutMs: 5000 });
  const full = "0123456789abcdef\n".repeat(8192) + "end-of-output\n";
  assert.ok(hookSucceeded(result));
  assert.equal(result.truncated, true);
  assert.equal(result.output.length, HOOK_OUTPUT_LIMIT);
  assert.equal(result.output, full.slice(-HOOK_OUTPUT_LIMIT));
});
