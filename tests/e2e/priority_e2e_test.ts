/**
 * End-to-end tests of the agent's scheduling priority (src/priority.ts, docs/design.md #50): the
 * real agent on a real loop mount, its threads and its children read from /proc.
 *
 * Safety: the only mount frozen is the test's own loop mount, with its own thaw watchdog.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type AgentProcess,
  atNiceness,
  spawnAgent,
  threadNices,
  watchdogOf,
} from "../_util/agent.ts";
import { existsSync } from "node:fs";
import { createLoopMounts } from "../_util/loopfs.ts";
import { waitFor } from "../_util/pty.ts";
import { RAISED_NICE } from "../../src/priority.ts";

/** A hook that records `<phase> <niceness>` of the process it runs in. */
async function nicenessHook(dir: string): Promise<{ path: string; calls(): string[] }> {
  const path = `${dir}/niceness-hook.sh`;
  const log = `${dir}/niceness-hook.log`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\necho "$1 $(cut -d' ' -f19 /proc/self/stat)" >> '${log}'\n`,
  );
  await Deno.chmod(path, 0o755);
  const calls = () => {
    try {
      return Deno.readTextFileSync(log).trim().split("\n");
    } catch {
      return [];
    }
  };
  return { path, calls };
}

/** The agent on `scope` with `hook`, started at niceness `nice`. */
function agentAt(
  nice: number,
  scope: string[],
  hook: string,
  args: string[] = [],
): Promise<AgentProcess> {
  return spawnAgent({ scope, hook, args, wrapper: atNiceness(nice) });
}

async function returned(agent: AgentProcess, execute: string): Promise<unknown> {
  const reply = await agent.request({ execute });
  assert.ok("return" in reply, `${execute}: ${JSON.stringify(reply)}`);
  return reply.return;
}

/**
 * Every thread of `pid`, once they all are at `nice` (within 20 s). A watchdog raises itself once
 * it listens, and the freeze's reply does not wait for it to answer the arming.
 */
async function allThreadsAt(pid: number, nice: number, what: string): Promise<void> {
  await waitFor(() => threadNices(pid).every((n) => n === nice), what, 20_000);
  assert.ok(threadNices(pid).length > 1, "a Deno process has more than one thread");
}

Deno.test("an agent started at niceness 0 raises its threads and its watchdog; its hooks run at 0", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await nicenessHook(fs.dir);
  await using agent = await agentAt(0, fs.mounts, hook.path);
  await returned(agent, "guest-ping");
  await allThreadsAt(agent.pid, RAISED_NICE, "the agent's threads raised");
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  const watchdog = watchdogOf(agent.pid);
  await allThreadsAt(watchdog, RAISED_NICE, "the watchdog's threads raised");
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  assert.deepEqual(hook.calls(), ["freeze 0", "thaw 0"]);
  // Lowered only around each hook's start: the agent's own threads are raised again.
  assert.deepEqual(new Set(threadNices(agent.pid)), new Set([RAISED_NICE]));
});

Deno.test("an agent started at another niceness keeps it, and so do its hooks", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await nicenessHook(fs.dir);
  await using agent = await agentAt(5, fs.mounts, hook.path, ["-v"]);
  await returned(agent, "guest-ping");
  await agent.waitForLog("priority kept", 20_000);
  assert.deepEqual(new Set(threadNices(agent.pid)), new Set([5]));
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
  assert.deepEqual(hook.calls(), ["freeze 5", "thaw 5"]);
});

Deno.test("the thaw hook the watchdog runs for a killed agent runs at niceness 0", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
  const hook = await nicenessHook(fs.dir);
  await using agent = await agentAt(0, fs.mounts, hook.path, ["--fsfreeze-timeout=2"]);
  assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
  const watchdog = watchdogOf(agent.pid);
  await allThreadsAt(watchdog, RAISED_NICE, "the watchdog's threads raised");
  await agent.stop("SIGKILL");
  await waitFor(() => hook.calls().length === 2, "the watchdog's thaw hook", 30_000);
  assert.deepEqual(hook.calls(), ["freeze 0", "thaw 0"]);
  // With no agent and no cycle left, the watchdog leaves by itself.
  await waitFor(() => !existsSync(`/proc/${watchdog}`), "the watchdog's exit", 30_000);
});
