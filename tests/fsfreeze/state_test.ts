import assert from "node:assert/strict";
import {
  claimState,
  type FrozenState,
  readState,
  releaseClaim,
  stateExists,
  statePaths,
  writeState,
} from "../../src/fsfreeze/state.ts";

const STATE: FrozenState = {
  version: 1,
  cycle: "c1",
  agentPid: 1,
  startedAt: 1000,
  deadline: 2000,
  hook: "/h",
  mounts: ["/a"],
  watchdogPid: null,
};

Deno.test("claimState() has exactly one winner and releaseClaim() ends the cycle", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const paths = statePaths(dir);
  writeState(paths, STATE);
  assert.equal(stateExists(paths.state), true);
  assert.deepEqual(readState(paths.state), STATE);
  assert.deepEqual(claimState(paths), STATE);
  assert.equal(claimState(paths), undefined, "a second claimer gets nothing");
  assert.equal(stateExists(paths.state), false);
  releaseClaim(paths);
  assert.equal(stateExists(paths.claim), false);
  assert.equal((await Deno.stat(dir)).isDirectory, true);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readState() treats an empty (qemu-ga style) state file as frozen with no details", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const paths = statePaths(dir);
  await Deno.writeTextFile(paths.state, "");
  const state = readState(paths.state);
  assert.equal(state?.cycle, "unknown");
  assert.deepEqual(state?.mounts, []);
  assert.equal(readState(`${dir}/missing`), undefined);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writeState() writes owner-only files atomically", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const paths = statePaths(`${dir}/`);
  writeState(paths, STATE);
  assert.equal((await Deno.stat(paths.state)).mode! & 0o777, 0o600);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["qga.state.isfrozen"]);
  await Deno.remove(dir, { recursive: true });
});
