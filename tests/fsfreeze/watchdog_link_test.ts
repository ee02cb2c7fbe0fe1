/**
 * Tests for src/fsfreeze/watchdog_link.ts over real unix sockets, with a scripted server in place
 * of the watchdog: an arming is sent, not waited for; a gone watchdog is replaced before the arm
 * returns; answers are checked in the background.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Clock } from "../../src/fsfreeze/engine.ts";
import { systemClock } from "../../src/fsfreeze/mechanism.ts";
import type { FrozenState } from "../../src/fsfreeze/state.ts";
import { WatchdogLink } from "../../src/fsfreeze/watchdog_link.ts";
import { FakeLog } from "../_util/fake_engine.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function cycle(id: string): FrozenState {
  return {
    version: 1,
    cycle: id,
    agentPid: Deno.pid,
    startedAt: 0,
    deadline: 1,
    hook: null,
    mounts: [],
  };
}

/** A scripted watchdog: collects the lines of each connection, answers with `answer`. */
class FakeWatchdog implements AsyncDisposable {
  readonly lines: string[] = [];
  readonly #listener: Deno.UnixListener;
  readonly #conns: Deno.UnixConn[] = [];
  readonly #serving: Promise<void>;

  constructor(path: string, answer: (line: string) => string | undefined) {
    this.#listener = Deno.listen({ transport: "unix", path });
    this.#serving = this.#serve(answer);
  }

  async #serve(answer: (line: string) => string | undefined): Promise<void> {
    const connections: Promise<void>[] = [];
    try {
      for await (const conn of this.#listener) {
        this.#conns.push(conn);
        connections.push(this.#connection(conn, answer).catch(() => {}));
      }
    } catch {
      // closed
    }
    await Promise.all(connections);
  }

  async #connection(conn: Deno.UnixConn, answer: (line: string) => string | undefined) {
    let pending = "";
    const chunk = new Uint8Array(1024);
    for (let n = await conn.read(chunk); n !== null; n = await conn.read(chunk)) {
      pending += decoder.decode(chunk.subarray(0, n), { stream: true });
      for (let i = pending.indexOf("\n"); i !== -1; i = pending.indexOf("\n")) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        this.lines.push(line);
        const reply = answer(line);
        if (reply !== undefined) await conn.write(encoder.encode(reply + "\n"));
      }
    }
  }

  /** Waits until `count` lines arrived. */
  async received(count: number): Promise<string[]> {
    for (let i = 0; i < 500 && this.lines.length < count; i++) await delay(10);
    return this.lines;
  }

  /** Ends every connection and stops listening. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // closed
    }
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // closed
      }
    }
    await this.#serving;
  }
}

/** A watchdog that accepts connections and never reads them (stopped, or its cgroup frozen). */
class DeafWatchdog implements Disposable {
  readonly #listener: Deno.UnixListener;
  readonly #conns: Deno.UnixConn[] = [];

  constructor(path: string) {
    this.#listener = Deno.listen({ transport: "unix", path });
    this.#accept().catch(() => {});
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) this.#conns.push(conn);
  }

  [Symbol.dispose](): void {
    this.#listener.close();
    for (const conn of this.#conns) conn.close();
  }
}

