/**
 * The lab's own libvirt: `virtlogd` and `libvirtd` started here (PID 1 on these machines is not
 * systemd), stopped here by the PIDs they wrote, and `virsh -c qemu:///system`.
 *
 * libvirtd runs in a private mount namespace in which a private config directory is bind-mounted
 * over /etc/libvirt: QEMU runs as root (without udev /dev/kvm stays root-only, and libvirtd would
 * re-probe QEMU every 2 s because its `qemu` user cannot open it; `virsh define` then hangs), with
 * no security driver, cgroups or per-domain /dev namespace, none of which a lab on a machine
 * without systemd and udev can provide. Nothing on the host is edited, and domain definitions land
 * in that private directory, so nothing of them outlives the run.
 *
 * Refuses to start when a libvirtd or virtlogd it did not start is already running.
 *
 * @module
 */

import { join } from "node:path";
import {
  note,
  onExit,
  output,
  poll,
  processAlive,
  processCmdline,
  run,
  type RunOptions,
  type RunResult,
  shellQuote,
  sleep,
} from "./proc.ts";

const URI = "qemu:///system";
const RUN_DIR = "/run/libvirt";
const LIBVIRTD_SOCKET = `${RUN_DIR}/libvirt-sock`;
const VIRTLOGD_SOCKET = `${RUN_DIR}/virtlogd-sock`;
const START_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 30_000;

const QEMU_CONF = `# The VM lab's private qemu.conf (tests/vm/_lab/libvirt.ts).
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
`;

function libvirtdConf(dir: string): string {
  return `# The VM lab's private libvirtd.conf (tests/vm/_lab/libvirt.ts).
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:${dir}/libvirtd.log"
`;
}

/** The programs the lab runs on the host; a missing one means the suite cannot run. */
export const HOST_PROGRAMS = [
  "qemu-system-x86_64",
  "qemu-img",
  "virsh",
  "libvirtd",
  "virtlogd",
  "unshare",
  "mmdebstrap",
  "mkfs.ext4",
  "e2fsck",
  "losetup",
  "xz",
  "mariadbd",
] as const;

/** Host programs that are not on PATH. */
export async function missingHostPrograms(): Promise<string[]> {
  const missing: string[] = [];
  for (const program of HOST_PROGRAMS) {
    const found = await run("sh", ["-c", `command -v "$1"`, "which", program], {
      allowFailure: true,
    });
    if (found.code !== 0) missing.push(program);
  }
  return missing;
}

