/**
 * Loop-mounted filesystems for every test that freezes (README, "Development"): images in a fresh
 * `/tmp/agent_test_*` directory, each with a detached watchdog process that thaws them after a few
 * seconds no matter what happens to the test, and a disposal that thaws, unmounts, detaches and
 * removes everything even after failures. Also a loop image stored on one of these mounts (for
 * ordering tests), a bind mount, a child whose write blocks on a frozen mount, and a check that
 * nothing was left behind.
 *
 * Never point these helpers at a mount they did not create.
 *
 * @module
 */

import { readMountinfo } from "../../src/fsfreeze/mountinfo.ts";

/** Filesystems the fixtures can make. */
export type LoopFsType = "ext4" | "xfs" | "btrfs";

/** Options of {@link createLoopMounts}. */
export interface LoopMountOptions {
  /** @default "ext4" */
  fsType?: LoopFsType;
  /** Image size (sparse). @default 16 for ext4, 300 for xfs (its minimum), 128 for btrfs */
  sizeMiB?: number;
  /** Where the `agent_test_*` directory is made. @default "/tmp" */
  parentDir?: string;
  /** Seconds until the watchdog thaws every mount. @default 10 */
  watchdogSeconds?: number;
}

/** A set of loop mounts; `await using` it. */
export interface LoopMounts extends AsyncDisposable {
  /** The `agent_test_*` directory holding images and mount points. */
  readonly dir: string;
  /** Mount points, in creation order (a nested mount comes after the mount holding its image). */
  readonly mounts: string[];
  readonly images: string[];
  /** Loop devices (`/dev/loopN`), parallel to `mounts`. */
  readonly devices: string[];
  /** Bind mounts made by {@link createBindMount} (not in `mounts`). */
  readonly bindMounts: string[];
  /** PID of the running watchdog, if armed. */
  readonly watchdogPid: number | undefined;
  /** (Re)starts the watchdog: thaw everything after `seconds` (default: the configured time). */
  armWatchdog(seconds?: number): Promise<void>;
  /** Stops the watchdog (kills it by its process group). */
  disarmWatchdog(): Promise<void>;
  /** Thaws every mount now (`fsfreeze -u` until it fails; errors ignored). */
  thawAll(): Promise<void>;
}

/** A child process writing to a file, expected to block while the file's mount is frozen. */
export interface BlockedWrite {
  readonly pid: number;
  /** Resolves when the write has completed; rejects if the child failed. */
  readonly done: Promise<void>;
  /** Whether the child has exited. */
  finished(): boolean;
  /** Whether the child sleeps uninterruptibly (state `D`: waiting on the frozen filesystem). */
  isBlocked(): boolean;
  /** Resolves true once the child is blocked, false if it finished or `timeoutMs` passed. */
  waitUntilBlocked(timeoutMs?: number): Promise<boolean>;
  /** SIGKILLs the child (it dies once the filesystem is thawed) and waits for it. */
  kill(): Promise<void>;
}

const DEFAULT_SIZE_MIB: Record<LoopFsType, number> = { ext4: 16, xfs: 300, btrfs: 128 };
const MKFS: Record<LoopFsType, string[]> = {
  ext4: ["mkfs.ext4", "-q", "-F"],
  xfs: ["mkfs.xfs", "-q", "-f"],
  btrfs: ["mkfs.btrfs", "-q", "-f"],
};

/**
 * Thaws each argument in parallel, each until `fsfreeze -u` fails (nested freezes), so one mount
 * stuck behind another (a loop image on a frozen mount) cannot hold up the rest.
 */
const THAW_SCRIPT =
  `for m in "$@"; do (while fsfreeze -u "$m" 2>/dev/null; do :; done) & done; wait`;
/**
 * Sleeps, then thaws. SIGTERM during the sleep ends it with its sleep reaped (a killed group would
 * leave the sleep to init, which may be slow to reap it); TERM is ignored until the sleep's PID is
 * known (disarming repeats the signal) and again once thawing has begun.
 */
