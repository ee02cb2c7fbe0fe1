/**
 * The non-freeze measurements of one agent run: start-to-first-`guest-ping`, idle RSS, `guest-ping`
 * round trips on one connection (sequential request/response), and RSS after a long series of
 * requests. Also the Deno floor's start-up and idle RSS.
 *
 * @module
 */

import { requestBytes } from "./_client.ts";
import {
  type AgentKind,
  firstPing,
  floorIdleRssKiB,
  floorRunMs,
  rssKiB,
  sleep,
  spawnAgent,
  threadCount,
} from "./_procs.ts";
import { percentile } from "./_stats.ts";

/** Knobs of {@link measureServe}. */
export interface ServeOptions {
  /** Sequential pings timed for p50/p99. */
  pings: number;
  /** Untimed pings before them (JIT and caches warm, as for a long-running agent). */
  warmupPings: number;
  /** Requests sent before the second RSS reading. */
  requests: number;
  /** Requests per write for that series (replies are awaited per batch). */
  batch: number;
  /** Pause before each RSS reading, so it shows the settled process. */
  settleMs: number;
}

/** One run's numbers. */
export interface ServeSample {
  startupMs: number;
  idleRssKiB: number;
  rssAfterRequestsKiB: number;
  threads: number;
  pingP50Us: number;
  pingP99Us: number;
  pingMeanUs: number;
  /** Wall time of the request series (requests per second follows). */
  requestsMs: number;
}

const PING = requestBytes("guest-ping");

/** Starts `kind` in `dir`, measures, stops it. */
export async function measureServe(
  kind: AgentKind,
  dir: string,
  options: ServeOptions,
): Promise<ServeSample> {
  await using agent = await spawnAgent(kind, { dir });
  const { client, ms: startupMs } = await firstPing(agent);
  using _client = client;
  await sleep(options.settleMs);
  const idleRssKiB = rssKiB(agent.pid);

  for (let i = 0; i < options.warmupPings; i++) {
    await client.write(PING);
    await client.skipLines(1);
  }
  const rounds = new Float64Array(options.pings);
  for (let i = 0; i < options.pings; i++) {
    const started = performance.now();
    await client.write(PING);
    await client.skipLines(1);
    rounds[i] = performance.now() - started;
  }
  const samples = [...rounds].map((ms) => ms * 1000);

  const batch = repeat(PING, options.batch);
  const seriesStarted = performance.now();
  for (let sent = 0; sent < options.requests; sent += options.batch) {
    await client.write(batch);
    await client.skipLines(options.batch);
  }
  const requestsMs = performance.now() - seriesStarted;
  await sleep(options.settleMs);
  return {
    startupMs,
    idleRssKiB,
    rssAfterRequestsKiB: rssKiB(agent.pid),
    threads: threadCount(agent.pid),
    pingP50Us: percentile(samples, 50),
    pingP99Us: percentile(samples, 99),
    pingMeanUs: samples.reduce((a, b) => a + b, 0) / samples.length,
    requestsMs,
  };
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
