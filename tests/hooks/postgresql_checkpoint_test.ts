/**
 * Tests of the sample hook `hooks/fsfreeze-hook.d/postgresql-checkpoint.sh.sample`, installed in
 * a private dispatcher and run against a real PostgreSQL server whose data directory is on a
 * loop-mounted ext4 the test creates. The only filesystem ever frozen is that loop mount (with the
 * fixture's thaw watchdog armed).
 *
 * @module
 */

import assert from "node:assert/strict";
import { createPostgresScene } from "../_util/db_hook_fixtures.ts";
import { createHookDir } from "../_util/hook_dir.ts";
import type { PostgresServer } from "../_util/postgres.ts";

/** The last checkpoint's WAL location and the count of requested checkpoints. */
async function checkpointState(
  server: PostgresServer,
): Promise<{ lsn: string; requested: number }> {
  const row = await server.query(
    "SELECT checkpoint_lsn, (SELECT checkpoints_req FROM pg_stat_bgwriter) " +
      "FROM pg_control_checkpoint()",
  );
  const [lsn, requested] = row.split("|");
  return { lsn: lsn as string, requested: Number(requested) };
}

/** Compares two WAL locations (`X/Y`, hexadecimal). */
function lsnValue(lsn: string): bigint {
  const [high, low] = lsn.split("/");
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

async function run(command: string, args: string[]): Promise<void> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
}

Deno.test("`postgresql-checkpoint.sh freeze` makes the server checkpoint within the deadline", async () => {
  await using scene = await createPostgresScene();
  const { server, hooks } = scene;
  await server.query("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i");
  const before = await checkpointState(server);
  const freeze = await hooks.run("freeze", { env: server.env, deadlineSeconds: 30 });
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.match(freeze.stderr, /CHECKPOINT done/);
  const after = await checkpointState(server);
  assert.ok(lsnValue(after.lsn) > lsnValue(before.lsn), `${before.lsn} -> ${after.lsn}`);
  assert.equal(after.requested, before.requested + 1);
  const thaw = await hooks.run("thaw", { env: server.env });
  assert.equal(thaw.code, 0, thaw.stderr);
});

Deno.test("`postgresql-checkpoint.sh freeze` fails by its deadline when the checkpoint cannot finish", async () => {
  await using scene = await createPostgresScene();
  const { server, hooks, mount } = scene;
  await server.query("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i");
  // With the data directory frozen, the checkpointer cannot write: CHECKPOINT waits.
  assert.match(mount, /^\/tmp\/agent_test_[^/]+\/mnt\d+$/);
  await scene.mounts.armWatchdog(20);
  await run("fsfreeze", ["-f", mount]);
  try {
    const freeze = await hooks.run("freeze", {
      env: server.env,
      deadlineSeconds: 3,
      timeoutMs: 15_000,
    });
    assert.equal(freeze.code, 1);
    assert.match(
      freeze.stderr,
      /CHECKPOINT failed: ERROR: {2}canceling statement due to statement timeout/,
    );
  } finally {
    await scene.mounts.thawAll();
  }
  // Once thawed, the server works normally.
  assert.equal(await server.query("SELECT count(*) FROM t"), "10000");
});

Deno.test("`postgresql-checkpoint.sh` exits 0 on freeze and thaw when no server is running", async () => {
  await using hooks = await createHookDir();
  await hooks.addSample("60-postgresql-checkpoint.sh", "postgresql-checkpoint.sh.sample");
  const emptyDir = await Deno.makeTempDir({ prefix: "agent_test_nopg_" });
  try {
    const env = { PGHOST: emptyDir, PGPORT: "5432" };
    const freeze = await hooks.run("freeze", { env });
    assert.equal(freeze.code, 0, freeze.stderr);
    assert.match(freeze.stderr, /no server answering, nothing to checkpoint/);
    assert.equal((await hooks.run("thaw", { env })).code, 0);
  } finally {
    await Deno.remove(emptyDir, { recursive: true });
  }
});
