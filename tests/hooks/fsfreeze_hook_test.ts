/**
 * Tests of the hook dispatcher `hooks/fsfreeze-hook`, run as the agent runs it (new session,
 * stdin /dev/null, FSFREEZE_HOOK_DEADLINE set) on a private install with fixture scripts from
 * `tests/testdata/hook.d/`. No filesystem is frozen here.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHookDir, DISPATCHER, type HookDir, runBounded } from "../_util/hook_dir.ts";

/** Whether `pid` is a live process (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function waitGone(pid: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return !alive(pid);
}

async function addRecorders(hooks: HookDir, names: string[]): Promise<void> {
  for (const name of names) await hooks.addFixture(name, "record.sh");
}

function lastLine(text: string): string {
  return text.trimEnd().split("\n").at(-1) ?? "";
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("`fsfreeze-hook freeze` runs scripts in C-locale order and `thaw` in reverse", async () => {
  await using hooks = await createHookDir();
  // C order: digits < upper case < "_" < lower case (a natural-language locale would differ).
  await addRecorders(hooks, ["a-lower", "_u", "B-upper", "2-a", "10-b"]);
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 0, freeze.stderr);
  const thaw = await hooks.run("thaw");
  assert.equal(thaw.code, 0, thaw.stderr);
  const order = ["10-b", "2-a", "B-upper", "_u", "a-lower"];
  assert.deepEqual(await hooks.calls(), [
    ...order.map((name) => `${name} freeze`),
    ...order.toReversed().map((name) => `${name} thaw`),
  ]);
  // Output is passed through prefixed with the script's name; steps are logged with durations.
  assert.match(freeze.stderr, /^10-b: deadline=\d+$/m);
  assert.match(freeze.stderr, /freeze: 10-b done in \d+ ms/);
  assert.equal(freeze.stdout, "");
});

Deno.test("`fsfreeze-hook` skips qemu's ignored names, hidden files, directories and non-executables", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("50-real", "record.sh");
  const ignored = [
    "~",
    ".bak",
    ".orig",
    ".rpmnew",
    ".rpmorig",
    ".rpmsave",
    ".sample",
    ".dpkg-old",
    ".dpkg-new",
    ".dpkg-tmp",
    ".dpkg-dist",
    ".dpkg-bak",
    ".dpkg-backup",
    ".dpkg-remove",
  ];
  for (const suffix of ignored) await hooks.addFixture(`10-x${suffix}`, "record.sh");
  await hooks.addFixture(".20-hidden", "record.sh");
  await hooks.addFixture("30-not-executable", "record.sh", 0o644);
  await Deno.mkdir(`${hooks.hookD}/40-directory`, { mode: 0o755 });
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.equal((await hooks.run("thaw")).code, 0);
  assert.deepEqual(await hooks.calls(), ["50-real freeze", "50-real thaw"]);
  assert.match(freeze.stderr, /skip .*30-not-executable: not executable.*40-directory: directory/);
});

Deno.test("`fsfreeze-hook freeze` fails and thaws earlier scripts when a script is unsafe", async (t) => {
  const cases: { what: string; prepare: (path: string) => Promise<void>; reason: RegExp }[] = [
    {
      what: "group-writable",
      prepare: (path) => Deno.chmod(path, 0o775),
      reason: /20-unsafe not run: group- or world-writable \(mode 775\)/,
    },
    {
      what: "world-writable",
      prepare: (path) => Deno.chmod(path, 0o757),
      reason: /20-unsafe not run: group- or world-writable \(mode 757\)/,
    },
    {
      what: "owned by another user",
      prepare: (path) => Deno.chown(path, 65534, 65534),
      reason: /20-unsafe not run: owned by uid 65534, not root or uid 0/,
    },
  ];
  for (const { what, prepare, reason } of cases) {
    await t.step(what, async () => {
      await using hooks = await createHookDir();
      await hooks.addFixture("10-a", "record.sh");
      await prepare(await hooks.addFixture("20-unsafe", "record.sh"));
      await hooks.addFixture("30-c", "record.sh");
      const freeze = await hooks.run("freeze");
      assert.equal(freeze.code, 1);
      assert.match(lastLine(freeze.stderr), reason);
      assert.deepEqual(await hooks.calls(), ["10-a freeze", "10-a thaw"]);
    });
  }
});

Deno.test("`fsfreeze-hook freeze` refuses a group-writable hook directory", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  await Deno.chmod(hooks.hookD, 0o775);
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 1);
  assert.match(lastLine(freeze.stderr), /hook directory .*: group- or world-writable/);
  assert.deepEqual(await hooks.calls(), []);
});

Deno.test("`fsfreeze-hook freeze` thaws the scripts that froze, in reverse, when one fails", async () => {
  await using hooks = await createHookDir();
  await addRecorders(hooks, ["10-a", "20-b", "40-d"]);
  await hooks.addFixture("30-fail", "fail.sh");
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 1);
  assert.deepEqual(await hooks.calls(), [
    "10-a freeze",
    "20-b freeze",
    "30-fail freeze",
    "20-b thaw",
    "10-a thaw",
  ]);
  assert.match(freeze.stderr, /^30-fail: simulated failure$/m);
  assert.equal(
    lastLine(freeze.stderr),
    "fsfreeze-hook: freeze failed: 30-fail failed with status 3; thawed: 20-b 10-a",
  );
});

Deno.test("`fsfreeze-hook freeze` kills a script at its share of the deadline and thaws the rest", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  await hooks.addFixture("20-hang", "hang.sh");
  const freeze = await hooks.run("freeze", { deadlineSeconds: 3 });
  assert.equal(freeze.code, 1);
  assert.match(
    lastLine(freeze.stderr),
    /freeze failed: 20-hang timed out after [23]s; thawed: 10-a/,
  );
  assert.deepEqual(await hooks.calls(), ["10-a freeze", "20-hang freeze", "10-a thaw"]);
  // Its child got the signal too (timeout(1) signals the script's whole process group).
  const sleeper = Number(await Deno.readTextFile(`${hooks.hookD}/hang.pid`));
  assert.ok(await waitGone(sleeper), `sleep ${sleeper} survived the timeout`);
});

Deno.test("`fsfreeze-hook freeze` SIGKILLs a script that ignores SIGTERM at the deadline", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-stubborn", "ignore_term.sh");
  const freeze = await hooks.run("freeze", { deadlineSeconds: 2, timeoutMs: 15_000 });
  assert.equal(freeze.code, 1);
  assert.match(lastLine(freeze.stderr), /10-stubborn timed out after [12]s and was killed/);
});

Deno.test("`fsfreeze-hook` thaws each frozen script exactly once across a failed freeze and the agent's thaw", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  await hooks.addFixture("20-fail", "fail.sh");
  assert.equal((await hooks.run("freeze")).code, 1);
  // The agent calls thaw after a failed freeze too: the dispatcher already thawed 10-a.
  const thaw = await hooks.run("thaw");
  assert.equal(thaw.code, 0, thaw.stderr);
  assert.deepEqual(await hooks.calls(), ["10-a freeze", "20-fail freeze", "10-a thaw"]);
  assert.equal(await exists(`${hooks.runDir}/frozen`), false);
});

Deno.test("`fsfreeze-hook thaw` runs nothing after a freeze that froze nothing", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-fail", "fail.sh");
  await hooks.addFixture("20-b", "record.sh");
  assert.equal((await hooks.run("freeze")).code, 1);
  assert.equal((await hooks.run("thaw")).code, 0);
  assert.deepEqual(await hooks.calls(), ["10-fail freeze"]);
});

Deno.test("`fsfreeze-hook thaw` without a freeze record thaws every script in reverse", async () => {
  await using hooks = await createHookDir();
  await addRecorders(hooks, ["10-a", "20-b"]);
  const thaw = await hooks.run("thaw");
  assert.equal(thaw.code, 0, thaw.stderr);
  assert.deepEqual(await hooks.calls(), ["20-b thaw", "10-a thaw"]);
  assert.match(thaw.stderr, /no freeze record/);
});

Deno.test("`fsfreeze-hook freeze` is refused while the previous freeze is not thawed", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  assert.equal((await hooks.run("freeze")).code, 0);
  const again = await hooks.run("freeze");
  assert.equal(again.code, 1);
  assert.match(lastLine(again.stderr), /previous freeze was not thawed yet \(10-a\)/);
  assert.equal((await hooks.run("thaw")).code, 0);
  assert.equal((await hooks.run("freeze")).code, 0);
  assert.equal((await hooks.run("thaw")).code, 0);
  assert.deepEqual(await hooks.calls(), ["10-a freeze", "10-a thaw", "10-a freeze", "10-a thaw"]);
});

Deno.test("`fsfreeze-hook thaw` runs every thaw and fails when one thaw fails", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  await hooks.addFixture("20-b", "record.sh");
  assert.equal((await hooks.run("freeze")).code, 0);
  await Deno.chmod(`${hooks.hookD}/20-b`, 0o777);
  const thaw = await hooks.run("thaw");
  assert.equal(thaw.code, 1);
  assert.match(lastLine(thaw.stderr), /thaw failed: 20-b not run: group- or world-writable/);
  assert.deepEqual(await hooks.calls(), ["10-a freeze", "20-b freeze", "10-a thaw"]);
  assert.equal(await exists(`${hooks.runDir}/frozen`), false);
});

Deno.test("`fsfreeze-hook freeze` returns although a script left a child holding its output", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-background", "background.sh");
  // runBounded waits for EOF on stdout and stderr: it returns only if no child holds them.
  const freeze = await hooks.run("freeze", { timeoutMs: 10_000 });
  const child = Number(await Deno.readTextFile(`${hooks.hookD}/background.pid`));
  try {
    assert.equal(freeze.code, 0, freeze.stderr);
    assert.ok(alive(child), "the background child should still run");
    assert.match(freeze.stderr, /^10-background: left a background child$/m);
  } finally {
    Deno.kill(child, "SIGKILL");
  }
  assert.equal((await hooks.run("thaw")).code, 0);
});

Deno.test("`fsfreeze-hook` gives each script its share of the time left as its deadline", async () => {
  await using hooks = await createHookDir();
  await addRecorders(hooks, ["10-a", "20-b", "30-c"]);
  const deadline = Math.floor(Date.now() / 1000) + 30;
  const freeze = await runBounded(hooks.dispatcher, ["freeze"], {
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    FSFREEZE_HOOK_RUNDIR: hooks.runDir,
    FSFREEZE_HOOK_DEADLINE: String(deadline),
  }, 30_000);
  assert.equal(freeze.code, 0, freeze.stderr);
  const seen = [...freeze.stderr.matchAll(/^\d\d-\w: deadline=(\d+)$/gm)].map((m) => Number(m[1]));
  // 30 s for 3 scripts: 10, then (about) 29/2, then all that is left.
  assert.equal(seen.length, 3);
  assert.ok(Math.abs((seen[0] as number) - (deadline - 20)) <= 1, `first: ${seen}`);
  assert.ok(Math.abs((seen[1] as number) - (deadline - 15)) <= 1, `second: ${seen}`);
  assert.ok(Math.abs((seen[2] as number) - deadline) <= 1, `third: ${seen}`);
  assert.equal((await hooks.run("thaw")).code, 0);
});

Deno.test("`fsfreeze-hook` exits 2 on a bad argument or deadline", async () => {
  await using hooks = await createHookDir();
  for (const args of [[], ["bogus"], ["freeze", "thaw"]]) {
    const run = await runBounded(hooks.dispatcher, args, { PATH: "/usr/bin:/bin" }, 10_000);
    assert.equal(run.code, 2, `args ${args}`);
    assert.match(run.stderr, /usage: .* freeze\|thaw/);
  }
  const env = { FSFREEZE_HOOK_DEADLINE: "soon" };
  const bad = await hooks.run("freeze", { deadlineSeconds: null, env });
  assert.equal(bad.code, 2);
  assert.deepEqual(await hooks.calls(), []);
});

Deno.test("`fsfreeze-hook` exits 0 when its script directory is missing", async () => {
  await using hooks = await createHookDir();
  await Deno.remove(hooks.hookD);
  assert.equal((await hooks.run("freeze")).code, 0);
  assert.equal((await hooks.run("thaw")).code, 0);
});

Deno.test("`fsfreeze-hook` takes its script directory from FSFREEZE_HOOK_D and makes its state directory 0700", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  // The repository's own copy: its fsfreeze-hook.d beside it holds only samples.
  const env = { FSFREEZE_HOOK_D: hooks.hookD };
  const freeze = await hooks.run("freeze", { program: DISPATCHER, env });
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.equal((await hooks.run("thaw", { program: DISPATCHER, env })).code, 0);
  assert.deepEqual(await hooks.calls(), ["10-a freeze", "10-a thaw"]);
  assert.equal((await Deno.stat(hooks.runDir)).mode! & 0o777, 0o700);
});

Deno.test("`fsfreeze-hook` refuses to freeze without a usable state directory but still thaws", async () => {
  await using hooks = await createHookDir();
  await hooks.addFixture("10-a", "record.sh");
  await hooks.addFixture("20-b", "record.sh");
  const notADirectory = `${hooks.dir}/not-a-directory`;
  await Deno.writeTextFile(notADirectory, "");
  const env = { FSFREEZE_HOOK_RUNDIR: notADirectory };
  const freeze = await hooks.run("freeze", { env });
  assert.equal(freeze.code, 1);
  assert.match(lastLine(freeze.stderr), /freeze failed: .*not-a-directory is not a directory/);
  const thaw = await hooks.run("thaw", { env });
  assert.equal(thaw.code, 0, thaw.stderr);
  assert.deepEqual(await hooks.calls(), ["20-b thaw", "10-a thaw"]);
  // Without the state directory the output goes straight to stderr (unprefixed).
  assert.match(thaw.stderr, /^deadline=\d+$/m);
});
