/**
 * Tests of src/permission_check.ts: in a child run with exactly the flags `agentFlags()` derives
 * (what a compiled binary carries), the start-up check finds nothing missing; run with the flags of
 * another configuration, it names exactly the entries of the set that the flags lack.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Config, parseConfig } from "../src/config/mod.ts";
import { agentFlags, denoRunOptions } from "../src/permissions.ts";

const CHILD = new URL("./testdata/missing_permissions.ts", import.meta.url).pathname;

function config(argv: string[]): Config {
  const parsed = parseConfig(argv, {}, () => undefined);
  assert.equal(parsed.action, "run");
  return (parsed as { config: Config }).config;
}

/** What the check reports for `argv` in a child that has the flags of `grantedArgv`. */
async function missing(argv: string[], grantedArgv = argv): Promise<string[]> {
  const flags = agentFlags(config(grantedArgv), denoRunOptions());
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, CHILD, JSON.stringify(argv)],
    stdin: "null",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test("missingPermissions() finds nothing missing under the flags of the same configuration", async () => {
  for (
    const argv of [
      [],
      ["-F/etc/qemu/fsfreeze-hook", "-m", "isa-serial"],
      ["-m", "unix-listen", "-p", "/run/agent_test/q.sock", "-d", "-l", "/run/agent_test/a.log"],
      ["-m", "vsock-listen", "-p", "3:1234", "-f", "/run/agent_test/a.pid"],
    ]
  ) {
    assert.deepEqual(await missing(argv), [], argv.join(" "));
  }
});

Deno.test("missingPermissions() names what the set adds beyond the granted flags, pidfile included", async () => {
  // A state dir that does not hold the default pidfile (write on /run would cover it), and a
  // scope that does not hold the hook (read on / would cover it).
  const base = ["-t", "/run/agent_test/state", "--fsfreeze-scope=/srv/agent_test"];
  assert.deepEqual(await missing([...base, "-d"], base), ["write /run/fsfreeze-agent.pid"]);
  assert.deepEqual(await missing([...base, "-f", "/run/agent_test/a.pid"], base), [
    "write /run/agent_test/a.pid",
  ]);
  assert.deepEqual(await missing([...base, "-m", "vsock-listen", "-p", "3:1234"], base), [
    "net vsock:3:1234",
  ]);
  assert.deepEqual(await missing([...base, "-F/etc/h"], base), [
    "read /etc/h",
    "run /etc/h",
    "run /usr/bin/setsid",
  ]);
  // A binary built without the delegate does not silently lack it: the agent refuses to start.
  const delegate = "--delegate-socket=/run/agent_test_delegate/qga.sock";
  assert.deepEqual(await missing([...base, delegate], base), [
    "read /run/agent_test_delegate/qga.sock",
    "write /run/agent_test_delegate/qga.sock",
    "net unix:/run/agent_test_delegate/qga.sock",
  ]);
  assert.deepEqual(await missing([...base, delegate]), []);
});
