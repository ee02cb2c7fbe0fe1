/**
 * Helpers of the tests of src/linux/ and of the descriptor transports: what a SyscallError should
 * look like, a coreutils run to compare a wrapper's answer with, a temporary directory, and the
 * descriptor of a socket Deno made.
 *
 * @module
 */

import { SyscallError } from "../../src/linux/errno.ts";
import { readDir, readlink } from "../../src/linux/files.ts";
import { getsockname } from "../../src/linux/sockets.ts";

/** A predicate for `assert.throws`: a {@link SyscallError} of `syscall` with errno `code`. */
export function isSyscallError(syscall: string, code: string): (err: unknown) => boolean {
  return (err) => err instanceof SyscallError && err.syscall === syscall && err.code === code;
}

/**
 * What descriptor `fd` of this process is now: its target and, for an eventfd, the kernel's id of
 * that eventfd; `undefined` when it is not open. Looked up without touching the descriptor, so a
 * number the runtime reuses after a close gets another identity.
 */
export function descriptorIdentity(fd: number): string | undefined {
  try {
    const target = Deno.readLinkSync(`/proc/self/fd/${fd}`);
    const info = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
    const eventfdId = /^eventfd-id:\s*(\d+)$/m.exec(info)?.[1];
    return eventfdId === undefined ? target : `${target} id ${eventfdId}`;
  } catch {
    return undefined; // not open
  }
}

/** Runs a program and returns its stdout, trimmed; throws with its stderr when it fails. */
export async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  if (!output.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout).trim();
}

/** `stat -f` of a path: fundamental block size, blocks, free, available, inodes, free inodes. */
export async function statF(path: string): Promise<bigint[]> {
  return (await run("stat", ["-f", "-c", "%S %b %f %a %c %d", path])).split(" ").map(BigInt);
}

/** Runs `use` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(use: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    await use(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The descriptor of this process's socket bound to `path` (one Deno made, which hides it). */
export function socketBoundTo(path: string): number {
  for (const entry of readDir("/proc/self/fd")) {
    const fd = Number(entry.name);
    try {
      if (!readlink(`/proc/self/fd/${fd}`).startsWith("socket:")) continue;
      const address = getsockname(fd);
      if (address.transport === "unix" && address.path === path) return fd;
    } catch {
      // Closed since the listing (the listing's own descriptor, the runtime's): not it.
    }
  }
  throw new Error(`no socket bound to ${path}`);
}
