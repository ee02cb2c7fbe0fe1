/**
 * Tests of src/transport/_fd_loop.ts, the descriptor loops, run on this thread: the event
 * callback plays the main thread and sets the STOP word where the agent would, so each loop ends.
 * The Worker around them (_fd_io.ts) is tested through the transports that use it (device_test.ts,
 * activated_test.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { errnoNumber } from "../../src/linux/errno.ts";
import { close, EFD_NONBLOCK, eventfd, O_NONBLOCK, O_RDONLY, open } from "../../src/linux/fd.ts";
import {
  Control,
  CONTROL_WORDS,
  type LoopEvent,
  type LoopRequest,
  Owner,
  runLoop,
} from "../../src/transport/_fd_loop.ts";
import { isSyscallError, socketBoundTo, withTempDir } from "../_util/linux.ts";

/** Runs a loop to its end; `onEvent` may stop it (return true) as the main thread would. */
function runToEnd(
  request: LoopRequest,
  onEvent: (event: LoopEvent) => boolean,
  setUp: (control: Int32Array) => void = () => {},
): LoopEvent[] {
  const shared = new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT);
  const control = new Int32Array(shared);
  setUp(control);
  const wakeFd = eventfd(EFD_NONBLOCK);
  const events: LoopEvent[] = [];
  try {
    runLoop({ ...request, wakeFd, control: shared }, (event) => {
      events.push(event);
      if (onEvent(event)) Atomics.store(control, Control.STOP, 1);
    });
  } finally {
    close(wakeFd);
  }
  return events;
}

Deno.test("the read loop posts data, then closed at a socket's end of file, and closes its descriptor", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/input`, "hello");
    const fd = open(`${dir}/input`, O_RDONLY | O_NONBLOCK);
    const request = { loop: "read", fd, endOfFile: "closed", path: `${dir}/input` } as const;
    const events = runToEnd(request, (event) => event.type === "closed");
    assert.deepEqual(events.map((event) => event.type), ["data", "closed", "stopped"]);
    const data = events[0] as { bytes: Uint8Array };
    assert.equal(new TextDecoder().decode(data.bytes), "hello");
    assert.throws(() => close(fd), isSyscallError("close", "EBADF"), "the loop closed it");
  });
});

Deno.test("the read loop reports a device's end of file as a hangup and pauses", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/input`, "");
    const fd = open(`${dir}/input`, O_RDONLY | O_NONBLOCK);
    const request = { loop: "read", fd, endOfFile: "hangup", path: `${dir}/input` } as const;
    // The main thread stops it during its pause (a device's loop would otherwise go on polling).
    const events = runToEnd(request, (event) => event.type === "hangup");
    assert.deepEqual(events.map((event) => event.type), ["hangup", "stopped"]);
  });
});

Deno.test("the read loop leaves a descriptor the main thread closed before it started", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/input`, "x");
    const fd = open(`${dir}/input`, O_RDONLY);
    try {
      const events = runToEnd(
        { loop: "read", fd, endOfFile: "closed", path: "x" },
        () => true,
        (control) => Atomics.store(control, Control.OWNER, Owner.CLOSED),
      );
      assert.deepEqual(events, [{ type: "stopped" }]);
    } finally {
      close(fd); // still open: the loop did not touch it
    }
  });
});

Deno.test("the read loop posts a failed read with its path and ends", () => {
  const fd = open("/proc/self", O_RDONLY); // a directory: poll says readable, read(2) says EISDIR
  const events = runToEnd(
    { loop: "read", fd, endOfFile: "closed", path: "/proc/self" },
    () => false,
  );
  assert.deepEqual(events, [
    { type: "error", syscall: "read", errno: errnoNumber("EISDIR"), path: "/proc/self" },
    { type: "stopped" },
  ]);
});

Deno.test("the accept loop accepts only when a client is wanted, and leaves the listener open", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.sock`;
    using _listener = Deno.listen({ transport: "unix", path });
    const fd = socketBoundTo(path);
    using _client = await Deno.connect({ transport: "unix", path });
    const events = runToEnd(
      { loop: "accept", fd },
      (event) => event.type === "accepted",
      (control) => Atomics.store(control, Control.WANTED, 1),
    );
    assert.deepEqual(events.map((event) => event.type), ["accepted", "stopped"]);
    const accepted = events[0] as { fd: number; peer: unknown };
    assert.deepEqual(accepted.peer, { transport: "unix", path: "" });
    close(accepted.fd);
    assert.equal(socketBoundTo(path), fd, "the listener is still open");
  });
});
