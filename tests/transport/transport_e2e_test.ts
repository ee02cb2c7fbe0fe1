/**
 * Transports against the real agent process (docs/protocol.md, checklist items 1, 28, 29, and
 * isa-serial over a pty).
 *
 * @module
 */

import assert from "node:assert/strict";
import { delay, spawnAgent, withTimeout } from "../_util/agent.ts";
import { isAllowedVsockPeer } from "../../src/transport/socket.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** read(2) calls made by all threads of a process so far (/proc/<pid>/io syscr). */
async function readSyscalls(pid: number): Promise<number> {
  const io = await Deno.readTextFile(`/proc/${pid}/io`);
  return Number(/^syscr: (\d+)$/m.exec(io)![1]);
}

/** A temporary directory, removed with everything in it on dispose (after the agent in it). */
async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "agent_test_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

async function waitFor(
  check: () => Promise<boolean> | boolean,
  what: string,
  ms = 10_000,
): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

Deno.test("virtio-serial: EOF (host gone) is polled at most ~10 times/s, input resumes after (item 28)", async () => {
  await using temp = await tempDir();
  const dir = temp.path;
  const port = `${dir}/port`;
  await Deno.writeTextFile(port, "");
  await using agent = await spawnAgent({
    dir,
    customChannel: true,
    args: ["-m", "virtio-serial", "-p", port],
  });
  await agent.waitForLog("channel opened");
  await delay(500);
  const before = await readSyscalls(agent.pid);
  await delay(2000);
  const reads = (await readSyscalls(agent.pid)) - before;
  assert.ok(reads <= 40, `read syscalls in 2 s while the host is away: ${reads}`);

  // A partial request, then EOF (the host went away): the partial input must be dropped.
  await Deno.writeTextFile(port, '{"execute":"guest-sy', { append: true });
  await delay(400);
  await Deno.writeTextFile(port, '{"execute":"guest-sync","arguments":{"id":42}}', {
    append: true,
  });
  await waitFor(async () => (await Deno.readTextFile(port)).includes('{"return": 42}'), "reply");
  const text = await Deno.readTextFile(port);
  assert.ok(text.endsWith('{"execute":"guest-sync","arguments":{"id":42}}{"return": 42}\n'), text);
  assert.equal(agent.exited, false);
});

