/**
 * The VM lab for one test run: checks that the host can run it (and says loudly what is missing:
 * the suite never skips), makes sure the base image is built, starts the lab's own libvirt, and
 * creates guests in a private run directory. {@link Lab.close} (or, when the run is cut short,
 * the exit cleanups) leaves nothing behind: no domain, daemon, loop device, mount or directory.
 *
 * @module
 */

import type { AgentSetup } from "./agents.ts";
import { Guest } from "./guest.ts";
import { type BaseImage, describeImage, ensureBaseImage } from "./image.ts";
import { Libvirt, missingHostPrograms } from "./libvirt.ts";
import { note, onExit, secondsSince, shellQuote } from "./proc.ts";

/** Why the VM suite cannot run on this host, or undefined when it can. */
export async function whyNotRunnable(): Promise<string | undefined> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    return `the VM lab needs an x86_64 Linux host, not ${Deno.build.arch} ${Deno.build.os}`;
  }
  if (Deno.uid() !== 0) return "the VM lab must run as root (libvirt, loop mounts, mmdebstrap)";
  const missing = await missingHostPrograms();
  if (missing.length > 0) {
    return `missing on this host: ${missing.join(", ")} (run .ci/setup: it installs ` +
      `qemu-system-x86, qemu-utils, libvirt-daemon-system, libvirt-clients, mmdebstrap, ...)`;
  }
  return undefined;
}

/** The lab: a base image, a running libvirt, a run directory. */
export class Lab {
  readonly image: BaseImage;
  readonly libvirt: Libvirt;
  readonly runDir: string;
  #unregister: () => void;

  private constructor(image: BaseImage, libvirt: Libvirt, runDir: string, unregister: () => void) {
    this.image = image;
    this.libvirt = libvirt;
    this.runDir = runDir;
    this.#unregister = unregister;
  }

  /** Checks the host, builds or reuses the image, starts libvirt. Throws, saying why, if not. */
  static async open(): Promise<Lab> {
    const problem = await whyNotRunnable();
    if (problem !== undefined) throw new Error(`THE VM SUITE DID NOT RUN: ${problem}`);
    const start = performance.now();
    const image = await ensureBaseImage();
    note(`guest image ${describeImage(image)}, ready after ${secondsSince(start)} s`);
    const runDir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "fsfreeze-agent-vm-" });
    await Deno.chmod(runDir, 0o711);
    const unregister = onExit(
      `run dir ${runDir}`,
      `rm -rf --one-file-system ${shellQuote(runDir)}`,
    );
    try {
      const libvirt = await Libvirt.start(runDir);
      return new Lab(image, libvirt, runDir, unregister);
    } catch (err) {
      await Deno.remove(runDir, { recursive: true }).catch(() => {});
      unregister();
      throw err;
    }
  }

  /** Defines a guest running `agent` (not started yet). */
  async createGuest(agent: AgentSetup): Promise<Guest> {
    return await Guest.create(this.libvirt, this.image, agent, this.runDir);
  }

  /** Stops libvirt and removes the run directory. */
  async close(): Promise<void> {
    try {
      await this.libvirt.stop();
    } finally {
      await Deno.remove(this.runDir, { recursive: true }).catch(() => {});
      this.#unregister();
    }
  }
}
