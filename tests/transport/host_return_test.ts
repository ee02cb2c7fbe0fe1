/**
 * Tests of src/transport/_host_return.ts, a hung-up device's wait for its host: on a real FIFO
 * (a device that hangs up when its writer leaves and sends SIGIO when a writer writes again), read
 * by the real read loop with the process's real SIGIO; and the wait's choices on a fake signal.
 *
 * @module
 */

import assert from "node:assert/strict";
import { close, O_NONBLOCK, O_RDONLY, open } from "../../src/linux/fd.ts";
import { ReadLoop } from "../../src/transport/_fd_loop.ts";
import {
  HostReturn,
  type ReadySignal,
  signalsWhenReady,
} from "../../src/transport/_host_return.ts";
import { delay, withTimeout } from "../_util/agent.ts";
import { run, withTempDir } from "../_util/linux.ts";
import { waitFor } from "../_util/pty.ts";

/** Long enough that only the signal can end a wait within a test. */
const NEVER_MS = 600_000;

/** Opens the FIFO for writing (a reader is there), writes `text` and closes: a host's visit. */
async function visit(path: string, text: string): Promise<void> {
  using writer = await Deno.open(path, { write: true });
  await writer.write(new TextEncoder().encode(text));
}

/** A signal that records what was asked of it; `failing` makes listening or asking throw. */
function fakeSignal(
  failing?: "listen" | "request",
): ReadySignal & { log: string[]; listeners: Set<() => void> } {
  const log: string[] = [];
  const listeners = new Set<() => void>();
  return {
    log,
    listeners,
    listen: (listener) => {
      if (failing === "listen") throw new Error("signal not supported");
      listeners.add(listener);
    },
    unlisten: (listener) => listeners.delete(listener),
    request: (_fd, on) => {
      log.push(on ? "on" : "off");
      if (failing === "request") throw new Error("EINVAL");
    },
  };
}

Deno.test("a hung-up FIFO waits for SIGIO without waking, and reads at once what a returning writer sends", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/port`;
    await run("mkfifo", [path]);
    const fd = open(path, O_RDONLY | O_NONBLOCK);
    const delivered: string[] = [];
    let loop: ReadLoop | undefined = undefined;
    loop = new ReadLoop(fd, "hangup", path, {
      data: (bytes) => {
        delivered.push(new TextDecoder().decode(bytes));
        loop!.taken();
      },
      hangup: () => delivered.push("(hangup)"),
      closed: () => delivered.push("(closed)"),
      failed: (err) => delivered.push(`(failed: ${err.message})`),
    }, { lookMs: NEVER_MS });
    try {
      await visit(path, "a");
      await waitFor(() => delivered.length >= 2, "the first visit and its hangup", 30_000);
      assert.deepEqual(delivered, ["a", "(hangup)"]);
      await waitFor(() => loop.waitingForSignal, "the wait for SIGIO", 30_000);
      const before = loop.wakeups;
      await delay(1000);
      // A 100 ms retry would have woken about 10 times by now.
      assert.ok(loop.wakeups - before <= 1, `poll(2) returned ${loop.wakeups - before} times`);
      await visit(path, "b");
      // Only the signal can end the wait: its timer is 10 minutes.
      await waitFor(() => delivered.length >= 4, "the second visit and its hangup", 30_000);
      assert.deepEqual(delivered, ["a", "(hangup)", "b", "(hangup)"]);
    } finally {
      loop.stop();
      await withTimeout(loop.finished, 30_000, "read loop end");
    }
    assert.equal(loop.waitingForSignal, false);
  });
});

Deno.test("only character devices and FIFOs are asked for SIGIO", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    await run("mkfifo", [`${dir}/fifo`]);
    const file = open(`${dir}/file`, O_RDONLY);
    const fifo = open(`${dir}/fifo`, O_RDONLY | O_NONBLOCK);
    const tty = open("/dev/null", O_RDONLY); // a character device
    try {
      assert.deepEqual([file, fifo, tty].map(signalsWhenReady), [false, true, true]);
    } finally {
      for (const fd of [file, fifo, tty]) close(fd);
    }
  });
});

Deno.test("a wait whose device no longer reports a hangup returns at once, still asking for the signal", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/port`;
    await run("mkfifo", [path]);
    const fd = open(path, O_RDONLY | O_NONBLOCK);
    using _writer = await Deno.open(path, { write: true }); // a host is connected, quiet
    const signal = fakeSignal();
    const wait = new HostReturn(fd, signal, NEVER_MS);
    try {
      await withTimeout(wait.wait(NEVER_MS, new AbortController().signal), 30_000, "the wait");
      assert.equal(wait.armed, true);
      assert.deepEqual(signal.log, ["on"]);
      wait.disarm();
      assert.deepEqual(signal.log, ["on", "off"]);
      assert.equal(signal.listeners.size, 0);
    } finally {
      close(fd);
    }
  });
});

Deno.test("a device (or a process) that refuses the signal gets the caller's pause, and is not asked again", async () => {
  for (const failing of ["listen", "request"] as const) {
    const signal = fakeSignal(failing);
    const wait = new HostReturn(-1, signal, NEVER_MS);
    for (let i = 0; i < 2; i++) {
      await withTimeout(wait.wait(10, new AbortController().signal), 30_000, "the fallback pause");
    }
    assert.equal(wait.armed, false);
    assert.deepEqual(signal.log, failing === "listen" ? [] : ["on"]);
    assert.equal(signal.listeners.size, 0);
  }
});

Deno.test("a stop ends the wait for the signal", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/port`;
    await run("mkfifo", [path]);
    const fd = open(path, O_RDONLY | O_NONBLOCK);
    await visit(path, ""); // a writer came and went: the FIFO reports a hangup
    const signal = fakeSignal();
    const wait = new HostReturn(fd, signal, NEVER_MS);
    try {
      const stopping = new AbortController();
      const waiting = wait.wait(NEVER_MS, stopping.signal);
      await delay(50);
      assert.deepEqual(signal.log, ["on"]);
      stopping.abort();
      await withTimeout(waiting, 30_000, "the wait after the stop");
      wait.disarm();
      assert.equal(signal.listeners.size, 0);
    } finally {
      close(fd);
    }
  });
});
