/**
 * A guest is never left frozen (docs/design.md #5–7): the watchdog process, SIGTERM while frozen,
 * restart with the deadline kept, and the local `status` / `thaw` commands — real agent, real loop
 * mounts.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type AgentProcess,
  delay,
  flagsForArgv,
  spawnAgent,
  watchdogOf,
  withTimeout,
} from "../_util/agent.ts";
import { type BlockedWrite, createLoopMounts, startBlockedWrite } from "../_util/loopfs.ts";
import { type RecordingHook, recordingHook } from "../_util/record_hook.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function returned(agent: AgentProcess, execute: string): Promise<unknown> {
  const reply = await agent.request({ execute });
  assert.ok("return" in reply, `${execute}: ${JSON.stringify(reply)}`);
  return reply.return;
}

interface Report {
  state: string;
  hooks: { phase: string; exitCode: number | null; durationUs: number; outputTail: string }[];
  mounts: { mountPoint: string; status: string; freezeUs?: number; thawed?: boolean }[];
  thaw?: { by: string; count: number };
}

/** The agent's report of its last cycle. */
async function cycleReport(agent: AgentProcess): Promise<Report> {
  return await returned(agent, "__io.github.fsfreeze-agent_guest-fsfreeze-report") as Report;
}

/**
 * The watchdog ended the cycle at its deadline with the agent dead: not before `earliestMs`, the
 * hook calls are `calls`, and the saved report says "timeout".
 */
async function assertWatchdogThawed(
  agent: AgentProcess,
  hook: RecordingHook,
  thawedAfterMs: number,
  earliestMs: number,
  calls: string[],
): Promise<void> {
  assert.ok(thawedAfterMs > earliestMs, `not thawed early (${thawedAfterMs} ms)`);
  await delay(300);
  assert.deepEqual(await hook.calls(), calls);
  const report = JSON.parse(
    await Deno.readTextFile(`${agent.statedir}/fsfreeze-agent.report.json`),
  ) as Report;
  assert.equal(report.thaw?.by, "timeout");
}

/** Resolves with the time (ms since `since`) at which a write to `mount` completes. */
async function writeCompletes(mount: string, since: number, timeoutMs: number): Promise<number> {
  const write = startBlockedWrite(`${mount}/probe-${Math.random()}`);
  await withTimeout(write.done, timeoutMs, `write to ${mount}`);
  return performance.now() - since;
}

/** Runs `main.ts <args>` (status / thaw) with the flags of the same agent configuration. */
async function local(agent: AgentProcess, command: string, extra: string[] = []) {
  const env = { QGA_CONF: `${agent.dir}/qemu-ga.conf` };
  const argv = [...agent.argv, ...extra];
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flagsForArgv(argv, env), MAIN, command, ...argv],
    env,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("no thaw from the host: the watchdog thaws at fsfreeze-timeout, hook thaw once, report says timeout", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-timeout=3"],
  });
  const frozenAt = performance.now();
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 2);
  const thawedAfter = await writeCompletes(fs.mounts[0]!, frozenAt, 20_000);
  // At the deadline: not early, and long before the mounts' 30 s safety net.
  assert.ok(thawedAfter < 20_000, `thawed ${thawedAfter} ms after the freeze`);
  assert.ok(thawedAfter > 2500, `not thawed early (${thawedAfter} ms)`);
  await delay(300);
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  const report = await cycleReport(agent);
  assert.equal(report.thaw?.by, "timeout");
  assert.equal(report.thaw?.count, 2);
  await agent.waitForLog("filesystems were thawed outside the agent");
  // A late thaw from the host finds nothing of ours frozen: 0, and no second thaw hook.
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 0);
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
});

Deno.test("agent SIGKILLed while frozen and not restarted: the watchdog thaws by the deadline", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-timeout=3"],
  });
  const frozenAt = performance.now();
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  await agent.stop("SIGKILL");
  const thawedAfter = await writeCompletes(fs.mounts[0]!, frozenAt, 20_000);
  await assertWatchdogThawed(agent, hook, thawedAfter, 2500, ["freeze", "thaw"]);
  assert.equal(await Deno.lstat(`${agent.statedir}/qga.state.isfrozen`).then(() => 1, () => 0), 0);
});

/** The watchdog `agentPid` started, once it has (polled), or a failure after `timeoutMs`. */
async function watchdogStartedBy(agentPid: number, timeoutMs: number): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return watchdogOf(agentPid);
    } catch (err) {
      if (Date.now() > until) throw err;
      await delay(2);
    }
  }
}

