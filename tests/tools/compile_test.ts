/**
 * Tests of `tools/compile.ts`: the permission flags it generates from a configuration, its
 * handling of `denort` (DENORT_BIN, no network, a hung download), and the build record that
 * `packaging/install.sh` reads. The tool runs as a child with the narrow permissions proposed
 * for the `compile` task (plus read/write on the test's temporary directory).
 *
 * @module
 */

import assert from "node:assert/strict";
import { AGENT_V8_FLAGS } from "../../src/permissions.ts";
import { LIBC_CANDIDATES } from "../../src/linux/libc.ts";
import {
  type Arch,
  buildRecord,
  chooseTargets,
  DEFAULT_INSTALL_PATH,
  DELEGATE_ARGS,
  DELEGATE_SOCKET,
  elfArch,
  parseCompileArgs,
  planBuild,
  UNIT_ARGS,
} from "../../tools/compile.ts";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const DENORT_VARS = "DENORT_BIN,DENORT_BIN_X86_64,DENORT_BIN_AARCH64";
/** A proxy address nothing listens on: any download fails at once, network or not. */
const REFUSING_PROXY = "http://127.0.0.1:9";
const HOST_ARCH = Deno.build.arch as Arch;
/** Read for guest-get-osinfo, -timezone, -users and -fsinfo (src/permissions.ts). */
const SYSTEM_INFO_READ_PATHS = [
  "/etc/os-release",
  "/usr/lib/os-release",
  "/etc/localtime",
  "/var/run/utmp",
  "/run/udev/data",
];

interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs tools/compile.ts in the checkout with narrow permissions and a controlled environment. */
async function runTool(
  args: string[],
  options: { readable?: string[]; writable?: string[]; env?: Record<string, string> } = {},
): Promise<ToolRun> {
  const read = [REPO, ...(options.readable ?? [])].join(",");
  const write = options.writable?.length ? [`--allow-write=${options.writable.join(",")}`] : [];
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-read=${read}`,
      ...write,
      `--allow-env=${DENORT_VARS}`,
      "--allow-run=timeout",
      "tools/compile.ts",
      ...args,
    ],
    cwd: REPO,
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: "/root", ...options.env },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The `--print-flags` output as a map flag name → list (or "" for a bare flag). */
function parseFlags(stdout: string): Map<string, string[] | ""> {
  const flags = new Map<string, string[] | "">();
  for (const line of stdout.trim().split("\n")) {
    const eq = line.indexOf("=");
    if (eq === -1) flags.set(line, "");
    else flags.set(line.slice(0, eq), line.slice(eq + 1).split(","));
  }
  return flags;
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_compile_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SITE_CONFIG = `# a site's config: hook, scope, log file, state dir and a unix socket
[general]
method=unix-listen
path=/run/fsfreeze-agent/qga.sock
logfile=/var/log/fsfreeze-agent.log
statedir=/run/fsfreeze-agent
fsfreeze-hook=/usr/local/libexec/site-hook
fsfreeze-scope=/srv,/var/lib/mysql
`;

Deno.test("compile --print-flags derives every permission list from a site config", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/site.conf`, SITE_CONFIG);
    // `--` with no arguments: the unit passes none, so the config file alone decides.
    const run = await runTool(["--print-flags", "--config", `${dir}/site.conf`, "--"], {
      readable: [dir],
    });
    assert.equal(run.code, 0, run.stderr);
    const sock = "/run/fsfreeze-agent/qga.sock";
    const WATCHDOG_SOCKET = "/run/fsfreeze-agent/fsfreeze-agent.watchdog.sock";
    assert.deepEqual(
      parseFlags(run.stdout),
      new Map<string, string[] | "">([
        ["--no-prompt", ""],
        ["--v8-flags", AGENT_V8_FLAGS.slice("--v8-flags=".length).split(",")],
        ["--allow-read", [
          "/etc/qemu/qemu-ga.conf",
          "/proc/self/mountinfo",
          ...SYSTEM_INFO_READ_PATHS,
          "/run/fsfreeze-agent",
          "/srv",
          "/var/lib/mysql",
          "/usr/local/libexec/site-hook",
          sock,
          `${sock}.new`,
        ]],
        ["--allow-write", [
          "/run/fsfreeze-agent",
          "/var/log/fsfreeze-agent.log",
          sock,
          `${sock}.new`,
        ]],
        [
          "--allow-run",
          [
            DEFAULT_INSTALL_PATH,
            "/sbin/shutdown",
            "/usr/local/libexec/site-hook",
            "/usr/bin/setsid",
          ],
        ],
        ["--allow-ffi", [...LIBC_CANDIDATES]],
        ["--allow-env", ["QGA_CONF", "LISTEN_FDS", "LISTEN_PID"]],
        ["--allow-sys", ["hostname", "networkInterfaces", "uid"]],
        ["--allow-net", [
          `unix:${sock}`,
          `unix:${sock}.new`,
          `unix:${WATCHDOG_SOCKET}`,
          `unix:${WATCHDOG_SOCKET}.new`,
        ]],
      ]),
    );
  });
});

