/**
 * The freeze engine end to end (docs/protocol.md, checklist items 14–25): the real agent process, started
 * with the generated permission set, over a unix socket, freezing real loop-mounted filesystems —
 * and only those: every agent here has a freeze scope of test mounts, and every test arms a
 * watchdog that thaws them whatever happens.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type AgentProcess, delay, spawnAgent, withTimeout } from "../_util/agent.ts";
import {
  assertNothingLeft,
  createBindMount,
  createLoopMounts,
  createNestedLoopMount,
  startBlockedWrite,
} from "../_util/loopfs.ts";
import { recordingHook } from "../_util/record_hook.ts";

type Reply = Record<string, unknown>;

async function call(agent: AgentProcess, execute: string, args?: unknown): Promise<Reply> {
  return await agent.request(args === undefined ? { execute } : { execute, arguments: args });
}

async function returned(agent: AgentProcess, execute: string, args?: unknown): Promise<unknown> {
  const reply = await call(agent, execute, args);
  assert.ok("return" in reply, `${execute}: ${JSON.stringify(reply)}`);
  return reply.return;
}

interface Report {
  state: string;
  frozenCount: number;
  error?: string;
  hooks: { phase: string; exitCode: number | null; timedOut: boolean; outputTail: string }[];
  mounts: { mountPoint: string; status: string; reason?: string; code?: string }[];
  thaw?: { by: string; count: number };
}

async function report(agent: AgentProcess): Promise<Report> {
  return await returned(agent, "__io.github.fsfreeze-agent_guest-fsfreeze-report") as Report;
}

function stateFile(agent: AgentProcess): string {
  return `${agent.statedir}/qga.state.isfrozen`;
}

/** Waits until the agent's last cycle has ended (its state file is gone), within 30 s. */
async function settled(agent: AgentProcess): Promise<void> {
  const until = Date.now() + 30_000;
  while (await exists(stateFile(agent)) && Date.now() < until) await delay(50);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("freeze of a 3-mount scope returns 3, blocks writes until thaw, thaw returns 3", async () => {
  await using fs = await createLoopMounts(3, { watchdogSeconds: 30 });
  await using agent = await spawnAgent({ scope: fs.mounts });
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 3);
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "frozen");
  assert.equal(await exists(stateFile(agent)), true, "state file exists while frozen");
  const writes = fs.mounts.map((mount) => startBlockedWrite(`${mount}/after-freeze`));
  for (const write of writes) assert.equal(await write.waitUntilBlocked(), true);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 3);
  await withTimeout(Promise.all(writes.map((w) => w.done)), 10_000, "writes after thaw");
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  assert.equal(await exists(stateFile(agent)), false, "state file gone after thaw");
});

Deno.test("freeze-list freezes only the named mount; unknown mount points count 0 (items 19)", async () => {
  await using fs = await createLoopMounts(3, { watchdogSeconds: 30 });
  await using agent = await spawnAgent({ scope: fs.mounts });
  const [first, second] = fs.mounts as [string, string];
  assert.equal(await returned(agent, "guest-fsfreeze-freeze-list", { mountpoints: [second] }), 1);
  const blocked = startBlockedWrite(`${second}/x`);
  assert.equal(await blocked.waitUntilBlocked(), true);
  const free = startBlockedWrite(`${first}/x`);
  await withTimeout(free.done, 30_000, "write to a mount that was not named");
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  await withTimeout(blocked.done, 10_000, "write after thaw");

  const none = ["/nonexistent", `${first}/`, "relative"];
  assert.equal(await returned(agent, "guest-fsfreeze-freeze-list", { mountpoints: none }), 0);
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed", "0 frozen = thawed (18)");
  assert.equal(await returned(agent, "guest-fsfreeze-freeze-list", { mountpoints: [] }), 0);
});

