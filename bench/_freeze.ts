/**
 * The freeze measurements of one agent run: `guest-fsfreeze-freeze-list` + `guest-fsfreeze-thaw`
 * over fresh loop-mounted ext4 filesystems the bench created (tests/_util/loopfs.ts), first on
 * freshly written, dirty filesystems (where the kernel's sync dominates), then in steady state
 * (cycles back to back), then spaced (each a second after the previous, as a guest's freezes come).
 * Each request is timed from its write to its reply.
 *
 * Safety (README, "Performance"): only the bench's own loop mounts are ever named in a freeze; a watchdog
 * process thaws them a few seconds after each arming whatever happens here; the bench itself
 * writes to them only before the first freeze; mounts are thawed and removed in `finally`, after
 * the agent has exited (qemu-ga's private mount namespace holds them until then).
 *
 * @module
 */

import { readMountinfo } from "../src/fsfreeze/mountinfo.ts";
import { createLoopMounts } from "../tests/_util/loopfs.ts";
import { BenchClient } from "./_client.ts";
import { type AgentKind, childPids, firstPing, rssKiB, sleep, spawnAgent } from "./_procs.ts";
import { median } from "./_stats.ts";
import { syncAllAtOnce } from "./_syncfs.ts";

const encoder = new TextEncoder();
const THAW = encoder.encode(JSON.stringify({ execute: "guest-fsfreeze-thaw" }));
const REPORT = encoder.encode(
  JSON.stringify({ execute: "__io.github.fsfreeze-agent_guest-fsfreeze-report" }),
);

/** Pause between the first reply and the first freeze. */
const AFTER_START_MS = 2000;
/** Pause before the RSS reading after the last cycle. */
const SETTLE_MS = 300;
/**
 * Pause before each spaced cycle: long enough for the kernel to forget the previous freeze (a
 * FIFREEZE within a few milliseconds of a thaw skips the waits a freeze otherwise has).
 */
const SPACED_PAUSE_MS = 1000;

function rssOrZero(pid: number): number {
  try {
    return rssKiB(pid);
  } catch {
    return 0; // exited meanwhile
  }
}

/** Knobs of {@link measureFreeze}. */
export interface FreezeBenchOptions {
  /** Data written (buffered, never synced) to each filesystem right before the first freeze. */
  dirtyMiB: number;
  /** Freeze+thaw cycles after the first one; their median is the steady state. */
  steadyCycles: number;
  /** Cycles after those, each {@link SPACED_PAUSE_MS} after the previous: a guest's usual case. */
  spacedCycles: number;
  /** Size of each (sparse) image. */
  imageMiB: number;
  /** Seconds after each arming until the loop fixtures' watchdog thaws everything. */
  watchdogSeconds: number;
  /** Where the images are made (`/tmp` when absent). */
  imagesDir?: string;
  /** Mounts qemu-ga's namespace keeps although they are under /tmp (the bench's own tmpfs). */
  keepVisible?: readonly string[];
  /** More options for our agent (`--ours-args`). */
  oursArgs: readonly string[];
}

/** One freeze-list + thaw, as the host sees it. */
export interface CycleTimes {
  freezeMs: number;
  thawMs: number;
  totalMs: number;
}

/** Our agent's own account of a cycle (its report command). */
export interface AgentAccount {
  /** From the freeze hook's start (or the first FIFREEZE) to the last FIFREEZE done. */
  freezeWindowMs: number;
  /** Per-mount FIFREEZE time: the slowest, and the sum over mounts. */
  mountFreezeMaxMs: number;
  mountFreezeSumMs: number;
  /** The thaw's own duration (FITHAWs and the thaw hook). */
  thawMs: number;
}

/** One run's numbers. */
export interface FreezeSample {
  /** The agent's VmRSS while frozen (1st cycle), and its child processes' (our watchdog). */
  frozenRssKiB: number;
  childrenRssKiB: number;
  /** The agent's VmRSS after the last cycle, settled. */
  afterRssKiB: number;
  first: CycleTimes;
  /** Median of each field over the steady cycles. */
  steady: CycleTimes;
  /** Median of each field over the spaced cycles (absent when none were run). */
  spaced?: CycleTimes;
  /** Our agent only. */
  firstAccount?: AgentAccount;
  steadyAccount?: AgentAccount;
  spacedAccount?: AgentAccount;
}

