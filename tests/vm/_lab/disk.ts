/**
 * Disk images on the host: the per-run disk (a sparse copy of the cached base image, into which
 * the agent is installed through a loop mount without booting, under a qcow2 overlay the guest
 * writes to), and loop mounts of image copies. Every loop device and mount made here is
 * released in `finally` and, should the process leave first, by an exit cleanup.
 *
 * Only ever mount files this lab created: copies of its own images.
 *
 * @module
 */

import { join } from "node:path";
import { onExit, output, run, shellQuote, sleep } from "./proc.ts";

/** A loop-mounted image; `await using` it to unmount and detach. */
export interface LoopMount extends AsyncDisposable {
  readonly device: string;
  readonly mountPoint: string;
}

/** Loop-mounts `image` (a file this lab made) on `mountPoint` (created). */
export async function loopMount(
  image: string,
  mountPoint: string,
  options: { readOnly?: boolean } = {},
): Promise<LoopMount> {
  await Deno.mkdir(mountPoint, { recursive: true });
  const device = await output("losetup", ["--find", "--show", image]);
  const unregister = onExit(
    `loop mount ${mountPoint}`,
    `umount ${shellQuote(mountPoint)}; losetup -d ${shellQuote(device)}`,
  );
  const release = async (mounted: boolean): Promise<void> => {
    if (mounted) await umountRetrying(mountPoint);
    await run("losetup", ["-d", device]);
    unregister();
  };
  try {
    await run("mount", [
      "-t",
      "ext4",
      ...(options.readOnly ? ["-o", "ro"] : []),
      device,
      mountPoint,
    ]);
  } catch (err) {
    await release(false).catch(() => {});
    throw err;
  }
  let released = false;
  return {
    device,
    mountPoint,
    async [Symbol.asyncDispose](): Promise<void> {
      if (released) return;
      released = true;
      await release(true);
    },
  };
}

/** A process that has just exited may hold the mount for a moment. */
async function umountRetrying(mountPoint: string): Promise<void> {
  for (let attempt = 0;; attempt++) {
    const result = await run("umount", [mountPoint], { allowFailure: true });
    if (result.code === 0) return;
    if (attempt >= 50) throw new Error(`umount ${mountPoint}: ${result.stderr.trim()}`);
    await sleep(200);
  }
}

/** The per-run disk of one guest. */
export interface RunDisk {
  /** Sparse copy of the base image, with the agent installed (the overlay's backing file). */
  raw: string;
  /** The qcow2 overlay the domain's vda uses; snapshots go on top of it, commits come back. */
  overlay: string;
}

/**
 * Copies the base image into `dir`, runs `install` on its root filesystem (loop-mounted at
 * `dir/mnt`, unmounted afterwards whatever happens), and puts a qcow2 overlay on top.
 */
export async function makeRunDisk(
  baseDisk: string,
  dir: string,
  install: (root: string) => Promise<void>,
): Promise<RunDisk> {
  const raw = join(dir, "disk.raw");
  const overlay = join(dir, "overlay.qcow2");
  await run("cp", ["--sparse=always", baseDisk, raw], { timeoutMs: 600_000 });
  {
    await using mount = await loopMount(raw, join(dir, "mnt"));
    await install(mount.mountPoint);
  }
  await Deno.remove(join(dir, "mnt"));
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", raw, overlay]);
  return { raw, overlay };
}

/** Writes a file into an image root, owned by root, with `mode`. */
export async function writeRootFile(
  root: string,
  path: string,
  content: string,
  mode: number,
): Promise<void> {
  const target = join(root, path);
  await Deno.mkdir(join(target, ".."), { recursive: true });
  await Deno.writeTextFile(target, content);
  await Deno.chown(target, 0, 0);
  await Deno.chmod(target, mode);
}
