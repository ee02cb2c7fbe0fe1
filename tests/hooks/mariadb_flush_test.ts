/**
 * Tests of the sample hook `hooks/fsfreeze-hook.d/mariadb-flush.sh.sample`, installed in a private
 * dispatcher and run against a real MariaDB server whose data directory is on a loop-mounted ext4
 * the test creates. The only filesystem ever frozen is that loop mount (with the fixture's thaw
 * watchdog armed); every write that may block runs in a child process.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  alive,
  assertWritable,
  eventually,
  hookSessions,
  insertWaitsForLock,
} from "../_util/mariadb_checks.ts";
import {
  createMariaDbScene,
  MARIADB_HOOK_PASSWORD,
  MARIADB_HOOK_USER,
} from "../_util/db_hook_fixtures.ts";
import { createHookDir, type HookDir } from "../_util/hook_dir.ts";
import type { MariaDbServer } from "../_util/mariadb.ts";

const STATE_FILE = "50-mariadb-flush.sh.state";

/** `promise`, or a rejection naming `what` if it is not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function run(command: string, args: string[]): Promise<void> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/** Freezes a loop mount this test created (never anything else). */
async function freezeOwnMount(mount: string): Promise<void> {
  assert.match(mount, /^\/tmp\/agent_test_[^/]+\/mnt\d+$/);
  await run("fsfreeze", ["-f", mount]);
}

/** The holder's PID and connection id, from the hook's state file. */
async function holderOf(hooks: HookDir): Promise<{ pid: number; connection: number }> {
  const [pid, , connection] = (await Deno.readTextFile(`${hooks.runDir}/${STATE_FILE}`))
    .trim().split(" ");
  return { pid: Number(pid), connection: Number(connection) };
}

async function stateFileExists(hooks: HookDir): Promise<boolean> {
  try {
    await Deno.stat(`${hooks.runDir}/${STATE_FILE}`);
    return true;
  } catch {
    return false;
  }
}

Deno.test("`mariadb-flush.sh` holds the global read lock from freeze to thaw around a real freeze", async () => {
  await using scene = await createMariaDbScene();
  const { server, hooks, mount } = scene;
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.match(freeze.stderr, /global read lock held by connection \d+/);
  const holder = await holderOf(hooks);
  // Credentials come from the option file, never from the command line.
  const argv = (await Deno.readTextFile(`/proc/${holder.pid}/cmdline`)).split("\0");
  assert.ok(argv.includes(`--defaults-extra-file=${scene.cnf}`), argv.join(" "));
  assert.ok(!argv.join(" ").includes(MARIADB_HOOK_PASSWORD));

  await scene.mounts.armWatchdog();
  await freezeOwnMount(mount);
  const insert = server.startQuery("INSERT INTO app.t VALUES (1)");
  try {
    assert.ok(await eventually(() => insertWaitsForLock(server)), "INSERT is not waiting");
    assert.equal(insert.finished(), false);
    await run("fsfreeze", ["-u", mount]);
    assert.equal(insert.finished(), false, "the lock, not the frozen filesystem, held the INSERT");

    const thaw = await hooks.run("thaw");
    assert.equal(thaw.code, 0, thaw.stderr);
    assert.match(thaw.stderr, /released the global read lock/);
    const inserted = await within(insert.done, 15_000, "the INSERT after thaw");
    assert.equal(inserted.code, 0, inserted.stderr);
  } finally {
    await scene.mounts.thawAll();
    if (!insert.finished()) await insert.kill();
  }
  assert.equal(await server.query("SELECT COUNT(*) FROM app.t"), "1");
  await assertWritable(server);
  assert.ok(await eventually(() => Promise.resolve(!alive(holder.pid))), "holder survived");
  assert.equal(await stateFileExists(hooks), false);
});

Deno.test("`mariadb-flush.sh thaw` returns promptly and cleanly when the lock session died", async (t) => {
  const ends: { what: string; end: (server: MariaDbServer, hooks: HookDir) => Promise<void> }[] = [
    {
      what: "client process killed",
      end: async (_server, hooks) => Deno.kill((await holderOf(hooks)).pid, "SIGKILL"),
    },
    {
      what: "connection killed on the server",
      end: async (server, hooks) => {
        await server.query(`KILL CONNECTION ${(await holderOf(hooks)).connection}`);
      },
    },
  ];
  for (const { what, end } of ends) {
    await t.step(what, async () => {
      await using scene = await createMariaDbScene();
      const { server, hooks } = scene;
      assert.equal((await hooks.run("freeze")).code, 0);
      await end(server, hooks);
      const thaw = await hooks.run("thaw", { timeoutMs: 15_000 });
      assert.equal(thaw.code, 0, thaw.stderr);
      await assertWritable(server);
      assert.equal(await stateFileExists(hooks), false);
    });
  }
});

