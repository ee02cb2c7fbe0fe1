/**
 * Tests of src/linux/process.ts against id(1) and an exited child.
 *
 * @module
 */

import assert from "node:assert/strict";
import { getuid, kill } from "../../src/linux/process.ts";
import { isSyscallError, run } from "../_util/linux.ts";

Deno.test("getuid() matches id -u", async () => {
  assert.equal(getuid(), Number(await run("id", ["-u"])));
});

Deno.test("kill() throws SyscallError ESRCH for a process that has exited", async () => {
  const child = new Deno.Command("true", { stdin: "null", stdout: "null", stderr: "null" }).spawn();
  await child.status;
  kill(Deno.pid, 0); // signal 0 only checks that the target exists
  assert.throws(() => kill(child.pid, 0), isSyscallError("kill", "ESRCH"));
});
