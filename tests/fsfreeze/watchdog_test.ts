/**
 * The watchdog's policy with a fake engine and a fake channel (the e2e tests cover the real
 * process): a watchdog the agent started, and that the agent never reached, does not stay; while
 * armed it reads its socket at its looks, and holds whatever cycle the state file records.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { FrozenState } from "../../src/fsfreeze/state.ts";
import { runWatchdog, type WatchdogReply } from "../../src/fsfreeze/watchdog.ts";
import type { Connection, ReadResult, Transport } from "../../src/transport/mod.ts";
import { fakeEngine, type FakeGuest, fakeGuest } from "../_util/fake_engine.ts";
import { waitFor } from "../_util/pty.ts";

/** A channel no client ever connects to; closing it ends `accept()`. */
class SilentTransport implements Transport {
  readonly description = "fake watchdog socket";
  closed = false;
  readonly #closed = Promise.withResolvers<null>();

  accept(): Promise<Connection | null> {
    return this.#closed.promise;
  }

  close(): void {
    this.closed = true;
    this.#closed.resolve(null);
  }
}

/** One client that the test writes lines to; it counts the watchdog's reads and keeps answers. */
class ScriptedClient implements Connection {
  readonly peer = "fake agent";
  reads = 0;
  readonly answers: WatchdogReply[] = [];
  #pending: Uint8Array[] = [];
  #waiting: ((result: ReadResult) => void) | undefined;
  #closed = false;

