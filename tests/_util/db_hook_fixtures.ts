/**
 * Ready-made scenes for hook tests with real databases: a loop-mounted ext4 (from `loopfs.ts`)
 * holding a private server's data directory, and a private dispatcher install (`hook_dir.ts`)
 * with the matching sample hook enabled and configured. The hook tests use them, and so can an
 * end-to-end test that lets the agent freeze the mount with the dispatcher as its hook.
 *
 * Disposal runs in the only safe order: thaw the mount (a server writing to a frozen filesystem
 * cannot stop), end what the hooks left running, stop the server, then unmount.
 *
 * @module
 */

import { createLoopMounts, type LoopMounts } from "./loopfs.ts";
import { createHookDir, type HookDir } from "./hook_dir.ts";
import { type MariaDbServer, startMariaDb } from "./mariadb.ts";
import { type PostgresServer, startPostgres } from "./postgres.ts";

/** The MariaDB account the sample hook uses in these scenes (RELOAD privilege only). */
export const MARIADB_HOOK_USER = "fsfreeze_hook";
/** Its password: it must never show up on a process's command line. */
export const MARIADB_HOOK_PASSWORD = "s3cret-not-on-argv";

/** Options shared by the scenes. */
export interface SceneOptions {
  /** Size of the loop filesystem. @default 256 */
  sizeMiB?: number;
  /** Where the sample is installed in the hook directory. */
  hookName?: string;
}

/** A MariaDB server on a loop mount with `mariadb-flush.sh` enabled; `await using` it. */
export interface MariaDbScene extends AsyncDisposable {
  readonly mounts: LoopMounts;
  /** The loop mount holding the data directory (the only thing a test may freeze). */
  readonly mount: string;
  readonly server: MariaDbServer;
  readonly hooks: HookDir;
  /** The installed sample (`<hookD>/50-mariadb-flush.sh` by default). */
  readonly script: string;
  /** Its option file (`<hookD>/mariadb-flush.cnf`, mode 0600, user/password of the hook). */
  readonly cnf: string;
}

/** A PostgreSQL server on a loop mount with `postgresql-checkpoint.sh` enabled. */
export interface PostgresScene extends AsyncDisposable {
  readonly mounts: LoopMounts;
  readonly mount: string;
  readonly server: PostgresServer;
  readonly hooks: HookDir;
  readonly script: string;
}

/** Disposes `resources` in the given order, collecting errors. */
async function disposeAll(steps: (() => PromiseLike<unknown>)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, "scene cleanup failed");
}

/** Makes a loop mount whose directory tree the database users can traverse. */
async function databaseMount(sizeMiB: number): Promise<LoopMounts> {
  const mounts = await createLoopMounts(1, { sizeMiB });
  await Deno.chmod(mounts.dir, 0o711);
  return mounts;
}

/**
 * Starts MariaDB with its data directory on a new loop mount, creates the database `app` with
 * table `app.t (i INT)` (InnoDB) and the hook's account, and installs the sample hook with an
 * option file holding that account.
 */
export async function createMariaDbScene(options: SceneOptions = {}): Promise<MariaDbScene> {
  const mounts = await databaseMount(options.sizeMiB ?? 256);
  const mount = mounts.mounts[0] as string;
  let server: MariaDbServer | undefined;
  let hooks: HookDir | undefined;
  const cleanup = (): Promise<void> =>
    disposeAll([
      () => mounts.thawAll(),
      async () => await hooks?.[Symbol.asyncDispose](),
      async () => await server?.stop(),
      () => mounts[Symbol.asyncDispose](),
    ]);
  try {
    server = await startMariaDb(`${mount}/mysql`);
    await server.query(
      "CREATE DATABASE app; CREATE TABLE app.t (i INT) ENGINE=InnoDB; " +
        `CREATE USER '${MARIADB_HOOK_USER}'@'localhost' IDENTIFIED BY '${MARIADB_HOOK_PASSWORD}'; ` +
        `GRANT RELOAD ON *.* TO '${MARIADB_HOOK_USER}'@'localhost';`,
    );
    hooks = await createHookDir();
    const script = await hooks.addSample(
      options.hookName ?? "50-mariadb-flush.sh",
      "mariadb-flush.sh.sample",
    );
    const cnf = `${hooks.hookD}/mariadb-flush.cnf`;
    await server.writeClientCnf(cnf, MARIADB_HOOK_USER, MARIADB_HOOK_PASSWORD);
    return {
      mounts,
      mount,
      server,
      hooks,
      script,
      cnf,
      [Symbol.asyncDispose]: cleanup,
    };
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }
}

/**
 * Starts PostgreSQL with its data directory on a new loop mount and installs the sample hook;
 * the scene's runs need `server.env` (PGHOST, PGPORT) passed to the hook.
 */
export async function createPostgresScene(options: SceneOptions = {}): Promise<PostgresScene> {
  const mounts = await databaseMount(options.sizeMiB ?? 256);
  const mount = mounts.mounts[0] as string;
  let server: PostgresServer | undefined;
  let hooks: HookDir | undefined;
  const cleanup = (): Promise<void> =>
    disposeAll([
      () => mounts.thawAll(),
      async () => await hooks?.[Symbol.asyncDispose](),
      async () => await server?.stop(),
      () => mounts[Symbol.asyncDispose](),
    ]);
  try {
    server = await startPostgres(`${mount}/pgdata`);
    hooks = await createHookDir();
    const script = await hooks.addSample(
      options.hookName ?? "60-postgresql-checkpoint.sh",
      "postgresql-checkpoint.sh.sample",
    );
    return { mounts, mount, server, hooks, script, [Symbol.asyncDispose]: cleanup };
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }
}