/** A clock whose time moves only when the test says so. */
function manualClock(): Clock & { advance(ms: number): void } {
  let now = 1_000_000;
  return { now: () => now, sleep: systemClock.sleep, advance: (ms) => now += ms };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "agent_test_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** For links that must find a watchdog listening: starting one fails the test. */
function noStart(): Promise<{ exited: Promise<unknown> }> {
  return Promise.reject(new Error("no watchdog should be started here"));
}

function armed(line: string): string {
  const { arm } = JSON.parse(line) as { arm: string };
  return JSON.stringify({ armed: arm, deadline: 1 });
}

Deno.test("WatchdogLink.arm() returns once the line is sent, before any answer", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  await using silent = new FakeWatchdog(path, () => undefined);
  const log = new FakeLog();
  const link = new WatchdogLink({ socketPath: path, start: noStart, clock: systemClock, log });
  try {
    await link.arm(cycle("c1"));
    await link.arm(cycle("c2"));
    assert.deepEqual(await silent.received(2), ['{"arm":"c1"}', '{"arm":"c2"}']);
    assert.deepEqual(log.lines, []);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink logs a watchdog that refused to arm, and not one that armed", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  await using watchdog = new FakeWatchdog(
    path,
    (line) => line.includes("bad") ? JSON.stringify({ error: "not recorded" }) : armed(line),
  );
  const log = new FakeLog();
  const link = new WatchdogLink({ socketPath: path, start: noStart, clock: systemClock, log });
  try {
    await link.arm(cycle("good"));
    await link.arm(cycle("good-again"));
    await link.arm(cycle("bad")); // the newest: a refusal of an earlier one is of an ended cycle
    await watchdog.received(3);
    for (let i = 0; i < 200 && log.lines.length === 0; i++) await delay(10);
    await delay(50);
    assert.deepEqual(log.lines, ["error the thaw watchdog did not arm the cycle"]);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink notes, without an error, a refusal of a cycle that has ended since", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  await using watchdog = new FakeWatchdog(path, () => JSON.stringify({ error: "not recorded" }));
  const log = new FakeLog();
  const link = new WatchdogLink({
    socketPath: path,
    start: noStart,
    clock: systemClock,
    log,
    inForce: (id) => id === "current",
  });
  try {
    await link.arm(cycle("ended"));
    await link.arm(cycle("current"));
    await watchdog.received(2);
    for (let i = 0; i < 200 && log.lines.length < 2; i++) await delay(10);
    await delay(50);
    assert.deepEqual(log.lines, [
      "debug the thaw watchdog read an arming after its cycle ended",
      "error the thaw watchdog did not arm the cycle",
    ]);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink takes a refusal of a cycle armed before the newest as one of an ended cycle, without looking", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  // Answers both once the newer arming came, as a watchdog reading at its next look does.
  await using watchdog = new FakeWatchdog(
    path,
    (line) =>
      line.includes("older")
        ? undefined
        : `${JSON.stringify({ error: "not recorded" })}\n${armed(line)}`,
  );
  const log = new FakeLog();
  let looks = 0;
  const link = new WatchdogLink({
    socketPath: path,
    start: noStart,
    clock: systemClock,
    log,
    inForce: () => {
      looks++;
      return true;
    },
  });
  try {
    await link.arm(cycle("older"));
    await link.arm(cycle("newer"));
    await watchdog.received(2);
    for (let i = 0; i < 200 && log.lines.length === 0; i++) await delay(10);
    await delay(50);
    assert.deepEqual(log.lines, ["debug the thaw watchdog read an arming after its cycle ended"]);
    assert.equal(looks, 0);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink arms a new watchdog when the one it was connected to has gone", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  const log = new FakeLog();
  const link = new WatchdogLink({ socketPath: path, start: noStart, clock: systemClock, log });
  try {
    const first = new FakeWatchdog(path, armed);
    await link.arm(cycle("c1"));
    assert.deepEqual(await first.received(1), ['{"arm":"c1"}']);
    await first[Symbol.asyncDispose]();
    await Deno.remove(path).catch(() => {}); // Deno removes it on close
    await using second = new FakeWatchdog(path, armed);
    await link.arm(cycle("c2"));
    assert.deepEqual(await second.received(1), ['{"arm":"c2"}']);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink starts a watchdog when none listens: armed at once, confirmed once it listens", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  const log = new FakeLog();
  let started = 0;
  let watchdog: FakeWatchdog | undefined;
  const start = (): Promise<{ exited: Promise<unknown> }> => {
    started++;
    setTimeout(() => watchdog = new FakeWatchdog(path, armed), 100);
    return Promise.resolve({ exited: new Promise(() => {}) });
  };
  const link = new WatchdogLink({ socketPath: path, start, clock: systemClock, log });
  try {
    const { confirmed } = await link.arm(cycle("c1"));
    assert.equal(started, 1);
    assert.equal(watchdog, undefined, "armed before the watchdog listens");
    const second = await link.arm(cycle("c2")); // still starting: the same watchdog
    assert.equal(started, 1);
    await confirmed;
    await second.confirmed;
    assert.deepEqual([...await watchdog!.received(2)].sort(), ['{"arm":"c1"}', '{"arm":"c2"}']);
  } finally {
    link.close();
    await watchdog?.[Symbol.asyncDispose]();
  }
});

Deno.test("WatchdogLink: a watchdog it started that exits before it listens fails the confirmation", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  const start = (): Promise<{ exited: Promise<unknown> }> =>
    Promise.resolve({ exited: new Promise((resolve) => setTimeout(resolve, 50)) });
  const link = new WatchdogLink({
    socketPath: path,
    start,
    clock: systemClock,
    log: new FakeLog(),
  });
  try {
    const { confirmed } = await link.arm(cycle("c1"));
    await assert.rejects(confirmed, /the watchdog it started exited before it listened/);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink.arm() fails when no watchdog can be started", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  const link = new WatchdogLink({
    socketPath: path,
    start: () => Promise.reject(new Error("spawn failed")),
    clock: systemClock,
    log: new FakeLog(),
  });
  await assert.rejects(link.arm(cycle("c1")), /spawn failed/);
});

Deno.test("WatchdogLink: a watchdog that stops reading fails an arming instead of hanging it", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  using _deaf = new DeafWatchdog(path);
  const clock = manualClock(); // still: no answer is ever overdue, only the writes can stall
  const link = new WatchdogLink({
    socketPath: path,
    start: noStart,
    clock,
    log: new FakeLog(),
    answerWaitMs: 200,
  });
  try {
    let failure: unknown;
    for (let i = 0; i < 100_000 && failure === undefined; i++) {
      await link.arm(cycle(`c${i}`)).catch((err) => failure = err);
    }
    assert.match(String(failure), /has not read its socket for 0.2 s/, "its socket filled up");
    // The next arming reaches it again, and now waits for the answer that does not come.
    await assert.rejects(link.arm(cycle("next")), /has not answered an arming for 0.2 s/);
  } finally {
    link.close();
  }
});

Deno.test("WatchdogLink: an overdue answer makes armings wait for theirs, until one comes", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/watchdog.sock`;
  let answering = false;
  await using watchdog = new FakeWatchdog(path, (line) => answering ? armed(line) : undefined);
  const clock = manualClock();
  const log = new FakeLog();
  const link = new WatchdogLink({
    socketPath: path,
    start: noStart,
    clock,
    log,
    answerWaitMs: 200,
  });
  try {
    await link.arm(cycle("c1")); // sent; its answer does not come
    await watchdog.received(1);
    clock.advance(201);
    await assert.rejects(link.arm(cycle("c2")), /has not answered an arming for 0.2 s/);
    answering = true;
    await link.arm(cycle("c3")); // waits for its answer, which comes
    answering = false;
    await link.arm(cycle("c4")); // trusted again: sent, not waited for (it would fail)
    assert.deepEqual(await watchdog.received(4), [
      '{"arm":"c1"}',
      '{"arm":"c2"}',
      '{"arm":"c3"}',
      '{"arm":"c4"}',
    ]);
    assert.deepEqual(log.lines, []);
  } finally {
    link.close();
  }
});
