import assert from "node:assert/strict";
import { type Config, parseConfig, writesPidfile } from "../src/config/mod.ts";
import {
  agentFlags,
  denoRunOptions,
  permissionDescriptors,
  permissionSet,
} from "../src/permissions.ts";
import { TRANSPORT_METHODS } from "../src/transport/methods.ts";

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
  assert.deepEqual(set.run, [
    "/usr/sbin/fsfreeze-agent",
    "/sbin/shutdown",
    "/etc/h",
    "/usr/bin/setsid",
  ]);
  assert.deepEqual(set.net, [
    "unix:/run/q.sock",
    "unix:/run/q.sock.new",
    // The thaw watchdog's socket in the state dir.
    "unix:/run/st/fsfreeze-agent.watchdog.sock",
    "unix:/run/st/fsfreeze-agent.watchdog.sock.new",
  ]);
  assert.equal(set.unstableVsock, false);
});

Deno.test("permissionSet() grants the watchdog socket only when there is an auto-thaw deadline", () => {
  const net = (args: string[]): string[] =>
    permissionSet(config(["-t", "/run/st", ...args]), { selfExecutable: "/x" }).net;
  assert.deepEqual(net([]), [
    "unix:/run/st/fsfreeze-agent.watchdog.sock",
    "unix:/run/st/fsfreeze-agent.watchdog.sock.new",
  ]);
  assert.deepEqual(net(["--fsfreeze-timeout=0"]), []);
});

Deno.test("agentFlags() renders vsock and never grants everything", () => {
  const flags = agentFlags(config(["-m", "vsock-listen", "-p", "4294967295:1234"]), {
    selfExecutable: "/x",
  });
  const net = flags.find((flag) => flag.startsWith("--allow-net="))!.slice(12).split(",");
  assert.equal(net[0], "vsock:4294967295:1234");
  assert.deepEqual(net.slice(1).filter((host) => !host.includes("watchdog")), []);
  assert.ok(flags.includes("--unstable-vsock"));
  assert.ok(flags.includes("--no-prompt"));
  for (const flag of flags) {
    assert.notEqual(flag, "-A");
    assert.doesNotMatch(flag, /^--allow-(all|[a-z]+)$/);
  }
});

Deno.test("denoRunOptions() adds the source dir for modules loaded later only under deno run", () => {
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

Deno.test("permissionSet() grants the pidfile exactly when the agent writes it: -d, -f or the key", () => {
  const writes = (argv: string[], key?: string): boolean => {
    const parsed = parseConfig(argv, { QGA_CONF: "/c" }, (path) => path === "/c" ? key : undefined);
    assert.equal(parsed.action, "run");
    const { config } = parsed as { config: Config };
    const granted = permissionSet(config, { selfExecutable: "/x" }).write.includes(config.pidfile);
    assert.equal(granted, writesPidfile(config), argv.join(" "));
    return granted;
  };
  assert.equal(writes([]), false, "the default pidfile is not written without -d");
  assert.equal(writes(["-d"]), true);
  assert.equal(writes(["-f", "/run/p.pid"]), true);
  assert.equal(writes([], "[general]\npidfile=/run/p.pid\n"), true);
  assert.equal(writes([], "[general]\ndaemon=true\n"), true);
});

Deno.test("permissionSet() takes each channel's permissions from its transport declaration", () => {
  for (const method of TRANSPORT_METHODS) {
    const path = method.name === "vsock-listen" ? "3:1234" : `/run/${method.name}`;
    const set = permissionSet(config(["-m", method.name, "-p", path]), { selfExecutable: "/x" });
    const channel = method.permissions(path);
    for (const entry of channel.read) assert.ok(set.read.includes(entry), `${method.name} read`);
    for (const entry of channel.write) assert.ok(set.write.includes(entry), `${method.name} write`);
    assert.deepEqual(set.net.slice(0, channel.net.length), channel.net, method.name);
    assert.ok(set.net.slice(channel.net.length).every((host) => host.includes(".watchdog.sock")));
    assert.equal(set.unstableVsock, channel.unstableVsock, method.name);
  }
  const unknown = permissionSet(config(["-m", "tcp", "-p", "/run/x"]), { selfExecutable: "/x" });
  assert.ok(!unknown.read.includes("/run/x"), "an unknown method is refused, never granted");
  assert.ok(unknown.net.every((host) => host.includes(".watchdog.sock")));
});

Deno.test("permissionDescriptors() gives one descriptor per entry of the set", () => {
  const set = permissionSet(
    config(["-m", "unix-listen", "-p", "/run/q.sock", "-F/etc/h", "-d"]),
    { selfExecutable: "/usr/sbin/fsfreeze-agent" },
  );
  const descriptors = permissionDescriptors(set);
  const count = set.read.length + set.write.length + set.run.length + set.ffi.length +
    set.env.length + set.sys.length + set.net.length;
  assert.equal(descriptors.length, count);
  assert.deepEqual(descriptors.filter((d) => d.name === "net"), [
    { name: "net", host: "unix:/run/q.sock" },
    { name: "net", host: "unix:/run/q.sock.new" },
    { name: "net", host: "unix:/run/fsfreeze-agent.watchdog.sock" },
    { name: "net", host: "unix:/run/fsfreeze-agent.watchdog.sock.new" },
  ]);
  assert.deepEqual(descriptors.filter((d) => d.name === "sys").map((d) => d.kind), set.sys);
  assert.ok(descriptors.some((d) => d.name === "write" && d.path === "/run/fsfreeze-agent.pid"));
  assert.ok(descriptors.some((d) => d.name === "run" && d.command === "/etc/h"));
});

Deno.test("permissionSet() grants connecting to the delegate's socket, and nothing more, when one is set", () => {
  const without = permissionSet(config([]), { selfExecutable: "/x" });
  const set = permissionSet(config(["--delegate-socket=/run/d/qga.sock"]), {
    selfExecutable: "/x",
  });
  assert.ok(set.read.includes("/run/d/qga.sock"));
  assert.ok(set.write.includes("/run/d/qga.sock"));
  assert.deepEqual(set.net.filter((host) => !without.net.includes(host)), ["unix:/run/d/qga.sock"]);
  assert.deepEqual(set.read.filter((path) => !without.read.includes(path)), ["/run/d/qga.sock"]);
  assert.deepEqual(set.write.filter((path) => !without.write.includes(path)), ["/run/d/qga.sock"]);
  assert.deepEqual(set.run, without.run);
  assert.ok(!without.net.some((host) => host.includes("/run/d/")));
});
