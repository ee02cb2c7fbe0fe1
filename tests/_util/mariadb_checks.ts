/**
 * Checks shared by the MariaDB hook tests and the agent's MariaDB snapshot tests: is the global
 * read lock held (a writer waits), is it gone (a write goes through), how many hook sessions are
 * connected; and two small polling helpers.
 *
 * @module
 */

import { MARIADB_HOOK_USER } from "./db_hook_fixtures.ts";
import type { MariaDbServer } from "./mariadb.ts";

/** Polls `check` every 100 ms until it is true or `ms` passed; returns the last answer. */
export async function eventually(check: () => Promise<boolean>, ms = 30_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return await check();
}

/** Whether `pid` is a live (not zombie) process. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Whether an INSERT into app.t is waiting for a lock (the global read lock). */
export async function insertWaitsForLock(server: MariaDbServer): Promise<boolean> {
  const waiting = await server.query(
    "SELECT COUNT(*) FROM information_schema.PROCESSLIST " +
      "WHERE INFO LIKE 'INSERT INTO app.t%' AND STATE LIKE 'Waiting for%lock'",
  );
  return waiting === "1";
}

/** Throws unless a write goes through at once (no global read lock is held). */
export async function assertWritable(server: MariaDbServer): Promise<void> {
  await server.query("SET SESSION lock_wait_timeout = 1; INSERT INTO app.t VALUES (99)");
}

/** Sessions of the hook's database user. */
export async function hookSessions(server: MariaDbServer): Promise<number> {
  return Number(
    await server.query(
      `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '${MARIADB_HOOK_USER}'`,
    ),
  );
}