Deno.test("compile --print-flags gives the serial unit read on / and its port by default", async () => {
  const run = await runTool(["--print-flags", "--install-path", "/usr/sbin/fsfreeze-agent"]);
  assert.equal(run.code, 0, run.stderr);
  const port = "/dev/virtio-ports/org.qemu.guest_agent.0";
  const flags = parseFlags(run.stdout);
  assert.deepEqual(flags.get("--allow-read"), [
    "/etc/qemu/qemu-ga.conf",
    "/proc/self/mountinfo",
    ...SYSTEM_INFO_READ_PATHS,
    "/run",
    "/",
    "/etc/qemu/fsfreeze-hook",
    port,
  ]);
  // No pidfile: the unit neither daemonizes nor names one, so none is written.
  assert.deepEqual(flags.get("--allow-write"), ["/run", port]);
  assert.deepEqual(flags.get("--allow-run"), [
    "/usr/sbin/fsfreeze-agent",
    "/sbin/shutdown",
    "/etc/qemu/fsfreeze-hook",
    "/usr/bin/setsid",
  ]);
  // Only the thaw watchdog's socket in the state dir.
  assert.deepEqual(flags.get("--allow-net"), [
    "unix:/run/fsfreeze-agent.watchdog.sock",
    "unix:/run/fsfreeze-agent.watchdog.sock.new",
  ]);
  assert.equal(flags.has("--unstable-vsock"), false);
});

Deno.test("compile --print-flags grants the vsock unit its one port and --unstable-vsock", async () => {
  const run = await runTool(["--print-flags", "--channel", "vsock"]);
  assert.equal(run.code, 0, run.stderr);
  const flags = parseFlags(run.stdout);
  assert.deepEqual(flags.get("--allow-net"), [
    "vsock:4294967295:1234",
    "unix:/run/fsfreeze-agent.watchdog.sock",
    "unix:/run/fsfreeze-agent.watchdog.sock.new",
  ]);
  assert.equal(flags.get("--unstable-vsock"), "");
  assert.deepEqual(flags.get("--allow-write"), ["/run"]);
});

Deno.test("compile --print-flags never renders a bare or all-permission flag", async () => {
  for (const args of [[], ["--channel", "vsock"], ["--", "-m", "unix-listen", "-p", "/run/a"]]) {
    const run = await runTool(["--print-flags", ...args]);
    assert.equal(run.code, 0, run.stderr);
    for (const flag of run.stdout.trim().split("\n")) {
      assert.ok(
        flag === "--no-prompt" || flag === "--unstable-vsock" || flag === AGENT_V8_FLAGS ||
          /^--allow-[a-z]+=./.test(flag),
        `unexpected flag ${flag}`,
      );
    }
  }
});

Deno.test("compile --print-flags reports a config the agent would reject, with exit 2", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/bad.conf`, "[general]\nfsfreeze-scope=relative/path\n");
    const run = await runTool(["--print-flags", "--config", `${dir}/bad.conf`], {
      readable: [dir],
    });
    assert.equal(run.code, 2);
    assert.match(run.stderr, /fsfreeze-scope entries must be absolute paths/);
  });
});

Deno.test("compile explains a config outside the checkout it may not read", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/site.conf`, SITE_CONFIG);
    const run = await runTool(["--print-flags", "--config", `${dir}/site.conf`]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /no permission to read .*site\.conf.*--allow-read=\.,/);
  });
});

