/**
 * Memory after bursts: an agent lives for months, so after any burst of traffic its resident
 * memory should come back to what it was at idle. Each agent (ours, qemu-ga) gets the same
 * bursts on one connection, one after another, and its VmRSS is read at idle, right after each
 * burst, and `settleMs` later:
 * - 10,000 sequential `guest-ping`s;
 * - 30,000 fuzz frames (garbage, token floods, deep nesting, invalid UTF-8; tests/_util), with a
 *   `guest-ping` probe after every 250 so nothing is left unprocessed;
 * - one request of `bigMiB` MiB (a string argument, within qemu's 64 MiB message limit);
 * - 100,000 `guest-ping`s in batches of 100.
 *
 * @module
 */

import { fuzzInputs } from "../tests/_util/fuzz_inputs.ts";
import { type AgentKind, rssKiB, sleep, spawnAgent } from "./_procs.ts";

/** Knobs of {@link measureMemoryRun}. */
export interface MemoryOptions {
  pings: number;
  fuzzFrames: number;
  bigMiB: number;
  requests: number;
  /** How long after a burst the settled reading is taken. */
  settleMs: number;
}

/** One burst's readings, KiB. */
export interface BurstSample {
  /** Right after the burst's last reply. */
  endKiB: number;
  /** `settleMs` later. */
  settledKiB: number;
}

/** One agent's numbers from one run. */
export interface MemorySample {
  idleKiB: number;
  bursts: Record<BurstName, BurstSample>;
}

/** The bursts, in the order they run. */
export const BURSTS = ["pings", "fuzz", "big", "requests"] as const;
/** One of {@link BURSTS}. */
export type BurstName = typeof BURSTS[number];

const encoder = new TextEncoder();
const FUZZ_SEED = 20261202;
const PROBE_EVERY = 250;

/** Runs the bursts against a fresh `kind` agent in `dir`. */
export async function measureMemoryRun(
  kind: AgentKind,
  dir: string,
  options: MemoryOptions,
): Promise<MemorySample> {
  const agent = await spawnAgent(kind, { dir });
  try {
    const client = await LineClient.connectWhenUp(agent.socketPath);
    try {
      await client.call('{"execute":"guest-ping"}');
      await sleep(options.settleMs);
      const idleKiB = rssKiB(agent.pid);
      const bursts = {} as Record<BurstName, BurstSample>;
      const run = async (name: BurstName, burst: () => Promise<void>): Promise<void> => {
        await burst();
        const endKiB = rssKiB(agent.pid);
        await sleep(options.settleMs);
        bursts[name] = { endKiB, settledKiB: rssKiB(agent.pid) };
      };
      await run("pings", () => sequentialPings(client, options.pings));
      await run("fuzz", () => fuzzBurst(client, options.fuzzFrames));
      await run("big", () => bigRequest(client, options.bigMiB));
      await run("requests", () => batchedPings(client, options.requests));
      return { idleKiB, bursts };
    } finally {
      await client.close();
    }
  } finally {
    await agent.stop();
  }
}

async function sequentialPings(client: LineClient, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await client.call('{"execute":"guest-ping"}');
}

async function batchedPings(client: LineClient, count: number): Promise<void> {
  const batch = encoder.encode('{"execute":"guest-ping"}'.repeat(100));
  for (let sent = 0; sent < count; sent += 100) {
    await client.write(batch);
    await client.waitForLines(100);
  }
}

async function fuzzBurst(client: LineClient, count: number): Promise<void> {
  const inputs = fuzzInputs(FUZZ_SEED, count);
  for (let start = 0; start < inputs.length; start += PROBE_EVERY) {
    for (const input of inputs.slice(start, start + PROBE_EVERY)) await client.write(input);
    // 0xFF drops a partial message the frames left; then the probe must be answered.
    await client.write(new Uint8Array([0xff]));
    await client.probe(`fuzz-${start}`);
  }
}

async function bigRequest(client: LineClient, mib: number): Promise<void> {
  const head = '{"execute":"guest-ping","arguments":{"pad":"';
  const tail = '"}}';
  const bytes = new Uint8Array(mib * 1024 * 1024);
  bytes.fill(0x61);
  bytes.set(encoder.encode(head));
  bytes.set(encoder.encode(tail), bytes.length - tail.length);
  await client.write(bytes);
  // Either reply is fine (qemu-ga and ours reject the unknown argument alike): it was processed.
  await client.waitForLines(1);
  await client.probe("big");
}

/**
 * A connection whose replies are read all the time (a client that stops reading while it writes
 * would deadlock against the agent's own writes); lines are counted, and only the tail is kept.
 */
class LineClient {
  readonly #conn: Deno.UnixConn;
  readonly #reader: Promise<void>;
  #tail = "";
  #lines = 0;
  #closed = false;
  /** Resolved (and replaced) whenever data arrives or the connection ends. */
  #arrival = Promise.withResolvers<void>();

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#reader = this.#readAll();
  }

  static async connectWhenUp(path: string): Promise<LineClient> {
    for (let attempt = 0;; attempt++) {
      try {
        return new LineClient(await Deno.connect({ transport: "unix", path }));
      } catch (err) {
        if (attempt > 600) throw err;
        await sleep(50);
      }
    }
  }

  async #readAll(): Promise<void> {
    const buffer = new Uint8Array(1 << 20);
    const decoder = new TextDecoder("latin1");
    for (;;) {
      const count = await this.#conn.read(buffer).catch(() => null);
      if (count === null) {
        this.#closed = true;
        this.#arrival.resolve();
        return;
      }
      const text = decoder.decode(buffer.subarray(0, count));
      for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) this.#lines++;
      this.#tail = (this.#tail + text).slice(-4096);
      const arrived = this.#arrival;
      this.#arrival = Promise.withResolvers<void>();
      arrived.resolve();
    }
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /** Waits until `count` more lines than now have arrived. */
  async waitForLines(count: number): Promise<void> {
    const target = this.#lines + count;
    while (this.#lines < target) await this.#tick();
  }

  /** Sends one request and waits for one line. */
  async call(request: string): Promise<void> {
    const target = this.#lines + 1;
    await this.write(encoder.encode(request));
    while (this.#lines < target) await this.#tick();
  }

  /** A `guest-ping` with a unique id, answered once everything before it was processed. */
  async probe(id: string): Promise<void> {
    await this.write(encoder.encode(`{"execute":"guest-ping","id":"${id}"}`));
    const marker = `{"return": {}, "id": "${id}"}`;
    while (!this.#tail.includes(marker)) await this.#tick();
  }

  /** Waits for more data. */
  async #tick(): Promise<void> {
    if (this.#closed) throw new Error("the agent closed the connection");
    await this.#arrival.promise;
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // closed
    }
    await this.#reader;
  }
}