const WATCHDOG_SCRIPT = [
  `trap '' TERM`,
  `sleep "$1" & pid=$!`,
  `trap 'kill -KILL "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM`,
  `wait "$pid"`,
  `trap '' TERM`,
  `shift`,
  THAW_SCRIPT,
].join("\n");
const DISARM_GRACE_MS = 5000;

// Everything this process created, for assertNothingLeft().
const createdImages = new Set<string>();
const createdMounts = new Set<string>();
const createdDirs = new Set<string>();
const watchdogs = new Map<number, Deno.ChildProcess>();

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  const decoder = new TextDecoder();
  if (!output.success) {
    const stderr = decoder.decode(output.stderr).trim();
    throw new Error(`${command} ${args.join(" ")} failed (${output.code}): ${stderr}`);
  }
  return decoder.decode(output.stdout).trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `promise` to settle, but no longer than `ms` (leaving no timer behind). */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends `signal` to a process group, ignoring a group that is already gone. */
function killGroup(pgid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pgid, signal);
  } catch {
    // gone
  }
}

interface Layer {
  mount: string;
  device?: string;
  image?: string;
}

class LoopMountSet implements LoopMounts {
  readonly dir: string;
  readonly mounts: string[] = [];
  readonly images: string[] = [];
  readonly devices: string[] = [];
  readonly bindMounts: string[] = [];
  /** Creation order; torn down in reverse. */
  readonly layers: Layer[] = [];
  #watchdogSeconds: number;
  #watchdog: Deno.ChildProcess | undefined;
  #names = 0;

  constructor(dir: string, watchdogSeconds: number) {
    this.dir = dir;
    this.#watchdogSeconds = watchdogSeconds;
  }

  get watchdogPid(): number | undefined {
    return this.#watchdog?.pid;
  }

  nextName(prefix: string): string {
    return `${prefix}${this.#names++}`;
  }

  get isArmed(): boolean {
    return this.#watchdog !== undefined;
  }

  async addLoopMount(
    image: string,
    mountPoint: string,
    fsType: LoopFsType,
    sizeMiB: number,
  ): Promise<void> {
    await Deno.writeFile(image, new Uint8Array());
    createdImages.add(image);
    await Deno.truncate(image, sizeMiB * 1024 * 1024);
    const [mkfs, ...flags] = MKFS[fsType];
    await run(mkfs as string, [...flags, image]);
    await Deno.mkdir(mountPoint);
    const device = await run("losetup", ["--find", "--show", image]);
    this.layers.push({ mount: mountPoint, device, image });
    try {
      await run("mount", ["-t", fsType, device, mountPoint]);
    } catch (err) {
      this.layers.pop();
      await run("losetup", ["-d", device]).catch(() => {});
      throw err;
    }
    createdMounts.add(mountPoint);
    this.mounts.push(mountPoint);
    this.images.push(image);
    this.devices.push(device);
  }

  async addBindMount(source: string, target: string): Promise<void> {
    await Deno.mkdir(target);
    await run("mount", ["--bind", source, target]);
    createdMounts.add(target);
    this.layers.push({ mount: target });
    this.bindMounts.push(target);
  }

