/**
 * Tests of src/transport/_fd_loop.ts, the descriptor loops, on real descriptors: a sink records
 * what the read loop delivers and plays the agent (stopping the loop where the agent would). The
 * connections built on them (_fd_io.ts) are tested through the transports that use them
 * (device_test.ts, activated_test.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { errnoNumber, SyscallError } from "../../src/linux/errno.ts";
import { close, O_NONBLOCK, O_RDONLY, open } from "../../src/linux/fd.ts";
import {
  AcceptLoop,
  type EndOfFile,
  MAX_PENDING_CHUNKS,
  ReadLoop,
  type ReadSink,
} from "../../src/transport/_fd_loop.ts";
import { delay, withTimeout } from "../_util/agent.ts";
import { descriptorIdentity, isSyscallError, socketBoundTo, withTempDir } from "../_util/linux.ts";

type Delivered = { type: "data"; text: string } | { type: "hangup" | "closed" } | {
  type: "failed";
  err: Error;
};

/** Runs a read loop on `fd`; `stopOn` says after which delivery the agent stops it. */
async function readToEnd(
  fd: number,
  endOfFile: EndOfFile,
  path: string,
  stopOn: (delivered: Delivered) => boolean,
): Promise<{ delivered: Delivered[]; loop: ReadLoop; before: (string | undefined)[] }> {
  const delivered: Delivered[] = [];
  let loop: ReadLoop | undefined = undefined;
  const record = (entry: Delivered): void => {
    delivered.push(entry);
    if (stopOn(entry)) queueMicrotask(() => loop!.stop());
  };
  const sink: ReadSink = {
    data: (bytes) => {
      record({ type: "data", text: new TextDecoder().decode(bytes) });
      loop!.taken();
    },
    hangup: () => record({ type: "hangup" }),
    closed: () => record({ type: "closed" }),
    failed: (err) => record({ type: "failed", err }),
  };
  loop = new ReadLoop(fd, endOfFile, path, sink);
  const before = identities(loop.descriptors);
  await withTimeout(loop.finished, 30_000, "read loop end");
  return { delivered, loop, before };
}

/** The identities of `fds` now, to compare with later. */
function identities(fds: readonly number[]): (string | undefined)[] {
  return fds.map(descriptorIdentity);
}

/** Asserts that none of the descriptors whose identities were taken is still that one. */
function assertClosed(fds: readonly number[], before: readonly (string | undefined)[]): void {
  fds.forEach((fd, index) => {
    assert.ok(before[index] !== undefined, `descriptor ${fd} was not open`);
    assert.notEqual(descriptorIdentity(fd), before[index], `descriptor ${fd} still open`);
  });
}

Deno.test("the read loop delivers data, then closed at a socket's end of file, and closes its descriptors once stopped", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/input`, "hello");
    const fd = open(`${dir}/input`, O_RDONLY | O_NONBLOCK);
    const { delivered, loop, before } = await readToEnd(
      fd,
      "closed",
      `${dir}/input`,
      (entry) => entry.type === "closed",
    );
    assert.deepEqual(delivered, [{ type: "data", text: "hello" }, { type: "closed" }]);
    assert.equal(loop.open, false);
    assertClosed(loop.descriptors, before);
  });
});

Deno.test("the read loop keeps a socket's descriptor open after its end of file until stopped", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/input`, "");
    const fd = open(`${dir}/input`, O_RDONLY | O_NONBLOCK);
    const closedSeen = Promise.withResolvers<void>();
    const loop = new ReadLoop(fd, "closed", "x", {
      data: () => {},
      hangup: () => {},
      closed: () => closedSeen.resolve(),
      failed: (err) => closedSeen.reject(err),
    });
    const before = identities(loop.descriptors);
    await withTimeout(closedSeen.promise, 30_000, "closed");
    await delay(200);
    assert.equal(loop.open, true, "a reply may still be written");
    loop.stop();
    await withTimeout(loop.finished, 30_000, "read loop end");
    assert.equal(loop.open, false);
    assertClosed(loop.descriptors, before);
  });
});

