/**
 * The delegate end to end (docs/design.md #36): the real agent process with Debian's real qemu-ga
 * as its delegate, each on a private unix socket. The commands hosts call the delegate for answer
 * through our agent with the same bytes as a standalone qemu-ga gives (pids and file handles
 * normalised); our own commands and the freeze commands never reach the delegate; a freeze waits
 * for a delegated command before it; a killed, stopped or garbled delegate gives an error naming
 * it in bounded time and is used again once it is back.
 *
 * Safety (docs/protocol.md is not the place; tests/_util/qemu_ga.ts is): every qemu-ga here blocks
 * the freeze commands and every command that would act on this machine, and runs on a private
 * socket with a private state dir and pidfile; `guest-set-user-password` only ever names a user
 * this test creates and deletes; `guest-exec` only runs `echo`; freezes happen on loop mounts this
 * test made, through our agent, whose scope is those mounts.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type AgentProcess,
  delay,
  flagsForArgv,
  QgaClient,
  spawnAgent,
  withTimeout,
} from "../_util/agent.ts";
import { FakeDelegate } from "../_util/fake_delegate.ts";
import { createLoopMounts } from "../_util/loopfs.ts";
import {
  FREEZE_COMMANDS,
  qemuGaCommands,
  type QemuGaProcess,
  startQemuGa,
} from "../_util/qemu_ga.ts";
import { flagsFor } from "../../tools/start.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A private directory for one test, removed (after everything in it stopped) on dispose. */
async function testDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "agent_test_delegate_" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/** Our agent with `qga` as its delegate. */
function agentWith(
  dir: string,
  delegateSocket: string,
  options: { args?: string[]; scope?: string[] } = {},
): Promise<AgentProcess> {
  return spawnAgent({
    dir: `${dir}/agent`,
    args: [`--delegate-socket=${delegateSocket}`, ...options.args ?? []],
    ...(options.scope ? { scope: options.scope } : {}),
  });
}

/** A user that exists only during the test (its password is what the test sets). */
async function testUser(): Promise<{ name: string } & AsyncDisposable> {
  const name = `fsfa-dlg-${crypto.randomUUID().slice(0, 8)}`;
  await run("useradd", ["--no-create-home", "--shell", "/usr/sbin/nologin", name]);
  return {
    name,
    [Symbol.asyncDispose]: async () => {
      await run("userdel", [name]);
    },
  };
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.ok(
    output.success,
    `${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`,
  );
  return text;
}

/** Whether `password` is the user's password now (its shadow hash, checked by libcrypt). */
async function passwordIs(user: string, password: string): Promise<boolean> {
  const entry = (await Deno.readTextFile("/etc/shadow")).split("\n")
    .find((line) => line.startsWith(`${user}:`));
  const hash = entry?.split(":")[1] ?? "";
  const check = await run("perl", [
    "-e",
    "print crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? 'yes' : 'no'",
    password,
    hash,
  ]);
  return hash.startsWith("$") && check === "yes";
}

async function connect(socket: string): Promise<QgaClient> {
  return new QgaClient(await Deno.connect({ transport: "unix", path: socket }));
}

/** Sends one request and reads its reply line (the raw text). */
async function ask(client: QgaClient, request: unknown): Promise<string> {
  await client.send(typeof request === "string" ? request : JSON.stringify(request));
  return await client.readLine();
}

/**
 * Replaces the values that differ between two agents' runs: pids, file handles, and loop devices
 * in the disk list (other programs' loop devices come and go between the two transcripts).
 */
function normalise(line: string): string {
  return line
    .replace(/\{"name": "\/dev\/loop\d+", [^{}]*\}(, )?/g, "")
    .replace(/, \]/g, "]")
    .replace(/"pid": \d+/g, '"pid": <pid>')
    .replace(/^\{"return": \d+, "id": "open"\}$/, '{"return": <handle>, "id": "open"}');
}

/**
 * The commands hosts use the delegate for, on one connection: the reply lines, in order (a
 * guest-exec-status is polled until the program exited; only the last answer is kept).
 */
