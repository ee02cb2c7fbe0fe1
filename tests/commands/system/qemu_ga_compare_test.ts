/**
 * The system commands side by side with qemu-ga itself (Debian's qemu-guest-agent, installed by
 * .ci/setup): both agents run on unix sockets on this machine and must give the same answers,
 * except for counters and sizes that move between the two calls and the members qemu-ga added
 * after its version here (`total-bytes-privileged`, 9.1).
 *
 * qemu-ga runs with every command blocked except the read-only ones compared here
 * (tests/_util/qemu_ga.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { QgaClient, spawnAgent } from "../../_util/agent.ts";
import { qemuGaCommands, type QemuGaProcess, startQemuGa } from "../../_util/qemu_ga.ts";
import { parseJsonExact } from "./_schema.ts";

/** The commands compared; everything else is blocked in the qemu-ga under test. */
const COMPARED = [
  "guest-get-time",
  "guest-get-host-name",
  "guest-get-users",
  "guest-get-timezone",
  "guest-get-osinfo",
  "guest-network-get-interfaces",
  "guest-get-fsinfo",
];
const ALWAYS_ENABLED = ["guest-sync", "guest-sync-delimited", "guest-ping", "guest-info"];

/** qemu-ga on a unix socket in `dir`, with only the compared commands enabled. */
async function startComparedQemuGa(dir: string): Promise<QemuGaProcess> {
  const keep = new Set([...COMPARED, ...ALWAYS_ENABLED]);
  const blocked = (await qemuGaCommands()).filter((name) => !keep.has(name));
  assert.ok(blocked.includes("guest-shutdown") && blocked.includes("guest-fsfreeze-freeze"));
  return await startQemuGa(`${dir}/qemu-ga`, { block: blocked });
}

async function ask(client: QgaClient, execute: string): Promise<unknown> {
  await client.send(JSON.stringify({ execute }));
  const reply = parseJsonExact(await client.readLine()) as Record<string, unknown>;
  const text = JSON.stringify(reply, (_k, v) => typeof v === "bigint" ? String(v) : v);
  assert.ok("return" in reply, `${execute}: ${text}`);
  return reply.return;
}

type Interface = { name: string; statistics?: unknown };
type Filesystem = { mountpoint: string; "used-bytes"?: bigint; [key: string]: unknown };

/** Counters move between the two calls: keep only whether an interface has them. */
function withoutCounters(list: Interface[]): Interface[] {
  return list.map(({ statistics, ...rest }) => ({ ...rest, statistics: statistics !== undefined }));
}

/**
 * Filesystems present for both calls, without the sizes that move: other tests mount, fill and
 * unmount filesystems under /tmp meanwhile.
 */
function stableFilesystems(list: Filesystem[], other: Filesystem[]): Filesystem[] {
  const theirs = new Set(other.map((fs) => fs.mountpoint));
  return list
    .filter((fs) => theirs.has(fs.mountpoint) || !fs.mountpoint.startsWith("/tmp/"))
    .map(({ "used-bytes": _used, "total-bytes-privileged": _privileged, ...rest }) => {
      if (rest.mountpoint.startsWith("/tmp/")) delete rest["total-bytes"];
      return rest;
    });
}

Deno.test("the system commands answer as qemu-ga does on the same machine", async () => {
  await using agent = await spawnAgent();
  await using qga = await startComparedQemuGa(agent.dir);
  {
    using ours = await agent.connect();
    using theirs = new QgaClient(await Deno.connect({ transport: "unix", path: qga.socket }));
    for (const command of ["guest-get-host-name", "guest-get-users", "guest-get-timezone"]) {
      assert.deepEqual(await ask(ours, command), await ask(theirs, command), command);
    }
    assert.deepEqual(
      await ask(ours, "guest-get-osinfo"),
      await ask(theirs, "guest-get-osinfo"),
      "guest-get-osinfo",
    );
    const time = [await ask(ours, "guest-get-time"), await ask(theirs, "guest-get-time")];
    const gap = (time[1] as bigint) - (time[0] as bigint);
    assert.ok(gap >= 0n && gap < 10_000_000_000n, `clocks ${gap} ns apart`);
    assert.deepEqual(
      withoutCounters(await ask(ours, "guest-network-get-interfaces") as Interface[]),
      withoutCounters(await ask(theirs, "guest-network-get-interfaces") as Interface[]),
    );
    const ourFs = await ask(ours, "guest-get-fsinfo") as Filesystem[];
    const theirFs = await ask(theirs, "guest-get-fsinfo") as Filesystem[];
    assert.ok(ourFs.every((fs) => typeof fs["total-bytes-privileged"] === "bigint"));
    assert.deepEqual(stableFilesystems(ourFs, theirFs), stableFilesystems(theirFs, ourFs));
  }
});