Deno.test("excluded mounts and mounts outside the read permission are skipped, with the reason", async () => {
  await using fs = await createLoopMounts(3, { watchdogSeconds: 30 });
  const [inScope, excluded, outside] = fs.mounts as [string, string, string];
  await using agent = await spawnAgent({
    scope: [inScope, excluded],
    args: [`--fsfreeze-exclude=${excluded}`],
  });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  const free = [startBlockedWrite(`${excluded}/x`), startBlockedWrite(`${outside}/x`)];
  await withTimeout(Promise.all(free.map((w) => w.done)), 5000, "writes to skipped mounts");
  const cycle = await report(agent);
  const byMount = new Map(cycle.mounts.map((m) => [m.mountPoint, m]));
  assert.equal(byMount.get(inScope)?.status, "frozen");
  assert.equal(byMount.get(excluded)?.status, "skipped");
  assert.match(byMount.get(excluded)!.reason!, /fsfreeze-exclude/);
  assert.equal(byMount.get(outside)?.status, "skipped");
  assert.match(byMount.get(outside)!.reason!, /outside/);
  await agent.waitForLog(new RegExp(`not freezing mount=${outside} reason=`));
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);

  // Named explicitly, a mount outside the scope is still not frozen.
  assert.equal(await returned(agent, "guest-fsfreeze-freeze-list", { mountpoints: [outside] }), 0);
});

Deno.test("a bind mount of a frozen device is frozen once (item 15)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const bind = await createBindMount(fs, { name: "bind with space" });
  await using agent = await spawnAgent({ scope: [fs.mounts[0]!, bind] });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  // Naming only the bind mount freezes nothing: it is not a candidate (the first mount wins).
  assert.equal(await returned(agent, "guest-fsfreeze-freeze-list", { mountpoints: [bind] }), 0);
});

Deno.test("while frozen only the six allowlisted commands are enabled (item 20)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  await using agent = await spawnAgent({ scope: fs.mounts });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  for (const name of ["guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list"]) {
    assert.deepEqual(await call(agent, name), {
      error: {
        class: "CommandNotFound",
        desc: `Command ${name} has been disabled: the command is not allowed`,
      },
    });
  }
  const info = await returned(agent, "guest-info") as {
    supported_commands: { name: string; enabled: boolean }[];
  };
  const enabled = info.supported_commands.filter((c) => c.enabled).map((c) => c.name).sort();
  assert.deepEqual(enabled, [
    "__io.github.fsfreeze-agent_guest-fsfreeze-report",
    "guest-fsfreeze-status",
    "guest-fsfreeze-thaw",
    "guest-info",
    "guest-ping",
    "guest-sync",
    "guest-sync-delimited",
  ]);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  const after = await returned(agent, "guest-info") as typeof info;
  assert.ok(after.supported_commands.every((c) => c.enabled));
});

Deno.test("thaw with nothing frozen returns 0 and runs no hook (item 21, deviation)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 0);
  assert.deepEqual(await hook.calls(), []);
});

Deno.test("an already frozen filesystem (EBUSY) is skipped and not counted (item 17)", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  const [preFrozen, other] = fs.mounts as [string, string];
  await new Deno.Command("fsfreeze", { args: ["-f", preFrozen] }).output();
  await using agent = await spawnAgent({ scope: fs.mounts });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  const cycle = await report(agent);
  assert.equal(cycle.mounts.find((m) => m.mountPoint === preFrozen)?.code, "EBUSY");
  assert.equal(cycle.mounts.find((m) => m.mountPoint === other)?.status, "frozen");
  // Thaw thaws every mount in scope, including the one another tool froze (as qemu-ga).
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 2);
});

Deno.test("freeze-list of a mount another tool froze returns 0; the host's thaw thaws it and counts it", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  const [preFrozen] = fs.mounts as [string, string];
  await new Deno.Command("fsfreeze", { args: ["-f", preFrozen] }).output();
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  assert.equal(
    await returned(agent, "guest-fsfreeze-freeze-list", { mountpoints: [preFrozen] }),
    0,
  );
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  // The freeze hook ran, so its thaw ran at once; the other tool's freeze is left alone.
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  const write = startBlockedWrite(`${preFrozen}/still-frozen`);
  assert.equal(await write.waitUntilBlocked(), true, "the other tool's freeze still holds");
  // qemu-ga's thaw FITHAWs every mount it selects and counts each success.
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  await withTimeout(write.done, 10_000, "write after thaw");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"], "no hook for a thaw with no cycle");
});

