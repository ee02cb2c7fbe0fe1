/**
 * The freeze/thaw mechanism: FIFREEZE mounts wave by wave (the mounts of one wave concurrently),
 * FITHAW them in a given order. Outcomes only — no policy, hooks, state or QMP errors (the command
 * layer owns those).
 *
 * Concurrency: each FIFREEZE of a concurrent wave runs on a blocking thread of Deno's pool
 * (linux/freeze.ts `fifreezeOffThread`, a nonblocking FFI call), up to `concurrency` at a time,
 * while the event loop waits. Such a call cannot report errno (it stays on its thread), so a
 * FIFREEZE that failed there is repeated on the calling thread, which reads why (EBUSY,
 * EOPNOTSUPP, EPERM fail again at once; a failure that does not repeat freezes the mount, as a
 * later attempt would have). Mounts are handed out through a claim counter; the first failure
 * closes it, so no mount is started after it. A lone mount, or concurrency 1, is frozen
 * synchronously on the calling thread.
 *
 * Why pool threads rather than Workers: docs/design.md #24 and #31; the measurements are in
 * bench/README.md.
 *
 * @module
 */

import { Errno, SyscallError } from "../linux/errno.ts";
import { closeQuietly, O_RDONLY, open } from "../linux/fd.ts";
import { fifreeze, fifreezeOffThread, fithawErrno } from "../linux/freeze.ts";

/** What happened to one mount's FIFREEZE. */
export type FreezeOutcome =
  | { mountPoint: string; status: "frozen"; durationMs: number }
  | {
    mountPoint: string;
    /** EOPNOTSUPP (cannot freeze) or EBUSY (already frozen), tolerated as qemu-ga does. */
    status: "skipped";
    errno: number;
    code: string;
    durationMs: number;
  }
  | {
    mountPoint: string;
    status: "failed";
    step: "open" | "freeze";
    errno: number;
    code: string;
    text: string;
    durationMs: number;
  };

/** What happened to one mount's thaw. */
export type ThawOutcome = {
  mountPoint: string;
  /** At least one FITHAW succeeded. */
  thawed: boolean;
  /** Successful FITHAWs. */
  thaws: number;
  /** Set when open failed (mount skipped), or FITHAW stopped with something other than EINVAL. */
  errno?: number;
  durationMs: number;
};

/** Options of {@link freezeMounts}. */
export interface FreezeOptions {
  /** Mounts frozen at the same time within a wave; 1 freezes one after the other. @default 32 */
  concurrency?: number;
  /**
   * Whether a lone mount (or concurrency 1) is frozen synchronously on the calling thread.
   * `false` runs every FIFREEZE off the calling thread, so the caller's event loop stays free even
   * while a FIFREEZE blocks. @default true
   */
  callingThread?: boolean;
}

/** The default number of concurrent FIFREEZEs (see the measurements above). */
export const DEFAULT_CONCURRENCY = 32;

/** FITHAW is repeated until it fails (nested freezes); this only bounds a pathological loop. */
const MAX_THAWS = 64;

/**
 * open + FIFREEZE + close of one mount on the calling thread (it blocks while the kernel syncs).
 * @throws {Error} only for non-syscall failures (libc cannot be loaded)
 */
export function freezeMount(mountPoint: string): FreezeOutcome {
  return freezeHere(mountPoint, performance.now());
}

function freezeHere(mountPoint: string, started: number): FreezeOutcome {
  const elapsed = (): number => performance.now() - started;
  const fd = openMount(mountPoint);
  if (fd instanceof SyscallError) return openFailure(mountPoint, fd, elapsed());
  try {
    fifreeze(fd, mountPoint);
    return { mountPoint, status: "frozen", durationMs: elapsed() };
  } catch (err) {
    if (!(err instanceof SyscallError)) throw err;
    if (err.errno === Errno.EOPNOTSUPP || err.errno === Errno.EBUSY) {
      return {
        mountPoint,
        status: "skipped",
        errno: err.errno,
        code: err.code,
        durationMs: elapsed(),
      };
    }
    return {
      mountPoint,
      status: "failed",
      step: "freeze",
      ...errnoFields(err),
      durationMs: elapsed(),
    };
  } finally {
    closeQuietly(fd);
  }
}

/**
 * open (here: it never blocks) + FIFREEZE on a thread of the pool + close; a failed FIFREEZE is
 * repeated here to learn its errno.
 */
async function freezeOffThread(mountPoint: string): Promise<FreezeOutcome> {
  const started = performance.now();
  const fd = openMount(mountPoint);
  if (fd instanceof SyscallError) return openFailure(mountPoint, fd, performance.now() - started);
  try {
    if (await fifreezeOffThread(fd)) {
      return { mountPoint, status: "frozen", durationMs: performance.now() - started };
    }
  } finally {
    closeQuietly(fd);
  }
  return freezeHere(mountPoint, started);
}

