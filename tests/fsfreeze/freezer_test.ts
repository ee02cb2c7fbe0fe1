import assert from "node:assert/strict";
import { freezeWaves } from "../../src/fsfreeze/ordering.ts";
import { sysfsTopology } from "../../src/fsfreeze/topology.ts";
import {
  claimNext,
  freezeMount,
  freezeMounts,
  type FreezeOutcome,
  stopClaims,
  thawMount,
  thawMounts,
} from "../../src/fsfreeze/freezer.ts";
import { readMountinfo, selectFreezable } from "../../src/fsfreeze/mountinfo.ts";
import {
  assertNothingLeft,
  createLoopMounts,
  createNestedLoopMount,
  startBlockedWrite,
} from "../_util/loopfs.ts";

// SAFETY: every mount frozen here comes from createLoopMounts() (watchdog armed, disposal thaws).

function statuses(outcomes: readonly FreezeOutcome[]): string[] {
  return outcomes.map((o) => o.status);
}

Deno.test("freezeMounts() freezes ext4 mounts concurrently and a write blocks until thaw", async () => {
  await using fixture = await createLoopMounts(3);
  const outcomes = await freezeMounts([fixture.mounts]);
  assert.deepEqual(outcomes.map((o) => o.mountPoint).sort(), [...fixture.mounts].sort());
  assert.deepEqual(statuses(outcomes), ["frozen", "frozen", "frozen"]);
  const writer = startBlockedWrite(`${fixture.mounts[1]}/file`);
  assert.ok(await writer.waitUntilBlocked(), "the write waits on the frozen filesystem");
  const thawed = thawMounts(fixture.mounts);
  assert.deepEqual(thawed.map((o) => [o.mountPoint, o.thawed, o.thaws]), [
    [fixture.mounts[0], true, 1],
    [fixture.mounts[1], true, 1],
    [fixture.mounts[2], true, 1],
  ]);
  await writer.done;
  assert.equal(await Deno.readTextFile(`${fixture.mounts[1]}/file`), "x\n");
});

Deno.test("freezeMounts() skips an already frozen mount with EBUSY and thaw needs one FITHAW", async () => {
  await using fixture = await createLoopMounts(2);
  assert.deepEqual(statuses(await freezeMounts([fixture.mounts])), ["frozen", "frozen"]);
  const again = await freezeMounts([fixture.mounts]);
  assert.deepEqual(again.map((o) => [o.status, "code" in o ? o.code : ""]), [
    ["skipped", "EBUSY"],
    ["skipped", "EBUSY"],
  ]);
  assert.deepEqual(thawMounts(fixture.mounts).map((o) => [o.thawed, o.thaws]), [[true, 1], [
    true,
    1,
  ]]);
});

Deno.test("thawMounts() reports thawed=false for unfrozen mounts and missing paths", async () => {
  await using fixture = await createLoopMounts(1);
  const missing = `${fixture.dir}/missing`;
  const [unfrozen, gone] = thawMounts([fixture.mounts[0] as string, missing]);
  assert.deepEqual({ ...unfrozen, durationMs: 0 }, {
    mountPoint: fixture.mounts[0],
    thawed: false,
    thaws: 0,
    durationMs: 0,
  });
  assert.deepEqual({ ...gone, durationMs: 0 }, {
    mountPoint: missing,
    thawed: false,
    thaws: 0,
    errno: 2,
    durationMs: 0,
  });
});

Deno.test("freezeMount() fails at open with the errno when the path does not exist", async () => {
  await using fixture = await createLoopMounts(1);
  const outcome = freezeMount(`${fixture.dir}/missing`);
  assert.deepEqual({ ...outcome, durationMs: 0 }, {
    mountPoint: `${fixture.dir}/missing`,
    status: "failed",
    step: "open",
    errno: 2,
    code: "ENOENT",
    text: "No such file or directory",
    durationMs: 0,
  });
});

