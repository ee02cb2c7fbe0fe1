/**
 * A MariaDB write load inside a guest, as tests/_util/write_load.ts runs on the host: awk feeds
 * one client session an endless stream of numbered INSERTs in autocommit mode (durable on
 * commit: innodb_flush_log_at_trx_commit=1), each followed by a SELECT of its id and the server's
 * clock, which the client prints only once the INSERT has been acknowledged. Those lines go to a
 * tmpfs file: "<id>\t<epoch seconds of the acknowledgement>". A short sleep per row keeps the
 * load from taking the whole (emulated) CPU.
 *
 * @module
 */

import type { Guest } from "./guest.ts";
import { poll } from "./proc.ts";

const DIR = "/run/lab-load";

/** One acknowledged INSERT. */
export interface Ack {
  id: number;
  /** Guest wall clock (MariaDB's NOW(6)), epoch seconds. */
  at: number;
}

/** Creates lab.t (empty) in the guest's MariaDB; waits for the server first. */
export async function prepareTable(guest: Guest): Promise<void> {
  await guest.console.ok(
    "for i in $(seq 120); do mariadb -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done\n" +
      "mariadb -e 'CREATE DATABASE IF NOT EXISTS lab; " +
      "CREATE TABLE IF NOT EXISTS lab.t (id BIGINT PRIMARY KEY, acked DOUBLE) ENGINE=InnoDB; " +
      "TRUNCATE lab.t'",
    { timeoutMs: 180_000 },
  );
}

/** Starts the load in its own session (setsid) in the background. */
export async function startLoad(guest: Guest): Promise<void> {
  const statement = "INSERT INTO lab.t VALUES (%d, UNIX_TIMESTAMP(NOW(6))); " +
    "SELECT %d, UNIX_TIMESTAMP(NOW(6)); DO SLEEP(0.02);";
  await guest.console.ok(
    `rm -rf ${DIR}; mkdir ${DIR}\n` +
      `cat >${DIR}/load.sh <<'EOF'\n` +
      `awk 'BEGIN { for (i = 1; ; i++) printf "${statement}\\n", i, i }' |\n` +
      `  mariadb --batch --skip-column-names --unbuffered >${DIR}/acked 2>${DIR}/errors\n` +
      `echo $? >${DIR}/exit\n` +
      `EOF\n` +
      `setsid bash ${DIR}/load.sh </dev/null >/dev/null 2>&1 &\n` +
      `echo $! >${DIR}/pid`,
  );
}

/**
 * One line of the client's output as it prints it: the id, a tab, UNIX_TIMESTAMP(NOW(6)) (ten
 * digits, six decimals). A line the client was still writing when it was read (or one the serial
 * console garbled) does not match: "4711\t17" would read as an acknowledgement at epoch 17.
 */
const ACK_LINE = /^(\d+)\t(\d{10}\.\d{6})$/;

/** The acknowledged INSERTs so far (complete lines only). */
export async function acks(guest: Guest): Promise<Ack[]> {
  const text = await guest.console.ok(`cat ${DIR}/acked`, { timeoutMs: 120_000, readOnly: true });
  return text.split("\n").map((line) => ACK_LINE.exec(line.trim())).filter((m) => m !== null)
    .map((m) => ({ id: Number(m[1]), at: Number(m[2]) }));
}

/** Waits until at least `count` INSERTs were acknowledged; throws if the load stopped. */
export async function waitForAcks(
  guest: Guest,
  count: number,
  timeoutMs = 120_000,
): Promise<number> {
  const reached = await poll(async () => {
    const n = Number(await guest.console.ok(`wc -l <${DIR}/acked`, { readOnly: true }));
    if (n >= count) return { n };
    const exit = await guest.console.ok(`cat ${DIR}/exit 2>/dev/null || true`);
    return exit === "" ? undefined : { stopped: await loadErrors(guest) };
  }, { timeoutMs, intervalMs: 2000 });
  if (reached === undefined) throw new Error(`the load did not reach ${count} acknowledged rows`);
  if ("stopped" in reached) throw new Error(`the load stopped: ${reached.stopped}`);
  return reached.n;
}

/** The client's error output. */
export async function loadErrors(guest: Guest): Promise<string> {
  return await guest.console.ok(`cat ${DIR}/errors 2>/dev/null || true`);
}

/** Stops the load (its whole session). */
export async function stopLoad(guest: Guest): Promise<void> {
  await guest.console.run(
    `pid=$(cat ${DIR}/pid 2>/dev/null) && kill -TERM -- -$pid 2>/dev/null; true`,
  );
}