async function socketAnswers(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function readPid(file: string): Promise<number | undefined> {
  const text = await Deno.readTextFile(file).catch(() => "");
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 && processAlive(pid) ? pid : undefined;
}

/** Sends SIGTERM, then SIGKILL after a grace period; only to a PID that still runs `name`. */
async function stopDaemon(pid: number, name: string): Promise<void> {
  if (!processCmdline(pid).includes(name)) return;
  Deno.kill(pid, "SIGTERM");
  const gone = await poll(() => Promise.resolve(processAlive(pid) ? undefined : true), {
    timeoutMs: STOP_GRACE_MS,
    intervalMs: 200,
  });
  if (gone === undefined && processCmdline(pid).includes(name)) {
    note(`${name} (${pid}) ignored SIGTERM for ${STOP_GRACE_MS} ms: SIGKILL`);
    Deno.kill(pid, "SIGKILL");
  }
}

/** The lab's running daemons; {@link Libvirt.stop} ends them. */
export class Libvirt {
  readonly dir: string;
  #virtlogdPid: number | undefined;
  #libvirtdPid: number | undefined;
  #createdRunDir = false;
  #unregister: () => void = () => {};

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** PID of the running libvirtd. */
  get libvirtdPid(): number | undefined {
    return this.#libvirtdPid;
  }

  /** Starts virtlogd and libvirtd with private configuration files in `dir`. */
  static async start(dir: string): Promise<Libvirt> {
    for (const [socket, name] of [[LIBVIRTD_SOCKET, "libvirtd"], [VIRTLOGD_SOCKET, "virtlogd"]]) {
      if (await socketAnswers(socket as string)) {
        throw new Error(
          `a ${name} this suite did not start is running (${socket} answers): the VM lab ` +
            `starts its own; stop that one first`,
        );
      }
    }
    const lab = new Libvirt(dir);
    lab.#createdRunDir = !(await Deno.stat(RUN_DIR).then(() => true, () => false));
    lab.#unregister = onExit("libvirt daemons", lab.#stopCommand());
    try {
      await Deno.mkdir(join(dir, "etc"), { recursive: true });
      await Deno.writeTextFile(join(dir, "etc", "qemu.conf"), QEMU_CONF);
      await Deno.writeTextFile(join(dir, "etc", "libvirtd.conf"), libvirtdConf(dir));
      await lab.#startVirtlogd();
      await lab.#startLibvirtd();
    } catch (err) {
      await lab.stop().catch(() => {});
      throw err;
    }
    return lab;
  }

  async #startVirtlogd(): Promise<void> {
    const pidFile = join(this.dir, "virtlogd.pid");
    await run("virtlogd", ["-d", "-p", pidFile]);
    this.#virtlogdPid = await poll(() => readPid(pidFile), { timeoutMs: 30_000, intervalMs: 100 });
    if (this.#virtlogdPid === undefined) throw new Error("virtlogd did not write its PID file");
  }

  async #startLibvirtd(): Promise<void> {
    const pidFile = join(this.dir, "libvirtd.pid");
    await Deno.remove(pidFile).catch(() => {});
    // A private mount namespace: the bind mount of the private config exists only in it.
    await run("unshare", [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      'mount --bind "$1" /etc/libvirt && exec libvirtd -d -p "$2" -f "$1/libvirtd.conf"',
      "libvirtd",
      join(this.dir, "etc"),
      pidFile,
    ]);
    this.#libvirtdPid = await poll(() => readPid(pidFile), { timeoutMs: 30_000, intervalMs: 100 });
    if (this.#libvirtdPid === undefined) throw new Error("libvirtd did not write its PID file");
    // The first connection waits for libvirtd's QEMU capability probe.
    const ready = await poll(
      async () => (await this.virsh(["version"], { timeoutMs: 60_000 })).code === 0 || undefined,
      { timeoutMs: START_TIMEOUT_MS, intervalMs: 500 },
    );
    if (ready === undefined) throw new Error(`libvirtd does not answer: ${await this.log()}`);
  }

  /**
   * Stops libvirtd (domains keep running; their agent ports see no host), runs `whileStopped`, and
   * starts it again; resolves once it answers.
   */
  async restartLibvirtd(whileStopped?: () => Promise<void>): Promise<void> {
    if (this.#libvirtdPid !== undefined) await stopDaemon(this.#libvirtdPid, "libvirtd");
    this.#libvirtdPid = undefined;
    try {
      await whileStopped?.();
    } finally {
      await this.#startLibvirtd();
    }
  }

  /** `virsh -c qemu:///system ARGS`; never throws for a failed command (see `code`). */
  virsh(args: string[], options: RunOptions = {}): Promise<RunResult> {
    return run("virsh", ["-c", URI, ...args], {
      timeoutMs: 120_000,
      ...options,
      allowFailure: true,
    });
  }

  /** `virsh ARGS`; throws unless it succeeds; resolves to its trimmed stdout. */
  async virshOk(args: string[], options: RunOptions = {}): Promise<string> {
    return await output("virsh", ["-c", URI, ...args], { timeoutMs: 120_000, ...options });
  }

  /** The tail of libvirtd's log (warnings and errors). */
  async log(): Promise<string> {
    return (await Deno.readTextFile(join(this.dir, "libvirtd.log")).catch(() => "")).slice(-3000);
  }

  /** Stops libvirtd and virtlogd (by PID), and removes /run/libvirt if they created it. */
  async stop(): Promise<void> {
    if (this.#libvirtdPid !== undefined) await stopDaemon(this.#libvirtdPid, "libvirtd");
    if (this.#virtlogdPid !== undefined) await stopDaemon(this.#virtlogdPid, "virtlogd");
    this.#libvirtdPid = this.#virtlogdPid = undefined;
    await sleep(100);
    if (this.#createdRunDir) await Deno.remove(RUN_DIR, { recursive: true }).catch(() => {});
    this.#unregister();
  }

  /** The exit cleanup: both daemons by the PIDs they wrote (if they still run them). */
  #stopCommand(): string {
    const stops = ["libvirtd", "virtlogd"].map((name) => {
      const pidFile = shellQuote(join(this.dir, `${name}.pid`));
      return `pid=$(cat ${pidFile} 2>/dev/null) && grep -qa ${name} /proc/$pid/cmdline && ` +
        `{ kill "$pid"; for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done; ` +
        `kill -KILL "$pid" 2>/dev/null; }`;
    });
    const runDir = this.#createdRunDir ? `; rm -rf ${RUN_DIR}` : "";
    return stops.join("; ") + runDir;
  }
}