Deno.test("freezeMounts() freezes xfs and btrfs mounts", async () => {
  for (const fsType of ["xfs", "btrfs"] as const) {
    await using fixture = await createLoopMounts(2, { fsType });
    assert.deepEqual(statuses(await freezeMounts([fixture.mounts])), ["frozen", "frozen"]);
    const writer = startBlockedWrite(`${fixture.mounts[0]}/file`);
    assert.ok(await writer.waitUntilBlocked(), `${fsType} blocks writes while frozen`);
    assert.ok(thawMounts(fixture.mounts).every((o) => o.thawed));
    await writer.done;
  }
});

Deno.test("freezeMounts() starts nothing after a failure on the calling thread", async () => {
  await using fixture = await createLoopMounts(2);
  const [first, second] = fixture.mounts as [string, string];
  const bad = `${fixture.dir}/missing`;
  const outcomes = await freezeMounts([[first, bad, second]], { concurrency: 1 });
  assert.deepEqual(outcomes.map((o) => [o.mountPoint, o.status]), [[first, "frozen"], [
    bad,
    "failed",
  ]]);
  assert.deepEqual(thawMounts([first, second]).map((o) => o.thawed), [true, false]);
});

Deno.test("freezeMounts() starts no later wave after a failure off the calling thread", async () => {
  await using fixture = await createLoopMounts(3);
  const [a, b, later] = fixture.mounts as [string, string, string];
  const bad = `${fixture.dir}/missing`;
  const options = { concurrency: 3, callingThread: false };
  const outcomes = await freezeMounts([[bad, a, b], [later]], options);
  const failed = outcomes.filter((o) => o.status === "failed");
  assert.deepEqual(failed.map((o) => o.mountPoint), [bad]);
  // Every mount that is frozen now was reported, and the later wave never started.
  const thawed = thawMounts([a, b, later]);
  for (const outcome of thawed) {
    const reported = outcomes.find((o) => o.mountPoint === outcome.mountPoint);
    assert.equal(outcome.thawed, reported?.status === "frozen", outcome.mountPoint);
  }
  assert.equal(thawed[2]?.thawed, false);
});

Deno.test("freezeMounts() rejects a concurrency that is not a positive integer", async () => {
  await assert.rejects(freezeMounts([["/x"]], { concurrency: 0 }), RangeError);
  await assert.rejects(freezeMounts([["/x"]], { concurrency: 1.5 }), RangeError);
});

Deno.test("claimNext() hands out each index once and nothing after stopClaims()", () => {
  const control = new Int32Array(new SharedArrayBuffer(8));
  assert.deepEqual([claimNext(control, 3), claimNext(control, 3)], [0, 1]);
  stopClaims(control);
  assert.equal(claimNext(control, 3), -1);
  const fresh = new Int32Array(new SharedArrayBuffer(8));
  assert.deepEqual([0, 1, 2, 3].map(() => claimNext(fresh, 3)), [0, 1, 2, -1]);
});

Deno.test("freezeMounts() freezes a loop image's mount before its holder without deadlock", async () => {
  {
    await using fixture = await createLoopMounts(8, { watchdogSeconds: 30 });
    const nested = await createNestedLoopMount(fixture, { index: 3 });
    // Eight at a time, none on the calling thread: every FIFREEZE of the first wave runs at once.
    const options = { concurrency: 8, callingThread: false };
    // Dirty data on the nested mount: its FIFREEZE must write into the holder's image.
    await Deno.writeFile(`${nested.mount}/dirty`, new Uint8Array(4 << 20).fill(7));
    const ours = selectFreezable(readMountinfo())
      .filter((m) => m.mountPoint.startsWith(`${fixture.dir}/`));
    const waves = freezeWaves(ours, sysfsTopology()).map((wave) => wave.map((m) => m.mountPoint));
    const waveOf = (mount: string): number => waves.findIndex((wave) => wave.includes(mount));
    assert.ok(waveOf(nested.mount) < waveOf(nested.holder));
    assert.equal(waves[0]?.length, 8, "everything but the holder freezes together");

    const started = Date.now();
    const outcomes = await freezeMounts(waves, options);
    assert.ok(Date.now() - started < 20_000, "finished long before the watchdog");
    assert.equal(outcomes.length, 9);
    assert.ok(outcomes.every((o) => o.status === "frozen"));
    const finishedAt = (mount: string): number => outcomes.findIndex((o) => o.mountPoint === mount);
    assert.ok(finishedAt(nested.mount) < finishedAt(nested.holder), "nested frozen first");
    assert.equal(finishedAt(nested.holder), 8, "the holder is frozen last");

    const writer = startBlockedWrite(`${nested.mount}/file`);
    assert.ok(await writer.waitUntilBlocked());
    const order = [...waves].reverse().flat();
    assert.equal(order[0], nested.holder, "thaw starts with the holder");
    const thawed = thawMounts(order);
    assert.deepEqual(thawed.map((o) => o.mountPoint), order);
    assert.ok(thawed.every((o) => o.thawed && o.thaws === 1));
    await writer.done;
  }
  await assertNothingLeft();
});

