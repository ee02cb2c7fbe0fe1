/**
 * Debian's qemu-ga (installed by .ci/setup) on a private unix socket, for tests that compare with
 * it or use it as the delegate.
 *
 * Safety (this machine's root filesystem is its disk, and qemu-ga acts on the machine it runs
 * on): every qemu-ga started here blocks, with its own `-b`, every freeze command and every
 * command that changes the machine beyond what the tests need ({@link ALWAYS_BLOCKED}); it runs
 * with a private state dir, pidfile and log, reads no config file, and is ended by its PID.
 *
 * @module
 */

import assert from "node:assert/strict";
import { delay } from "./agent.ts";

/** Where Debian installs qemu-ga. */
export const QEMU_GA = "/usr/sbin/qemu-ga";

/** The freeze commands: never enabled in a qemu-ga on this machine. */
export const FREEZE_COMMANDS: readonly string[] = [
  "guest-fsfreeze-status",
  "guest-fsfreeze-freeze",
  "guest-fsfreeze-freeze-list",
  "guest-fsfreeze-thaw",
];

/**
 * Blocked in every qemu-ga a test starts: the freeze commands, and every command that would act
 * on this machine (power, vCPUs, memory, clock, trimming its disks, writing files or SSH keys).
 */
export const ALWAYS_BLOCKED: readonly string[] = [
  ...FREEZE_COMMANDS,
  "guest-shutdown",
  "guest-suspend-disk",
  "guest-suspend-ram",
  "guest-suspend-hybrid",
  "guest-set-vcpus",
  "guest-set-memory-blocks",
  "guest-set-time",
  "guest-fstrim",
  "guest-file-write",
  "guest-ssh-add-authorized-keys",
  "guest-ssh-remove-authorized-keys",
];

/** The commands qemu-ga knows (`qemu-ga -b help`), in its registration order. */
export async function qemuGaCommands(): Promise<string[]> {
  const output = await new Deno.Command(QEMU_GA, { args: ["-b", "help"], stdout: "piped" })
    .output();
  assert.equal(output.code, 0);
  return new TextDecoder().decode(output.stdout).split("\n").filter((line) => line !== "");
}

/** Options of {@link startQemuGa}. */
export interface QemuGaOptions {
  /** More commands to block besides {@link ALWAYS_BLOCKED}. */
  block?: readonly string[];
  /** `-v`: its log then holds every request it read. */
  verbose?: boolean;
}

/** A running qemu-ga; `await using` it. */
export class QemuGaProcess implements AsyncDisposable {
  /** Its private directory: socket, state dir, pidfile, log. */
  readonly dir: string;
  readonly socket: string;
  readonly log: string;
  readonly #args: string[];
  #child: Deno.ChildProcess;

  constructor(dir: string, args: string[], child: Deno.ChildProcess) {
    this.dir = dir;
    this.socket = `${dir}/qga.sock`;
    this.log = `${dir}/qemu-ga.log`;
    this.#args = args;
    this.#child = child;
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Sends `signal` to it (by its PID). */
  signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // gone
    }
  }

  /** Kills it (SIGKILL by default) and waits for it. */
  async kill(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    this.signal(signal);
    await this.#child.status;
  }

  /** Starts it again with the same arguments, on the same socket. */
  async restart(): Promise<void> {
    await this.kill();
    this.#child = spawn(this.dir, this.#args);
    await waitForSocket(this);
  }

  /** What it read so far (needs `verbose`). */
  async requestsRead(): Promise<string> {
    const log = await Deno.readTextFile(this.log).catch(() => "");
    return log.split("\n").filter((line) => line.includes("read data")).join("\n");
  }

  /** Ends it with {@link terminateQemuGa} (woken first, in case a test stopped it). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.signal("SIGCONT");
    await terminateQemuGa(this.#child);
  }
}

/** How long qemu-ga gets to leave after SIGTERM. */
const TERM_GRACE_MS = 10_000;

/**
 * SIGTERM to a qemu-ga the test started, then SIGKILL if it has not exited within
 * {@link TERM_GRACE_MS}: qemu-ga 7.2 can log "received signal num 15, quitting" and then never
 * leave (seen on loaded machines, a client having gone at the same moment: it waits on a lock,
 * SIGTERM blocked). Waits for it.
 */
export async function terminateQemuGa(child: Deno.ChildProcess): Promise<void> {
  const signal = (name: Deno.Signal): void => {
    try {
      child.kill(name);
    } catch {
      // gone
    }
  };
  signal("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<"late">((resolve) =>
    timer = setTimeout(resolve, TERM_GRACE_MS, "late")
  );
  try {
    if (await Promise.race([child.status, grace]) === "late") signal("SIGKILL");
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

function spawn(dir: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command(QEMU_GA, {
    args,
    // Its default config file may be this machine's: none is read (a missing one is no error).
    env: { QGA_CONF: `${dir}/no-such.conf` },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function waitForSocket(qga: QemuGaProcess): Promise<void> {
  for (let tries = 0; tries < 500; tries++) {
    try {
      (await Deno.connect({ transport: "unix", path: qga.socket })).close();
      return;
    } catch {
      await delay(20);
    }
  }
  await qga.kill();
  throw new Error(`qemu-ga did not open ${qga.socket}`);
}

/** Starts qemu-ga in `dir` (created; it must be private to the test). */
export async function startQemuGa(
  dir: string,
  options: QemuGaOptions = {},
): Promise<QemuGaProcess> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const blocked = [...new Set([...ALWAYS_BLOCKED, ...options.block ?? []])];
  const args = [
    "-m",
    "unix-listen",
    "-p",
    `${dir}/qga.sock`,
    "-t",
    dir,
    "-f",
    `${dir}/qemu-ga.pid`,
    "-l",
    `${dir}/qemu-ga.log`,
    ...(options.verbose ? ["-v"] : []),
    "-b",
    blocked.join(","),
  ];
  const qga = new QemuGaProcess(dir, args, spawn(dir, args));
  await waitForSocket(qga);
  return qga;
}
