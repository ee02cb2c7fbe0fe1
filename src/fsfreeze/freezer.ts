/**
 * The freeze/thaw mechanism: FIFREEZE mounts wave by wave (mounts of one wave concurrently, in
 * Workers), FITHAW them in a given order. Outcomes only — no policy, hooks, state or QMP errors
 * (the command layer owns those).
 *
 * Concurrency: the calling thread plus a pool of Workers, created lazily and kept for later
 * freezes ({@link closeFreezer} ends them). Each freezer runs open + FIFREEZE + close synchronously
 * through libc.ts, so errno is exact. Mounts are handed out through a shared counter claimed before
 * each mount; the first failure closes the counter atomically, so no mount is started after it.
 *
 * Measured on the 2-vCPU development VM, 32 ext4 loop mounts: a Worker starts in ~40 ms of CPU and
 * costs ~8 MiB RSS; a message round trip takes ~0.14 ms. FIFREEZE waits on device flushes and RCU
 * grace periods, so its latency depends on load: ~0.3 ms per clean mount on an idle machine
 * (sequential loop ~10 ms; warm pool 8 / 9 / 7 ms at concurrency 2 / 4 / 8), ~35 ms on a busy one
 * (sequential ~1130 ms; warm pool ~420 / 230 ms at 4 / 8). While Workers start, their CPU use
 * slows every FIFREEZE to ~45 ms, so a cold pool costs ~330-780 ms. Hence: a lone mount or
 * concurrency 1 never starts a Worker, the calling thread freezes too (it has nothing else to
 * do), the pool is kept warm, and {@link prepareFreezer} can start it early, e.g. while the freeze
 * hook runs.
 *
 * @module
 */

import { Errno, SyscallError } from "../linux/errno.ts";
import { close, fifreeze, fithaw, O_RDONLY, open } from "../linux/libc.ts";

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
    /** 0 with code `EWORKER` when the Worker running it died. */
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
  /** Mounts frozen at the same time within a wave; 1 freezes on the calling thread. @default 8 */
  concurrency?: number;
  /**
   * Whether the calling thread freezes too (a lone mount or concurrency 1 then needs no Worker).
   * `false` runs every FIFREEZE in a Worker, so the caller's event loop stays free even while a
   * FIFREEZE blocks, at the cost of the Workers' start-up. @default true
   */
  callingThread?: boolean;
}

/** The default number of concurrent FIFREEZEs (see the measurements above). */
export const DEFAULT_CONCURRENCY = 8;

/** FITHAW is repeated until it fails (nested freezes); this only bounds a pathological loop. */
const MAX_THAWS = 64;

/**
 * open + FIFREEZE + close of one mount on the calling thread (it blocks while the kernel syncs).
 * @throws {Error} only for non-syscall failures (libc cannot be loaded)
 */
