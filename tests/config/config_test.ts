import assert from "node:assert/strict";
import {
  type Config,
  ConfigError,
  DEFAULTS,
  parseConfig,
  renderConfig,
  UsageError,
} from "../../src/config/mod.ts";

function files(map: Record<string, string>): (path: string) => string | undefined {
  return (path) => map[path];
}

function run(argv: string[], map: Record<string, string> = {}, env = {}): Config {
  const result = parseConfig(argv, env, files(map));
  assert.equal(result.action, "run");
  return (result as { config: Config }).config;
}

Deno.test("parseConfig() defaults match qemu-ga's, with our own settings", () => {
  const config = run([]);
  assert.equal(config.method, "virtio-serial");
  assert.equal(config.path, DEFAULTS.virtioSerialPath);
  assert.equal(config.fsfreezeHook, undefined);
  assert.equal(config.fsfreezeHookTimeout, 60);
  assert.equal(config.fsfreezeTimeout, 600);
  assert.deepEqual(config.fsfreezeScope, ["/"]);
  assert.deepEqual(config.vsockAllowedCids, [2]);
  assert.equal(run(["-m", "isa-serial"]).path, "/dev/ttyS0");
});

Deno.test("parseConfig() -F: alone or empty is the default hook, attached is a path", () => {
  assert.equal(run(["-F"]).fsfreezeHook, "/etc/qemu/fsfreeze-hook");
  assert.equal(run(["-F/x"]).fsfreezeHook, "/x");
  assert.equal(run(["--fsfreeze-hook=/y"]).fsfreezeHook, "/y");
  assert.equal(run(["-F", "/z"]).fsfreezeHook, "/etc/qemu/fsfreeze-hook");
});

Deno.test("parseConfig() reads [general] keys; the command line overrides; lists accumulate", () => {
  const conf = [
    "# comment",
    "[general]",
    "daemon=false",
    "method = unix-listen",
    "path=/run/a\\sb.sock",
    "logfile=/var/log/x.log",
    "pidfile=/run/p.pid",
    "fsfreeze-hook=/etc/h",
    "statedir=/run/s",
    "verbose=1",
    "retry-path=true",
    "block-rpcs=guest-ping,guest-info",
    "allow-rpcs=guest-sync",
    "fsfreeze-hook-timeout=5",
    "fsfreeze-timeout=30",
    "fsfreeze-exclude=/boot,vfat",
    "fsfreeze-scope=/srv,/data",
    "vsock-allowed-cids=2,3",
    "unknown-key=ignored",
    "[other]",
    "method=ignored",
  ].join("\n");
  const config = run(["-b", "guest-sync", "-p", "/cli.sock", "--fsfreeze-exclude=/x"], {
    "/etc/qemu/qemu-ga.conf": conf,
  });
  assert.equal(config.method, "unix-listen");
  assert.equal(config.path, "/cli.sock");
  assert.equal(config.logfile, "/var/log/x.log");
  assert.equal(config.pidfile, "/run/p.pid");
  assert.equal(config.fsfreezeHook, "/etc/h");
  assert.equal(config.statedir, "/run/s");
  assert.equal(config.verbose, true);
  assert.equal(config.retryPath, true);
  assert.deepEqual(config.blockRpcs, ["guest-ping", "guest-info", "guest-sync"]);
  assert.deepEqual(config.allowRpcs, ["guest-sync"]);
  assert.equal(config.fsfreezeHookTimeout, 5);
  assert.equal(config.fsfreezeTimeout, 30);
  assert.deepEqual(config.fsfreezeExclude, ["/boot", "vfat", "/x"]);
  assert.deepEqual(config.fsfreezeScope, ["/srv", "/data"]);
  assert.deepEqual(config.vsockAllowedCids, [2, 3]);
  assert.equal(
    run([], { "/etc/qemu/qemu-ga.conf": "[general]\npath=/run/a\\sb.sock\nmethod=unix-listen" })
      .path,
    "/run/a b.sock",
  );
});

Deno.test("parseConfig() takes the config path from QGA_CONF, and -c over both", () => {
  const map = {
    "/env.conf": "[general]\nstatedir=/from-env",
    "/c.conf": "[general]\nstatedir=/from-c",
  };
  assert.equal(run([], map, { QGA_CONF: "/env.conf" }).statedir, "/from-env");
  assert.equal(run(["-c", "/c.conf"], map, { QGA_CONF: "/env.conf" }).statedir, "/from-c");
});

Deno.test("parseConfig() ignores a missing default file but requires a file named by -c", () => {
  assert.equal(run([]).statedir, "/run");
  assert.throws(
    () => parseConfig(["-c", "/missing.conf"], {}, files({})),
    new ConfigError(
      "error loading configuration from path: /missing.conf, No such file or directory",
    ),
  );
});

