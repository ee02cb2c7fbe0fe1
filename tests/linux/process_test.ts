/**
 * Tests of src/linux/process.ts against id(1), /proc and children of the test's own.
 *
 * @module
 */

import assert from "node:assert/strict";
import { getuid, kill, ownThreadIds, setThreadNice, threadNice } from "../../src/linux/process.ts";
import { isSyscallError, run } from "../_util/linux.ts";
import { STAT_NICE, statField } from "../_util/agent.ts";

Deno.test("getuid() matches id -u", async () => {
  assert.equal(getuid(), Number(await run("id", ["-u"])));
});

Deno.test("kill() throws SyscallError ESRCH for a process that has exited", async () => {
  const child = new Deno.Command("true", { stdin: "null", stdout: "null", stderr: "null" }).spawn();
  await child.status;
  kill(Deno.pid, 0); // signal 0 only checks that the target exists
  assert.throws(() => kill(child.pid, 0), isSyscallError("kill", "ESRCH"));
});

Deno.test("setThreadNice() and threadNice() set and read a child's niceness, as /proc shows it", async () => {
  const child = new Deno.Command("sleep", { args: ["30"], stdin: "null" }).spawn();
  try {
    for (const nice of [7, -3]) {
      setThreadNice(child.pid, nice);
      assert.equal(threadNice(child.pid), nice);
      const stat = await Deno.readTextFile(`/proc/${child.pid}/stat`);
      assert.equal(statField(stat, STAT_NICE), nice);
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  assert.throws(() => threadNice(child.pid), isSyscallError("getpriority", "ESRCH"));
  assert.throws(() => setThreadNice(child.pid, 1), isSyscallError("setpriority", "ESRCH"));
});

Deno.test("ownThreadIds() lists this process's threads, the main one among them", () => {
  const ids = ownThreadIds();
  assert.ok(ids.includes(Deno.pid));
  assert.ok(ids.every((id) => Number.isInteger(id) && id > 0));
});