Deno.test("freezing a holder before the mount stored on it blocks (why the waves exist)", async () => {
  {
    await using fixture = await createLoopMounts(1, { watchdogSeconds: 3 });
    const nested = await createNestedLoopMount(fixture);
    await fixture.armWatchdog(3);
    await Deno.writeFile(`${nested.mount}/dirty`, new Uint8Array(4 << 20).fill(7));
    assert.equal(freezeMount(nested.holder).status, "frozen");
    // The wrong order, in a child: FIFREEZE of the nested mount must flush into the frozen holder.
    const child = new Deno.Command("fsfreeze", {
      args: ["-f", nested.mount],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const stuck = await new Promise<boolean>((resolve) => {
      let polls = 0;
      const poll = setInterval(() => {
        const stat = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
        const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
        if (state === "D" || ++polls > 100) {
          clearInterval(poll);
          resolve(state === "D");
        }
      }, 10);
    });
    assert.ok(stuck, "FIFREEZE of the nested mount waits on the frozen holder");
    assert.equal(thawMount(nested.holder).thawed, true); // releases it
    assert.equal((await child.status).success, true);
    await fixture.disarmWatchdog();
    assert.equal(thawMount(nested.mount).thawed, true);
  }
  await assertNothingLeft();
});

Deno.test("freezeMounts() leaves nothing running: the process exits when it is done", async () => {
  const freezer = new URL("../../src/fsfreeze/freezer.ts", import.meta.url).href;
  const script = `
    import { freezeMounts } from "${freezer}";
    const outcomes = await freezeMounts([["/agent_test_missing_1", "/agent_test_missing_2"]], { concurrency: 2 });
    console.log(outcomes.length > 0 && outcomes.every((o) => o.status === "failed" && o.code === "ENOENT"));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdin: "null",
    signal: AbortSignal.timeout(20_000),
  });
  const output = await child.output();
  assert.equal(new TextDecoder().decode(output.stdout).trim(), "true");
  assert.equal(output.success, true, new TextDecoder().decode(output.stderr));
});

Deno.test("freezeMounts() needs nothing but --allow-ffi: no module is loaded to freeze", async () => {
  await using fixture = await createLoopMounts(2);
  const freezer = new URL("../../src/fsfreeze/freezer.ts", import.meta.url).href;
  const script = `${fixture.dir}/run.ts`;
  await Deno.writeTextFile(
    script,
    `import { freezeMounts } from "${freezer}";
    const waves = [${JSON.stringify(fixture.mounts)}];
    const outcomes = await freezeMounts(waves, { concurrency: 2, callingThread: false });
    console.log(JSON.stringify(outcomes.map((o) => [o.mountPoint, o.status])));
    `,
  );
  // Without read permission, nothing could be loaded once running (the Worker design needed it).
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-check", "--no-prompt", "--allow-ffi", script],
    stdin: "null",
    signal: AbortSignal.timeout(20_000),
  }).output();
  assert.equal(output.success, true, new TextDecoder().decode(output.stderr));
  const outcomes = JSON.parse(new TextDecoder().decode(output.stdout)) as [string, string][];
  assert.deepEqual(outcomes.sort(), fixture.mounts.map((m) => [m, "frozen"]).sort());
  assert.ok(thawMounts(fixture.mounts).every((o) => o.thawed));
});

Deno.test("assertNothingLeft() passes after every freezer test", async () => {
  await assertNothingLeft();
});