/** open(2) of a mount point for its ioctls, or why it failed. */
function openMount(mountPoint: string): number | SyscallError {
  try {
    return open(mountPoint, O_RDONLY);
  } catch (err) {
    if (err instanceof SyscallError) return err;
    throw err;
  }
}

function openFailure(mountPoint: string, err: SyscallError, durationMs: number): FreezeOutcome {
  return { mountPoint, status: "failed", step: "open", ...errnoFields(err), durationMs };
}

function errnoFields(err: SyscallError): { errno: number; code: string; text: string } {
  return { errno: err.errno, code: err.code, text: err.text };
}

/**
 * Thaws one mount on the calling thread: open (failure = skipped, as qemu-ga), then FITHAW until
 * it fails.
 */
export function thawMount(mountPoint: string): ThawOutcome {
  const started = performance.now();
  const fd = openMount(mountPoint);
  if (fd instanceof SyscallError) {
    return {
      mountPoint,
      thawed: false,
      thaws: 0,
      errno: fd.errno,
      durationMs: performance.now() - started,
    };
  }
  let thaws = 0;
  let errno: number | undefined;
  try {
    let failed = fithawErrno(fd);
    while (failed === 0 && ++thaws < MAX_THAWS) failed = fithawErrno(fd);
    if (failed !== 0 && failed !== Errno.EINVAL) errno = failed; // EINVAL: not frozen (any more)
  } finally {
    closeQuietly(fd);
  }
  const outcome: ThawOutcome = { mountPoint, thawed: thaws > 0, thaws, durationMs: 0 };
  if (errno !== undefined) outcome.errno = errno;
  outcome.durationMs = performance.now() - started;
  return outcome;
}

/**
 * Thaws each mount in the given order on the calling thread (FITHAW does not block), as qemu-ga's
 * thaw loop.
 */
export function thawMounts(mountPoints: readonly string[]): ThawOutcome[] {
  return mountPoints.map(thawMount);
}

// ---- the claim counter ----

/** Bit set in the counter once no further mount may be started. */
const STOPPED = 0x40000000;

/**
 * Claims the next mount of a wave from the counter in `control[0]`: its index, or -1 when all are
 * claimed or the wave was stopped by a failure. Claiming and stopping are one word, so a mount is
 * never started after a failure has been recorded. (Atomics: the counter may also be shared
 * between threads.)
 */
export function claimNext(control: Int32Array, count: number): number {
  for (;;) {
    const current = Atomics.load(control, 0);
    if ((current & STOPPED) !== 0 || current >= count) return -1;
    if (Atomics.compareExchange(control, 0, current, current + 1) === current) return current;
  }
}

/** Stops a wave: nothing is claimed after this. */
export function stopClaims(control: Int32Array): void {
  Atomics.or(control, 0, STOPPED);
}

/**
 * Freezes wave by wave; the mounts of a wave concurrently (up to `concurrency` at a time, each
 * FIFREEZE on a thread of Deno's pool). Stops starting new work after the first failure and
 * returns every outcome of work that was started, in the order it finished.
 */
export async function freezeMounts(
  waves: readonly (readonly string[])[],
  options: FreezeOptions = {},
): Promise<FreezeOutcome[]> {
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }
  const callingThread = options.callingThread ?? true;
  const outcomes: FreezeOutcome[] = [];
  for (const wave of waves) {
    const results = callingThread && (concurrency === 1 || wave.length === 1)
      ? freezeSequentially(wave)
      : await freezeConcurrently(wave, concurrency);
    outcomes.push(...results);
    if (results.some((outcome) => outcome.status === "failed")) break;
  }
  return outcomes;
}

function freezeSequentially(mountPoints: readonly string[]): FreezeOutcome[] {
  const outcomes: FreezeOutcome[] = [];
  for (const mountPoint of mountPoints) {
    const outcome = freezeMount(mountPoint);
    outcomes.push(outcome);
    if (outcome.status === "failed") break;
  }
  return outcomes;
}

/**
 * `concurrency` lanes, each claiming the next mount and freezing it off the calling thread. Every
 * lane is waited for before this settles, even when one throws: a FIFREEZE still in flight must
 * be reported (and so thawed), never finish unseen.
 */
async function freezeConcurrently(
  mountPoints: readonly string[],
  concurrency: number,
): Promise<FreezeOutcome[]> {
  const control = new Int32Array(1);
  const count = mountPoints.length;
  const outcomes: FreezeOutcome[] = [];
  const lane = async (): Promise<void> => {
    try {
      for (let index = claimNext(control, count); index >= 0; index = claimNext(control, count)) {
        const outcome = await freezeOffThread(mountPoints[index] as string);
        outcomes.push(outcome);
        if (outcome.status === "failed") stopClaims(control);
      }
    } catch (err) {
      stopClaims(control); // libc cannot be loaded: nothing more can be frozen
      throw err;
    }
  };
  const lanes = await Promise.allSettled(
    Array.from({ length: Math.min(concurrency, count) }, lane),
  );
  const failure = lanes.find((lane) => lane.status === "rejected");
  if (failure) throw failure.reason;
  return outcomes;
}
