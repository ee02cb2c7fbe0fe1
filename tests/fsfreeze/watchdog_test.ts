/**
 * The watchdog's lifetime policy with a fake engine and a fake channel (the e2e tests cover the
 * real process): a watchdog the agent started, and that the agent never reached, does not stay.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { FrozenState } from "../../src/fsfreeze/state.ts";
import { runWatchdog } from "../../src/fsfreeze/watchdog.ts";
import type { Connection, Transport } from "../../src/transport/mod.ts";
import { fakeEngine, type FakeGuest, fakeGuest } from "../_util/fake_engine.ts";

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