Deno.test("freeze-all that meets only an already frozen mount returns 0; the thaw counts it", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const [preFrozen] = fs.mounts as [string];
  await new Deno.Command("fsfreeze", { args: ["-f", preFrozen] }).output();
  await using agent = await spawnAgent({ scope: fs.mounts });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 0);
  const cycle = await report(agent);
  assert.equal(cycle.mounts.find((m) => m.mountPoint === preFrozen)?.code, "EBUSY");
  assert.equal(cycle.thaw?.by, "nothing-frozen");
  assert.equal(cycle.thaw?.count, 0, "nothing of ours to thaw");
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 0);
});

Deno.test("the hook runs freeze before any FIFREEZE and thaw after every FITHAW (item 14)", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  // The probe writes into a mount: it could not complete while that mount is frozen.
  const hook = await recordingHook(fs.dir, { probe: `${fs.mounts[0]}/hook-probe` });
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-hook-timeout=5"],
  });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 2);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 2);
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  assert.equal(await Deno.readTextFile(`${fs.mounts[0]}/hook-probe`), "freeze\nthaw\n");
  const cycle = await report(agent);
  assert.deepEqual(cycle.hooks.map((h) => [h.phase, h.exitCode]), [["freeze", 0], ["thaw", 0]]);
  assert.match(cycle.hooks[0]!.outputTail, /hook freeze ok/);
  const [freezeLine] = await hook.lines();
  assert.match(freezeLine!, /deadline=\d+ thaw=\d+/, "hooks get their deadlines");
});

Deno.test("a failing freeze hook fails the freeze with qemu-ga's text; nothing frozen; thaw hook ran (item 24)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir, { failFreeze: 3 });
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  assert.deepEqual(await call(agent, "guest-fsfreeze-freeze"), {
    error: {
      class: "GenericError",
      desc: "child process has failed to execute fsfreeze hook: database refused to flush\n",
    },
  });
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  await withTimeout(startBlockedWrite(`${fs.mounts[0]}/x`).done, 30_000, "mount not frozen");
  // The thaw hook runs right after the error reply.
  assert.deepEqual(await hook.callsOnce(2), ["freeze", "thaw"], "exactly one thaw for the freeze");
  await settled(agent);
  assert.equal(await exists(stateFile(agent)), false);
  assert.equal((await report(agent)).state, "failed");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
});

Deno.test("a freeze hook that overruns its deadline fails the freeze at the deadline; the slow thaw hook runs after", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 60 });
  const release = `${fs.dir}/release-thaw-hook`;
  const hook = await recordingHook(fs.dir, { hangFreeze: true, thawWaitsFor: release });
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-hook-timeout=2"],
  });
  const reply = await call(agent, "guest-fsfreeze-freeze");
  assert.match((reply.error as { desc: string }).desc, /fsfreeze hook timed out after 2 s/);
  // The host has its answer while the thaw hook still runs (it waits for the release file), and
  // the agent answers meanwhile; the thaw hook runs to its end, once.
  assert.deepEqual(await hook.callsOnce(2), ["freeze", "thaw"]);
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  assert.equal(await exists(stateFile(agent)), true, "the cycle ends when its thaw hook ends");
  await Deno.writeTextFile(release, "");
  await settled(agent);
  assert.equal(await exists(stateFile(agent)), false);
  const cycle = await report(agent);
  assert.equal(cycle.state, "failed");
  assert.deepEqual(cycle.hooks.map((h) => [h.phase, h.timedOut]), [["freeze", true], [
    "thaw",
    false,
  ]]);
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
});