/** Creates `count` fresh mounts, starts `kind` on them, measures, tears everything down. */
export async function measureFreeze(
  kind: AgentKind,
  count: number,
  hook: string | undefined,
  dir: string,
  options: FreezeBenchOptions,
): Promise<FreezeSample> {
  await using mounts = await createLoopMounts(count, {
    sizeMiB: options.imageMiB,
    watchdogSeconds: options.watchdogSeconds,
    ...(options.imagesDir ? { parentDir: options.imagesDir } : {}),
  });
  // The images' own writes (mkfs) go to the disk now, not during the measurement.
  await syncFilesystemOf(mounts.dir);
  const hideMounts = kind === "qemu-ga"
    ? foreignMounts([...mounts.mounts, ...options.keepVisible ?? []])
    : undefined;
  await using agent = await spawnAgent(kind, {
    dir,
    scope: mounts.mounts,
    ...(kind === "ours" ? { args: options.oursArgs } : {}),
    ...(hook ? { hook } : {}),
    ...(hideMounts ? { hideMounts } : {}),
  });
  const { client } = await firstPing(agent);
  using _client = client;
  // In a guest the first freeze comes long after the agent started: let each agent finish
  // starting (ours loads its freeze engine and connects to its watchdog after its first reply).
  await sleep(AFTER_START_MS);
  const request = encoder.encode(
    JSON.stringify({
      execute: "guest-fsfreeze-freeze-list",
      arguments: { mountpoints: mounts.mounts },
    }),
  );

  await writeDirtyData(mounts.mounts, options.dirtyMiB);
  await mounts.armWatchdog();
  let frozenRssKiB = 0;
  let childrenRssKiB = 0;
  const first = await cycle(client, request, count, () => {
    frozenRssKiB = rssKiB(agent.pid);
    childrenRssKiB = childPids(agent.pid).reduce((sum, pid) => sum + rssOrZero(pid), 0);
  });
  const firstAccount = kind === "ours" ? await account(client) : undefined;

  await mounts.armWatchdog();
  const steady = await cycles(client, request, count, kind, options.steadyCycles);
  const spaced = await cycles(client, request, count, kind, options.spacedCycles, async () => {
    await mounts.armWatchdog();
    await sleep(SPACED_PAUSE_MS);
  });
  await sleep(SETTLE_MS);
  const sample: FreezeSample = {
    frozenRssKiB,
    childrenRssKiB,
    afterRssKiB: rssKiB(agent.pid),
    first,
    steady: steady.times!,
  };
  if (spaced.times) sample.spaced = spaced.times;
  if (firstAccount) sample.firstAccount = firstAccount;
  if (steady.account) sample.steadyAccount = steady.account;
  if (spaced.account) sample.spacedAccount = spaced.account;
  return sample;
}

/**
 * `n` cycles (`before` runs ahead of each, untimed) and their medians; our agent's report is read
 * after each. Both are absent when `n` is 0.
 */
async function cycles(
  client: BenchClient,
  request: Uint8Array,
  count: number,
  kind: AgentKind,
  n: number,
  before?: () => Promise<void>,
): Promise<{ times?: CycleTimes; account?: AgentAccount }> {
  const times: CycleTimes[] = [];
  const accounts: AgentAccount[] = [];
  for (let i = 0; i < n; i++) {
    await before?.();
    times.push(await cycle(client, request, count));
    if (kind === "ours") accounts.push(await account(client));
  }
  return {
    ...(times.length > 0 ? { times: medianCycle(times) } : {}),
    ...(accounts.length > 0 ? { account: medianAccount(accounts) } : {}),
  };
}

/**
 * The floor of a first cycle beside it: `count` fresh filesystems of the same size with the same
 * dirty data, synced all at once (syncfs on each, concurrently). Nothing is frozen.
 */
export async function measureSyncfsFloor(
  count: number,
  options: FreezeBenchOptions,
): Promise<number> {
  await using mounts = await createLoopMounts(count, {
    sizeMiB: options.imageMiB,
    watchdogSeconds: options.watchdogSeconds,
    ...(options.imagesDir ? { parentDir: options.imagesDir } : {}),
  });
  await syncFilesystemOf(mounts.dir);
  await writeDirtyData(mounts.mounts, options.dirtyMiB);
  return await syncAllAtOnce(mounts.mounts);
}

