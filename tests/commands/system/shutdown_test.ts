/**
 * Tests of src/commands/system/shutdown.ts. The real shutdown program is never run: the argv is
 * checked as data, and the runner is exercised with harmless programs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AgentError } from "../../../src/errors.ts";
import {
  INVALID_MODE_MESSAGE,
  parseShutdownMode,
  runHelper,
  SHUTDOWN_PROGRAM,
  shutdownArgv,
} from "../../../src/commands/system/shutdown.ts";

Deno.test("shutdownArgv() gives qemu-ga's /sbin/shutdown command line for each mode", () => {
  const message = "hypervisor initiated shutdown";
  assert.deepEqual(shutdownArgv("powerdown"), ["/sbin/shutdown", "-h", "-P", "+0", message]);
  assert.deepEqual(shutdownArgv("halt"), ["/sbin/shutdown", "-h", "-H", "+0", message]);
  assert.deepEqual(shutdownArgv("reboot"), ["/sbin/shutdown", "-h", "-r", "+0", message]);
  assert.equal(SHUTDOWN_PROGRAM, "/sbin/shutdown");
});

Deno.test("parseShutdownMode() defaults to powerdown and refuses other modes with qemu-ga's text", () => {
  assert.equal(parseShutdownMode(undefined), "powerdown");
  for (const mode of ["powerdown", "halt", "reboot"]) assert.equal(parseShutdownMode(mode), mode);
  for (const mode of ["bogus", "", "REBOOT", "toString", "__proto__"]) {
    assert.throws(
      () => parseShutdownMode(mode),
      (err) =>
        err instanceof AgentError && err.errorClass === "GenericError" &&
        err.message === INVALID_MODE_MESSAGE,
      mode,
    );
  }
  assert.equal(INVALID_MODE_MESSAGE, "mode is invalid (valid values are: halt|powerdown|reboot");
});

async function helperError(argv: string[], timeoutMs?: number): Promise<string> {
  const options = timeoutMs === undefined ? {} : { timeoutMs };
  const err = await runHelper(argv, "shutdown", options).then(() => undefined, (e) => e);
  assert.ok(err instanceof AgentError, `expected an AgentError, got ${err}`);
  assert.equal(err.errorClass, "GenericError");
  return err.message;
}

Deno.test("runHelper() resolves when the program exits 0", async () => {
  await runHelper(["/bin/sh", "-c", "echo fine; exit 0"], "shutdown");
});

Deno.test("runHelper() reports the exit status when the program fails silently", async () => {
  assert.equal(
    await helperError(["/bin/sh", "-c", "exit 3"]),
    "child process has failed to shutdown: exit status 3",
  );
});

Deno.test("runHelper() reports the program's output when it fails with some", async () => {
  assert.equal(
    await helperError(["/bin/sh", "-c", "echo out; echo err >&2; exit 1"]),
    "child process has failed to shutdown: out\nerr\n",
  );
});

Deno.test("runHelper() reports a program killed by a signal as terminated abnormally", async () => {
  assert.equal(
    await helperError(["/bin/sh", "-c", "kill -9 $$"]),
    "child process has terminated abnormally",
  );
});

Deno.test("runHelper() reports a missing program as qemu-ga's failed exec", async () => {
  assert.equal(
    await helperError(["/nonexistent/shutdown", "-h"]),
    "child process has failed to shutdown: failed to exec '/nonexistent/shutdown': " +
      "No such file or directory",
  );
});

Deno.test("runHelper() kills a program that outlives its deadline", async () => {
  const message = await helperError(["/bin/sleep", "30"], 200);
  assert.match(message, /^child process has terminated abnormally/);
});