async function transcript(socket: string, files: string, user: string): Promise<string[]> {
  using client = await connect(socket);
  const lines: string[] = [];
  const call = async (request: unknown): Promise<Record<string, unknown>> => {
    const line = await ask(client, request);
    lines.push(normalise(line));
    return JSON.parse(line);
  };
  await call({ execute: "guest-get-vcpus", id: 1 });
  await call({ execute: "guest-get-disks", id: "disks" });
  await call({
    execute: "guest-set-user-password",
    arguments: { username: user, password: btoa("Delegated-1"), crypted: false },
    id: 3,
  });
  const exec = await call({
    execute: "guest-exec",
    arguments: { path: "/bin/echo", arg: ["hello", "délégué"], "capture-output": true },
    id: { exec: [4] },
  });
  const pid = (exec.return as { pid: number }).pid;
  let status = "";
  for (let tries = 0; tries < 200; tries++) {
    status = await ask(client, { execute: "guest-exec-status", arguments: { pid }, id: 5 });
    if (JSON.parse(status).return?.exited) break;
    await delay(50);
  }
  lines.push(normalise(status));
  const open = await call({
    execute: "guest-file-open",
    arguments: { path: `${files}/data.txt`, mode: "r" },
    id: "open",
  });
  const handle = open.return as number;
  await call({ execute: "guest-file-read", arguments: { handle, count: 4096 }, id: 7 });
  await call({ execute: "guest-file-close", arguments: { handle }, id: 8 });
  // Errors come back as the delegate words them.
  await call({ execute: "guest-file-open", arguments: { path: `${files}/missing` }, id: 9 });
  await call({ execute: "guest-exec-status", arguments: { pid: 2147483647 }, id: 10 });
  await call({ execute: "guest-get-vcpus", arguments: { extra: true }, id: 11 });
  return lines;
}

/** The command names in what a verbose qemu-ga read. */
async function namesRead(qga: QemuGaProcess): Promise<string[]> {
  const read = await qga.requestsRead();
  return [...read.matchAll(/"execute": ?"([^"]+)"/g)].map((match) => match[1]!);
}

Deno.test("delegated commands answer through our agent exactly as qemu-ga alone answers them", async () => {
  await using dir = await testDir();
  await using user = await testUser();
  const files = `${dir.path}/files`;
  await Deno.mkdir(files);
  const content = "line one\nline two, ünïcödé\n";
  await Deno.writeTextFile(`${files}/data.txt`, content);
  await using delegate = await startQemuGa(`${dir.path}/delegate`, { verbose: true });
  await using alone = await startQemuGa(`${dir.path}/alone`);
  await using agent = await agentWith(dir.path, delegate.socket);

  const ours = await transcript(agent.socketPath, files, user.name);
  assert.ok(await passwordIs(user.name, "Delegated-1"), "the password set through our agent");
  await run("passwd", ["--lock", user.name]);
  const theirs = await transcript(alone.socket, files, user.name);
  assert.ok(await passwordIs(user.name, "Delegated-1"), "the password set by qemu-ga alone");

  assert.deepEqual(ours, theirs);
  // What was compared: real answers, not a row of identical errors.
  assert.match(ours[0]!, /^\{"return": \[\{"online": true, .*"logical-id": 0\}.*\], "id": 1\}$/);
  assert.match(ours[1]!, /^\{"return": \[.*\], "id": "disks"\}$/);
  assert.equal(ours[2], '{"return": {}, "id": 3}');
  assert.equal(ours[3], '{"return": {"pid": <pid>}, "id": {"exec": [4]}}');
  const echoed = btoa(String.fromCharCode(...new TextEncoder().encode("hello délégué\n")));
  assert.match(ours[4]!, /"exitcode": 0/);
  assert.match(ours[4]!, /"exited": true/);
  assert.ok(ours[4]!.includes(`"out-data": "${echoed}"`), ours[4]);
  assert.equal(ours[5], '{"return": <handle>, "id": "open"}');
  const read = JSON.parse(ours[6]!).return;
  assert.equal(read.count, new TextEncoder().encode(content).length);
  assert.equal(
    new TextDecoder().decode(Uint8Array.from(atob(read["buf-b64"]), (c) => c.charCodeAt(0))),
    content,
  );
  assert.equal(ours[7], '{"return": {}, "id": 8}');
  for (const line of ours.slice(8)) {
    assert.match(line, /^\{"id": \d+, "error": \{"class": "GenericError"/);
  }
});

Deno.test("our own commands and the freeze commands never reach the delegate", async () => {
  await using dir = await testDir();
  await using delegate = await startQemuGa(`${dir.path}/delegate`, { verbose: true });
  await using agent = await agentWith(dir.path, delegate.socket);
  using client = await agent.connect();
  assert.match(await ask(client, { execute: "guest-get-vcpus" }), /^\{"return": \[/);
  const own = [
    { execute: "guest-sync", arguments: { id: 1 } },
    { execute: "guest-sync-delimited", arguments: { id: 2 } },
    { execute: "guest-ping" },
    { execute: "guest-info" },
    { execute: "guest-get-time" },
    { execute: "guest-get-host-name" },
    { execute: "guest-fsfreeze-status" },
    // Freezes nothing: the agent's scope holds no mount.
    { execute: "guest-fsfreeze-freeze-list", arguments: { mountpoints: [] } },
    { execute: "guest-fsfreeze-thaw" },
    { execute: "__io.github.fsfreeze-agent_guest-fsfreeze-report" },
  ];
  for (const request of own) {
    const line = (await ask(client, request)).replace(/^\uFFFD/, ""); // guest-sync-delimited's 0xFF
    assert.ok("return" in JSON.parse(line), `${request.execute}: ${line}`);
  }
  const names = await namesRead(delegate);
  // The session's own sync and guest-info, then the one delegated command.
  assert.deepEqual(names, ["guest-sync-delimited", "guest-info", "guest-get-vcpus"]);
  for (const name of FREEZE_COMMANDS) assert.ok(!names.includes(name));
});

Deno.test("-b help lists the delegate's commands after ours; -b and -a apply to them", async () => {
  await using dir = await testDir();
  await using delegate = await startQemuGa(`${dir.path}/delegate`, { verbose: true });
  const argv = ["-b", "help", `--delegate-socket=${delegate.socket}`];
  const env = { QGA_CONF: `${dir.path}/none.conf` };
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flagsFor(argv, env), MAIN, ...argv],
    env,
    stdin: "null",
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const listed = new TextDecoder().decode(output.stdout).trim().split("\n");
  const withoutDelegate = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flagsFor(["-b", "help"], env), MAIN, "-b", "help"],
    env,
    stdin: "null",
  }).output();
  const ours = new TextDecoder().decode(withoutDelegate.stdout).trim().split("\n");
  const theirs = (await qemuGaCommands()).filter((name) => !ours.includes(name));
  assert.deepEqual(listed, [...ours, ...theirs]);
  assert.ok(theirs.includes("guest-exec") && theirs.includes("guest-get-vcpus"));

  await using agent = await agentWith(dir.path, delegate.socket, { args: ["-b", "guest-exec"] });
  using client = await agent.connect();
  assert.equal(
    await ask(client, { execute: "guest-exec", arguments: { path: "/bin/echo" } }),
    '{"error": {"class": "CommandNotFound", "desc": "Command guest-exec has been disabled: the command is not allowed"}}',
  );
  const info = JSON.parse(await ask(client, { execute: "guest-info" })).return;
  const entry = info.supported_commands.find((c: { name: string }) => c.name === "guest-exec");
  assert.deepEqual(entry, { enabled: false, name: "guest-exec", "success-response": true });
  assert.ok(!(await namesRead(delegate)).includes("guest-exec"));
});

