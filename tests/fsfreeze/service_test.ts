/**
 * The freeze policy with fakes (tests/_util/fake_engine.ts): the order of a cycle, rollback,
 * exactly one thaw hook per freeze hook whoever ends the cycle, recovery, a thaw done outside the
 * agent, and the races between the agent, its watchdog and the local `thaw`. No root, no files:
 * the loop-device tests (tests/e2e) cover the mechanism.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AgentError } from "../../src/errors.ts";
import { endCycle } from "../../src/fsfreeze/end_cycle.ts";
import type { Armed, Arming } from "../../src/fsfreeze/freeze_cycle.ts";
import { FreezeEngineService } from "../../src/fsfreeze/service.ts";
import type { FrozenState } from "../../src/fsfreeze/state.ts";
import { fakeEngine, type FakeGuest, fakeGuest, FakeLog } from "../_util/fake_engine.ts";

/** A watchdog that records what it was armed for. */
class FakeWatchdog implements Arming {
  readonly armed: string[] = [];
  refuse: string | undefined;
  /** The arming of a watchdog still starting: settles when the test says so. */
  starting: Promise<void> | undefined;
  arm(state: FrozenState): Promise<Armed> {
    if (this.refuse) return Promise.reject(new Error(this.refuse));
    this.armed.push(state.cycle);
    return Promise.resolve({ confirmed: this.starting ?? Promise.resolve() });
  }
}

function agent(
  guest: FakeGuest,
  options: { watchdog?: FakeWatchdog; timeout?: number; log?: FakeLog } = {},
): FreezeEngineService {
  const log = options.log ?? new FakeLog();
  const engine = fakeEngine(guest, { fsfreezeTimeout: options.timeout ?? 600 }, log);
  return new FreezeEngineService(engine, { log, watchdog: options.watchdog });
}

async function rejectsWith(promise: Promise<unknown>, desc: RegExp): Promise<void> {
  await assert.rejects(promise, (err) => err instanceof AgentError && desc.test(err.message));
}

Deno.test("a cycle: state recorded and watchdog armed before FIFREEZE, hooks around it, thaw ends it", async () => {
  const guest = fakeGuest(["/a", "/b"]);
  const watchdog = new FakeWatchdog();
  let armedBeforeFreeze = false;
  guest.freezer.duringFreeze = () => armedBeforeFreeze = watchdog.armed.length === 1;
  const service = agent(guest, { watchdog });
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 2);
  assert.equal(armedBeforeFreeze, true);
  assert.equal(service.status(), "frozen");
  assert.deepEqual(guest.store.state?.mounts, ["/a", "/b"]);
  assert.equal(guest.store.writes, 1, "one state write per freeze");
  assert.deepEqual(guest.hooks.calls, ["freeze"]);
  assert.equal(guest.store.holder, undefined, "the lock is free while frozen");
  assert.equal(await service.thaw("host"), 2);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.equal(guest.store.state, undefined);
  assert.equal(service.status(), "thawed");
  assert.equal(service.report?.thaw?.by, "host");
  await service.settled(); // the report is saved after the reply
  assert.equal(guest.store.savedReport?.thaw?.count, 2);
});

Deno.test("a failing freeze hook: nothing frozen, the error at once, its thaw hook right after", async () => {
  const guest = fakeGuest(["/a"]);
  guest.hooks.failFreeze = "child process has failed to execute fsfreeze hook: no";
  guest.hooks.holdThaw();
  const service = agent(guest);
  await rejectsWith(service.freeze("guest-fsfreeze-freeze"), /^child process has failed/);
  assert.equal(guest.freezer.freezes, 0);
  assert.equal(service.status(), "thawed");
  // The host has its answer while the thaw hook still runs; the cycle is still recorded.
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.ok(guest.store.state !== undefined);
  guest.hooks.releaseThaw();
  await service.settled();
  assert.equal(guest.store.state, undefined);
  assert.equal(guest.store.holder, undefined);
  assert.equal(service.report?.state, "failed");
  assert.equal(service.report?.thaw?.by, "rollback");
  assert.deepEqual(guest.freezer.thawOrders, [[]], "nothing to FITHAW");
});

