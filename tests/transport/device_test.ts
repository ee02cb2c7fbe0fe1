/**
 * The device transport (virtio-serial, isa-serial) on real ptys made by socat, regular files and
 * /proc files: data both ways, hangups, errors, the read loop's life, and EAGAIN on write.
 *
 * @module
 */

import assert from "node:assert/strict";
import { silentLogger } from "../../src/log.ts";
import type { FdConnection } from "../../src/transport/_fd_io.ts";
import { type DeviceTransport, openDevice } from "../../src/transport/device.ts";
import type { Connection, ReadResult } from "../../src/transport/mod.ts";
import { delay, withTimeout } from "../_util/agent.ts";
import { descriptorIdentity, isSyscallError } from "../_util/linux.ts";
import { ptyPair } from "../_util/pty.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Opens the device and takes its one connection; disposing closes it and awaits the reader. */
async function openConnection(
  path: string,
  method: "virtio-serial" | "isa-serial" = "virtio-serial",
): Promise<{ transport: DeviceTransport; connection: Connection } & AsyncDisposable> {
  const transport = openDevice(method, path, silentLogger);
  const connection = await transport.accept();
  assert.ok(connection);
  return {
    transport,
    connection,
    [Symbol.asyncDispose]: () => withTimeout(transport[Symbol.asyncDispose](), 30_000, "close"),
  };
}

/** Reads until `count` bytes arrived (data results only; anything else fails the test). */
async function readBytes(connection: Connection, count: number): Promise<string> {
  let text = "";
  let received = 0;
  while (received < count) {
    const result = await withTimeout(connection.read(), 30_000, "read");
    assert.equal(result.type, "data", `expected data, got ${result.type}`);
    const bytes = dataOf(result);
    received += bytes.length;
    text += decoder.decode(bytes, { stream: true });
  }
  return text;
}

/** The bytes of a data result. */
function dataOf(result: ReadResult): Uint8Array {
  if (result.type !== "data") throw new Error(`expected data, got ${result.type}`);
  return result.bytes;
}

/** Reads from the host side until `count` bytes arrived. */
async function hostRead(host: Deno.FsFile, count: number): Promise<Uint8Array> {
  const out = new Uint8Array(count);
  let received = 0;
  while (received < count) {
    const n = await withTimeout(host.read(out.subarray(received)), 30_000, "host read");
    if (n === null) throw new Error(`host side ended after ${received} bytes`);
    received += n;
  }
  return out;
}

/** Whether `promise` is still pending after `ms`. */
async function stillPending(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const pending = Symbol("pending");
  const timer = delay(ms).then(() => pending);
  return (await Promise.race([promise.then(() => null, () => null), timer])) === pending;
}

/** The identities of the descriptors a connection owns (only those: never the whole table). */
function ownedDescriptors(connection: Connection): string[] {
  const fds = (connection as FdConnection).descriptors;
  return fds.map((fd) => `${fd}: ${descriptorIdentity(fd) ?? "closed"}`);
}

/** Asserts that none of the descriptors recorded by {@link ownedDescriptors} is still open. */
function assertClosed(owned: readonly string[]): void {
  for (const entry of owned) {
    const fd = Number(entry.slice(0, entry.indexOf(":")));
    const now = `${fd}: ${descriptorIdentity(fd) ?? "closed"}`;
    assert.notEqual(now, entry, `descriptor still open: ${entry}`);
  }
}