Deno.test("virtio-serial: a pty whose other side closed (EIO) does not spin the agent", async () => {
  await using temp = await tempDir();
  const dir = temp.path;
  const link = `${dir}/vport`;
  const socat = new Deno.Command("socat", {
    args: [`pty,raw,echo=0,link=${link}`, "STDIO"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  try {
    await waitFor(async () => await Deno.lstat(link).then(() => true, () => false), "pty link");
    await using agent = await spawnAgent({
      dir,
      customChannel: true,
      args: ["-m", "virtio-serial", "-p", link],
    });
    await agent.waitForLog("channel opened");
    const writer = socat.stdin.getWriter();
    await writer.write(encoder.encode('{"execute":"guest-sync","arguments":{"id":7}}'));
    const reader = socat.stdout.getReader();
    let received = "";
    await withTimeout(
      (async () => {
        while (!received.includes("\n")) received += decoder.decode((await reader.read()).value);
      })(),
      10_000,
      "reply over the pty",
    );
    assert.equal(received, '{"return": 7}\n');
    reader.releaseLock();
    await writer.close(); // socat exits and closes the pty master
    await socat.status;
    await delay(500);
    const before = await readSyscalls(agent.pid);
    await delay(2000);
    const reads = (await readSyscalls(agent.pid)) - before;
    assert.ok(reads <= 40, `read syscalls in 2 s after hangup: ${reads}`);
    assert.equal(agent.exited, false);
  } finally {
    try {
      socat.kill("SIGKILL");
    } catch {
      // exited
    }
    await socat.status;
    await socat.stdout.cancel().catch(() => {});
  }
});

Deno.test("isa-serial: the tty is put in raw mode and requests are answered over the pty", async () => {
  await using temp = await tempDir();
  const dir = temp.path;
  const agentSide = `${dir}/ttyS`;
  const hostSide = `${dir}/host`;
  // The agent's side starts in the default (cooked, echoing) mode; the agent must make it raw.
  const socat = new Deno.Command("socat", {
    args: [`pty,link=${agentSide}`, `pty,raw,echo=0,link=${hostSide}`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitFor(async () =>
      (await Deno.lstat(agentSide).then(() => true, () => false)) &&
      (await Deno.lstat(hostSide).then(() => true, () => false)), "pty links");
    await using agent = await spawnAgent({
      dir,
      customChannel: true,
      args: ["-m", "isa-serial", "-p", agentSide],
    });
    await agent.waitForLog("channel opened");
    const stty = await new Deno.Command("stty", { args: ["-F", agentSide, "-a"] }).output();
    const modes = decoder.decode(stty.stdout);
    for (const flag of ["-icanon", "-echo", "-isig", "-icrnl", "-ixon", "-opost"]) {
      assert.match(modes, new RegExp(`(^|\\s)${flag}(\\s|$)`), `${flag} in ${modes}`);
    }
    using host = await Deno.open(hostSide, { read: true, write: true });
    await host.write(encoder.encode('{"execute":"guest-sync","arguments":{"id":99}}'));
    const buffer = new Uint8Array(256);
    let received = "";
    await withTimeout(
      (async () => {
        while (!received.includes("\n")) {
          const count = await host.read(buffer);
          if (count === null) break;
          received += decoder.decode(buffer.subarray(0, count));
        }
      })(),
      10_000,
      "reply over isa-serial",
    );
    assert.equal(received, '{"return": 99}\n');
  } finally {
    socat.kill("SIGTERM");
    await socat.status;
  }
});

Deno.test("virtio-serial: with no -m/-p the agent answers guest-ping on /dev/virtio-ports/org.qemu.guest_agent.0 (item 1)", async () => {
  const portDir = "/dev/virtio-ports";
  const port = `${portDir}/org.qemu.guest_agent.0`;
  if (await Deno.lstat(portDir).then(() => true, () => false)) {
    throw new Error(
      `${portDir} exists on this machine: this test stands in a pty for the port only where ` +
        "there is none, and never touches a real one; run it in a VM without a virtio-serial port",
    );
  }
  await using temp = await tempDir();
  const dir = temp.path;
  const agentSide = `${dir}/port`;
  const hostSide = `${dir}/host`;
  const socat = new Deno.Command("socat", {
    args: [`pty,raw,echo=0,link=${agentSide}`, `pty,raw,echo=0,link=${hostSide}`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let createdDir = false;
  try {
    await waitFor(async () =>
      (await Deno.lstat(agentSide).then(() => true, () => false)) &&
      (await Deno.lstat(hostSide).then(() => true, () => false)), "pty links");
    await Deno.mkdir(portDir); // fails if it appeared meanwhile: then it is not ours to remove
    createdDir = true;
    // As udev does: the port name is a symlink to the character device.
    await Deno.symlink(await Deno.realPath(agentSide), port);
    await using agent = await spawnAgent({ dir, customChannel: true, args: [] });
    await agent.waitForLog("channel opened");
    assert.ok(agent.stderr.includes(port), agent.stderr);
    using host = await Deno.open(hostSide, { read: true, write: true });
    await host.write(encoder.encode('{"execute":"guest-ping"}'));
    const buffer = new Uint8Array(256);
    let received = "";
    await withTimeout(
      (async () => {
        while (!received.includes("\n")) {
          const count = await host.read(buffer);
          if (count === null) break;
          received += decoder.decode(buffer.subarray(0, count));
        }
      })(),
      10_000,
      "reply on the default virtio-serial path",
    );
    assert.equal(received, '{"return": {}}\n');
    assert.equal((await agent.stop("SIGTERM")).code, 0);
  } finally {
    if (createdDir) {
      await Deno.remove(port).catch(() => {});
      await Deno.remove(portDir);
    }
    socat.kill("SIGTERM");
    await socat.status;
  }
});

Deno.test("unix-listen serves one client at a time and the next after a disconnect (item 29)", async () => {
  await using agent = await spawnAgent();
  const first = await agent.connect();
  assert.deepEqual(await first.request({ execute: "guest-sync", arguments: { id: 1 } }), {
    return: 1,
  });
  using second = await agent.connect();
  await second.send('{"execute":"guest-sync","arguments":{"id":2}}');
  assert.equal(
    (await second.readFor(500)).length,
    0,
    "second client waits while the first is served",
  );
  first[Symbol.dispose]();
  assert.equal(await second.readLine(10_000), '{"return": 2}');
});

Deno.test("unix-listen socket is owner-only and a stale socket is replaced", async () => {
  await using temp = await tempDir();
  const dir = temp.path;
  const stale = Deno.listen({ transport: "unix", path: `${dir}/qga.sock` });
  stale.close(); // Deno leaves the file behind: a stale socket
  await using agent = await spawnAgent({ dir });
  const info = await Deno.lstat(agent.socketPath);
  assert.equal(info.isSocket, true);
  assert.equal(info.mode! & 0o777, 0o600);
  assert.deepEqual(await agent.request({ execute: "guest-ping" }), { return: {} });
  const status = await agent.stop("SIGTERM");
  assert.equal(status.code, 0);
  assert.equal(await Deno.lstat(agent.socketPath).then(() => true, () => false), false);
});

Deno.test("unix-listen refuses to take over a live socket or a non-socket path", async () => {
  await using first = await spawnAgent();
  await using second = await spawnAgent({
    dir: first.dir,
    statedir: `${first.dir}/state2`,
    waitReady: false,
  });
  const status = await withTimeout(second.status(), 15_000, "second agent exit");
  assert.equal(status.code, 1);
  assert.match(second.stderr, /already listening/);
  await using temp = await tempDir();
  const dir = temp.path;
  await Deno.writeTextFile(`${dir}/qga.sock`, "not a socket");
  await using third = await spawnAgent({ dir, waitReady: false });
  assert.equal((await withTimeout(third.status(), 15_000, "third agent exit")).code, 1);
  assert.match(third.stderr, /not a socket/);
});

Deno.test("vsock-listen starts listening on the chosen port (smoke test; no loopback here)", async () => {
  const port = 40000 + Math.floor(Math.random() * 20000);
  await using agent = await spawnAgent({
    customChannel: true,
    args: ["-m", "vsock-listen", "-p", `4294967295:${port}`],
  });
  await agent.waitForLog("channel opened");
  assert.match(agent.stderr, new RegExp(`port=${port}`));
  assert.equal((await agent.stop("SIGTERM")).code, 0);
});

Deno.test("isAllowedVsockPeer() admits only the configured CIDs", () => {
  assert.equal(isAllowedVsockPeer({ transport: "vsock", cid: 2, port: 1 }, [2]), true);
  assert.equal(isAllowedVsockPeer({ transport: "vsock", cid: 3, port: 1 }, [2]), false);
  assert.equal(isAllowedVsockPeer({ transport: "vsock", cid: 1, port: 1 }, [2]), false);
  assert.equal(isAllowedVsockPeer({ transport: "unix", path: "x" }, [2]), false);
});
