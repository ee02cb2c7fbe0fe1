/**
 * A continuous write load for snapshot tests: one database client session, fed by `awk` an
 * endless stream of numbered statements in autocommit mode. After each statement group the client
 * prints its number, and only once the server has acknowledged it. Those numbers go, line by
 * line, to an "acknowledged ids" file in a temp directory on the root filesystem, never on a mount
 * that gets frozen. The session stops at the first error.
 *
 * The load runs in its own process group (`detached`), so stopping it ends awk and the client.
 * Writes that block on a frozen filesystem happen in the database server, never here.
 *
 * @module
 */

import type { MariaDbServer } from "./mariadb.ts";
import type { PostgresServer } from "./postgres.ts";

const STOP_GRACE_MS = 5000;
/** Where the number goes in a statement template. */
export const ID = "@ID@";

/**
 * `ack err template client...`: awk writes the template with `@ID@` = 1, 2, 3, ... to the client;
 * the client's output (the acknowledged ids) goes to `ack`, its errors to `err`.
 */
const LOAD_SCRIPT = [
  `ack=$1 err=$2 template=$3`,
  `shift 3`,
  `exec >"$ack" 2>"$err" </dev/null`,
  `awk -v t="$template" 'BEGIN { for (i = 1; ; i++) { s = t; gsub(/${ID}/, i, s); print s } }' |`,
  `  "$@"`,
].join("\n");

/** A running load; `await using` it. */
export interface WriteLoad extends AsyncDisposable {
  /** PID of the load's process group leader. */
  readonly pid: number;
  /** The acknowledged-ids file. */
  readonly ackFile: string;
  /** Whether the load is still running (it stops at the first error). */
  running(): boolean;
  /** The ids acknowledged so far, from the complete lines of the file, in order. */
  acked(): Promise<number[]>;
  /** Resolves with the acknowledged count once it reaches `count`; rejects if the load ends. */
  waitForAcks(count: number, timeoutMs?: number): Promise<number>;
  /** The client's error output so far. */
  errors(): Promise<string>;
  /** Stops the load (idempotent). */
  stop(): Promise<void>;
}

class ClientLoad implements WriteLoad {
  readonly ackFile: string;
  readonly #dir: string;
  readonly #child: Deno.ChildProcess;
  #exited = false;
  #stopped: Promise<void> | undefined;

  constructor(dir: string, child: Deno.ChildProcess) {
    this.#dir = dir;
    this.ackFile = `${dir}/acked`;
    this.#child = child;
    child.status.then(() => this.#exited = true);
  }

  get pid(): number {
    return this.#child.pid;
  }

  running(): boolean {
    return !this.#exited;
  }

  async acked(): Promise<number[]> {
    const text = await Deno.readTextFile(this.ackFile);
    const complete = text.slice(0, text.lastIndexOf("\n") + 1);
    return complete.split("\n").filter((line) => line !== "").map(Number);
  }

  async waitForAcks(count: number, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const acked = (await this.acked()).length;
      if (acked >= count) return acked;
      if (this.#exited) {
        throw new Error(`the load ended after ${acked} ids: ${await this.errors()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`only ${acked} of ${count} ids acknowledged in ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async errors(): Promise<string> {
    return await Deno.readTextFile(`${this.#dir}/errors`).catch(() => "");
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    killGroup(this.#child.pid, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), STOP_GRACE_MS);
    });
    if (await Promise.race([this.#child.status, grace]) === "timeout") {
      killGroup(this.#child.pid, "SIGKILL");
    }
    clearTimeout(timer);
    await this.#child.status;
    // The group's other members (the client) may outlive the leader by a moment.
    killGroup(this.#child.pid, "SIGKILL");
    await Deno.remove(this.#dir, { recursive: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function killGroup(pgid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pgid, signal);
  } catch {
    // the group is gone
  }
}

/**
 * Starts `client` (argv; it must read statements from stdin and stop at the first error) fed
 * with `template` numbered 1, 2, 3, ...; the template must end by printing `@ID@`.
 */
export async function startWriteLoad(
  template: string,
  client: string[],
  options: { env?: Record<string, string> } = {},
): Promise<WriteLoad> {
  if (!template.includes(ID)) throw new TypeError(`the template must contain ${ID}`);
  const dir = await Deno.makeTempDir({ prefix: "agent_test_load_" });
  const child = new Deno.Command("sh", {
    args: ["-c", LOAD_SCRIPT, "load", `${dir}/acked`, `${dir}/errors`, template, ...client],
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C", HOME: "/", ...options.env },
    clearEnv: true,
    cwd: "/",
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  const load = new ClientLoad(dir, child);
  // The shell creates the file at once; wait for it so acked() never races its creation.
  for (let i = 0; i < 100; i++) {
    if (await Deno.stat(load.ackFile).then(() => true, () => false)) return load;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await load.stop();
  throw new Error("the load did not start");
}

/**
 * A load on a MariaDB server as root over its socket: each id is inserted by `template`'s
 * statements, each its own autocommit transaction; `SELECT @ID@` acknowledges them.
 */
export async function startMariaDbLoad(
  server: MariaDbServer,
  statements: string,
): Promise<WriteLoad> {
  return await startWriteLoad(`${statements} SELECT ${ID};`, [
    "stdbuf",
    "-oL",
    "mariadb",
    "--no-defaults",
    `--socket=${server.socket}`,
    "--user=root",
    "--batch",
    "--skip-column-names",
    "--unbuffered",
  ]);
}

/** Like {@link startMariaDbLoad}, as `postgres` with `psql` (autocommit, stop on error). */
export async function startPostgresLoad(
  server: PostgresServer,
  statements: string,
): Promise<WriteLoad> {
  return await startWriteLoad(`${statements} SELECT ${ID};`, [
    "setpriv",
    "--reuid=postgres",
    "--regid=postgres",
    "--init-groups",
    "--",
    "stdbuf",
    "-oL",
    `${server.bindir}/psql`,
    "-X",
    "-q",
    "-A",
    "-t",
    "-v",
    "ON_ERROR_STOP=1",
    "-h",
    server.dir,
    "-p",
    String(server.port),
    "-d",
    "postgres",
  ]);
}