Deno.test("parseConfig() reports bad config files with GLib's texts", () => {
  const bad = (text: string): unknown =>
    parseConfig([], {}, files({ "/etc/qemu/qemu-ga.conf": text }));
  assert.throws(() => bad("[general]\nverbose=yes"), {
    message:
      "error loading configuration from path: /etc/qemu/qemu-ga.conf, Key file contains key “verbose” which has a value that cannot be interpreted.",
  });
  assert.throws(() => bad("junk"), {
    message:
      "error loading configuration from path: /etc/qemu/qemu-ga.conf, Key file contains line “junk” which is not a key-value pair, group, or comment",
  });
  assert.throws(() => bad("[general]\nfsfreeze-timeout=soon"), ConfigError);
  assert.throws(() => bad("[general]\nfsfreeze-scope=relative"), ConfigError);
});

Deno.test("parseConfig() early actions: help, version, -b help, -a ?, -D", () => {
  assert.deepEqual(parseConfig(["-h"], {}, files({})), { action: "help" });
  assert.deepEqual(parseConfig(["-V"], {}, files({})), { action: "version" });
  assert.equal(parseConfig(["-b", "help"], {}, files({})).action, "list-commands");
  assert.equal(parseConfig(["-a", "?"], {}, files({})).action, "list-commands");
  // The rest of the command line still counts: it may name a delegate, whose commands are listed.
  const listing = parseConfig(["-b", "help", "--delegate-socket=/run/d.sock"], {}, files({}));
  assert.equal(listing.action, "list-commands");
  assert.equal((listing as { config: Config }).config.delegateSocket, "/run/d.sock");
  assert.equal(
    parseConfig(["-m", "unix-listen", "-b", "help"], {}, files({})).action,
    "list-commands",
  );
  assert.equal(parseConfig(["-D"], {}, files({})).action, "dump");
});

Deno.test("parseConfig() needs a path for unix-listen and vsock-listen, even with -D", () => {
  for (const method of ["unix-listen", "vsock-listen"]) {
    assert.throws(
      () => parseConfig(["-m", method, "-D"], {}, files({})),
      new ConfigError("must specify a path for this channel"),
    );
  }
});

Deno.test("parseConfig() rejects bad values of our own options as usage errors", () => {
  assert.throws(() => parseConfig(["--fsfreeze-timeout=-1"], {}, files({})), UsageError);
  assert.throws(() => parseConfig(["--vsock-allowed-cids=x"], {}, files({})), ConfigError);
  assert.throws(() => parseConfig(["--bogus"], {}, files({})), UsageError);
});

Deno.test("renderConfig() prints a [general] key file that parses back to the same config", () => {
  const config = run(["-m", "unix-listen", "-p", " /lead space", "-F", "-b", "a,b", "-l", "/l"]);
  const text = renderConfig(config);
  assert.match(
    text,
    /^\[general\]\ndaemon=false\nmethod=unix-listen\npath=\\s\/lead space\nlogfile=\/l\n/,
  );
  assert.match(text, /\nblock-rpcs=a,b\nallow-rpcs=\n/);
  const again = run([], { "/etc/qemu/qemu-ga.conf": text });
  assert.deepEqual({ ...again, configRequired: false }, { ...config, pidfileExplicit: true });
});

Deno.test("parseConfig() takes the delegate's socket and timeout from options and keys", () => {
  assert.equal(run([]).delegateSocket, undefined);
  assert.equal(run([]).delegateTimeout, 60);
  const key = {
    "/etc/qemu/qemu-ga.conf": "[general]\ndelegate-socket=/run/d/qga.sock\ndelegate-timeout=5\n",
  };
  assert.equal(run([], key).delegateSocket, "/run/d/qga.sock");
  assert.equal(run([], key).delegateTimeout, 5);
  assert.equal(run(["--delegate-socket=/run/e.sock"], key).delegateSocket, "/run/e.sock");
  assert.equal(run(["--delegate-socket="], key).delegateSocket, undefined, "switched off");
  assert.equal(run(["--delegate-timeout=120"]).delegateTimeout, 120);
});

Deno.test("parseConfig() refuses a relative delegate socket, a zero timeout and the agent's own socket", () => {
  assert.throws(
    () => parseConfig(["--delegate-socket=qga.sock"], {}, files({})),
    new ConfigError("delegate-socket must be an absolute path, got 'qga.sock'"),
  );
  assert.throws(
    () => parseConfig(["--delegate-timeout=0"], {}, files({})),
    new ConfigError("delegate-timeout must be at least 1 second"),
  );
  assert.throws(() => parseConfig(["--delegate-timeout=soon"], {}, files({})), UsageError);
  assert.throws(
    () =>
      parseConfig(
        ["-m", "unix-listen", "-p", "/run/a.sock", "--delegate-socket=/run/a.sock"],
        {},
        files({}),
      ),
    new ConfigError("delegate-socket must not be the agent's own socket (-p)"),
  );
});

Deno.test("renderConfig() prints the delegate's keys, and they parse back", () => {
  const config = run(["--delegate-socket=/run/d/qga.sock", "--delegate-timeout=9"]);
  const text = renderConfig(config);
  assert.match(text, /\ndelegate-socket=\/run\/d\/qga.sock\ndelegate-timeout=9\n$/);
  assert.doesNotMatch(renderConfig(run([])), /delegate-socket/);
  const again = run([], { "/etc/qemu/qemu-ga.conf": text });
  assert.equal(again.delegateSocket, "/run/d/qga.sock");
  assert.equal(again.delegateTimeout, 9);
});