Deno.test("a FIFREEZE failure rolls back: every mount thawed, qemu-ga's text, one thaw hook", async () => {
  const guest = fakeGuest(["/a", "/b", "/c"]);
  guest.freezer.outcomes.set("/b", "EPERM");
  const service = agent(guest);
  await rejectsWith(
    service.freeze("guest-fsfreeze-freeze"),
    /^failed to freeze \/b: Operation not permitted$/,
  );
  await service.settled();
  assert.equal(guest.freezer.frozen.size, 0, "the mount frozen before the failure is thawed");
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.equal(service.report?.thaw?.by, "rollback");
  assert.equal(service.status(), "thawed");
});

Deno.test("a freeze that froze nothing runs the thaw hook without FITHAW; the host's thaw counts", async () => {
  const guest = fakeGuest(["/a"]);
  guest.freezer.freezeByOther("/a");
  const service = agent(guest);
  assert.equal(await service.freeze("guest-fsfreeze-freeze-list", ["/a"]), 0);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.deepEqual(guest.freezer.thawOrders, [[]]);
  assert.equal(guest.freezer.frozen.has("/a"), true, "the other tool's freeze is left alone");
  assert.equal(service.report?.thaw?.by, "nothing-frozen");
  // qemu-ga's thaw FITHAWs every mount it selects: the other tool's freeze is counted.
  assert.equal(await service.thaw("host"), 1);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"], "no hook without a cycle");
});

Deno.test("no watchdog could be armed: the freeze fails before anything ran, nothing recorded", async () => {
  const guest = fakeGuest(["/a"]);
  const watchdog = new FakeWatchdog();
  watchdog.refuse = "no watchdog listens";
  await rejectsWith(
    agent(guest, { watchdog }).freeze("guest-fsfreeze-freeze"),
    /^cannot start the thaw watchdog: no watchdog listens$/,
  );
  assert.deepEqual(guest.hooks.calls, []);
  assert.equal(guest.freezer.freezes, 0);
  assert.equal(guest.store.state, undefined);
});

Deno.test("the deadline passing during FIFREEZE thaws at once and fails the freeze", async () => {
  const guest = fakeGuest(["/a"]);
  guest.freezer.duringFreeze = () => guest.clock.time += 700_000;
  const service = agent(guest, { timeout: 600 });
  await rejectsWith(
    service.freeze("guest-fsfreeze-freeze"),
    /fsfreeze-timeout expired while the filesystems were being frozen/,
  );
  await service.settled();
  assert.equal(guest.freezer.frozen.size, 0);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.equal(service.report?.thaw?.by, "timeout");
});

Deno.test("the host's thaw and the watchdog's deadline race: one of them ends the cycle, one hook", async () => {
  const guest = fakeGuest(["/a"]);
  const service = agent(guest);
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1);
  guest.hooks.holdThaw();
  const cycle = guest.store.state!.cycle;
  const watchdogEngine = fakeEngine(guest);
  const host = service.thaw("host");
  const watchdog = endCycle(watchdogEngine, "timeout", { cycle, waitMs: 60_000 });
  await new Promise((resolve) => setTimeout(resolve, 10));
  guest.hooks.releaseThaw();
  const [hostCount, watchdogEnd] = await Promise.all([host, watchdog]);
  // Whoever got the lock first thawed the mount; the other found nothing left to end.
  assert.equal(hostCount + (watchdogEnd?.count ?? 0), 1);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.equal(service.status(), "thawed");
  assert.equal(guest.store.state, undefined);
});

