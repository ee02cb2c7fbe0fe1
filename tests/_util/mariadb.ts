/**
 * A private MariaDB server for tests: its own data directory (e.g. on a loop mount from
 * `loopfs.ts`), its own socket, PID file and error log in a temp directory, no TCP port, started
 * as root and run as the `mysql` user (`mariadbd --user=mysql`). Root logs in over the socket
 * (unix_socket authentication), so no password is needed for the test's own queries.
 *
 * Stopping kills the server by its PID (SIGTERM, SIGKILL after a grace period) and removes the
 * temp directory; the data directory is left to its owner (the loop mount's disposal).
 * Every parent directory of the data directory must be traversable by `mysql`.
 *
 * @module
 */

const decoder = new TextDecoder();
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 30_000;

/** Options of {@link startMariaDb}. */
export interface MariaDbOptions {
  /** Extra `mariadbd` options. */
  serverArgs?: string[];
  /** Run `mariadb-install-db` first; false starts on an existing data directory. @default true */
  initialize?: boolean;
}

/** Options of {@link MariaDbServer.query}. */
export interface QueryOptions {
  /** Kill the client after this long. @default 20000 */
  timeoutMs?: number;
}

/** What a client run produced. */
export interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A client started by {@link MariaDbServer.startQuery}, e.g. an INSERT expected to block. */
export interface PendingQuery {
  readonly pid: number;
  /** Resolves with the client's result when it exits. */
  readonly done: Promise<ClientResult>;
  /** Whether the client has exited. */
  finished(): boolean;
  /** Ends the client (SIGKILL) and waits for it. */
  kill(): Promise<void>;
}

/** A running private server; `await using` it. */
export interface MariaDbServer extends AsyncDisposable {
  readonly datadir: string;
  /** Temp directory with the socket, PID file and error log. */
  readonly dir: string;
  readonly socket: string;
  readonly pid: number;
  /** Runs `sql` as root (batch mode, no column names); resolves to stdout, rejects on error. */
  query(sql: string, options?: QueryOptions): Promise<string>;
  /** Runs `sql` as root in a client that the caller waits for (or kills). */
  startQuery(sql: string): PendingQuery;
  /** Writes a `[client]` option file (mode 0600) with this socket, `user` and `password`. */
  writeClientCnf(path: string, user: string, password: string): Promise<void>;
  /** The server's error log so far. */
  errorLog(): Promise<string>;
  /** Stops the server (idempotent). */
  stop(): Promise<void>;
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  if (!output.success) {
    const text = decoder.decode(output.stderr) + decoder.decode(output.stdout);
    throw new Error(`${command} ${args.join(" ")} failed (${output.code}): ${text.trim()}`);
  }
  return decoder.decode(output.stdout).trim();
}

/** uid and gid of a system user (Deno has no getpwnam). */
export async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  return {
    uid: Number(await run("id", ["-u", user])),
    gid: Number(await run("id", ["-g", user])),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class PrivateMariaDb implements MariaDbServer {
  readonly datadir: string;
  readonly dir: string;
  readonly socket: string;
  readonly #child: Deno.ChildProcess;
  #stopped: Promise<void> | undefined;

  constructor(datadir: string, dir: string, child: Deno.ChildProcess) {
    this.datadir = datadir;
    this.dir = dir;
    this.socket = `${dir}/mysqld.sock`;
    this.#child = child;
  }

  get pid(): number {
    return this.#child.pid;
  }

  #clientArgs(sql: string): string[] {
    return [
      "--no-defaults",
      `--socket=${this.socket}`,
      "--user=root",
      "--batch",
      "--skip-column-names",
      "-e",
      sql,
    ];
  }

  async query(sql: string, options: QueryOptions = {}): Promise<string> {
    const output = await new Deno.Command("mariadb", {
      args: this.#clientArgs(sql),
      stdin: "null",
      signal: AbortSignal.timeout(options.timeoutMs ?? 20_000),
    }).output();
    if (!output.success) {
      const reason = output.signal ? `killed by ${output.signal}` : `status ${output.code}`;
      throw new Error(`query failed (${reason}): ${sql}: ${decoder.decode(output.stderr).trim()}`);
    }
    return decoder.decode(output.stdout).trim();
  }

  startQuery(sql: string): PendingQuery {
    const child = new Deno.Command("mariadb", {
      args: this.#clientArgs(sql),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let exited = false;
    const done = child.output().then((output) => {
      exited = true;
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout).trim(),
        stderr: decoder.decode(output.stderr).trim(),
      };
    });
    return {
      pid: child.pid,
      done,
      finished: () => exited,
      async kill(): Promise<void> {
        try {
          child.kill("SIGKILL");
        } catch {
          // already exited
        }
        await done;
      },
    };
  }

  async writeClientCnf(path: string, user: string, password: string): Promise<void> {
    const text = `[client]\nsocket=${this.socket}\nuser=${user}\npassword=${password}\n`;
    await Deno.writeTextFile(path, text, { mode: 0o600 });
    await Deno.chmod(path, 0o600);
  }

  async errorLog(): Promise<string> {
    try {
      return await Deno.readTextFile(`${this.dir}/error.log`);
    } catch {
      return "";
    }
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already exited
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), STOP_GRACE_MS);
    });
    if (await Promise.race([this.#child.status, grace]) === "timeout") {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // exited just now
      }
    }
    clearTimeout(timer);
    await this.#child.status;
    await Deno.remove(this.dir, { recursive: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Initializes `datadir` (created, owned by `mysql`; it must not hold a database yet) with
 * `mariadb-install-db` (unless `options.initialize` is false: then it must hold one) and starts
 * `mariadbd` on it; resolves once the server answers.
 */
export async function startMariaDb(
  datadir: string,
  options: MariaDbOptions = {},
): Promise<MariaDbServer> {
  const { uid, gid } = await userIds("mysql");
  await Deno.mkdir(datadir, { recursive: true });
  await Deno.chown(datadir, uid, gid);
  const dir = await Deno.makeTempDir({ prefix: "agent_test_mariadb_" });
  await Deno.chown(dir, uid, gid);
  await Deno.chmod(dir, 0o755);
  // Small InnoDB files: the data directory lives on a small loop filesystem.
  const sizing = ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=16M"];
  if (options.initialize !== false) {
    try {
      await run("mariadb-install-db", [
        "--no-defaults",
        `--datadir=${datadir}`,
        "--user=mysql",
        "--auth-root-authentication-method=socket",
        "--skip-test-db",
        ...sizing,
      ]);
    } catch (err) {
      await Deno.remove(dir, { recursive: true });
      throw err;
    }
  }
  const child = new Deno.Command("mariadbd", {
    args: [
      "--no-defaults",
      `--datadir=${datadir}`,
      `--socket=${dir}/mysqld.sock`,
      `--pid-file=${dir}/mysqld.pid`,
      `--log-error=${dir}/error.log`,
      "--skip-networking",
      "--user=mysql",
      ...sizing,
      ...(options.serverArgs ?? []),
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const server = new PrivateMariaDb(datadir, dir, child);
  try {
    await waitReady(server, child);
  } catch (err) {
    const log = await server.errorLog();
    await server.stop();
    throw new Error(`mariadbd did not start: ${log.slice(-2000)}`, { cause: err });
  }
  return server;
}

async function waitReady(server: MariaDbServer, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) throw new Error("mariadbd exited");
    try {
      await server.query("SELECT 1", { timeoutMs: 2000 });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(100);
  }
}
