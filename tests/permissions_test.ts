import assert from "node:assert/strict";
import { type Config, parseConfig } from "../src/config/mod.ts";
import { agentFlags, denoRunOptions, permissionSet } from "../src/permissions.ts";

function config(argv: string[]): Config {
  const parsed = parseConfig(argv, {}, () => undefined);
  assert.equal(parsed.action, "run");
  return (parsed as { config: Config }).config;
}

Deno.test("permissionSet() derives read/write/run/net from the configuration", () => {
  const set = permissionSet(
    config([
      "-m",
      "unix-listen",
      "-p",
      "/run/q.sock",
      "-t",
      "/run/st",
      "-F/etc/h",
      "-l",
      "/var/log/a.log",
      "--fsfreeze-scope=/srv,/data",
    ]),
    { selfExecutable: "/usr/sbin/fsfreeze-agent" },
  );
  for (
    const path of [
      "/srv",
      "/data",
      "/run/st",
      "/etc/h",
      "/proc/self/mountinfo",
      "/etc/qemu/qemu-ga.conf",
    ]
  ) {
    assert.ok(set.read.includes(path), `read ${path}`);
  }
  assert.ok(!set.read.includes("/"), "a narrow scope does not grant /");
  for (const path of ["/run/st", "/var/log/a.log", "/run/q.sock"]) {
    assert.ok(set.write.includes(path), `write ${path}`);
  }
  assert.deepEqual(set.run, ["/usr/sbin/fsfreeze-agent", "/sbin/shutdown", "/etc/h"]);
  assert.deepEqual(set.net, ["unix:/run/q.sock", "unix:/run/q.sock.new"]);
  assert.equal(set.unstableVsock, false);
});

Deno.test("agentFlags() renders vsock and never grants everything", () => {
  const flags = agentFlags(config(["-m", "vsock-listen", "-p", "4294967295:1234"]), {
    selfExecutable: "/x",
  });
  assert.ok(flags.includes("--allow-net=vsock:4294967295:1234"));
  assert.ok(flags.includes("--unstable-vsock"));
  assert.ok(flags.includes("--no-prompt"));
  for (const flag of flags) {
    assert.notEqual(flag, "-A");
    assert.doesNotMatch(flag, /^--allow-(all|[a-z]+)$/);
  }
});

Deno.test("denoRunOptions() adds the source dir for Workers only under deno run", () => {
  const options = denoRunOptions();
  assert.ok(options.sourceDir?.endsWith("/src"));
  const set = permissionSet(config([]), options);
  assert.ok(set.read.includes(options.sourceDir!));
  assert.ok(
    !permissionSet(config([]), { selfExecutable: "/x" }).read.some((p) => p.endsWith("/src")),
  );
});

Deno.test("agentFlags() grants only the named sys APIs and read on the guest-info files", () => {
  const flags = agentFlags(config(["--fsfreeze-scope=/srv"]), { selfExecutable: "/x" });
  assert.ok(flags.includes("--allow-sys=hostname,networkInterfaces,uid"));
  const read = flags.find((flag) => flag.startsWith("--allow-read="))!.split("=")[1]!.split(",");
  for (
    const path of [
      "/etc/os-release",
      "/usr/lib/os-release",
      "/etc/localtime",
      "/var/run/utmp",
      "/run/udev/data",
    ]
  ) {
    assert.ok(read.includes(path), `read ${path}`);
  }
  const run = flags.find((flag) => flag.startsWith("--allow-run="));
  assert.equal(run, "--allow-run=/x,/sbin/shutdown");
});