Deno.test("a hanging freeze hook is killed with its children; the freeze fails in time, nothing frozen", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir, { hangFreeze: true });
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-hook-timeout=2"],
  });
  const started = performance.now();
  const reply = await call(agent, "guest-fsfreeze-freeze");
  const elapsed = performance.now() - started;
  assert.match((reply.error as { desc: string }).desc, /fsfreeze hook timed out after 2 s/);
  // At the deadline rather than never: long before the mounts' 30 s safety net.
  assert.ok(elapsed < 20_000, `freeze failed after ${elapsed} ms`);
  const pgid = Number(/pgid=(\d+)/.exec((await hook.lines())[0]!)![1]);
  await delay(200);
  assert.deepEqual(processesInGroup(pgid), [], "no process of the hook's group survives");
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  await withTimeout(startBlockedWrite(`${fs.mounts[0]}/x`).done, 30_000, "mount not frozen");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
});

Deno.test("a hook leaving a background child on its stdout does not hang the agent", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir, { backgroundChild: true });
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  const started = performance.now();
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  // Not held until the background child (30 s) closes the hook's stdout.
  assert.ok(performance.now() - started < 25_000);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  const pgid = Number(/pgid=(\d+)/.exec((await hook.lines())[0]!)![1]);
  for (const pid of processesInGroup(pgid)) Deno.kill(pid, "SIGKILL");
});

Deno.test("a log file on a frozen mount does not block the agent; lines are written after thaw (item 23)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const logfile = `${fs.mounts[0]}/agent.log`;
  await using agent = await spawnAgent({ scope: fs.mounts, args: ["-v", "-l", logfile] });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  for (let i = 0; i < 20; i++) assert.deepEqual(await call(agent, "guest-ping"), { return: {} });
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  const text = await Deno.readTextFile(logfile);
  assert.match(text, /filesystems frozen/);
  assert.ok((text.match(/cmd=guest-ping/g) ?? []).length >= 20, "held lines were written");
});

Deno.test("agent SIGKILLed while frozen: the restarted agent is frozen and its thaw ends the cycle (item 22)", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 40 });
  const hook = await recordingHook(fs.dir);
  await using first = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-timeout=0"],
  });
  assert.equal(await returned(first, "guest-fsfreeze-freeze"), 2);
  await first.stop("SIGKILL");
  await using second = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    statedir: first.statedir,
    args: ["--fsfreeze-timeout=0"],
  });
  assert.equal(await returned(second, "guest-fsfreeze-status"), "frozen");
  const pinged = await call(second, "guest-fsfreeze-freeze");
  assert.match((pinged.error as { desc: string }).desc, /has been disabled/);
  const blocked = startBlockedWrite(`${fs.mounts[1]}/x`);
  assert.equal(await blocked.waitUntilBlocked(), true, "still frozen after the restart");
  assert.equal(await returned(second, "guest-fsfreeze-thaw"), 2);
  await withTimeout(blocked.done, 10_000, "write after thaw");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"], "the restarted agent ran the thaw hook");
  assert.equal(await exists(stateFile(second)), false);
});

Deno.test("through the agent, a loop image's mount is frozen before its holder and thawed after it", async () => {
  await using fs = await createLoopMounts(6, { watchdogSeconds: 30 });
  const nested = await createNestedLoopMount(fs, { index: 2 });
  // Dirty data on the nested mount: its FIFREEZE must write into the holder's image.
  await Deno.writeFile(`${nested.mount}/dirty`, new Uint8Array(4 << 20).fill(7));
  assert.ok(fs.mounts.includes(nested.mount));
  await using agent = await spawnAgent({ scope: fs.mounts });
  const started = performance.now();
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 7);
  assert.ok(performance.now() - started < 20_000, "no deadlock: done long before the watchdog");
  const frozenOrder = (await report(agent)).mounts.filter((m) => m.status === "frozen")
    .map((m) => m.mountPoint);
  assert.ok(
    frozenOrder.indexOf(nested.mount) < frozenOrder.indexOf(nested.holder),
    `nested frozen first: ${frozenOrder.join(" ")}`,
  );
  assert.equal(frozenOrder.at(-1), nested.holder, "the holder is frozen last");
  const writer = startBlockedWrite(`${nested.mount}/file`);
  assert.equal(await writer.waitUntilBlocked(), true);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 7);
  await withTimeout(writer.done, 10_000, "write after thaw");
});

Deno.test("after the freeze tests nothing is left: no loop device, mount or frozen fs of ours", async () => {
  await assertNothingLeft();
});

