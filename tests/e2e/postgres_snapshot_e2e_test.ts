/**
 * The agent, its hook dispatcher and the PostgreSQL sample hook together, against a real
 * PostgreSQL server whose data directory is on a loop-mounted ext4 the test creates: snapshots
 * taken under a continuous write load start cleanly, by WAL replay, with every acknowledged row.
 *
 * Safety: the agent's freeze scope is the scene's loop mount alone; the scene's watchdog is armed
 * before each freeze; scene disposal thaws before anything else.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnAgent } from "../_util/agent.ts";
import { createPostgresScene } from "../_util/db_hook_fixtures.ts";
import { assertNothingLeft } from "../_util/loopfs.ts";
import { type PostgresServer, startPostgres } from "../_util/postgres.ts";
import { freezeCopyThaw, note, summarizeUs } from "../_util/snapshot_cycle.ts";
import { assertClean, assertNoSnapshotLeft, type ImageSnapshot } from "../_util/snapshot.ts";
import { ID, startPostgresLoad } from "../_util/write_load.ts";

const HOOK_TIMEOUT_S = 30;
const CYCLES = 5;

/** Row count and largest id of the load's table. */
async function idStats(server: PostgresServer): Promise<[number, number]> {
  const row = await server.query("SELECT count(*), coalesce(max(id), 0) FROM acked");
  const [count, max] = row.split("|").map(Number);
  return [count ?? NaN, max ?? NaN];
}

/**
 * Lines of a PostgreSQL server log that make a start "not clean": any message at WARNING level or
 * above, except the readiness probe's connections refused while recovery runs. Recovery itself
 * ("database system was interrupted", "redo starts/done") is logged at LOG level: a copy of a
 * running server is crash-consistent, and WAL replay is how PostgreSQL starts it.
 */
function badLogLines(log: string): string[] {
  const probeRefused =
    /FATAL: {2}the database system is (starting up|not yet accepting connections)/;
  return log.split("\n").filter((line) =>
    /\b(WARNING|ERROR|FATAL|PANIC):/.test(line) && !probeRefused.test(line)
  );
}

/** Checks one snapshot: fsck, a server started on it, the load's rows, the index, its log. */
async function verifyCopy(snapshot: ImageSnapshot, acked: number[]): Promise<void> {
  assertClean(await snapshot.check());
  const mount = await snapshot.mount();
  const datadir = `${mount}/pgdata`;
  // Its PID is the live original server's: on this host PostgreSQL would refuse to start (on the
  // host a snapshot is restored to, the file is simply stale).
  await Deno.remove(`${datadir}/postmaster.pid`);
  await using copy = await startPostgres(datadir, { initialize: false });
  const [count, max] = await idStats(copy);
  const last = acked.at(-1) ?? 0;
  assert.ok(max >= last, `acknowledged ${last}, the snapshot has up to ${max}`);
  assert.equal(count, max, "ids missing below the largest");
  // Every row is in the primary key index, and the index is well-formed.
  await copy.query("CREATE EXTENSION amcheck; SELECT bt_index_check('acked_pkey', true)");
  await copy.stop();
  const log = await copy.log;
  assert.match(log, /database system is ready to accept connections/);
  assert.deepEqual(badLogLines(log), [], log);
  await snapshot.unmount();
}

Deno.test(`snapshots taken under a write load start cleanly with every acknowledged row (PostgreSQL, ${CYCLES} cycles)`, async () => {
  await using scene = await createPostgresScene();
  await scene.server.query("CREATE TABLE acked (id int PRIMARY KEY)");
  await using agent = await spawnAgent({
    scope: [scene.mount],
    hook: scene.hooks.dispatcher,
    env: { FSFREEZE_HOOK_RUNDIR: scene.hooks.runDir, ...scene.server.env },
    args: [`--fsfreeze-hook-timeout=${HOOK_TIMEOUT_S}`, "--fsfreeze-timeout=120"],
  });
  await using load = await startPostgresLoad(scene.server, `INSERT INTO acked VALUES (${ID});`);
  const windows: number[] = [];
  let acknowledged = 0;
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    acknowledged = await load.waitForAcks(acknowledged + 50);
    const { snapshot, acked, report } = await freezeCopyThaw(agent, scene.mounts, load);
    await using _snapshot = snapshot;
    assert.deepEqual(acked, Array.from({ length: acked.length }, (_, i) => i + 1));
    assert.ok(acked.length >= acknowledged, "the load was running before the freeze");
    const window = report.freezeWindowUs ?? NaN;
    assert.ok(window > 0 && window < (HOOK_TIMEOUT_S + 10) * 1e6, `freeze window ${window} µs`);
    assert.deepEqual(report.hooks.map((h) => [h.phase, h.exitCode]), [["freeze", 0], ["thaw", 0]]);
    assert.match(report.hooks[0]!.outputTail, /CHECKPOINT done/);
    windows.push(window);
    await verifyCopy(snapshot, acked);
    assert.ok(load.running(), `the load stopped: ${await load.errors()}`);
    note(
      `PostgreSQL snapshot ${cycle}/${CYCLES}: ${acked.length} ids acknowledged at freeze, ` +
        `freeze window (hook start -> FIFREEZE done) ${(window / 1000).toFixed(1)} ms ` +
        `(freeze hook ${((report.hooks[0]?.durationUs ?? NaN) / 1000).toFixed(1)} ms)`,
    );
  }
  // The load carries on after the last thaw.
  await load.waitForAcks(acknowledged + 50);
  note(`PostgreSQL freeze windows over ${CYCLES} cycles: ${summarizeUs(windows)}`);
});

Deno.test("after the PostgreSQL snapshot tests nothing is left: no loop device, mount or copy", async () => {
  await assertNothingLeft();
  await assertNoSnapshotLeft();
});
