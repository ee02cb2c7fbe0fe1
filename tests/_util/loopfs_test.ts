import assert from "node:assert/strict";
import { readMountinfo } from "../../src/fsfreeze/mountinfo.ts";
import {
  assertNothingLeft,
  createBindMount,
  createLoopMounts,
  createNestedLoopMount,
  startBlockedWrite,
} from "./loopfs.ts";

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  if (!output.success) throw new Error(`${command}: ${new TextDecoder().decode(output.stderr)}`);
  return new TextDecoder().decode(output.stdout).trim();
}

function fsTypeOf(mountPoint: string): string | undefined {
  return readMountinfo().find((entry) => entry.mountPoint === mountPoint)?.fsType;
}

function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Freezes one of the fixture's own loop mounts with util-linux (never anything else). */
async function freezeOwn(mountPoint: string): Promise<void> {
  assert.match(mountPoint, /^\/tmp\/agent_test_/);
  await run("fsfreeze", ["-f", mountPoint]);
}

Deno.test("createLoopMounts() mounts loop filesystems of each type and disposal removes them", async () => {
  for (const fsType of ["ext4", "xfs", "btrfs"] as const) {
    {
      await using fixture = await createLoopMounts(2, { fsType });
      assert.equal(fixture.mounts.length, 2);
      assert.ok(fixture.dir.startsWith("/tmp/agent_test_"));
      for (const [i, mount] of fixture.mounts.entries()) {
        assert.equal(fsTypeOf(mount), fsType);
        assert.match(fixture.devices[i] ?? "", /^\/dev\/loop\d+$/);
        const backing = await run("losetup", [
          "--noheadings",
          "-O",
          "BACK-FILE",
          fixture.devices[i] ?? "",
        ]);
        assert.equal(backing, fixture.images[i]);
      }
      assert.ok(fixture.watchdogPid !== undefined && processAlive(fixture.watchdogPid));
      await assert.rejects(assertNothingLeft(), /left behind/);
    }
    await assertNothingLeft();
  }
});

Deno.test("createLoopMounts() watchdog thaws a frozen mount after its time", async () => {
  await using fixture = await createLoopMounts(1, { watchdogSeconds: 1 });
  const mount = fixture.mounts[0] as string;
  await freezeOwn(mount);
  const writer = startBlockedWrite(`${mount}/file`);
  assert.ok(await writer.waitUntilBlocked(), "write blocks on the frozen mount");
  await writer.done; // only the watchdog thaws it
  assert.equal(await Deno.readTextFile(`${mount}/file`), "x\n");
});

Deno.test("disarmWatchdog() kills the watchdog and armWatchdog() starts a new one", async () => {
  await using fixture = await createLoopMounts(1);
  const first = fixture.watchdogPid as number;
  await fixture.disarmWatchdog();
  assert.equal(fixture.watchdogPid === undefined, true);
  assert.equal(processAlive(first), false);
  await fixture.armWatchdog(1);
  const second = fixture.watchdogPid as number;
  assert.notEqual(second, first);
  // Its own process group, so a kill by group reaches its sleep as well.
  const stat = await Deno.readTextFile(`/proc/${second}/stat`);
  const pgid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  assert.equal(pgid, second);
});

Deno.test("createNestedLoopMount() stores its image on the holder and mounts it elsewhere", async () => {
  {
    await using fixture = await createLoopMounts(2, { watchdogSeconds: 20 });
    const nested = await createNestedLoopMount(fixture, { index: 1 });
    assert.equal(nested.holder, fixture.mounts[1]);
    assert.ok(nested.image.startsWith(`${nested.holder}/`));
    assert.ok(!nested.mount.startsWith(`${nested.holder}/`));
    assert.equal(fsTypeOf(nested.mount), "ext4");
    assert.equal(fixture.mounts.at(-1), nested.mount);
    const holderDev = (await Deno.stat(nested.holder)).dev;
    assert.equal((await Deno.stat(nested.image)).dev, holderDev);
    const bind = await createBindMount(fixture, { index: 0 });
    assert.equal((await Deno.stat(bind)).dev, (await Deno.stat(fixture.mounts[0] as string)).dev);
  }
  await assertNothingLeft();
});

Deno.test("startBlockedWrite() blocks on a frozen mount and completes after thawAll()", async () => {
  await using fixture = await createLoopMounts(1);
  const mount = fixture.mounts[0] as string;
  await freezeOwn(mount);
  const writer = startBlockedWrite(`${mount}/file`);
  assert.ok(await writer.waitUntilBlocked());
  assert.equal(writer.finished(), false);
  await fixture.thawAll();
  await writer.done;
  assert.equal(writer.finished(), true);
});

Deno.test("disposal cleans up after a failure with a frozen mount and a blocked writer", async () => {
  let writer: ReturnType<typeof startBlockedWrite> | undefined;
  await assert.rejects(async () => {
    await using fixture = await createLoopMounts(2);
    await createNestedLoopMount(fixture);
    await freezeOwn(fixture.mounts.at(-1) as string);
    await freezeOwn(fixture.mounts[0] as string);
    writer = startBlockedWrite(`${fixture.mounts.at(-1)}/file`);
    assert.ok(await writer.waitUntilBlocked());
    throw new Error("test body failed");
  }, /test body failed/);
  await writer?.done;
  await assertNothingLeft();
});