Deno.test("deno.json tasks grant no -A, --allow-all, and bare --allow-* only to the start launcher", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${REPO}/deno.json`));
  const tasks = Object.entries(config.tasks as Record<string, string>);
  assert.ok(tasks.length > 0);
  for (const [name, command] of tasks) {
    if (["test", "test:vm", "bench"].includes(name)) continue; // the harnesses, not the agent
    for (const word of command.split(/\s+/)) {
      assert.ok(word !== "-A" && word !== "--allow-all", `task ${name} uses ${word}`);
      // The launcher is not the agent: it reads the config wherever -c/QGA_CONF point and runs
      // the deno executable wherever it lives; the agent it starts gets the generated set.
      const launcherNeeds = name === "start" && (word === "--allow-read" || word === "--allow-run");
      assert.ok(
        launcherNeeds || !/^--allow-[a-z]+$/.test(word),
        `task ${name} grants bare ${word}`,
      );
    }
  }
});

Deno.test("compile without DENORT_BIN and without network says what it needs", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/entry.ts`, "console.log('entry');\n");
    const run = await runTool(
      ["--entry", `${dir}/entry.ts`, "--output", `${dir}/dist`, "--target", "aarch64"],
      {
        readable: [dir],
        writable: [dir],
        // A fresh DENO_DIR holds no cached denort; the proxy refuses every download.
        env: { DENO_DIR: `${dir}/deno_dir`, HTTPS_PROXY: REFUSING_PROXY },
      },
    );
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stderr, /building the binary needs the Deno runtime 'denort'/);
    assert.match(run.stderr, /internet access/);
    assert.match(run.stderr, /DENORT_BIN=\/path\/to\/denort/);
    assert.match(run.stdout, /--allow-read=/); // the flags it used are printed first
    assert.deepEqual([...Deno.readDirSync(`${dir}/dist`)].map((e) => e.name), []);
  });
});

Deno.test("compile gives up on a download that hangs after --timeout seconds", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/entry.ts`, "console.log('entry');\n");
    // A proxy that accepts connections and never answers.
    using proxy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      try {
        for await (const conn of proxy) held.push(conn);
      } catch {
        // listener closed
      }
    })();
    try {
      const run = await runTool(
        ["--entry", `${dir}/entry.ts`, "--output", `${dir}/dist`, "--target", "x86_64"].concat(
          ["--timeout", "3"],
        ),
        {
          readable: [dir],
          writable: [dir],
          env: {
            DENO_DIR: `${dir}/deno_dir`,
            HTTPS_PROXY: `http://127.0.0.1:${proxy.addr.port}`,
          },
        },
      );
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /did not finish within 3 s/);
      assert.match(run.stderr, /DENORT_BIN=\/path\/to\/denort/);
    } finally {
      proxy.close();
      await accepting;
      for (const conn of held) conn.close();
    }
  });
});