  send(request: object): void {
    const bytes = new TextEncoder().encode(JSON.stringify(request) + "\n");
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting !== undefined) waiting({ type: "data", bytes });
    else this.#pending.push(bytes);
  }

  read(): Promise<ReadResult> {
    this.reads++;
    const bytes = this.#pending.shift();
    if (bytes !== undefined) return Promise.resolve({ type: "data", bytes });
    if (this.#closed) return Promise.resolve({ type: "closed" });
    return new Promise((resolve) => this.#waiting = resolve);
  }

  write(bytes: Uint8Array): Promise<void> {
    for (const line of new TextDecoder().decode(bytes).split("\n").filter(Boolean)) {
      this.answers.push(JSON.parse(line));
    }
    return Promise.resolve();
  }

  /** Waits until `count` answers came (at most 10 s: a generous bound on a busy machine). */
  answersReach(count: number): Promise<void> {
    return waitFor(() => this.answers.length >= count, `${count} answers`, 10_000);
  }

  close(): void {
    this.#closed = true;
    this.#waiting?.({ type: "closed" });
    this.#waiting = undefined;
  }
}

/** A channel with one scripted client, then nothing until closed. */
class OneClientTransport implements Transport {
  readonly description = "fake watchdog socket";
  readonly client = new ScriptedClient();
  #handedOut = false;
  readonly #closed = Promise.withResolvers<null>();

  accept(): Promise<Connection | null> {
    if (this.#handedOut) return this.#closed.promise;
    this.#handedOut = true;
    return Promise.resolve(this.client);
  }

  close(): void {
    this.client.close();
    this.#closed.resolve(null);
  }
}

/** A recorded cycle of `/srv` whose deadline is `inMs` after the fake clock's now. */
function recordCycle(guest: FakeGuest, cycle: string, inMs: number): FrozenState {
  const now = guest.clock.now();
  const state: FrozenState = {
    version: 1,
    cycle,
    agentPid: 1,
    startedAt: now,
    deadline: now + inMs,
    hook: null,
    mounts: ["/srv"],
  };
  guest.store.state = state;
  return state;
}

/**
 * A persistent watchdog serving one scripted client; armed, it rests its socket `restMs` and
 * looks at the state file every `checkMs`.
 */
function scriptedWatchdog(guest: FakeGuest, restMs: number, checkMs = 600_000) {
  const transport = new OneClientTransport();
  const stop = new AbortController();
  const running = runWatchdog(fakeEngine(guest), transport, {
    persistent: true,
    readRestMs: restMs,
    checkIntervalMs: checkMs,
    signal: stop.signal,
  });
  return { client: transport.client, stop, running };
}

/** A scripted watchdog armed for a cycle "first" through its socket, answered. */
async function armedWatchdog(
  guest: FakeGuest,
  firstInMs: number,
  restMs: number,
  checkMs?: number,
) {
  const watchdog = scriptedWatchdog(guest, restMs, checkMs);
  const first = recordCycle(guest, "first", firstInMs);
  watchdog.client.send({ arm: first.cycle });
  await watchdog.client.answersReach(1);
  return { ...watchdog, first };
}

/** Whether `promise` settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A watchdog on a channel no client connects to, waiting 50 ms for its first client. */
function silentWatchdog(guest: FakeGuest, persistent: boolean) {
  const transport = new SilentTransport();
  const stop = new AbortController();
  const running = runWatchdog(fakeEngine(guest), transport, {
    persistent,
    firstClientWaitMs: 50,
    signal: stop.signal,
  });
  return { transport, stop, running };
}

Deno.test("a watchdog the agent started leaves when the agent never connects", async () => {
  const { transport, running } = silentWatchdog(fakeGuest([]), false);
  assert.equal(await settlesWithin(running, 10_000), true);
  assert.equal(transport.closed, true);
});

Deno.test("systemd's watchdog stays without a client", async () => {
  const { stop, running } = silentWatchdog(fakeGuest([]), true);
  assert.equal(await settlesWithin(running, 500), false);
  stop.abort();
  await running;
});

Deno.test("a watchdog holding a recorded cycle's deadline stays without a client", async () => {
  const guest = fakeGuest(["/srv"]);
  const now = guest.clock.now();
  const state: FrozenState = {
    version: 1,
    cycle: "recorded",
    agentPid: 1,
    startedAt: now,
    deadline: now + 600_000,
    hook: null,
    mounts: ["/srv"],
  };
  guest.store.state = state;
  const { stop, running } = silentWatchdog(guest, false);
  assert.equal(await settlesWithin(running, 500), false);
  stop.abort();
  await running;
});

Deno.test("an armed watchdog leaves later armings in its socket while it rests", async () => {
  const guest = fakeGuest(["/srv"]);
  const { client, stop, running, first } = await armedWatchdog(guest, 600_000, 600_000);
  assert.deepEqual(client.answers, [{ armed: "first", deadline: first.deadline }]);
  const readsWhenArmed = client.reads;

  recordCycle(guest, "second", 600_000);
  client.send({ arm: "second" });
  assert.equal(await settlesWithin(client.answersReach(2), 300), false);
  assert.equal(client.reads, readsWhenArmed, "no read while armed and resting");
  stop.abort();
  await running;
});

Deno.test("after its rest an armed watchdog answers the armings that came since and holds the recorded cycle", async () => {
  const guest = fakeGuest(["/srv"]);
  const { client, stop, running } = await armedWatchdog(guest, 600_000, 50);

  recordCycle(guest, "second", 600_000);
  client.send({ arm: "second" });
  guest.store.state = undefined; // the second cycle ended before the watchdog read
  const third = recordCycle(guest, "third", 700_000);
  client.send({ arm: "third" });
  await client.answersReach(3);
  assert.match(JSON.stringify(client.answers[1]), /not recorded/);
  assert.deepEqual(client.answers[2], { armed: "third", deadline: third.deadline });
  stop.abort();
  await running;
});

Deno.test("a watchdog whose armed deadline passes holds a later recorded cycle whose arming it has not read, and thaws it at its deadline", async () => {
  const guest = fakeGuest(["/srv"]);
  await guest.freezer.freeze([["/srv"]]);
  const { stop, running } = await armedWatchdog(guest, 100, 600_000);

  // The first cycle ended and a second began; its arming line never came (or waits unread).
  recordCycle(guest, "second", 400);
  await waitFor(() => guest.store.state === undefined, "the second cycle's end", 10_000);
  assert.equal(guest.freezer.frozen.size, 0, "and /srv thawed");
  stop.abort();
  await running;
});

Deno.test("at its look an armed watchdog holds a later recorded cycle whose arming it has not read", async () => {
  const guest = fakeGuest(["/srv"]);
  await guest.freezer.freeze([["/srv"]]);
  const { stop, running } = await armedWatchdog(guest, 600_000, 600_000, 50);

  recordCycle(guest, "second", 300); // only a look can find it: the first deadline is far
  await waitFor(() => guest.store.state === undefined, "the second cycle's end", 10_000);
  assert.equal(guest.freezer.frozen.size, 0, "and /srv thawed");
  stop.abort();
  await running;
});
