/**
 * `fsfreeze-expedite` with fakes (tests/_util/fake_engine.ts): the grace periods are expedited only
 * while the FIFREEZEs run, only when the agent found them normal, and put back by whoever ends or
 * recovers a cycle whose freezer died; a setting that cannot be read or written never fails a
 * freeze. The real `/sys/kernel/rcu_expedited` is exercised in a guest (tests/vm).
 *
 * @module
 */

import assert from "node:assert/strict";
import { AgentError } from "../../src/errors.ts";
import { endCycle } from "../../src/fsfreeze/end_cycle.ts";
import { FreezeEngineService } from "../../src/fsfreeze/service.ts";
import { fakeEngine, type FakeGuest, fakeGuest, FakeLog } from "../_util/fake_engine.ts";

function agent(guest: FakeGuest, expedite: boolean, log = new FakeLog()): FreezeEngineService {
  const engine = fakeEngine(guest, { fsfreezeExpedite: expedite }, log);
  return new FreezeEngineService(engine, { log, watchdog: undefined });
}

Deno.test("fsfreeze-expedite: grace periods expedited while the FIFREEZEs run, normal before the reply", async () => {
  const guest = fakeGuest(["/a", "/b"]);
  let duringFreeze: boolean | undefined;
  guest.freezer.duringFreeze = () => duringFreeze = guest.gracePeriods.value;
  const service = agent(guest, true);
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 2);
  assert.equal(duringFreeze, true);
  assert.equal(guest.gracePeriods.value, false);
  assert.deepEqual(guest.gracePeriods.sets, [true, false]);
  assert.equal(guest.store.state?.expeditedGracePeriods, true, "recorded for whoever ends it");
  assert.equal(guest.store.writes, 1, "still one state write per freeze");
  assert.equal(await service.thaw("host"), 2);
  assert.deepEqual(guest.gracePeriods.sets, [true, false], "nothing left to put back");
});

Deno.test("fsfreeze-expedite off (the default): the setting is never read or written", async () => {
  const guest = fakeGuest(["/a"]);
  const service = agent(guest, false);
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1);
  assert.equal(await service.thaw("host"), 1);
  assert.equal(guest.gracePeriods.reads, 0);
  assert.deepEqual(guest.gracePeriods.sets, []);
  assert.equal(guest.store.state, undefined);
});

Deno.test("fsfreeze-expedite: grace periods someone else expedited are left as they are", async () => {
  const guest = fakeGuest(["/a"]);
  guest.gracePeriods.value = true;
  const service = agent(guest, true);
  assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1);
  assert.equal(guest.store.state?.expeditedGracePeriods, undefined);
  assert.equal(await service.thaw("host"), 1);
  assert.equal(guest.gracePeriods.value, true);
  assert.deepEqual(guest.gracePeriods.sets, []);
});

Deno.test("fsfreeze-expedite: a FIFREEZE that fails puts them back before the error", async () => {
  const guest = fakeGuest(["/a", "/b"]);
  guest.freezer.outcomes.set("/b", "EPERM");
  const service = agent(guest, true);
  await assert.rejects(
    service.freeze("guest-fsfreeze-freeze"),
    (err) => err instanceof AgentError && /failed to freeze \/b/.test(err.message),
  );
  assert.equal(guest.gracePeriods.value, false);
  assert.deepEqual(guest.gracePeriods.sets, [true, false]);
  await service.settled();
  assert.equal(guest.freezer.frozen.size, 0);
});

Deno.test("fsfreeze-expedite: a freezer that died leaves them to the recovery and to the watchdog's end", async () => {
  for (const ender of ["recovery", "watchdog"] as const) {
    const guest = fakeGuest(["/a"]);
    assert.equal(await agent(guest, true).freeze("guest-fsfreeze-freeze"), 1);
    guest.gracePeriods.value = true; // as if the agent was killed between expediting and after
    if (ender === "recovery") {
      const restarted = agent(guest, false); // the restart needs no option to clean up
      await restarted.recover();
      assert.equal(guest.gracePeriods.value, false, ender);
      assert.equal(restarted.status(), "frozen", "the cycle itself stays for the host's thaw");
    } else {
      const ended = await endCycle(fakeEngine(guest), "timeout", { waitMs: 1000 });
      assert.equal(ended?.count, 1);
      assert.equal(guest.gracePeriods.value, false, ender);
    }
  }
});

Deno.test("fsfreeze-expedite: a setting that cannot be read or written never fails the freeze", async () => {
  for (const failing of ["read", "write"] as const) {
    const guest = fakeGuest(["/a"]);
    if (failing === "read") guest.gracePeriods.failRead = "EACCES";
    else guest.gracePeriods.failWrite = "EROFS";
    const log = new FakeLog();
    const service = agent(guest, true, log);
    assert.equal(await service.freeze("guest-fsfreeze-freeze"), 1, failing);
    assert.equal(await service.thaw("host"), 1, failing);
    assert.ok(
      log.lines.some((line) =>
        /^warn cannot (read whether|expedite) kernel grace periods/.test(line)
      ),
      log.lines.join("\n"),
    );
  }
});