/** PIDs whose process group is `pgid` (from /proc/<pid>/stat), zombies excluded. */
function processesInGroup(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z" && Number(fields[2]) === pgid) pids.push(Number(entry.name));
    } catch {
      // exited
    }
  }
  return pids;
}

Deno.test("a client that leaves before its freeze reply does not take the agent down", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = `${fs.dir}/slow-hook.sh`;
  await Deno.writeTextFile(hook, "#!/bin/sh\nsleep 1\n");
  await Deno.chmod(hook, 0o755);
  await using agent = await spawnAgent({ scope: fs.mounts, hook });
  {
    using impatient = await agent.connect();
    await impatient.send('{"execute":"guest-fsfreeze-freeze"}');
  }
  await delay(1500);
  assert.equal(agent.exited, false);
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "frozen");
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
});

Deno.test("SIGTERM stops the agent even while a client keeps its connection open", async () => {
  await using agent = await spawnAgent();
  using idle = await agent.connect();
  assert.deepEqual(await idle.request({ execute: "guest-ping" }), { return: {} });
  const status = await agent.stop("SIGTERM", 10_000);
  assert.equal(status.code, 0);
});

Deno.test("an empty qga.state.isfrozen left by qemu-ga means frozen at start-up until a thaw (item 22)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  await Deno.mkdir(`${dir}/state`);
  await Deno.writeTextFile(`${dir}/state/qga.state.isfrozen`, "");
  try {
    await using agent = await spawnAgent({ scope: fs.mounts, dir });
    assert.equal(await returned(agent, "guest-fsfreeze-status"), "frozen");
    assert.match((await call(agent, "guest-fsfreeze-freeze")).error ? "disabled" : "", /disabled/);
    assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 0, "nothing was really frozen");
    assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
    assert.equal(await exists(stateFile(agent)), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FIFREEZE failing with another errno rolls back: error text, nothing frozen, thaw hook ran (item 17)", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir);
  // Without CAP_SYS_ADMIN, open() still works (root) but FIFREEZE fails with EPERM.
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    wrapper: ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"],
  });
  const reply = await call(agent, "guest-fsfreeze-freeze");
  assert.match(
    (reply.error as { desc: string }).desc,
    new RegExp(`^failed to freeze (${fs.mounts.join("|")}): Operation not permitted$`),
  );
  assert.equal((reply.error as { class: string }).class, "GenericError");
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  await withTimeout(startBlockedWrite(`${fs.mounts[0]}/x`).done, 30_000, "mount not frozen");
  assert.deepEqual(await hook.callsOnce(2), ["freeze", "thaw"], "the rollback ran the thaw hook");
  await settled(agent);
  const cycle = await report(agent);
  assert.equal(cycle.state, "failed");
  assert.equal(cycle.thaw?.by, "rollback");
  assert.equal(await exists(stateFile(agent)), false);
});

Deno.test("a filesystem that cannot freeze (EOPNOTSUPP: squashfs) is skipped and not counted (item 17)", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const source = `${fs.dir}/squash-src`;
  const image = `${fs.dir}/squash.img`;
  const mount = `${fs.dir}/squash`;
  await Deno.mkdir(source);
  await Deno.writeTextFile(`${source}/file`, "read-only\n");
  await Deno.mkdir(mount);
  const run = async (command: string, args: string[]): Promise<void> => {
    const output = await new Deno.Command(command, { args, stdout: "null", stderr: "piped" })
      .output();
    assert.ok(output.success, `${command}: ${new TextDecoder().decode(output.stderr)}`);
  };
  await run("mksquashfs", [source, image, "-quiet", "-noappend"]);
  await run("mount", ["-o", "loop,ro", image, mount]);
  try {
    await using agent = await spawnAgent({ scope: [...fs.mounts, mount] });
    assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
    const cycle = await report(agent);
    const squash = cycle.mounts.find((m) => m.mountPoint === mount);
    assert.equal(squash?.status, "skipped");
    assert.equal(squash?.code, "EOPNOTSUPP");
    assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  } finally {
    await run("umount", ["-d", mount]);
  }
});