/** The identities of every descriptor pointing at `target` (a path only this test opens). */
function descriptorsOf(target: string): number[] {
  const fds: number[] = [];
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`) === target) fds.push(Number(entry.name));
    } catch {
      // closed meanwhile (e.g. the descriptor readDirSync itself used)
    }
  }
  return fds;
}

/** How many times the connection's read loop has woken from poll(2) so far. */
function wakeups(connection: Connection): number {
  return (connection as FdConnection).wakeups;
}

Deno.test("openDevice() passes bytes both ways over a pty", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  using host = await Deno.open(pty.b, { read: true, write: true });
  await host.write(encoder.encode('{"execute":"guest-ping"}'));
  assert.equal(await readBytes(device.connection, 24), '{"execute":"guest-ping"}');
  await device.connection.write(encoder.encode('{"return": {}}\n'));
  assert.equal(decoder.decode(await hostRead(host, 15)), '{"return": {}}\n');
});

Deno.test("read() delivers split and large input in order, in chunks of at most 4 KiB", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  using host = await Deno.open(pty.b, { read: true, write: true });
  await host.write(encoder.encode('{"exec'));
  assert.equal(await readBytes(device.connection, 6), '{"exec');
  await host.write(encoder.encode('ute":"guest-ping"}'));
  assert.equal(await readBytes(device.connection, 18), 'ute":"guest-ping"}');

  const big = "x".repeat(50_000) + "y";
  const writing = (async () => {
    const bytes = encoder.encode(big);
    for (let offset = 0; offset < bytes.length;) {
      offset += await host.write(bytes.subarray(offset));
    }
  })();
  let text = "";
  while (text.length < big.length) {
    const result = await withTimeout(device.connection.read(), 30_000, "read");
    assert.equal(result.type, "data");
    const bytes = dataOf(result);
    assert.ok(bytes.length <= 4096, `chunk of ${bytes.length} bytes`);
    text += decoder.decode(bytes);
  }
  await writing;
  assert.equal(text, big);
});

Deno.test("read() reports a hangup once when the pty's other side closes (EIO), without spinning", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  pty.socat.kill("SIGKILL"); // closes the master of side a: reads there now fail with EIO
  await pty.socat.status;
  const first = await withTimeout(device.connection.read(), 30_000, "hangup");
  assert.deepEqual(first, { type: "hangup" });
  const next = device.connection.read();
  const before = wakeups(device.connection);
  assert.equal(await stillPending(next, 2000), true, "a second hangup or data was reported");
  const woken = wakeups(device.connection) - before;
  // 100 ms between retries: about 20 wakeups in 2 s; a busy loop would make many thousands.
  assert.ok(woken <= 40, `poll(2) wakeups in 2 s after the hangup: ${woken}`);
  device.transport.close();
  assert.deepEqual(await next, { type: "closed" });
});

Deno.test("read() on a regular file: EOF is a hangup, and appended bytes are read after it", async () => {
  const file = await Deno.makeTempFile({ prefix: "agent_test_" });
  try {
    await Deno.writeTextFile(file, "abc");
    await using device = await openConnection(file);
    assert.equal(await readBytes(device.connection, 3), "abc");
    assert.deepEqual(await withTimeout(device.connection.read(), 30_000, "hangup"), {
      type: "hangup",
    });
    await Deno.writeTextFile(file, "def", { append: true });
    assert.equal(await readBytes(device.connection, 3), "def");
    assert.deepEqual(await withTimeout(device.connection.read(), 30_000, "hangup"), {
      type: "hangup",
    });
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("read() leaves input in the kernel while the agent has not taken what was read", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  using host = await Deno.open(pty.b, { read: true, write: true });
  // More than the reader may hold (16 chunks of 4 KiB) plus what the ptys and socat buffer.
  const payload = new Uint8Array(4 << 20).map((_, index) => index % 253);
  const writing = (async () => {
    for (let offset = 0; offset < payload.length;) {
      offset += await host.write(payload.subarray(offset));
    }
  })();
  assert.equal(await stillPending(writing, 500), true, "everything was read into memory");
  const received = new Uint8Array(payload.length);
  for (let offset = 0; offset < payload.length;) {
    const bytes = dataOf(await withTimeout(device.connection.read(), 30_000, "read"));
    received.set(bytes, offset);
    offset += bytes.length;
  }
  await withTimeout(writing, 30_000, "host write after the agent read everything");
  assert.deepEqual(received, payload);
});

Deno.test("read() makes no read calls while a connected pty is quiet", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  const next = device.connection.read();
  const before = wakeups(device.connection);
  assert.equal(await stillPending(next, 1000), true);
  const woken = wakeups(device.connection) - before;
  assert.ok(woken <= 1, `poll(2) wakeups in 1 s on a quiet port: ${woken}`);
  device.transport.close();
  assert.deepEqual(await next, { type: "closed" });
});

Deno.test("close() ends the reader promptly, closes both descriptors and answers reads with closed", async () => {
  await using pty = await ptyPair();
  const device = await openConnection(pty.a);
  const owned = ownedDescriptors(device.connection);
  assert.match(owned[0]!, new RegExp(`^\\d+: ${Deno.realPathSync(pty.a)}$`), "the device is open");
  assert.match(owned[1]!, /^\d+: anon_inode:\[eventfd\] id \d+$/, "the eventfd is open");
  const pending = device.connection.read();
  device.transport.close();
  assert.deepEqual(await pending, { type: "closed" });
  await withTimeout(device.transport.finished, 30_000, "reader end after close()");
  assertClosed(owned);
  assert.deepEqual(await device.connection.read(), { type: "closed" });
  assert.equal(await device.transport.accept(), null);
});

Deno.test("write() waits out EAGAIN while the host does not read, and delivers everything after", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  // Far more than the two pty buffers and socat's buffer hold together.
  const payload = new Uint8Array(1 << 20).map((_, index) => index % 251);
  const writing = device.connection.write(payload);
  assert.equal(await stillPending(writing, 300), true, "the write should be waiting on EAGAIN");
  using host = await Deno.open(pty.b, { read: true, write: true });
  const received = await hostRead(host, payload.length);
  await withTimeout(writing, 30_000, "write after the host drained");
  assert.deepEqual(received, payload);
});

Deno.test("close() ends a write waiting on EAGAIN, and later writes are dropped", async () => {
  await using pty = await ptyPair();
  const device = await openConnection(pty.a);
  const writing = device.connection.write(new Uint8Array(1 << 20));
  assert.equal(await stillPending(writing, 300), true, "the write should be waiting on EAGAIN");
  device.transport.close();
  await withTimeout(writing, 30_000, "write end after close()");
  await device.connection.write(encoder.encode("late"));
  await withTimeout(device.transport.finished, 30_000, "reader end");
});

Deno.test("write() drops the bytes when the pty's other side has gone (EIO)", async () => {
  await using pty = await ptyPair();
  await using device = await openConnection(pty.a);
  pty.socat.kill("SIGKILL");
  await pty.socat.status;
  assert.deepEqual(await withTimeout(device.connection.read(), 30_000, "hangup"), {
    type: "hangup",
  });
  await withTimeout(device.connection.write(encoder.encode("{}\n")), 30_000, "write");
});

Deno.test("read() rejects with the SyscallError of a failed read, the device is closed, and later writes are dropped", async () => {
  // Readable by no one: read(2) fails with EINVAL (never written to, so harmless).
  await using device = await openConnection("/proc/self/clear_refs");
  const owned = ownedDescriptors(device.connection);
  assert.match(owned[0]!, /^\d+: \/proc\/\d+\/clear_refs$/, "the device is open");
  await assert.rejects(device.connection.read(), isSyscallError("read", "EINVAL"));
  await assert.rejects(device.connection.read(), isSyscallError("read", "EINVAL"));
  await withTimeout(device.transport.finished, 30_000, "reader end after the error");
  assertClosed(owned);
  // Not written to the closed descriptor's number, which may belong to something else by now.
  await withTimeout(device.connection.write(encoder.encode("late")), 30_000, "write");
});

Deno.test("openDevice() puts an isa-serial tty into raw mode", async () => {
  await using pty = await ptyPair({ cookedA: true });
  await using device = await openConnection(pty.a, "isa-serial");
  const stty = await new Deno.Command("stty", { args: ["-F", pty.a, "-a"] }).output();
  const modes = decoder.decode(stty.stdout);
  for (const flag of ["-icanon", "-echo", "-isig", "-icrnl", "-ixon", "-opost"]) {
    assert.match(modes, new RegExp(`(^|\\s)${flag}(\\s|$)`), `${flag} in ${modes}`);
  }
  using host = await Deno.open(pty.b, { read: true, write: true });
  await host.write(encoder.encode("{}\r"));
  assert.equal(await readBytes(device.connection, 3), "{}\r"); // no CR→NL translation
});

Deno.test("openDevice() throws SyscallError and leaks no descriptor when it cannot open or set up", async () => {
  assert.throws(
    () => openDevice("virtio-serial", "/dev/agent_test_no_such_port", silentLogger),
    isSyscallError("open", "ENOENT"),
  );
  const file = await Deno.makeTempFile({ prefix: "agent_test_" });
  try {
    assert.throws(
      () => openDevice("isa-serial", file, silentLogger),
      isSyscallError("tcgetattr", "ENOTTY"),
    );
    // The file is a path only this test opened: no descriptor may still point at it.
    assert.deepEqual(descriptorsOf(file), []);
  } finally {
    await Deno.remove(file);
  }
});