/**
 * Resolves once a write to `mount` stays blocked (it is frozen); each earlier probe wrote. A busy
 * machine can hold a write in D state for a moment, so blocked once is not enough.
 */
async function frozenNow(mount: string, timeoutMs: number): Promise<BlockedWrite> {
  const until = Date.now() + timeoutMs;
  for (let i = 0;; i++) {
    const probe = startBlockedWrite(`${mount}/probe-${i}`);
    if (await probe.waitUntilBlocked(timeoutMs)) {
      await delay(STILL_BLOCKED_MS);
      if (!probe.finished() && probe.isBlocked()) return probe;
    }
    await probe.done;
    if (Date.now() > until) throw new Error(`${mount} was not frozen within ${timeoutMs} ms`);
    await delay(10);
  }
}

/** How long a probe's write must stay blocked to show the mount frozen. */
const STILL_BLOCKED_MS = 1500;

Deno.test("a watchdog that reads its arming late holds the deadline: the freeze does not wait, the agent may die first", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 40 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-timeout=4"],
  });
  // The first cycle starts the agent's watchdog.
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  const watchdog = watchdogOf(agent.pid);
  const frozenAt = performance.now();
  Deno.kill(watchdog, "SIGSTOP");
  try {
    // Stopped, the watchdog reads nothing: the arming waits in its socket.
    assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
    await agent.stop("SIGKILL");
  } finally {
    Deno.kill(watchdog, "SIGCONT");
  }
  const thawedAfter = await writeCompletes(fs.mounts[0]!, frozenAt, 30_000);
  await assertWatchdogThawed(agent, hook, thawedAfter, 3500, ["freeze", "thaw", "freeze", "thaw"]);
});

Deno.test("the first freeze does not wait for the watchdog the agent starts: killed before it listened, the watchdog still thaws", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 40 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-timeout=4"],
  });
  using client = await agent.connect();
  const frozenAt = performance.now();
  const reply = client.request({ execute: "guest-fsfreeze-freeze" }, 60_000).catch(() => null);
  // Stopped as soon as it exists, the new watchdog cannot listen: the agent cannot hand it the
  // arming, and freezes all the same.
  const watchdog = await watchdogStartedBy(agent.pid, 20_000);
  Deno.kill(watchdog, "SIGSTOP");
  try {
    const probe = await frozenNow(fs.mounts[0]!, 20_000);
    await agent.stop("SIGKILL");
    await reply;
    Deno.kill(watchdog, "SIGCONT");
    await withTimeout(probe.done, 30_000, "the probe's write, after the watchdog's thaw");
  } finally {
    Deno.kill(watchdog, "SIGCONT");
  }
  await assertWatchdogThawed(agent, hook, performance.now() - frozenAt, 3500, ["freeze", "thaw"]);
});

Deno.test("SIGKILL, restart before the deadline: frozen, deadline kept, host thaw works, watchdog idle", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 40 });
  const hook = await recordingHook(fs.dir);
  const args = ["--fsfreeze-timeout=6"];
  await using first = await spawnAgent({ scope: fs.mounts, hook: hook.path, args });
  const frozenAt = Date.now();
  assert.equal(await returned(first, "guest-fsfreeze-freeze"), 1);
  const recorded = JSON.parse(await Deno.readTextFile(`${first.statedir}/qga.state.isfrozen`));
  assert.ok(recorded.deadline >= frozenAt + 6000 && recorded.deadline <= Date.now() + 6000);
  await first.stop("SIGKILL");
  await using second = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args,
    statedir: first.statedir,
  });
  assert.equal(await returned(second, "guest-fsfreeze-status"), "frozen");
  const state = JSON.parse(await Deno.readTextFile(`${first.statedir}/qga.state.isfrozen`));
  assert.equal(state.deadline, recorded.deadline, "the original deadline is kept");
  assert.equal(await returned(second, "guest-fsfreeze-thaw"), 1);
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  // Past the original deadline, neither watchdog thawed again or ran the hook again.
  await delay(Math.max(0, recorded.deadline + 1500 - Date.now()));
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  const report = await cycleReport(second);
  assert.equal(report.thaw?.by, "host");
});

