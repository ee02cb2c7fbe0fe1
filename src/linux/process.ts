/**
 * Processes: signals (a hook's whole process group) and the process's own uid.
 *
 * @module
 */

import { errnoError, libc } from "./_libc.ts";

/**
 * util-linux's (busybox's too) setsid(1): run from a child that is not a process group leader, it
 * calls setsid() and execs its arguments in the same process.
 */
export const SETSID_PROGRAM = "/usr/bin/setsid";

/** Signal numbers (identical on x86_64 and aarch64 Linux). */
export const Signal = { SIGKILL: 9, SIGTERM: 15 } as const;

/**
 * kill(2); a negative pid signals a whole process group. (Deno.kill needs unrestricted
 * `--allow-run`, which would let the agent run anything.)
 * @throws {SyscallError} ESRCH if no such process
 */
export function kill(pid: number, signal: number): void {
  if (libc().kill(pid, signal) === -1) throw errnoError("kill");
}

/** getuid(2). (Deno.uid needs `--allow-sys`.) */
export function getuid(): number {
  return libc().getuid();
}

/** glibc's malloc_trim(0): hands the freed heap memory of every arena back to the kernel. */
export function mallocTrim(): void {
  libc().malloc_trim(0n);
}