Deno.test("a freeze waits for the delegated command in flight before it; delegated ones are disabled while frozen", async () => {
  await using fs = await createLoopMounts(1, { watchdogSeconds: 60 });
  await using dir = await testDir();
  await using delegate = await startQemuGa(`${dir.path}/delegate`, { verbose: true });
  await using agent = await agentWith(dir.path, delegate.socket, { scope: fs.mounts });
  using client = await agent.connect();
  assert.match(await ask(client, { execute: "guest-get-vcpus", id: 0 }), /"return"/);
  const stateFile = `${agent.statedir}/qga.state.isfrozen`;
  // The delegate is held (SIGSTOP) with a delegated command in flight; the freeze is queued
  // behind it, in the same write, as a host pipelining its requests.
  delegate.signal("SIGSTOP");
  await client.send(
    [
      { execute: "guest-get-vcpus", id: 1 },
      { execute: "guest-fsfreeze-freeze-list", arguments: { mountpoints: fs.mounts }, id: 2 },
      { execute: "guest-get-vcpus", id: 3 },
      { execute: "guest-fsfreeze-thaw", id: 4 },
      { execute: "guest-get-vcpus", id: 5 },
    ].map((request) => JSON.stringify(request)).join(""),
  );
  await delay(1500);
  assert.equal(await Deno.lstat(stateFile).then(() => true, () => false), false, "frozen early");
  assert.deepEqual(await client.readFor(100), new Uint8Array(), "a reply before the delegate's");
  delegate.signal("SIGCONT");
  const lines = [];
  for (let i = 0; i < 5; i++) lines.push(await client.readLine());
  assert.match(lines[0]!, /^\{"return": \[.*\], "id": 1\}$/);
  assert.equal(lines[1], '{"return": 1, "id": 2}');
  assert.equal(
    lines[2],
    '{"id": 3, "error": {"class": "CommandNotFound", "desc": "Command guest-get-vcpus has been disabled: the command is not allowed"}}',
  );
  assert.equal(lines[3], '{"return": 1, "id": 4}');
  assert.match(lines[4]!, /^\{"return": \[.*\], "id": 5\}$/);
  const names = await namesRead(delegate);
  assert.deepEqual(names.filter((name) => name === "guest-get-vcpus").length, 3, "ids 0, 1, 5");
  for (const name of FREEZE_COMMANDS) assert.ok(!names.includes(name));
});