Deno.test("SIGKILL, restart after the deadline passed: the restarted agent thaws at once", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 40 });
  const hook = await recordingHook(fs.dir);
  // fsfreeze-timeout=0 for the first agent: no watchdog, so only the restart can thaw.
  await using first = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    args: ["--fsfreeze-timeout=0"],
  });
  assert.equal(await returned(first, "guest-fsfreeze-freeze"), 1);
  await first.stop("SIGKILL");
  const path = `${first.statedir}/qga.state.isfrozen`;
  const state = JSON.parse(await Deno.readTextFile(path));
  await Deno.writeTextFile(path, JSON.stringify({ ...state, deadline: Date.now() - 1000 }));
  await using second = await spawnAgent({
    scope: fs.mounts,
    hook: hook.path,
    statedir: first.statedir,
  });
  assert.equal(await returned(second, "guest-fsfreeze-status"), "thawed");
  await withTimeout(startBlockedWrite(`${fs.mounts[0]}/x`).done, 30_000, "thawed on start-up");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  const report = await cycleReport(second);
  assert.equal(report.thaw?.by, "recovery");
});

Deno.test("SIGTERM while frozen: thawed, thaw hook ran, exit 0 (item 32)", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 2);
  const blocked = startBlockedWrite(`${fs.mounts[1]}/x`);
  assert.equal(await blocked.waitUntilBlocked(), true);
  const status = await agent.stop("SIGTERM", 15_000);
  assert.equal(status.code, 0);
  await withTimeout(blocked.done, 30_000, "write after the SIGTERM thaw");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  const report = JSON.parse(
    await Deno.readTextFile(`${agent.statedir}/fsfreeze-agent.report.json`),
  ) as Report;
  assert.equal(report.thaw?.by, "signal");
});

Deno.test("`status` and `thaw` work from a shell while the agent is frozen, and when it is dead", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 40 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 2);

  const frozen = await local(agent, "status", ["--json"]);
  assert.equal(frozen.code, 0, frozen.stderr);
  const status = JSON.parse(frozen.stdout);
  assert.equal(status.status, "frozen");
  assert.deepEqual([...status.state.mounts].sort(), [...fs.mounts].sort());

  const text = await local(agent, "status");
  assert.match(text.stdout, /^status: frozen/m);
  assert.match(text.stdout, /hook freeze .*: exit 0/);

  // Break-glass thaw while the agent lives: the agent notices and leaves frozen mode.
  const thaw = await local(agent, "thaw");
  assert.equal(thaw.code, 0, thaw.stderr);
  assert.match(thaw.stdout, /thawed by local/);
  await withTimeout(startBlockedWrite(`${fs.mounts[0]}/x`).done, 30_000, "thawed by the CLI");
  assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
  await delay(1500);
  assert.equal(await returned(agent, "guest-fsfreeze-status"), "thawed");

  // And with the agent dead.
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 2);
  await agent.stop("SIGKILL");
  const dead = await local(agent, "status");
  assert.match(dead.stdout, /^status: frozen/m);
  assert.equal((await local(agent, "thaw")).code, 0);
  await withTimeout(
    startBlockedWrite(`${fs.mounts[1]}/y`).done,
    5000,
    "thawed with the agent dead",
  );
  assert.deepEqual(await hook.calls(), ["freeze", "thaw", "freeze", "thaw"]);
  const after = JSON.parse((await local(agent, "status", ["--json"])).stdout);
  assert.equal(after.status, "thawed");
  assert.equal(after.report.thaw.by, "local");
});

Deno.test("`thaw --all` thaws every mount in scope even without a recorded cycle", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  await using agent = await spawnAgent({ scope: fs.mounts });
  for (const mount of fs.mounts) {
    await new Deno.Command("fsfreeze", { args: ["-f", mount] }).output();
  }
  const none = await local(agent, "thaw");
  assert.match(none.stdout, /nothing to thaw/);
  const all = await local(agent, "thaw", ["--all"]);
  assert.equal(all.code, 0);
  assert.match(all.stdout, /thawed 2 filesystems/);
  await withTimeout(startBlockedWrite(`${fs.mounts[1]}/x`).done, 30_000, "thawed by --all");
});

Deno.test("the report lists each hook and each mount with durations", async () => {
  await using fs = await createLoopMounts(2, { watchdogSeconds: 30 });
  const hook = await recordingHook(fs.dir);
  await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 2);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 2);
  const report = await cycleReport(agent);
  assert.equal(report.state, "thawed");
  assert.deepEqual(report.hooks.map((h) => h.phase), ["freeze", "thaw"]);
  for (const h of report.hooks) {
    assert.equal(h.exitCode, 0);
    assert.ok(Number.isInteger(h.durationUs) && h.durationUs > 0);
    assert.match(h.outputTail, /hook (freeze|thaw) ok/);
  }
  for (const mount of fs.mounts) {
    const entry = report.mounts.find((m) => m.mountPoint === mount);
    assert.equal(entry?.status, "frozen");
    assert.ok(Number.isInteger(entry?.freezeUs));
    assert.equal(entry?.thawed, true);
  }
  assert.equal(report.thaw?.by, "host");
});