Deno.test("the read loop reports a device's end of file once as a hangup and pauses between tries", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/input`, "");
    const fd = open(`${dir}/input`, O_RDONLY | O_NONBLOCK);
    const delivered: Delivered[] = [];
    const loop = new ReadLoop(fd, "hangup", `${dir}/input`, {
      data: () => delivered.push({ type: "data", text: "" }),
      hangup: () => delivered.push({ type: "hangup" }),
      closed: () => delivered.push({ type: "closed" }),
      failed: (err) => delivered.push({ type: "failed", err }),
    });
    await delay(1000);
    loop.stop();
    await withTimeout(loop.finished, 30_000, "read loop end");
    assert.deepEqual(delivered, [{ type: "hangup" }]);
    // A regular file polls readable at once: 100 ms between tries is about 10 in 1 s.
    assert.ok(loop.wakeups >= 2 && loop.wakeups <= 25, `poll(2) returned ${loop.wakeups} times`);
  });
});

Deno.test("the read loop reports a failed read with its path, ends, and closes its descriptor", async () => {
  const fd = open("/proc/self", O_RDONLY); // a directory: poll says readable, read(2) says EISDIR
  const { delivered, loop, before } = await readToEnd(fd, "closed", "/proc/self", () => false);
  assert.equal(delivered.length, 1);
  const failed = delivered[0] as { type: "failed"; err: Error };
  assert.equal(failed.type, "failed");
  assert.ok(isSyscallError("read", "EISDIR")(failed.err));
  assert.equal((failed.err as SyscallError).errno, errnoNumber("EISDIR"));
  assert.equal((failed.err as SyscallError).path, "/proc/self");
  assert.equal(loop.open, false);
  assertClosed(loop.descriptors, before);
});

Deno.test("the read loop stops reading while the agent has not taken what it delivered", async () => {
  await withTempDir(async (dir) => {
    const chunks = MAX_PENDING_CHUNKS + 4;
    await Deno.writeTextFile(`${dir}/input`, "x".repeat(4096 * chunks));
    const fd = open(`${dir}/input`, O_RDONLY | O_NONBLOCK);
    const held: Uint8Array[] = [];
    const loop = new ReadLoop(fd, "closed", "x", {
      data: (bytes) => held.push(bytes),
      hangup: () => {},
      closed: () => {},
      failed: () => {},
    });
    await delay(500);
    assert.equal(held.length, MAX_PENDING_CHUNKS, "it stopped at the limit");
    for (let index = 0; index < 4; index++) loop.taken();
    await delay(500);
    assert.equal(held.length, chunks, "it read on once there was room");
    loop.stop();
    await withTimeout(loop.finished, 30_000, "read loop end");
  });
});

Deno.test("the accept loop accepts a queued client, leaves the listener open, and a stop ends its wait", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.sock`;
    using _listener = Deno.listen({ transport: "unix", path });
    const fd = socketBoundTo(path);
    const loop = new AcceptLoop(fd);
    const before = identities([loop.wakeFd]);
    try {
      using _client = await Deno.connect({ transport: "unix", path });
      const accepted = await withTimeout(loop.next(), 30_000, "accept");
      assert.ok(accepted);
      assert.deepEqual(accepted.peer, { transport: "unix", path: "" });
      close(accepted.fd);
      const waiting = loop.next();
      await delay(100); // let it wait in poll(2)
      loop.stop();
      assert.equal(await withTimeout(waiting, 30_000, "wait after stop"), null);
      assert.equal(await loop.next(), null, "and stays stopped");
    } finally {
      loop.stop();
      await withTimeout(loop.finished, 30_000, "accept loop end");
    }
    assertClosed([loop.wakeFd], before);
    assert.equal(socketBoundTo(path), fd, "the listener is still open");
  });
});
