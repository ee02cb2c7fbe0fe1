/**
 * The non-freeze measurements, the agents (and a minimal Deno ping server, the floor of what a
 * Deno agent can do) alive side by side in each run: start-to-first-`guest-ping`, idle RSS,
 * `guest-ping` round trips on one connection each (sequential request/response, in blocks that
 * alternate between them so drift hits all alike), and RSS after a long series of requests.
 * Also the Deno floor's start-up (an empty script) and idle RSS.
 *
 * @module
 */

import { type BenchClient, requestBytes } from "./_client.ts";
import {
  type BenchProcess,
  firstPing,
  floorIdleRssKiB,
  floorRunMs,
  rssAnonKiB,
  rssKiB,
  type ServeKind,
  sleep,
  spawnServer,
  threadCount,
} from "./_procs.ts";
import { percentile } from "./_stats.ts";

/** Knobs of {@link measureServeRun}. */
export interface ServeOptions {
  /** Sequential pings timed per agent for p50/p99. */
  pings: number;
  /** The timed pings are sent in this many blocks, alternating between the agents. */
  pingBlocks: number;
  /** Untimed pings before them (JIT and caches warm, as for a long-running agent). */
  warmupPings: number;
  /** Requests sent before the second RSS reading. */
  requests: number;
  /** Requests per write for that series (the replies are awaited per batch). */
  batch: number;
  /** Pause before each RSS reading, so it shows the settled process. */
  settleMs: number;
}

/** One agent's numbers from one run. */
export interface ServeSample {
  startupMs: number;
  idleRssKiB: number;
  rssAfterRequestsKiB: number;
  /** The private parts (RssAnon) of the two readings. */
  idleAnonKiB: number;
  anonAfterRequestsKiB: number;
  threads: number;
  pingP50Us: number;
  pingP99Us: number;
  pingMeanUs: number;
  /** Requests per second over the request series. */
  requestsPerSecond: number;
}

const PING = requestBytes("guest-ping");

interface Running {
  kind: ServeKind;
  process: BenchProcess;
  client: BenchClient;
  startupMs: number;
  idleRssKiB: number;
  idleAnonKiB: number;
  pingMs: number[];
}

/**
 * One run: starts everything in `order` (each in its own dir; the floor server runs
 * `serverScript`), measures, stops them.
 */
export async function measureServeRun(
  order: readonly ServeKind[],
  dirOf: (kind: ServeKind) => string,
  serverScript: string,
  options: ServeOptions,
): Promise<Map<ServeKind, ServeSample>> {
  const running: Running[] = [];
  try {
    for (const kind of order) {
      const process = await spawnServer(kind, dirOf(kind), serverScript);
      try {
        const { client, ms } = await firstPing(process);
        running.push({
          kind,
          process,
          client,
          startupMs: ms,
          idleRssKiB: 0,
          idleAnonKiB: 0,
          pingMs: [],
        });
      } catch (err) {
        await process.stop();
        throw err;
      }
    }
    await sleep(options.settleMs);
    for (const agent of running) {
      agent.idleRssKiB = rssKiB(agent.process.pid);
      agent.idleAnonKiB = rssAnonKiB(agent.process.pid);
    }
    for (const agent of running) await pings(agent.client, options.warmupPings);
    const perBlock = Math.ceil(options.pings / options.pingBlocks);
    for (let block = 0; block < options.pingBlocks; block++) {
      for (const agent of running) agent.pingMs.push(...await pings(agent.client, perBlock));
    }
    const rates = new Map<ServeKind, number>();
    for (const agent of running) rates.set(agent.kind, await requestSeries(agent.client, options));
    await sleep(options.settleMs);
    const samples = new Map<ServeKind, ServeSample>();
    for (const agent of running) {
      const micros = agent.pingMs.map((ms) => ms * 1000);
      samples.set(agent.kind, {
        startupMs: agent.startupMs,
        idleRssKiB: agent.idleRssKiB,
        rssAfterRequestsKiB: rssKiB(agent.process.pid),
        idleAnonKiB: agent.idleAnonKiB,
        anonAfterRequestsKiB: rssAnonKiB(agent.process.pid),
        threads: threadCount(agent.process.pid),
        pingP50Us: percentile(micros, 50),
        pingP99Us: percentile(micros, 99),
        pingMeanUs: micros.reduce((a, b) => a + b, 0) / micros.length,
        requestsPerSecond: rates.get(agent.kind) as number,
      });
    }
    return samples;
  } finally {
    for (const agent of running) {
      agent.client[Symbol.dispose]();
      await agent.process.stop();
    }
  }
}

/** `count` sequential pings; each one's round trip in ms. */
async function pings(client: BenchClient, count: number): Promise<number[]> {
  const rounds = new Array<number>(count);
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await client.write(PING);
    await client.skipLines(1);
    rounds[i] = performance.now() - started;
  }
  return rounds;
}

/** Sends `options.requests` pings in batches; returns requests per second. */
async function requestSeries(client: BenchClient, options: ServeOptions): Promise<number> {
  const batch = repeat(PING, options.batch);
  const started = performance.now();
  let sent = 0;
  for (; sent < options.requests; sent += options.batch) {
    await client.write(batch);
    await client.skipLines(options.batch);
  }
  return sent / ((performance.now() - started) / 1000);
}

function repeat(bytes: Uint8Array, times: number): Uint8Array {
  const out = new Uint8Array(bytes.length * times);
  for (let i = 0; i < times; i++) out.set(bytes, i * bytes.length);
  return out;
}

/** One run of the Deno floor. */
export interface FloorSample {
  /** Spawn to exit of `deno run <empty script>`. */
  runMs: number;
  /** VmRSS of an idle `deno run`, after the same settle time as the agents. */
  idleRssKiB: number;
}

/** Measures the Deno floor once. */
export async function measureFloor(
  scripts: { empty: string; idle: string },
  settleMs: number,
): Promise<FloorSample> {
  return {
    runMs: await floorRunMs(scripts.empty),
    idleRssKiB: await floorIdleRssKiB(scripts.idle, settleMs),
  };
}