Deno.test("the watchdog ends the cycle while the agent lives: the agent notices and thaws nothing twice", async () => {
  const guest = fakeGuest(["/a"]);
  const log = new FakeLog();
  const service = agent(guest, { log });
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1);
  const ended = await endCycle(fakeEngine(guest), "timeout", { waitMs: 1000 });
  assert.equal(ended?.count, 1);
  assert.equal(service.frozen, false, "frozen mode ends when the state file is gone");
  assert.equal(service.report?.thaw?.by, "timeout");
  assert.ok(log.lines.includes("warn filesystems were thawed outside the agent"));
  assert.equal(await service.thaw("host"), 0);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
});

Deno.test("a local thaw during an agent restart races nothing: the new agent waits, then is thawed", async () => {
  const guest = fakeGuest(["/a"]);
  assert.equal(await agent(guest).freeze("guest-fsfreeze-freeze"), 1);
  // The agent dies; `fsfreeze-agent thaw` starts ending the cycle (its hook takes a while)...
  guest.hooks.holdThaw();
  const local = endCycle(fakeEngine(guest), "local", { waitMs: 1000 });
  await new Promise((resolve) => setTimeout(resolve, 0));
  // ...while the restarted agent recovers: the cycle is still recorded, so it comes up frozen.
  const restarted = agent(guest);
  await restarted.recover();
  assert.equal(restarted.status(), "frozen");
  const hostThaw = restarted.thaw("host");
  guest.hooks.releaseThaw();
  assert.equal((await local)?.report.thaw?.by, "local");
  assert.equal(await hostThaw, 0, "thawed already: FITHAW counts nothing, no hook");
  assert.equal(restarted.status(), "thawed");
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
});

Deno.test("recovery: a deadline that passed while the agent was down thaws at start-up", async () => {
  const guest = fakeGuest(["/a"]);
  const first = agent(guest);
  assert.equal(await first.freeze("guest-fsfreeze-freeze"), 1);
  guest.clock.time += 601_000;
  const restarted = agent(guest);
  await restarted.recover();
  assert.equal(restarted.status(), "thawed");
  assert.equal(guest.freezer.frozen.size, 0);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.equal(restarted.report?.thaw?.by, "recovery");
});

Deno.test("recovery before the deadline: frozen, the watchdog armed for the same cycle, nothing written", async () => {
  const guest = fakeGuest(["/a"]);
  assert.equal(await agent(guest).freeze("guest-fsfreeze-freeze"), 1);
  const cycle = guest.store.state!.cycle;
  const writes = guest.store.writes;
  const watchdog = new FakeWatchdog();
  const restarted = agent(guest, { watchdog });
  await restarted.recover();
  assert.equal(restarted.status(), "frozen");
  assert.deepEqual(watchdog.armed, [cycle]);
  assert.equal(guest.store.writes, writes);
  assert.equal(await restarted.thaw("host"), 1);
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
});

Deno.test("an ender that died while its thaw hook ran: the next one thaws but does not run it again", async () => {
  const guest = fakeGuest(["/a"]);
  assert.equal(await agent(guest).freeze("guest-fsfreeze-freeze"), 1);
  guest.store.state = { ...guest.store.state!, thawHookStarted: true };
  const ended = await endCycle(fakeEngine(guest), "recovery", { waitMs: 1000 });
  assert.equal(ended?.count, 1);
  assert.deepEqual(guest.hooks.calls, ["freeze"]);
  assert.equal(guest.store.state, undefined);
});

Deno.test("a watchdog never ends a newer cycle than the one it was armed for", async () => {
  const guest = fakeGuest(["/a"]);
  assert.equal(await agent(guest).freeze("guest-fsfreeze-freeze"), 1);
  assert.equal(
    await endCycle(fakeEngine(guest), "timeout", { cycle: "an-older-cycle", waitMs: 1000 }),
    undefined,
  );
  assert.ok(guest.store.state !== undefined);
  assert.equal(guest.freezer.frozen.size, 1);
});

