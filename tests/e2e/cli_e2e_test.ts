/**
 * The command line of the real program (docs/protocol.md, checklist items 26, 27), run the way `deno task start`
 * runs it: `deno run <flags from the configuration> main.ts <options>`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { denoDirWarning, flagsFor } from "../../tools/start.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const START = new URL("../../tools/start.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function runMain(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const fullEnv = { QGA_CONF: `${dir}/none.conf`, ...env };
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flagsFor(args, fullEnv), MAIN, ...args],
    env: fullEnv,
    stdin: "null",
  }).output();
  await Deno.remove(dir, { recursive: true });
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("-V prints 'QEMU Guest Agent <version>' and exits 0 (item 27)", async () => {
  const run = await runMain(["-V"]);
  assert.equal(run.code, 0);
  assert.match(run.stdout, /^QEMU Guest Agent \d+\.\d+\.\d+/);
});

Deno.test("-b help and -a help list command names one per line and exit 0 (item 27)", async () => {
  for (const option of [["-b", "help"], ["-a", "help"], ["--block-rpcs=?"]]) {
    const run = await runMain(option);
    assert.equal(run.code, 0);
    const names = run.stdout.trimEnd().split("\n");
    assert.ok(names.includes("guest-ping") && names.includes("guest-fsfreeze-thaw"));
    for (const name of names) assert.match(name, /^[\w.-]+$/);
  }
});

Deno.test("-D prints the effective [general] key file with config and CLI merged (items 26, 27)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const conf = `${dir}/qga.conf`;
  await Deno.writeTextFile(
    conf,
    "[general]\nmethod=unix-listen\npath=/tmp/x.sock\nblock-rpcs=guest-info\nverbose=true\n",
  );
  const run = await runMain(["-D", "-b", "guest-ping", "-F"], { QGA_CONF: conf });
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.split("\n");
  assert.equal(lines[0], "[general]");
  for (
    const line of [
      "daemon=false",
      "method=unix-listen",
      "path=/tmp/x.sock",
      "fsfreeze-hook=/etc/qemu/fsfreeze-hook",
      "verbose=true",
      "retry-path=false",
      "block-rpcs=guest-info,guest-ping",
      "allow-rpcs=",
    ]
  ) {
    assert.ok(lines.includes(line), `${line} in\n${run.stdout}`);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("-c names a required config file (item 26)", async () => {
  const run = await runMain(["-c", "/nonexistent/qga.conf", "-D"]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /error loading configuration from path: \/nonexistent\/qga\.conf/);
});

Deno.test("bad options print usage help on stderr and exit 1", async () => {
  for (const args of [["--bogus"], ["-p"], ["-x"]]) {
    const run = await runMain(args);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /Unknown option, try 'fsfreeze-agent --help' for more information\./);
  }
});

Deno.test("an unknown method and a missing socket path fail with qemu-ga's texts", async () => {
  const unknown = await runMain(["-m", "foo", "-p", "/x"]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unsupported channel method\/type: foo/);
  const missing = await runMain(["-m", "unix-listen"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /must specify a path for this channel/);
});

Deno.test("deno task start runs the agent in the foreground and stops cleanly on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const socket = `${dir}/qga.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-run",
      START,
      "-m",
      "unix-listen",
      "-p",
      socket,
      "-t",
      dir,
      `--fsfreeze-scope=${dir}/none`,
    ],
    env: { QGA_CONF: `${dir}/none.conf` },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const until = Date.now() + 15_000;
    let reply = "";
    while (Date.now() < until && reply === "") {
      try {
        const conn = await Deno.connect({ transport: "unix", path: socket });
        await conn.write(new TextEncoder().encode('{"execute":"guest-ping"}'));
        const buffer = new Uint8Array(64);
        const count = await conn.read(buffer);
        reply = decoder.decode(buffer.subarray(0, count ?? 0));
        conn.close();
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    assert.equal(reply, '{"return": {}}\n');
    child.kill("SIGTERM");
    const status = await child.status;
    assert.equal(status.code, 0);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
    await child.status;
    await child.stderr.cancel();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("-d daemonizes: the parent exits 0, the daemon serves and writes its pidfile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const socket = `${dir}/qga.sock`;
  const pidfile = `${dir}/agent.pid`;
  const run = await runMain([
    "-d",
    "-m",
    "unix-listen",
    "-p",
    socket,
    "-t",
    dir,
    "-f",
    pidfile,
    `--fsfreeze-scope=${dir}/none`,
  ]);
  assert.equal(run.code, 0, run.stderr);
  let pid = 0;
  try {
    const until = Date.now() + 15_000;
    while (pid === 0 && Date.now() < until) {
      pid = Number(await Deno.readTextFile(pidfile).catch(() => "0"));
      if (pid === 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(pid > 0, "pidfile written");
    // As qemu-ga, the daemon writes its pidfile before it opens the channel.
    while (!await Deno.lstat(socket).then(() => true, () => false) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const conn = await Deno.connect({ transport: "unix", path: socket });
    await conn.write(new TextEncoder().encode('{"execute":"guest-ping"}'));
    const buffer = new Uint8Array(64);
    const count = await conn.read(buffer);
    conn.close();
    assert.equal(decoder.decode(buffer.subarray(0, count ?? 0)), '{"return": {}}\n');
  } finally {
    if (pid > 0) Deno.kill(pid, "SIGTERM");
    const until = Date.now() + 10_000;
    while (await Deno.lstat(pidfile).then(() => true, () => false) && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(await Deno.lstat(pidfile).then(() => true, () => false), false, "pidfile removed");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("denoDirWarning() warns when Deno's cache is inside the freeze scope", () => {
  assert.match(
    denoDirWarning([], { HOME: "/root" })!,
    /\/root\/\.cache\/deno is inside the freeze scope \(\/\)/,
  );
  assert.equal(denoDirWarning(["--fsfreeze-scope=/srv"], { HOME: "/root" }), undefined);
  assert.match(denoDirWarning(["--fsfreeze-scope=/srv"], { DENO_DIR: "/srv/deno" })!, /\(\/srv\)/);
});
