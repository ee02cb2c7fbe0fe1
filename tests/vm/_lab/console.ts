/**
 * The guest's command console: a root shell on the virtio console hvc0 (autologin getty; the
 * image's /root/.bashrc turns off echo, line editing, prompts and history there), reached through
 * the unix socket QEMU listens on. One command at a time, one connection per command.
 *
 * A command is a bash script. It travels base64-encoded in short lines (the tty's line limit is
 * 4 KiB) into /run/lab (tmpfs), runs as `bash /run/lab/ID.sh` (/run is noexec), and its stdout,
 * exit status and stderr come back between markers that contain a random id. The markers are
 * printed with `printf '%s_%s' ID X`, so an echo of the command line (before the shell has turned
 * echo off) never contains them. Everything the shell writes stays under /run, so the console
 * keeps working while / is frozen; a script that writes to / blocks there until the thaw, so such
 * writes must be started in the background (and their outcome checked later).
 *
 * Output the guest writes while no command is running is lost (QEMU drops it without a client).
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CHUNK = 1000;
const DEFAULT_TIMEOUT_MS = 60_000;
/** How long the shell gets to settle after an interrupt. */
const INTERRUPT_SETTLE_MS = 3000;

/** What a console command produced. */
export interface ConsoleResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link GuestConsole.run}. */
export interface ConsoleRunOptions {
  /** Give up waiting for the end marker after this long. @default 60000 */
  timeoutMs?: number;
  /** The script only reads: a run whose end marker never came is asked once more. */
  readOnly?: boolean;
}

/** Thrown when a command's end marker did not come in time (the shell may be blocked). */
export class ConsoleTimeout extends Error {
  override name = "ConsoleTimeout";
}

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return "L" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The console of one guest. */
export class GuestConsole {
  readonly socketPath: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  /** Runs `script` with bash in the guest; resolves with its stdout, stderr and status. */
  run(script: string, options: ConsoleRunOptions = {}): Promise<ConsoleResult> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const next = this.#queue.then(async () => {
      try {
        return await this.#runNow(script, timeoutMs);
      } catch (err) {
        if (!(err instanceof ConsoleTimeout) || !options.readOnly) throw err;
        // On a loaded host the serial line has garbled a command (its markers never came):
        // clear the shell's input and ask once more; reading twice changes nothing.
        await this.#interrupt();
        return await this.#runNow(script, timeoutMs);
      }
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  /** Runs `script`; throws unless it exits 0; resolves to its trimmed stdout. */
  async ok(script: string, options: ConsoleRunOptions = {}): Promise<string> {
    const result = await this.run(script, options);
    if (result.code !== 0) {
      throw new Error(
        `guest command failed (${result.code}): ${script.slice(0, 300)}\n` +
          `stdout: ${result.stdout.slice(-2000)}\nstderr: ${result.stderr.slice(-2000)}`,
      );
    }
    return result.stdout.trim();
  }

  /** Waits until the shell answers (the guest has booted that far). */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        await this.run("true", { timeoutMs: 10_000 });
        return;
      } catch (err) {
        last = err;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    throw new Error(`the guest console did not answer within ${timeoutMs} ms: ${last}`);
  }

  /** Ctrl-C and a new line: the shell drops a half-received command and prompts again. */
  async #interrupt(): Promise<void> {
    const conn = await Deno.connect({ transport: "unix", path: this.socketPath });
    try {
      await writeAll(conn, encoder.encode("\x03\n"));
      await new Promise((resolve) => setTimeout(resolve, INTERRUPT_SETTLE_MS));
    } finally {
      conn.close();
    }
  }

  async #runNow(script: string, timeoutMs: number): Promise<ConsoleResult> {
    const id = randomId();
    const conn = await Deno.connect({ transport: "unix", path: this.socketPath });
    const timer = setTimeout(() => {
      try {
        conn.close();
      } catch {
        // closed
      }
    }, timeoutMs);
    let received = "";
    try {
      await writeAll(conn, encoder.encode(commandLines(id, script)));
      const buffer = new Uint8Array(65536);
      for (;;) {
        const read = await conn.read(buffer).catch(() => null);
        if (read === null) break;
        received += decoder.decode(buffer.subarray(0, read), { stream: true });
        const result = parseResult(id, received);
        if (result !== undefined) return result;
      }
      throw new ConsoleTimeout(
        `no answer from the guest console within ${timeoutMs} ms for: ${script.slice(0, 300)}` +
          `\nreceived: ${received.slice(-1000)}`,
      );
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch {
        // closed by the timer
      }
    }
  }
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let at = 0; at < bytes.length; at += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  }
  return btoa(binary);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let offset = 0; offset < data.length;) offset += await conn.write(data.subarray(offset));
}

/** The lines typed into the shell: the script in chunks, then the run with its markers. */
function commandLines(id: string, script: string): string {
  const encoded = encodeBase64(encoder.encode(script));
  const file = `/run/lab/${id}`;
  // Not `mkdir -p`: that calls mkdir("/run") first, which blocks while / is frozen.
  const lines = [`[ -d /run/lab ] || mkdir /run/lab; : >${file}.b64`];
  for (let at = 0; at < encoded.length; at += CHUNK) {
    lines.push(`echo ${encoded.slice(at, at + CHUNK)} >>${file}.b64`);
  }
  lines.push(
    `base64 -d ${file}.b64 >${file}.sh; printf '%s_%s\\n' ${id} B; ` +
      `bash ${file}.sh </dev/null 2>${file}.err; printf '\\n%s_%s %s\\n' ${id} O $?; ` +
      `cat ${file}.err; printf '\\n%s_%s\\n' ${id} E; rm -f ${file}.b64 ${file}.sh ${file}.err`,
  );
  return lines.join("\n") + "\n";
}

/** The result once the end marker has arrived, else undefined. */
function parseResult(id: string, received: string): ConsoleResult | undefined {
  const text = received.replaceAll("\r\n", "\n");
  const begin = text.indexOf(`${id}_B\n`);
  const end = text.indexOf(`\n${id}_E\n`);
  if (begin < 0 || end < 0) return undefined;
  const middle = text.slice(begin + id.length + 3, end);
  const status = middle.match(new RegExp(`\\n${id}_O (\\d+)\\n`));
  if (status === null || status.index === undefined) return undefined;
  return {
    code: Number(status[1]),
    stdout: middle.slice(0, status.index),
    stderr: middle.slice(status.index + status[0].length),
  };
}
