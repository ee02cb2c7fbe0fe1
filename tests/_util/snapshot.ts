/**
 * Snapshots of a frozen loop filesystem for tests: a sparse copy of its image file (the image
 * lives on the root filesystem, so reading it never touches the frozen mount), a read-only
 * `fsck` of the copy, and a read-write loop mount of the copy on a fresh loop device, all in a new
 * `/tmp/agent_test_snap_*` directory that disposal removes (unmount, detach, delete).
 *
 * Only ever copy images made by `loopfs.ts`, and only mount the copies made here.
 *
 * @module
 */

import assert from "node:assert/strict";

const decoder = new TextDecoder();

/** What one checker run printed. */
export interface CheckRun {
  code: number;
  output: string;
}

/** What the checks of a copy found. */
export interface ImageCheck {
  /** `fsck -n <image>`: a filesystem frozen by FIFREEZE is reported clean without a full check. */
  quick: CheckRun;
  /** `e2fsck -f -n <image>`: every pass, read-only. */
  full: CheckRun;
  /** `Filesystem state:` from `dumpe2fs -h` (e.g. `clean`). */
  state: string;
  /** `Filesystem features:` from `dumpe2fs -h` (`needs_recovery` = journal not flushed). */
  features: string[];
}

/** A copy of a loop image; `await using` it. */
export interface ImageSnapshot extends AsyncDisposable {
  /** The `agent_test_snap_*` directory holding the copy and its mount point. */
  readonly dir: string;
  /** The copy. */
  readonly image: string;
  /** Where {@link ImageSnapshot.mount} mounts it. */
  readonly mountPoint: string;
  /** Runs the read-only checks on the copy (not mounted). */
  check(): Promise<ImageCheck>;
  /** Loop-mounts the copy read-write (once); returns the mount point. */
  mount(): Promise<string>;
  /** Unmounts and detaches the copy (idempotent; disposal does it too). */
  unmount(): Promise<void>;
}

// Loop devices this process attached, for assertNoSnapshotLeft().
const attached = new Map<string, string>();
const createdDirs = new Set<string>();

async function exec(command: string, args: string[]): Promise<CheckRun> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  return {
    code: output.code,
    output: (decoder.decode(output.stdout) + decoder.decode(output.stderr)).trim(),
  };
}

async function run(command: string, args: string[]): Promise<string> {
  const result = await exec(command, args);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (${result.code}): ${result.output}`);
  }
  return result.output;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function field(header: string, name: string): string {
  const line = header.split("\n").find((l) => l.startsWith(`${name}:`));
  return line === undefined ? "" : line.slice(name.length + 1).trim();
}

class LoopImageSnapshot implements ImageSnapshot {
  readonly dir: string;
  readonly image: string;
  readonly mountPoint: string;
  #device: string | undefined;
  #mounted = false;

  constructor(dir: string) {
    this.dir = dir;
    this.image = `${dir}/snapshot.img`;
    this.mountPoint = `${dir}/mnt`;
  }

  async check(): Promise<ImageCheck> {
    if (this.#device !== undefined) throw new Error("check the copy before mounting it");
    // this.image is absolute: fsck takes a bare name for a mount table entry and checks nothing.
    const quick = await exec("fsck", ["-n", this.image]);
    const full = await exec("e2fsck", ["-f", "-n", this.image]);
    const header = await run("dumpe2fs", ["-h", this.image]);
    return {
      quick,
      full,
      state: field(header, "Filesystem state"),
      features: field(header, "Filesystem features").split(/\s+/).filter((f) => f !== ""),
    };
  }

  async mount(): Promise<string> {
    if (this.#device !== undefined) throw new Error("already mounted");
    await Deno.mkdir(this.mountPoint, { mode: 0o755 });
    const device = await run("losetup", ["--find", "--show", this.image]);
    this.#device = device;
    attached.set(device, this.image);
    await run("mount", ["-t", "ext4", device, this.mountPoint]);
    this.#mounted = true;
    return this.mountPoint;
  }

  async unmount(): Promise<void> {
    if (this.#mounted) {
      for (let attempt = 0;; attempt++) {
        const result = await exec("umount", [this.mountPoint]);
        if (result.code === 0) break;
        // A server that has just exited may still hold the mount for a moment.
        if (attempt >= 50) throw new Error(`umount ${this.mountPoint}: ${result.output}`);
        await sleep(100);
      }
      this.#mounted = false;
    }
    const device = this.#device;
    if (device !== undefined) {
      await run("losetup", ["-d", device]);
      attached.delete(device);
      this.#device = undefined;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.unmount();
    await Deno.remove(this.dir, { recursive: true });
    createdDirs.delete(this.dir);
  }
}

/**
 * Copies the loop image `image` (e.g. `LoopMounts.images[0]`, taken while its filesystem is
 * frozen) with `cp --sparse=always` into a new `/tmp/agent_test_snap_*` directory.
 */
export async function copyImage(image: string): Promise<ImageSnapshot> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_snap_" });
  createdDirs.add(dir);
  // Database users must reach the data directory inside the mounted copy.
  await Deno.chmod(dir, 0o711);
  const snapshot = new LoopImageSnapshot(dir);
  try {
    await run("cp", ["--sparse=always", image, snapshot.image]);
  } catch (err) {
    await snapshot[Symbol.asyncDispose]().catch(() => {});
    throw err;
  }
  return snapshot;
}

/**
 * Throws unless the checks found a copy that needs nothing before it is mounted: `fsck -n` says
 * clean without skipping a journal replay, every pass of `e2fsck -f -n` finds nothing, and the
 * journal holds nothing to replay (FIFREEZE flushes it and clears `needs_recovery`; a copy of a
 * mounted ext4 that is not frozen always has it set).
 */
export function assertClean(check: ImageCheck): void {
  assert.equal(check.quick.code, 0, `fsck -n: ${check.quick.output}`);
  assert.doesNotMatch(check.quick.output, /journal recovery/, "fsck -n skipped a journal replay");
  assert.match(check.quick.output, /: clean, /, `fsck -n: ${check.quick.output}`);
  assert.ok(!check.features.includes("needs_recovery"), "the journal needs a replay");
  assert.equal(check.state, "clean");
  assert.equal(check.full.code, 0, `e2fsck -f -n: ${check.full.output}`);
}

/** Throws unless every copy made here is gone: no mount, no loop device, no directory. */
export async function assertNoSnapshotLeft(): Promise<void> {
  const left: string[] = [];
  for (const [device, image] of attached) left.push(`loop ${device} on ${image}`);
  const listed = await run("losetup", ["--list", "--noheadings", "--output", "NAME,BACK-FILE"]);
  for (const line of listed.split("\n")) {
    if (line.includes("/agent_test_snap_")) left.push(`loop ${line.trim()}`);
  }
  for (const dir of createdDirs) left.push(`directory ${dir}`);
  if (left.length > 0) throw new Error(`left behind: ${left.join(", ")}`);
}
