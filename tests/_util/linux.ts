/**
 * Helpers of the src/linux/ tests: what a SyscallError should look like, a coreutils run to
 * compare a wrapper's answer with, and a temporary directory.
 *
 * @module
 */

import { SyscallError } from "../../src/linux/errno.ts";

/** A predicate for `assert.throws`: a {@link SyscallError} of `syscall` with errno `code`. */
export function isSyscallError(syscall: string, code: string): (err: unknown) => boolean {
  return (err) => err instanceof SyscallError && err.syscall === syscall && err.code === code;
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