Deno.test("a killed delegate gives an error naming it at once; the agent uses it again once it is back", async () => {
  await using dir = await testDir();
  await using delegate = await startQemuGa(`${dir.path}/delegate`);
  await using agent = await agentWith(dir.path, delegate.socket);
  using client = await agent.connect();
  assert.match(await ask(client, { execute: "guest-get-vcpus" }), /"return"/);
  await delegate.kill("SIGKILL");
  const error = JSON.parse(
    await withTimeout(ask(client, { execute: "guest-get-vcpus", id: 2 }), 30_000, "the error"),
  );
  assert.equal(error.error.class, "GenericError");
  assert.match(
    error.error.desc,
    new RegExp(
      `^guest-get-vcpus: the guest agent delegate at ${delegate.socket} (is not reachable|closed the connection)`,
    ),
  );
  assert.equal(await ask(client, { execute: "guest-ping" }), '{"return": {}}', "ours still answer");
  await delegate.restart();
  assert.match(
    await ask(client, { execute: "guest-get-vcpus", id: 3 }),
    /^\{"return": \[.*"id": 3\}$/,
  );
});

Deno.test("a stopped delegate gives a timeout error naming it; once it runs again its late reply is skipped", async () => {
  await using dir = await testDir();
  await using delegate = await startQemuGa(`${dir.path}/delegate`);
  await using agent = await agentWith(dir.path, delegate.socket, {
    args: ["--delegate-timeout=2"],
  });
  using client = await agent.connect();
  assert.match(await ask(client, { execute: "guest-get-vcpus", id: 1 }), /"id": 1/);
  delegate.signal("SIGSTOP");
  const started = performance.now();
  assert.equal(
    await ask(client, { execute: "guest-get-disks", id: 2 }),
    `{"id": 2, "error": {"class": "GenericError", "desc": "guest-get-disks: the guest agent delegate at ${delegate.socket} did not answer within 2 s"}}`,
  );
  assert.ok(performance.now() - started < 30_000, "bounded by the delegate timeout");
  assert.equal(await ask(client, { execute: "guest-ping" }), '{"return": {}}');
  delegate.signal("SIGCONT");
  // The late reply to guest-get-disks comes first; the re-sync skips it.
  assert.match(
    await ask(client, { execute: "guest-get-vcpus", id: 3 }),
    /^\{"return": \[.*"id": 3\}$/,
  );
});

Deno.test("a delegate answering garbage gives an error naming it; a command without a reply gets none", async () => {
  await using dir = await testDir();
  const fake = new FakeDelegate();
  await using _listening = fake.listen(`${dir.path}/fake.sock`);
  fake.handler = (name) => {
    if (name === "guest-exec") return { raw: "<html>not an agent</html>\n" };
    if (name === "guest-suspend-ram") return { silent: true };
    return { return: name };
  };
  await using agent = await agentWith(dir.path, `${dir.path}/fake.sock`, {
    args: ["--delegate-timeout=5"],
  });
  using client = await agent.connect();
  const garbage = JSON.parse(await ask(client, { execute: "guest-exec", id: 1 }));
  assert.equal(garbage.error.class, "GenericError");
  assert.match(
    garbage.error.desc,
    /^guest-exec: the guest agent delegate at .*fake\.sock sent an invalid reply .*<html>not an agent/,
  );
  assert.equal(
    await ask(client, { execute: "guest-get-vcpus", id: 2 }),
    '{"return": "guest-get-vcpus", "id": 2}',
  );
  // guest-suspend-ram sends no reply when it succeeds: the host gets none, and the next answer
  // is the next request's.
  await client.send(JSON.stringify({ execute: "guest-suspend-ram", id: 3 }));
  assert.equal(await ask(client, { execute: "guest-ping", id: 4 }), '{"return": {}, "id": 4}');
  assert.equal(fake.count("guest-suspend-ram"), 1);
});

Deno.test("the agent refuses to start with a delegate its permissions do not cover", async () => {
  await using dir = await testDir();
  const argv = [
    "-m",
    "unix-listen",
    "-p",
    `${dir.path}/a.sock`,
    "-t",
    `${dir.path}/state`,
    `--fsfreeze-scope=${dir.path}/none`,
  ];
  const env = { QGA_CONF: `${dir.path}/none.conf` };
  const socket = `${dir.path}/d.sock`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...flagsForArgv(argv, env), MAIN, ...argv, `--delegate-socket=${socket}`],
    env,
    stdin: "null",
  }).output();
  assert.equal(output.code, 1);
  assert.ok(
    new TextDecoder().decode(output.stderr).includes(
      `needs permissions this agent was not given: read ${socket}, write ${socket}, ` +
        `net unix:${socket} `,
    ),
    new TextDecoder().decode(output.stderr),
  );
});