/**
 * Freeze-list then thaw, each timed from the request's write to its reply; `whileFrozen` runs
 * in between, untimed (it must not write to the frozen filesystems).
 */
async function cycle(
  client: BenchClient,
  freezeRequest: Uint8Array,
  count: number,
  whileFrozen?: () => void,
): Promise<CycleTimes> {
  const started = performance.now();
  await client.write(freezeRequest);
  const frozenLine = await client.readLine();
  const frozenAt = performance.now();
  whileFrozen?.();
  const thawStarted = performance.now();
  await client.write(THAW);
  const thawedLine = await client.readLine();
  const thawedAt = performance.now();
  const frozen = JSON.parse(frozenLine).return;
  const thawed = JSON.parse(thawedLine).return;
  if (frozen !== count || thawed !== count) {
    throw new Error(`expected ${count} frozen and thawed, got: ${frozenLine} / ${thawedLine}`);
  }
  const freezeMs = frozenAt - started;
  const thawMs = thawedAt - thawStarted;
  return { freezeMs, thawMs, totalMs: freezeMs + thawMs };
}

interface Report {
  freezeWindowUs?: number;
  mounts: { status: string; freezeUs?: number }[];
  thaw?: { durationUs: number };
}

async function account(client: BenchClient): Promise<AgentAccount> {
  await client.write(REPORT);
  const report = JSON.parse(await client.readLine()).return as Report;
  const mountUs = report.mounts.filter((m) => m.status === "frozen").map((m) => m.freezeUs ?? NaN);
  return {
    freezeWindowMs: (report.freezeWindowUs ?? NaN) / 1000,
    mountFreezeMaxMs: Math.max(...mountUs) / 1000,
    mountFreezeSumMs: mountUs.reduce((a, b) => a + b, 0) / 1000,
    thawMs: (report.thaw?.durationUs ?? NaN) / 1000,
  };
}

function medianCycle(cycles: readonly CycleTimes[]): CycleTimes {
  return {
    freezeMs: median(cycles.map((c) => c.freezeMs)),
    thawMs: median(cycles.map((c) => c.thawMs)),
    totalMs: median(cycles.map((c) => c.totalMs)),
  };
}

function medianAccount(accounts: readonly AgentAccount[]): AgentAccount {
  const of = (key: keyof AgentAccount): number => median(accounts.map((a) => a[key]));
  return {
    freezeWindowMs: of("freezeWindowMs"),
    mountFreezeMaxMs: of("mountFreezeMaxMs"),
    mountFreezeSumMs: of("mountFreezeSumMs"),
    thawMs: of("thawMs"),
  };
}

/**
 * Buffered writes of `mib` MiB to a new file on each mount, never synced: the first FIFREEZE
 * then has to write them out. Done before any freeze, by this process.
 */
async function writeDirtyData(mountPoints: readonly string[], mib: number): Promise<void> {
  if (mib <= 0) return;
  const block = new Uint8Array(1024 * 1024);
  for (let i = 0; i < block.length; i++) block[i] = (i * 131 + 7) & 0xff; // not all zeros
  for (const mountPoint of mountPoints) {
    using file = await Deno.open(`${mountPoint}/dirty.bin`, { write: true, create: true });
    for (let i = 0; i < mib; i++) {
      for (let offset = 0; offset < block.length;) {
        offset += await file.write(block.subarray(offset));
      }
    }
  }
}

/** syncfs(2) of the filesystem holding `path` (never one of the loop mounts: they hold no image). */
async function syncFilesystemOf(path: string): Promise<void> {
  const output = await new Deno.Command("sync", { args: ["-f", path], stdout: "null" }).output();
  if (!output.success) throw new Error(`sync -f ${path} failed`);
}

/**
 * Mounts qemu-ga must not see (its thaw would thaw them): every loop-device or /tmp mount that is
 * not one of `own` (the bench's loop mounts and its tmpfs), deepest first.
 */
export function foreignMounts(own: readonly string[]): string[] {
  const mine = new Set(own);
  return readMountinfo()
    .filter((entry) => !mine.has(entry.mountPoint))
    .filter((entry) => entry.source.startsWith("/dev/loop") || entry.mountPoint.startsWith("/tmp/"))
    .map((entry) => entry.mountPoint)
    .sort((a, b) => b.split("/").length - a.split("/").length);
}