Deno.test("compile honours DENORT_BIN and records the build next to the binary", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/entry.ts`, "console.log('entry');\n");
    // Any executable of the host's architecture serves as the base binary; the point is that
    // nothing is downloaded (the proxy refuses) and the tool's plumbing is right.
    const run = await runTool(
      ["--entry", `${dir}/entry.ts`, "--output", `${dir}/dist`, "--channel", "vsock"],
      {
        readable: [dir, Deno.execPath()],
        writable: [dir],
        env: {
          DENO_DIR: `${dir}/deno_dir`,
          HTTPS_PROXY: REFUSING_PROXY,
          DENORT_BIN: Deno.execPath(),
        },
      },
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    // Only DENORT_BIN's architecture is built when no --target is given.
    const names = [...Deno.readDirSync(`${dir}/dist`)].map((e) => e.name).sort();
    const binary = `fsfreeze-agent-${HOST_ARCH}`;
    assert.deepEqual(names, [binary, `${binary}.build.json`]);
    assert.equal((await Deno.stat(`${dir}/dist/${binary}`)).mode! & 0o111, 0o111);
    const record = JSON.parse(await Deno.readTextFile(`${dir}/dist/${binary}.build.json`));
    const printed = await runTool(["--print-flags", "--channel", "vsock"]);
    assert.equal(record.installPath, DEFAULT_INSTALL_PATH);
    assert.equal(record.channel, "vsock");
    assert.deepEqual(record.agentArgs, UNIT_ARGS.vsock);
    assert.equal(record.configSha256, null);
    assert.deepEqual(record.flags, printed.stdout.trim().split("\n"));
  });
});

Deno.test("compile refuses a DENORT_BIN of another architecture before compiling", async () => {
  const other: Arch = HOST_ARCH === "x86_64" ? "aarch64" : "x86_64";
  const run = await runTool(["--target", other, "--output", "/nonexistent/dist"], {
    readable: [Deno.execPath()],
    env: { DENORT_BIN: Deno.execPath() },
  });
  assert.equal(run.code, 2, run.stdout + run.stderr);
  assert.match(run.stderr, new RegExp(`is ${HOST_ARCH}, not ${other}`));
});

Deno.test("elfArch() names x86_64 and aarch64 from the ELF header and rejects the rest", () => {
  const header = (machine: number): Uint8Array => {
    const bytes = new Uint8Array(20);
    bytes.set([0x7f, 0x45, 0x4c, 0x46]);
    new DataView(bytes.buffer).setUint16(18, machine, true);
    return bytes;
  };
  assert.equal(elfArch(header(62)), "x86_64");
  assert.equal(elfArch(header(183)), "aarch64");
  assert.equal(elfArch(header(40)), "an ELF executable for machine 40");
  assert.equal(
    elfArch(new TextEncoder().encode("#!/bin/sh\necho not elf\n")),
    "not an ELF executable",
  );
});

Deno.test("chooseTargets() builds all, or only a lone DENORT_BIN's architecture", () => {
  const archOf = (): Arch => "aarch64";
  assert.deepEqual(chooseTargets(undefined, {}, archOf), ["x86_64", "aarch64"]);
  assert.deepEqual(chooseTargets(undefined, { DENORT_BIN: "/d" }, archOf), ["aarch64"]);
  assert.deepEqual(chooseTargets(["x86_64"], { DENORT_BIN: "/d" }, archOf), ["x86_64"]);
  const both = { DENORT_BIN: "/d", DENORT_BIN_X86_64: "/x" };
  assert.deepEqual(chooseTargets(undefined, both, archOf), ["x86_64", "aarch64"]);
});

Deno.test("parseCompileArgs() keeps arguments after -- for the agent and checks its own", () => {
  const options = parseCompileArgs(["--target", "all", "--", "-m", "unix-listen", "--", "x"]);
  assert.deepEqual(options.agentArgs, ["-m", "unix-listen", "--", "x"]);
  assert.deepEqual(options.targets, ["x86_64", "aarch64"]);
  assert.equal(parseCompileArgs([]).agentArgs, undefined);
  assert.throws(() => parseCompileArgs(["--install-path", "sbin/x"]), /must be absolute/);
  assert.throws(() => parseCompileArgs(["--channel", "tcp"]), /serial or vsock/);
  assert.throws(() => parseCompileArgs(["--target", "riscv64"]), /x86_64, aarch64 or all/);
  assert.throws(() => parseCompileArgs(["--timeout", "0"]), /positive number/);
});

Deno.test("compile --launcher builds a launcher that install.sh installs and that runs the agent with the binary's flags", async () => {
  await withTempDir(async (dir) => {
    const agentArgs = ["-m", "unix-listen", "-p", `${dir}/qga.sock`, "-t", `${dir}/state`];
    const args = [...agentArgs, `--fsfreeze-scope=${dir}/no-mounts-here`];
    const built = await runTool(["--launcher", "--output", `${dir}/dist`, "--", ...args], {
      readable: [dir, Deno.execPath()],
      writable: [dir],
    });
    assert.equal(built.code, 0, built.stdout + built.stderr);
    const launcher = `${dir}/dist/fsfreeze-agent-${HOST_ARCH}`;
    const record = JSON.parse(await Deno.readTextFile(`${launcher}.build.json`));
    assert.equal(record.form, "launcher");
    assert.equal(record.payloadDir, "/usr/local/lib/fsfreeze-agent");
    const script = await Deno.readTextFile(launcher);
    assert.match(script, /^DENO_DIR=\/run\/fsfreeze-agent\/deno$/m);
    // A compiled binary never looks for a newer Deno; the launcher must not either.
    assert.match(script, /^DENO_NO_UPDATE_CHECK=1$/m);
    assert.match(script, /^export DENO_DIR DENO_NO_UPDATE_CHECK$/m);
    assert.ok(
      script.includes(
        `exec /usr/local/lib/fsfreeze-agent/deno run ${record.flags.join(" ")} ` +
          `/usr/local/lib/fsfreeze-agent/main.ts "$@"`,
      ),
      script,
    );
    assert.ok(record.permissions.run.includes("/usr/local/lib/fsfreeze-agent/deno"));
    assert.ok(record.permissions.read.includes("/usr/local/lib/fsfreeze-agent/src"));

    const root = `${dir}/root`;
    const install = await new Deno.Command(`${REPO}/packaging/install.sh`, {
      args: ["--destdir", root, "--binary", launcher, "--channel", "serial", "--no-reload"],
    }).output();
    assert.equal(install.code, 0, new TextDecoder().decode(install.stderr));
    const payload = `${root}/usr/local/lib/fsfreeze-agent`;
    assert.equal((await Deno.stat(`${payload}/deno`)).mode! & 0o755, 0o755);
    await Deno.stat(`${payload}/src/transport/device.ts`); // loaded on first use

    // Run it where it was built to live: /usr/local of the DESTDIR, in a private mount namespace
    // (the launcher names absolute paths, as the binary's permission flags do).
    await Deno.mkdir(`${dir}/state`);
    const cache = `${dir}/deno-cache`;
    const runScript = `mount --bind ${root}/usr/local /usr/local && mount -t tmpfs none /run && ` +
      `exec /usr/local/sbin/fsfreeze-agent ${args.join(" ")}`;
    const agent = new Deno.Command("unshare", {
      args: ["-m", "--propagation", "private", "sh", "-c", runScript],
      env: { DENO_DIR: cache },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      const reply = await pingWhenUp(`${dir}/qga.sock`);
      assert.equal(reply, '{"return": {}}');
    } finally {
      agent.kill("SIGTERM");
      const status = await agent.status;
      await agent.stderr.cancel();
      assert.equal(status.code, 0);
    }
  });
});

/** Pings the agent on `path` once it listens; the launcher's first start compiles the sources. */
async function pingWhenUp(path: string): Promise<string> {
  const until = Date.now() + 60_000;
  for (;;) {
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      try {
        await conn.write(new TextEncoder().encode('{"execute":"guest-ping"}\n'));
        const buffer = new Uint8Array(256);
        const count = await conn.read(buffer);
        return new TextDecoder().decode(buffer.subarray(0, count ?? 0)).trim();
      } finally {
        conn.close();
      }
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

Deno.test("compile --delegate adds the delegate's socket to the unit's arguments and its permissions, and records it", () => {
  const plain = planBuild(parseCompileArgs([]), undefined);
  const options = parseCompileArgs(["--delegate"]);
  const plan = planBuild(options, undefined);
  assert.deepEqual(plan.agentArgs, [...UNIT_ARGS.serial, ...DELEGATE_ARGS]);
  assert.equal(plan.config.delegateSocket, DELEGATE_SOCKET);
  assert.deepEqual(
    plan.permissions.net.filter((host) => !plain.permissions.net.includes(host)),
    [`unix:${DELEGATE_SOCKET}`],
  );
  assert.equal(buildRecord(plan, HOST_ARCH, options, null).delegateSocket, DELEGATE_SOCKET);
  assert.equal(buildRecord(plain, HOST_ARCH, parseCompileArgs([]), null).delegateSocket, null);
  // With a site's own unit arguments too.
  const custom = planBuild(parseCompileArgs(["--delegate", "--", "-m", "isa-serial"]), undefined);
  assert.deepEqual(custom.agentArgs, ["-m", "isa-serial", ...DELEGATE_ARGS]);
});
