import assert from "node:assert/strict";
import { BURST_BYTES, BURST_MESSAGES, MemoryReclaimer, reclaimMemory } from "../src/memory.ts";

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("MemoryReclaimer reclaims once a burst's channel has been quiet, not during it", async () => {
  let reclaims = 0;
  using reclaimer = new MemoryReclaimer(() => reclaims++, 50);
  for (let i = 0; i < 5; i++) {
    reclaimer.received(BURST_BYTES / 2, 1);
    await tick(10);
  }
  assert.equal(reclaims, 0, "not while input keeps arriving");
  await tick(200);
  assert.equal(reclaims, 1);
  await tick(200);
  assert.equal(reclaims, 1, "once per burst");
});

Deno.test("MemoryReclaimer waits for quiet after the last input, however long a burst lasts", async () => {
  let reclaims = 0;
  let now = 0;
  using reclaimer = new MemoryReclaimer(() => reclaims++, 20, () => now);
  reclaimer.received(BURST_BYTES, 1);
  for (let i = 0; i < 5; i++) {
    await tick(30); // the timer fires at least once per turn, and finds input as recent as ever
    now += 30;
    reclaimer.received(30, 1);
  }
  assert.equal(reclaims, 0, "input kept arriving (by the clock the reclaimer reads)");
  now += 20;
  await tick(100);
  assert.equal(reclaims, 1, "quiet for the whole period since the last input");
});

Deno.test("MemoryReclaimer leaves ordinary traffic alone and counts many small messages", async () => {
  let reclaims = 0;
  using reclaimer = new MemoryReclaimer(() => reclaims++, 20);
  for (let i = 0; i < 100; i++) reclaimer.received(30, 1);
  await tick(100);
  assert.equal(reclaims, 0, "100 small requests are no burst");
  for (let i = 0; i < BURST_MESSAGES; i++) reclaimer.received(30, 1);
  await tick(100);
  assert.equal(reclaims, 1, `${BURST_MESSAGES} messages are`);
});

Deno.test("reclaimMemory() hands a grown heap back (the agent's V8 flags expose gc)", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--v8-flags=--expose-gc",
      `
      import { reclaimMemory } from "${new URL("../src/memory.ts", import.meta.url)}";
      const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);
      let keep = [];
      for (let i = 0; i < 2_000_000; i++) keep.push({ v: i, s: "x" + i });
      const peak = rss();
      keep = [];
      globalThis.gc();
      const afterGc = rss();
      reclaimMemory();
      console.log(JSON.stringify({ peak, afterGc, reclaimed: rss() }));
      `,
    ],
    stdout: "piped",
  });
  const { peak, afterGc, reclaimed } = JSON.parse(
    new TextDecoder().decode((await child.output()).stdout),
  );
  assert.ok(reclaimed < afterGc / 2, `a plain gc() keeps ${afterGc} KiB, reclaim ${reclaimed}`);
  assert.ok(reclaimed < peak / 3, `peak ${peak} KiB, after reclaim ${reclaimed}`);
  reclaimMemory(); // and in a process without gc exposed it is harmless
});