  async armWatchdog(seconds = this.#watchdogSeconds): Promise<void> {
    await this.disarmWatchdog();
    // Detached: its own session and process group (set before exec, so there is no window in
    // which a kill by group misses it), it outlives this test process, and no pipes are shared.
    const child = new Deno.Command("sh", {
      args: ["-c", WATCHDOG_SCRIPT, "watchdog", String(seconds), ...this.mounts],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn();
    this.#watchdog = child;
    watchdogs.set(child.pid, child);
  }

  async disarmWatchdog(): Promise<void> {
    const child = this.#watchdog;
    if (child === undefined) return;
    this.#watchdog = undefined;
    let exited = false;
    const status = child.status.then(() => exited = true);
    // Repeated: a TERM that lands while the script still ignores it is lost.
    for (const deadline = Date.now() + DISARM_GRACE_MS; !exited && Date.now() < deadline;) {
      try {
        child.kill("SIGTERM");
      } catch {
        break; // already exited
      }
      await settledWithin(status, 50);
    }
    if (!exited) killGroup(child.pid, "SIGKILL");
    await status;
    watchdogs.delete(child.pid);
  }

  async thawAll(): Promise<void> {
    if (this.mounts.length === 0) return;
    await new Deno.Command("sh", {
      args: ["-c", THAW_SCRIPT, "thaw", ...this.mounts],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (step: () => Promise<unknown>): Promise<boolean> => {
      try {
        await step();
        return true;
      } catch (err) {
        errors.push(err);
        return false;
      }
    };
    await attempt(() => this.thawAll());
    await attempt(() => this.disarmWatchdog());
    let allUnmounted = true;
    for (const layer of [...this.layers].reverse()) {
      const unmounted = await attempt(() => unmount(layer.mount));
      allUnmounted &&= unmounted;
      if (layer.device !== undefined) await attempt(() => detach(layer.device as string));
    }
    // Never recurse into a directory that may still hold a mount (maybe a frozen one).
    if (allUnmounted) await attempt(() => Deno.remove(this.dir, { recursive: true }));
    if (errors.length > 0) throw new AggregateError(errors, `cleanup of ${this.dir} failed`);
  }
}

function isMounted(mountPoint: string): boolean {
  return readMountinfo().some((entry) => entry.mountPoint === mountPoint);
}

/** Unmounts, retrying while busy (a just-killed child, a loop device still closing). */
async function unmount(mountPoint: string): Promise<void> {
  for (let attempt = 0; isMounted(mountPoint); attempt++) {
    try {
      await run("umount", [mountPoint]);
    } catch (err) {
      if (attempt >= 50) {
        // Last resort: detach it from the tree; the kernel finishes once the last user is gone.
        await run("umount", ["-l", mountPoint]);
        throw new Error(`${mountPoint} stayed busy; lazily unmounted`, { cause: err });
      }
      await sleep(100);
    }
  }
}

/** Detaches a loop device (the kernel defers it while the device is still open). */
async function detach(device: string): Promise<void> {
  await run("losetup", ["-d", device]).catch(async (err) => {
    if (await loopAttached(device)) throw err;
  });
}

async function loopAttached(device: string): Promise<boolean> {
  const name = device.replace("/dev/", "");
  try {
    await Deno.stat(`/sys/block/${name}/loop/backing_file`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates `count` loop-mounted filesystems under a new `/tmp/agent_test_*` directory and arms a
 * watchdog that thaws them after `watchdogSeconds`. On failure it cleans up what it made.
 */
export async function createLoopMounts(
  count: number,
  options: LoopMountOptions = {},
): Promise<LoopMounts> {
  const fsType = options.fsType ?? "ext4";
  const sizeMiB = options.sizeMiB ?? DEFAULT_SIZE_MIB[fsType];
  const dir = await Deno.makeTempDir({ prefix: "agent_test_", dir: options.parentDir ?? "/tmp" });
  createdDirs.add(dir);
  const set = new LoopMountSet(dir, options.watchdogSeconds ?? 10);
  try {
    for (let i = 0; i < count; i++) {
      await set.addLoopMount(`${dir}/img${i}.img`, `${dir}/mnt${i}`, fsType, sizeMiB);
    }
    await set.armWatchdog();
  } catch (err) {
    await set[Symbol.asyncDispose]().catch(() => {});
    throw err;
  }
  return set;
}

/** What {@link createNestedLoopMount} made. */
export interface NestedLoopMount {
  /** The new mount (outside the outer mount's directory tree: only its image lives there). */
  mount: string;
  image: string;
  device: string;
  /** The mount holding the image. */
  holder: string;
}

/**
 * Stores a new image on `outer.mounts[index]` and loop-mounts it as another mount of the same
 * fixture (torn down first, and thawed by the re-armed watchdog).
 */
export async function createNestedLoopMount(
  outer: LoopMounts,
  options: { index?: number; fsType?: LoopFsType; sizeMiB?: number } = {},
): Promise<NestedLoopMount> {
  const set = ownSet(outer);
  const holder = outer.mounts[options.index ?? 0];
  if (holder === undefined) throw new RangeError("no such outer mount");
  const fsType = options.fsType ?? "ext4";
  const name = set.nextName("nested");
  const image = `${holder}/${name}.img`;
  const mount = `${set.dir}/${name}`;
  await set.addLoopMount(image, mount, fsType, options.sizeMiB ?? DEFAULT_SIZE_MIB[fsType]);
  if (set.isArmed) await set.armWatchdog();
  return { mount, image, device: set.devices.at(-1) as string, holder };
}

/**
 * Bind-mounts `outer.mounts[index]` on a new directory of the fixture (named `name`, which may
 * contain spaces, or `bindN`); returns its path.
 */
export async function createBindMount(
  outer: LoopMounts,
  options: { index?: number; name?: string } = {},
): Promise<string> {
  const set = ownSet(outer);
  const source = outer.mounts[options.index ?? 0];
  if (source === undefined) throw new RangeError("no such outer mount");
  if (options.name?.includes("/")) throw new TypeError("a bind mount name is one path component");
  const target = `${set.dir}/${options.name ?? set.nextName("bind")}`;
  await set.addBindMount(source, target);
  return target;
}

function ownSet(mounts: LoopMounts): LoopMountSet {
  if (!(mounts instanceof LoopMountSet)) throw new TypeError("not made by createLoopMounts()");
  return mounts;
}

/** Starts a child that writes to `path` (`echo x > path`); see {@link BlockedWrite}. */
export function startBlockedWrite(path: string): BlockedWrite {
  const child = new Deno.Command("sh", {
    args: ["-c", 'echo x > "$1"', "writer", path],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const done = child.output().then((output) => {
    exited = true;
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr).trim();
      throw new Error(`write to ${path} failed (${output.code ?? output.signal}): ${stderr}`);
    }
  });
  done.catch(() => {}); // callers await `done` or kill(); never an unhandled rejection
  const isBlocked = (): boolean => !exited && processState(child.pid) === "D";
  return {
    pid: child.pid,
    done,
    finished: () => exited,
    isBlocked,
    async waitUntilBlocked(timeoutMs = 30_000): Promise<boolean> {
      const deadline = Date.now() + timeoutMs;
      while (!exited && Date.now() < deadline) {
        if (isBlocked()) return true;
        await sleep(10);
      }
      return false;
    },
    async kill(): Promise<void> {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
      await done.catch(() => {});
    },
  };
}

/** The one-letter state from `/proc/<pid>/stat` (`R`, `S`, `D`, …), or undefined if gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces and parentheses: the state follows the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

/**
 * Throws unless everything these fixtures made in this process is gone: no mount, no attached
 * loop device on one of our images, no directory, no running watchdog.
 */
export async function assertNothingLeft(): Promise<void> {
  const left: string[] = [];
  const mounted = new Set(readMountinfo().map((entry) => entry.mountPoint));
  for (const mount of createdMounts) if (mounted.has(mount)) left.push(`mount ${mount}`);
  const attached = await run("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"]);
  for (const line of attached.split("\n")) {
    const [device, backingFile] = line.trim().split(/\s+/, 2);
    if (backingFile !== undefined && createdImages.has(backingFile)) {
      left.push(`loop ${device} on ${backingFile}`);
    }
  }
  for (const dir of createdDirs) {
    try {
      await Deno.stat(dir);
      left.push(`directory ${dir}`);
    } catch {
      // removed
    }
  }
  for (const pid of watchdogs.keys()) left.push(`watchdog pid ${pid}`);
  if (left.length > 0) throw new Error(`left behind: ${left.join(", ")}`);
}