Deno.test("`mariadb-flush.sh` lock releases itself after MARIADB_FLUSH_MAX_HOLD when thaw never comes", async () => {
  await using scene = await createMariaDbScene();
  const { server, hooks } = scene;
  const env = { MARIADB_FLUSH_MAX_HOLD: "3" };
  const freeze = await hooks.run("freeze", { env });
  assert.equal(freeze.code, 0, freeze.stderr);
  const insert = server.startQuery("INSERT INTO app.t VALUES (1)");
  try {
    assert.ok(await eventually(() => insertWaitsForLock(server)), "INSERT is not waiting");
    const inserted = await within(insert.done, 20_000, "the INSERT without thaw");
    assert.equal(inserted.code, 0, inserted.stderr);
  } finally {
    if (!insert.finished()) await insert.kill();
  }
  // A late thaw still cleans up and says what happened.
  const thaw = await hooks.run("thaw", { env });
  assert.equal(thaw.code, 0, thaw.stderr);
  assert.match(thaw.stderr, /released itself after 3s/);
});

Deno.test("`mariadb-flush.sh freeze` fails by its deadline and leaves no lock when the flush cannot finish", async () => {
  await using scene = await createMariaDbScene();
  const { server, hooks } = scene;
  // A session holding a table write lock makes FLUSH TABLES WITH READ LOCK wait.
  const blocker = server.startQuery("LOCK TABLES app.t WRITE; SELECT SLEEP(120)");
  try {
    const sleeping = "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'User sleep'";
    assert.ok(await eventually(async () => await server.query(sleeping) !== ""));
    const freeze = await hooks.run("freeze", { deadlineSeconds: 4, timeoutMs: 20_000 });
    assert.equal(freeze.code, 1);
    assert.match(freeze.stderr, /did not finish before the deadline/);
    // End the blocker's table lock now (a killed client is noticed only seconds later).
    await server.query(`KILL CONNECTION ${await server.query(sleeping)}`);
  } finally {
    await blocker.kill();
  }
  assert.ok(await eventually(async () => await hookSessions(server) === 0), "hook session left");
  await assertWritable(server);
  assert.equal(await stateFileExists(hooks), false);
});

Deno.test("`mariadb-flush.sh freeze` fails with the server's reason without the RELOAD privilege", async () => {
  await using scene = await createMariaDbScene();
  const { server, hooks } = scene;
  await server.query(`REVOKE RELOAD ON *.* FROM '${MARIADB_HOOK_USER}'@'localhost'`);
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 1);
  assert.match(freeze.stderr, /RELOAD/);
  assert.match(freeze.stderr, /freeze failed: 50-mariadb-flush\.sh failed with status 1/);
  await assertWritable(server);
});

/** A hook directory with the sample and an option file pointing at `socket`. */
async function sampleWithoutServer(socket: string): Promise<HookDir> {
  const hooks = await createHookDir();
  await hooks.addSample("50-mariadb-flush.sh", "mariadb-flush.sh.sample");
  await Deno.writeTextFile(
    `${hooks.hookD}/mariadb-flush.cnf`,
    `[client]\nsocket=${socket}\nuser=nobody\npassword=unused\n`,
    { mode: 0o600 },
  );
  return hooks;
}

Deno.test("`mariadb-flush.sh` exits 0 on freeze and thaw when no server is running", async () => {
  await using hooks = await sampleWithoutServer("/nonexistent/mysqld.sock");
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.match(freeze.stderr, /no server reachable, nothing to lock \(ERROR 2002/);
  const thaw = await hooks.run("thaw");
  assert.equal(thaw.code, 0, thaw.stderr);
  assert.match(thaw.stderr, /nothing to release/);
});

Deno.test("`mariadb-flush.sh` exits 0 when no client is installed", async () => {
  await using hooks = await sampleWithoutServer("/nonexistent/mysqld.sock");
  const env = { MARIADB_FLUSH_CLIENT: "/nonexistent/mariadb" };
  const freeze = await hooks.run("freeze", { env });
  assert.equal(freeze.code, 0, freeze.stderr);
  assert.match(freeze.stderr, /no mariadb\/mysql client found/);
  assert.equal((await hooks.run("thaw", { env })).code, 0);
});

Deno.test("`mariadb-flush.sh freeze` refuses a group-writable option file", async () => {
  await using hooks = await sampleWithoutServer("/nonexistent/mysqld.sock");
  await Deno.chmod(`${hooks.hookD}/mariadb-flush.cnf`, 0o620);
  const freeze = await hooks.run("freeze");
  assert.equal(freeze.code, 1);
  assert.match(freeze.stderr, /refusing .*mariadb-flush\.cnf: group- or world-writable/);
});