export function freezeMount(mountPoint: string): FreezeOutcome {
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;
  let fd: number;
  try {
    fd = open(mountPoint, O_RDONLY);
  } catch (err) {
    if (!(err instanceof SyscallError)) throw err;
    return {
      mountPoint,
      status: "failed",
      step: "open",
      ...errnoFields(err),
      durationMs: elapsed(),
    };
  }
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

function errnoFields(err: SyscallError): { errno: number; code: string; text: string } {
  return { errno: err.errno, code: err.code, text: err.text };
}

function closeQuietly(fd: number): void {
  try {
    close(fd);
  } catch {
    // Nothing to do about a failed close of a read-only directory fd.
  }
}

/**
 * Thaws one mount on the calling thread: open (failure = skipped, as qemu-ga), then FITHAW until
 * it fails.
 */
export function thawMount(mountPoint: string): ThawOutcome {
  const started = performance.now();
  let fd: number;
  try {
    fd = open(mountPoint, O_RDONLY);
  } catch (err) {
    if (!(err instanceof SyscallError)) throw err;
    return {
      mountPoint,
      thawed: false,
      thaws: 0,
      errno: err.errno,
      durationMs: performance.now() - started,
    };
  }
  let thaws = 0;
  let errno: number | undefined;
  try {
    for (; thaws < MAX_THAWS; thaws++) fithaw(fd, mountPoint);
  } catch (err) {
    if (!(err instanceof SyscallError)) throw err;
    if (err.errno !== Errno.EINVAL) errno = err.errno; // EINVAL: not frozen (any more)
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

// ---- the shared claim counter (also used by freeze_worker.ts) ----

/** Bit set in the counter once no further mount may be started. */
const STOPPED = 0x40000000;

/**
 * Claims the next mount of a wave from the counter in `control[0]`: its index, or -1 when all are
 * claimed or the wave was stopped by a failure. Claiming and stopping are one atomic word, so a
 * mount is never started after a failure has been recorded.
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

/** How many mounts were claimed, once no more can be (all claimed, or stopped); else undefined. */
function finalClaimCount(control: Int32Array, count: number): number | undefined {
  const state = Atomics.load(control, 0);
  if ((state & STOPPED) === 0 && state < count) return undefined;
  return Math.min(state & ~STOPPED, count);
}

/** A wave handed to a Worker. */
export interface WaveRequest {
  wave: number;
  mountPoints: string[];
  /** Int32 words: [0] the claim counter, [1 + slot] index + 1 of the mount a Worker is freezing. */
  control: SharedArrayBuffer;
  slot: number;
}

/** One finished mount, from a Worker. */
export interface WaveResult {
  wave: number;
  index: number;
  outcome: FreezeOutcome;
}

/** What a Worker posts once its module has loaded. */
export interface WorkerReady {
  ready: true;
}

// ---- the pool ----

interface PoolWorker {
  worker: Worker;
  /** Settles once the Worker has loaded, or died trying. */
  ready: Promise<void>;
  /** Set while a wave is out; called with a message or with the error that killed the Worker. */
  onResult?: (result: WaveResult) => void;
  onDeath?: (message: string) => void;
}

const pool: PoolWorker[] = [];
let waveCounter = 0;
const activeWaves = new Set<(err: Error) => void>();

function startWorker(): PoolWorker {
  const worker = new Worker(new URL("./freeze_worker.ts", import.meta.url).href, {
    type: "module",
  });
  let loaded = (): void => {};
  const member: PoolWorker = { worker, ready: new Promise((resolve) => loaded = resolve) };
  worker.onmessage = (event: MessageEvent<WaveResult | WorkerReady>) => {
    if ("ready" in event.data) loaded();
    else member.onResult?.(event.data);
  };
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault(); // a dead Worker is reported as an outcome, not a crash of the agent
    loaded();
    retire(member);
    member.onDeath?.(event.message);
  };
  pool.push(member);
  return member;
}

function retire(member: PoolWorker): void {
  const at = pool.indexOf(member);
  if (at >= 0) pool.splice(at, 1);
  member.worker.terminate();
}

/**
 * Freezes wave by wave; the mounts of a wave concurrently (up to `concurrency` at a time: the
 * calling thread and Workers, each running open + FIFREEZE + close synchronously). Stops starting
 * new work after the first failure and returns every outcome of work that was started, in the
 * order it finished.
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
    const workers = workersFor(wave.length, concurrency, callingThread);
    const results = workers === 0
      ? freezeSequentially(wave)
      : await freezeConcurrently(wave, workers, callingThread);
    outcomes.push(...results);
    if (results.some((outcome) => outcome.status === "failed")) break;
  }
  return outcomes;
}

/** How many Workers a wave of `mounts` uses: the calling thread may be one of the freezers. */
function workersFor(mounts: number, concurrency: number, callingThread: boolean): number {
  const freezers = Math.min(concurrency, mounts);
  return callingThread ? freezers - 1 : freezers;
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

function freezeConcurrently(
  mountPoints: readonly string[],
  workers: number,
  callingThread: boolean,
): Promise<FreezeOutcome[]> {
  while (pool.length < workers) startWorker();
  return new Promise((resolve, reject) => {
    const wave = new ConcurrentWave(mountPoints, pool.slice(0, workers), resolve, reject);
    wave.start(callingThread);
  });
}

/** One wave out to Workers: collects results until every claimed mount has an outcome. */
class ConcurrentWave {
  readonly #wave = ++waveCounter;
  readonly #mountPoints: readonly string[];
  readonly #members: PoolWorker[];
  readonly #buffer: SharedArrayBuffer;
  readonly #control: Int32Array;
  readonly #outcomes: FreezeOutcome[] = [];
  readonly #finished = new Set<number>();
  readonly #resolve: (outcomes: FreezeOutcome[]) => void;
  readonly #reject: (err: Error) => void;
  #liveWorkers: number;

  constructor(
    mountPoints: readonly string[],
    members: PoolWorker[],
    resolve: (outcomes: FreezeOutcome[]) => void,
    reject: (err: Error) => void,
  ) {
    this.#mountPoints = mountPoints;
    this.#members = members;
    this.#buffer = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT * (1 + members.length));
    this.#control = new Int32Array(this.#buffer);
    this.#resolve = resolve;
    this.#reject = reject;
    this.#liveWorkers = members.length;
  }

  /** Hands the wave to the Workers and, if `callingThread`, freezes here until nothing is left. */
  start(callingThread: boolean): void {
    activeWaves.add(this.#abort);
    this.#members.forEach((member, slot) => {
      member.onResult = (result) => {
        if (result.wave !== this.#wave) return;
        this.#record(result.index, result.outcome);
        this.#checkDone();
      };
      member.onDeath = (message) => this.#workerDied(slot, message);
      const request: WaveRequest = {
        wave: this.#wave,
        mountPoints: [...this.#mountPoints],
        control: this.#buffer,
        slot,
      };
      member.worker.postMessage(request);
    });
    if (!callingThread) return;
    // Starting Workers takes ~40 ms: until they run, the calling thread does the work alone.
    try {
      this.#freezeHere();
    } catch (err) {
      this.#abort(err as Error); // libc cannot be loaded: nothing can be frozen
      return;
    }
    this.#checkDone();
  }

  #record(index: number, outcome: FreezeOutcome): void {
    if (this.#finished.has(index)) return;
    this.#finished.add(index);
    this.#outcomes.push(outcome);
    if (outcome.status === "failed") stopClaims(this.#control);
  }

  #checkDone(): void {
    if (this.#finished.size !== finalClaimCount(this.#control, this.#mountPoints.length)) return;
    this.#settle();
    this.#resolve(this.#outcomes);
  }

  /**
   * A Worker died (e.g. it could not load): the mount it was freezing, if any, has failed; if no
   * Worker is left, the calling thread takes over what nobody claimed.
   */
  #workerDied(slot: number, message: string): void {
    this.#liveWorkers--;
    const index = Atomics.load(this.#control, 1 + slot) - 1;
    if (index >= 0) {
      this.#record(index, {
        mountPoint: this.#mountPoints[index] as string,
        status: "failed",
        step: "freeze",
        errno: 0,
        code: "EWORKER",
        text: `freeze worker died: ${message}`,
        durationMs: 0,
      });
    }
    if (this.#liveWorkers === 0) {
      try {
        this.#freezeHere();
      } catch (err) {
        this.#abort(err as Error);
        return;
      }
    }
    this.#checkDone();
  }

  /** Claims and freezes mounts on the calling thread until none is left or the wave stopped. */
  #freezeHere(): void {
    const count = this.#mountPoints.length;
    for (
      let index = claimNext(this.#control, count);
      index >= 0;
      index = claimNext(this.#control, count)
    ) {
      this.#record(index, freezeMount(this.#mountPoints[index] as string));
    }
  }

  #settle(): void {
    for (const member of this.#members) {
      delete member.onResult;
      delete member.onDeath;
    }
    activeWaves.delete(this.#abort);
  }

  readonly #abort = (err: Error): void => {
    this.#settle();
    this.#reject(err);
  };
}

/**
 * Starts, ahead of time (e.g. while the freeze hook runs), the Workers that {@link freezeMounts}
 * with these options uses for a wave of `concurrency` mounts or more; resolves once they loaded.
 */
export async function prepareFreezer(options: FreezeOptions = {}): Promise<void> {
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const workers = workersFor(concurrency, concurrency, options.callingThread ?? true);
  while (pool.length < workers) startWorker();
  await Promise.all(pool.map((member) => member.ready));
}

/**
 * Terminates the pooled Workers so the process can exit; a freeze still in progress rejects.
 * The next concurrent freeze starts a new pool.
 */
export function closeFreezer(): void {
  for (const abort of [...activeWaves]) abort(new Error("freezer closed during a freeze"));
  for (const member of [...pool]) retire(member);
}
