/**
 * The real agent (the generated permission set, so paths outside the state dir are checked through
 * libc) never writes through an entry planted at a name it uses: a symlink to a file outside its
 * directories, a FIFO, or another user's file. It either works, replacing only the entry itself, or
 * refuses to start and says why. Directories that others could write are refused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type AgentProcess, spawnAgent } from "../_util/agent.ts";
import { run } from "../_util/linux.ts";
import { createLoopMounts } from "../_util/loopfs.ts";
import { recordingHook } from "../_util/record_hook.ts";

const OTHER_UID = 65534;

/** A victim file outside every directory the agent writes in. */
async function victimFile(): Promise<{ path: string; text: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_victim_" });
  const path = `${dir}/victim`;
  const text = "must never change\n";
  await Deno.writeTextFile(path, text);
  return { path, text, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

type Plant = (path: string, victim: string) => Promise<void>;

const PLANTS: Record<string, Plant> = {
  "a symlink": (path, victim) => Deno.symlink(victim, path),
  "a FIFO": async (path) => {
    await run("mkfifo", [path]);
  },
  "another user's file": async (path) => {
    await Deno.writeTextFile(path, "someone else's\n");
    await Deno.chown(path, OTHER_UID, OTHER_UID);
  },
};

async function returned(agent: AgentProcess, execute: string): Promise<unknown> {
  const reply = await agent.request({ execute });
  assert.ok("return" in reply, `${execute}: ${JSON.stringify(reply)}`);
  return reply.return;
}

/** A working dir laid out as spawnAgent lays it out, for planting before the agent starts. */
async function agentDir(): Promise<{ dir: string; statedir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const statedir = `${dir}/state`;
  await Deno.mkdir(statedir);
  return { dir, statedir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

/** Starts an agent expected to refuse; returns its exit code and stderr. */
async function refusedStart(
  options: Parameters<typeof spawnAgent>[0],
): Promise<{ code: number; stderr: string }> {
  await using agent = await spawnAgent({ ...options, waitReady: false });
  const status = await agent.status();
  return { code: status.code, stderr: agent.stderr };
}

for (const [kind, plant] of Object.entries(PLANTS)) {
  Deno.test(`a freeze cycle replaces ${kind} at the state and report temp names, never its target`, async () => {
    await using victim = await victimFile();
    await using fs = await createLoopMounts(1, { watchdogSeconds: 30 });
    const hook = await recordingHook(fs.dir);
    await using agent = await spawnAgent({ scope: fs.mounts, hook: hook.path });
    for (const name of ["qga.state.isfrozen", "fsfreeze-agent.report.json"]) {
      await plant(`${agent.statedir}/${name}.tmp-${agent.pid}`, victim.path);
    }
    assert.equal(await returned(agent, "guest-fsfreeze-freeze"), 1);
    assert.equal(await returned(agent, "guest-fsfreeze-thaw"), 1);
    assert.deepEqual(await hook.calls(), ["freeze", "thaw"]);
    // The report is saved right after the thaw's reply; stopping the agent waits for it.
    assert.equal((await agent.stop("SIGTERM")).code, 0);
    assert.equal(await Deno.readTextFile(victim.path), victim.text);
    const report = JSON.parse(
      await Deno.readTextFile(`${agent.statedir}/fsfreeze-agent.report.json`),
    );
    assert.equal(report.thaw.by, "host");
  });

  Deno.test(`${kind} at the unix socket's temp name is replaced by the socket, never followed`, async () => {
    await using victim = await victimFile();
    await using dir = await agentDir();
    await plant(`${dir.dir}/qga.sock.new`, victim.path);
    await using agent = await spawnAgent({ dir: dir.dir });
    assert.deepEqual(await returned(agent, "guest-ping"), {});
    assert.equal((await Deno.lstat(agent.socketPath)).isSocket, true);
    assert.equal(await Deno.readTextFile(victim.path), victim.text);
  });

  for (
    const name of ["qga.state.isfrozen", "qga.state.isfrozen.thawing", "fsfreeze-agent.report.json"]
  ) {
    Deno.test(`${kind} at ${name} makes the agent refuse to start, naming it`, async () => {
      await using victim = await victimFile();
      await using dir = await agentDir();
      await plant(`${dir.statedir}/${name}`, victim.path);
      const { code, stderr } = await refusedStart({ dir: dir.dir });
      assert.equal(code, 1);
      assert.match(
        stderr,
        new RegExp(`${dir.statedir}/${name.replaceAll(".", "\\.")} is .*remove it`),
      );
      assert.equal(await Deno.readTextFile(victim.path), victim.text);
    });
  }

  Deno.test(`${kind} at the pidfile or the log file makes the agent refuse to start`, async () => {
    await using victim = await victimFile();
    for (const [option, what] of [["-f", "pidfile"], ["-l", "log file"]] as const) {
      await using dir = await agentDir();
      const path = `${dir.dir}/${what.replace(" ", "")}`;
      await plant(path, victim.path);
      const { code, stderr } = await refusedStart({ dir: dir.dir, args: [option, path] });
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`${what} ${path} is .*remove it`));
      assert.equal(await Deno.readTextFile(victim.path), victim.text);
    }
  });
}

Deno.test("the agent writes its own pidfile and log file and appends to its log on restart", async () => {
  await using dir = await agentDir();
  const args = ["-f", `${dir.dir}/agent.pid`, "-l", `${dir.dir}/agent.log`];
  for (let run = 0; run < 2; run++) {
    await using agent = await spawnAgent({ dir: dir.dir, args });
    assert.equal(await Deno.readTextFile(`${dir.dir}/agent.pid`), `${agent.pid}\n`);
    assert.equal((await agent.stop("SIGTERM")).code, 0);
  }
  const log = await Deno.readTextFile(`${dir.dir}/agent.log`);
  assert.equal(log.match(/agent stopped/g)?.length, 2, log);
});

Deno.test("a state dir others may write (not sticky) or owned by another user is refused", async () => {
  for (
    const [mode, owner, pattern] of [
      [0o777, 0, /writable by others and not sticky/],
      [0o775, 0, /writable by its group and not sticky/],
      [0o700, OTHER_UID, new RegExp(`owned by uid ${OTHER_UID}, not by root or this agent's user`)],
    ] as const
  ) {
    await using dir = await agentDir();
    await Deno.chmod(dir.statedir, mode);
    await Deno.chown(dir.statedir, owner, owner);
    const { code, stderr } = await refusedStart({ dir: dir.dir });
    assert.equal(code, 1, stderr);
    assert.match(stderr, new RegExp(`state directory ${dir.statedir} is `));
    assert.match(stderr, pattern);
  }
});

Deno.test("a sticky state dir writable by everyone (as /tmp) is accepted", async () => {
  await using dir = await agentDir();
  await Deno.chmod(dir.statedir, 0o1777);
  await using agent = await spawnAgent({ dir: dir.dir });
  assert.deepEqual(await returned(agent, "guest-ping"), {});
});