Deno.test("SIGTERM while frozen thaws first; a thaw that cannot get the lock says so", async () => {
  const guest = fakeGuest(["/a"]);
  const service = agent(guest);
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1);
  const lock = guest.store.tryLock("a stuck thawer")!;
  // Waits for the lock (hook deadline + 30 s of fake time), then gives up with a clear error.
  await rejectsWith(service.thaw("host"), /being ended by another process/);
  lock.release();
  await service.shutdown();
  assert.equal(service.status(), "thawed");
  assert.equal(service.report?.thaw?.by, "signal");
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
});

Deno.test("every way out of a cycle thaws in one order: the ordering's, holders first", async () => {
  const orders: string[][] = [];
  // /img is stored on /data: frozen first, thawed last.
  for (const end of ["host", "timeout", "local"] as const) {
    const guest = fakeGuest(["/data", "/img", "/other"]);
    guest.waves = [["/other", "/img"], ["/data"]];
    const service = agent(guest);
    assert.equal(await service.freeze("guest-fsfreeze-freeze"), 3);
    if (end === "host") await service.thaw("host");
    else await endCycle(fakeEngine(guest), end, { waitMs: 1000 });
    orders.push(guest.freezer.thawOrders.at(-1)!);
  }
  // The waves reversed: the holder's wave first, then the wave of what is stored on it.
  assert.deepEqual(orders, [
    ["/data", "/other", "/img"],
    ["/data", "/other", "/img"],
    ["/data", "/other", "/img"],
  ]);
});

Deno.test("readMountTable() works out the selection ahead of a freeze, and a failure is the freeze's", async () => {
  const guest = fakeGuest(["/a"]);
  const log = new FakeLog();
  const engine = fakeEngine(guest, {}, log);
  const selections: (readonly string[] | undefined)[] = [];
  let failing = true;
  const select = engine.mounts.select;
  engine.mounts = {
    select: (requested) => {
      selections.push(requested);
      if (failing) throw new Error("mountinfo: unreadable");
      return select(requested);
    },
  };
  const service = new FreezeEngineService(engine, { log });
  service.readMountTable();
  assert.deepEqual(selections, [undefined], "the whole table, once");
  await rejectsWith(service.freeze("guest-fsfreeze-freeze"), /^failed to list mounts: mountinfo/);
  failing = false;
  service.readMountTable();
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1);
  assert.equal(await service.thaw("host"), 1);
});

Deno.test("a watchdog still starting: the freeze goes on, the reply waits until it holds the cycle", async () => {
  const guest = fakeGuest(["/a"]);
  const watchdog = new FakeWatchdog();
  let listen = (): void => {};
  watchdog.starting = new Promise((resolve) => listen = resolve);
  let frozeWhileStarting = false;
  let replied = false;
  guest.freezer.duringFreeze = () => frozeWhileStarting = !replied;
  const service = agent(guest, { watchdog });
  const freezing = service.freeze("guest-fsfreeze-freeze").then((count) => {
    replied = true;
    return count;
  });
  for (let i = 0; i < 10 && !frozeWhileStarting; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(frozeWhileStarting, true, "FIFREEZE did not wait for the watchdog to listen");
  assert.equal(replied, false, "the reply waits for the watchdog");
  listen();
  assert.equal(await freezing, 1);
  assert.equal(service.status(), "frozen");
  assert.equal(await service.thaw("host"), 1);
});

Deno.test("a watchdog that never came up: the freeze is rolled back, the host hears why", async () => {
  const guest = fakeGuest(["/a", "/b"]);
  const watchdog = new FakeWatchdog();
  watchdog.starting = Promise.reject(
    new Error("the watchdog it started exited before it listened on /run/x"),
  );
  const service = agent(guest, { watchdog });
  await rejectsWith(
    service.freeze("guest-fsfreeze-freeze"),
    /^cannot start the thaw watchdog: the watchdog it started exited before it listened on \/run\/x$/,
  );
  await service.settled();
  assert.equal(service.status(), "thawed");
  assert.equal(guest.store.state, undefined, "no cycle left recorded");
  assert.deepEqual(guest.hooks.calls, ["freeze", "thaw"]);
  assert.equal(guest.freezer.frozen.size, 0, "everything frozen was thawed");
});
