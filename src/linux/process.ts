/**
 * Processes: signals (a hook's whole process group), the process's own uid, and its threads'
 * niceness.
 *
 * @module
 */

import { clearErrno, errnoError, lastErrno, libc } from "./_libc.ts";
import { SyscallError } from "./errno.ts";
import { readDir } from "./files.ts";

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

/** getpriority(2)/setpriority(2)'s `which` for one thread (Linux: a "process" id is a thread id). */
const PRIO_PROCESS = 0;

/**
 * The niceness of thread `tid` (0: the calling thread), -20 to 19.
 * @throws {SyscallError} ESRCH if no such thread
 */
export function threadNice(tid = 0): number {
  clearErrno();
  const nice = libc().getpriority(PRIO_PROCESS, tid);
  if (nice === -1) {
    const errno = lastErrno();
    if (errno !== 0) throw new SyscallError("getpriority", errno);
  }
  return nice;
}

/**
 * Sets the niceness of thread `tid` (0: the calling thread); threads and processes it starts
 * later inherit it.
 * @throws {SyscallError} EACCES/EPERM without CAP_SYS_NICE, ESRCH if no such thread
 */
export function setThreadNice(tid: number, nice: number): void {
  if (libc().setpriority(PRIO_PROCESS, tid, nice) === -1) throw errnoError("setpriority");
}

/** The ids of this process's threads, from /proc/self/task. */
export function ownThreadIds(): number[] {
  return readDir("/proc/self/task").map((entry) => Number(entry.name)).filter(Number.isInteger);
}
