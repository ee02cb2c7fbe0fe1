/**
 * A private PostgreSQL server for tests: its own data directory (e.g. on a loop mount from
 * `loopfs.ts`), initialized with `initdb` (local connections: peer authentication), listening
 * only on a unix socket in its own temp directory. Started as root and run as the `postgres`
 * user through `setpriv` (which execs, so the PID we hold is the postmaster's).
 *
 * Stopping kills the postmaster by its PID (SIGINT = fast shutdown, SIGKILL after a grace period)
 * and removes the socket directory; the data directory is left to its owner.
 * Every parent directory of the data directory must be traversable by `postgres`.
 *
 * @module
 */

import { userIds } from "./mariadb.ts";

const decoder = new TextDecoder();
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 30_000;
const PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** Options of {@link startPostgres}. */
export interface PostgresOptions {
  /** Port number (it only names the socket file: there is no TCP listener). @default 5432 */
  port?: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** Run `initdb` first; false starts on an existing data directory. @default true */
  initialize?: boolean;
}

/** A running private server; `await using` it. */
export interface PostgresServer extends AsyncDisposable {
  readonly datadir: string;
  /** The socket directory (PGHOST). */
  readonly dir: string;
  readonly port: number;
  readonly pid: number;
  /** Directory of the server's programs (initdb, postgres, psql, pg_controldata). */
  readonly bindir: string;
  /** PGHOST and PGPORT for clients and hooks. */
  readonly env: { PGHOST: string; PGPORT: string };
  /** The server's log (stderr): resolves once the server has stopped (last 20,000 chars). */
  readonly log: Promise<string>;
  /** Runs `sql` as `postgres` (unaligned, tuples only); resolves to stdout, rejects on error. */
  query(sql: string, options?: { timeoutMs?: number }): Promise<string>;
  /** Stops the server (idempotent). */
  stop(): Promise<void>;
}

/** The newest installed server's program directory (Debian's /usr/lib/postgresql/N/bin). */
export async function postgresBindir(): Promise<string> {
  const versions: number[] = [];
  for await (const entry of Deno.readDir("/usr/lib/postgresql")) {
    if (/^\d+$/.test(entry.name)) versions.push(Number(entry.name));
  }
  if (versions.length === 0) throw new Error("no PostgreSQL server in /usr/lib/postgresql");
  return `/usr/lib/postgresql/${Math.max(...versions)}/bin`;
}

/** `args` run as `postgres` (setpriv execs: no extra process). */
function asPostgres(args: string[]): string[] {
  return ["--reuid=postgres", "--regid=postgres", "--init-groups", "--", ...args];
}

async function runAsPostgres(args: string[], signal?: AbortSignal): Promise<string> {
  const output = await new Deno.Command("setpriv", {
    args: asPostgres(args),
    env: { PATH, LC_ALL: "C", HOME: "/" },
    clearEnv: true,
    cwd: "/",
    stdin: "null",
    ...(signal ? { signal } : {}),
  }).output();
  if (!output.success) {
    const text = decoder.decode(output.stderr) + decoder.decode(output.stdout);
    const reason = output.signal ? `killed by ${output.signal}` : `status ${output.code}`;
    throw new Error(`${args.join(" ")} failed (${reason}): ${text.trim()}`);
  }
  return decoder.decode(output.stdout).trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class PrivatePostgres implements PostgresServer {
  readonly datadir: string;
  readonly dir: string;
  readonly port: number;
  readonly bindir: string;
  readonly #child: Deno.ChildProcess;
  readonly #log: Promise<string>;
  #stopped: Promise<void> | undefined;

  constructor(
    datadir: string,
    dir: string,
    port: number,
    bindir: string,
    child: Deno.ChildProcess,
  ) {
    this.datadir = datadir;
    this.dir = dir;
    this.port = port;
    this.bindir = bindir;
    this.#child = child;
    this.#log = collect(child.stderr);
  }

  /** The server's log (stderr) once it has stopped; its last 20,000 characters. */
  get log(): Promise<string> {
    return this.#log;
  }

  get pid(): number {
    return this.#child.pid;
  }

  get env(): { PGHOST: string; PGPORT: string } {
    return { PGHOST: this.dir, PGPORT: String(this.port) };
  }

  async query(sql: string, options: { timeoutMs?: number } = {}): Promise<string> {
    return await runAsPostgres(
      [
        `${this.bindir}/psql`,
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        this.dir,
        "-p",
        String(this.port),
        "-d",
        "postgres",
        "-c",
        sql,
      ],
      AbortSignal.timeout(options.timeoutMs ?? 20_000),
    );
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    try {
      this.#child.kill("SIGINT"); // fast shutdown: no wait for clients
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
    await this.#log.catch(() => "");
    await Deno.remove(this.dir, { recursive: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Initializes `datadir` (created mode 0700, owned by `postgres`; it must be empty) with `initdb`
 * (unless `options.initialize` is false: then it must hold a cluster) and starts the server on
 * it; resolves once it accepts connections.
 */
export async function startPostgres(
  datadir: string,
  options: PostgresOptions = {},
): Promise<PostgresServer> {
  const bindir = await postgresBindir();
  const { uid, gid } = await userIds("postgres");
  await Deno.mkdir(datadir, { recursive: true });
  await Deno.chown(datadir, uid, gid);
  await Deno.chmod(datadir, 0o700);
  const dir = await Deno.makeTempDir({ prefix: "agent_test_pg_" });
  await Deno.chown(dir, uid, gid);
  await Deno.chmod(dir, 0o755);
  const port = options.port ?? 5432;
  if (options.initialize !== false) {
    try {
      await runAsPostgres([
        `${bindir}/initdb`,
        "-D",
        datadir,
        "-U",
        "postgres",
        "--auth-local=peer",
        "--auth-host=reject",
        "--no-instructions",
        "--no-sync",
      ]);
    } catch (err) {
      await Deno.remove(dir, { recursive: true });
      throw err;
    }
  }
  const settings = { "listen_addresses": "", ...options.settings };
  const child = new Deno.Command("setpriv", {
    args: asPostgres([
      `${bindir}/postgres`,
      "-D",
      datadir,
      "-k",
      dir,
      "-p",
      String(port),
      ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`]),
    ]),
    env: { PATH, LC_ALL: "C", HOME: "/" },
    clearEnv: true,
    cwd: "/",
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const server = new PrivatePostgres(datadir, dir, port, bindir, child);
  try {
    await waitReady(server, child);
  } catch (err) {
    await server.stop();
    const log = await server.log.catch(() => "");
    throw new Error(`postgres did not start: ${log.slice(-2000)}`, { cause: err });
  }
  return server;
}

/** Reads a stream to its end (the server log; keeps its pipe from filling up). */
async function collect(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream) text = (text + decoder.decode(chunk)).slice(-20_000);
  return text;
}

async function waitReady(server: PostgresServer, child: Deno.ChildProcess): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) throw new Error("postgres exited");
    try {
      await server.query("SELECT 1", { timeoutMs: 2000 });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(100);
  }
}
