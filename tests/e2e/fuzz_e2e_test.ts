/**
 * Bad input never kills the agent (docs/protocol.md, "Lexer"): ≥ 10,000 random and mutated
 * messages — garbage, truncated, deeply nested, oversized, invalid UTF-8, stray 0xFF — fed to the
 * real agent process; after each batch it still answers `guest-ping`, and its memory stays flat.
 *
 * @module
 */

import assert from "node:assert/strict";
import { spawnAgent, withTimeout } from "../_util/agent.ts";
import { fuzzInputs } from "../_util/fuzz_inputs.ts";

const INPUTS = 10_000;
const BATCH = 250;

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)![1]);
}

/**
 * The agent's RSS once it has handed back what the burst used (src/memory.ts reclaims after the
 * channel has been quiet): the lowest figure seen until it stops falling. Right after a pass, RSS
 * is a high-water mark that depends on when V8 last collected, not a measure of what is kept.
 */
async function settledRssKiB(pid: number): Promise<number> {
  let lowest = rssKiB(pid);
  let unchanged = 0;
  for (let waited = 0; waited < 60_000 && unchanged < 8; waited += 250) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = rssKiB(pid);
    unchanged = now < lowest - 256 ? 0 : unchanged + 1;
    lowest = Math.min(lowest, now);
  }
  return lowest;
}

Deno.test("the agent survives 2 × 10,000 fuzz inputs, answers guest-ping after every batch, RSS flat", async () => {
  await using agent = await spawnAgent();
  const conn = await Deno.connect({ transport: "unix", path: agent.socketPath });
  // Replies are read all the time: a writer that stops reading would deadlock the agent's writes.
  let received = "";
  let scanned = 0;
  const reader = (async () => {
    const buffer = new Uint8Array(1 << 20);
    const decoder = new TextDecoder("latin1");
    while (true) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) return;
      received += decoder.decode(buffer.subarray(0, count));
      if (received.length > 1 << 24) {
        // Keep memory bounded: only the tail can still contain an unanswered probe.
        scanned = Math.max(0, scanned - (received.length - (1 << 20)));
        received = received.slice(-(1 << 20));
      }
    }
  })();
  const write = async (bytes: Uint8Array): Promise<void> => {
    let offset = 0;
    while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
  };
  const probe = async (n: number): Promise<void> => {
    const marker = `"id": "probe-${n}"`;
    await write(new TextEncoder().encode(`{"execute":"guest-ping","id":"probe-${n}"}`));
    const until = Date.now() + 60_000;
    while (!received.includes(marker, scanned)) {
      if (Date.now() > until) throw new Error(`no answer to probe ${n}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const at = received.indexOf(marker, scanned);
    const lineStart = received.lastIndexOf("\n", at) + 1;
    assert.equal(
      received.slice(lineStart, received.indexOf("\n", at)),
      `{"return": {}, ${marker}}`,
    );
    scanned = at + marker.length;
  };
  const inputs = fuzzInputs(20261125, INPUTS);
  let batch = 0;
  const pass = async (): Promise<number> => {
    for (let start = 0; start < inputs.length; start += BATCH, batch++) {
      for (const input of inputs.slice(start, start + BATCH)) await write(input);
      // 0xFF drops whatever partial message the batch left, then the probe must be answered.
      await write(new Uint8Array([0xff]));
      await probe(batch);
    }
    return await settledRssKiB(agent.pid);
  };
  try {
    // The first pass reaches the high-water mark of the largest inputs (a 4 MiB token flood
    // builds millions of values); what stays after the same inputs again must not be more:
    // nothing leaks.
    const first = await pass();
    const second = await pass();
    assert.equal(agent.exited, false);
    assert.ok(
      second - first < Math.max(first / 10, 32 * 1024),
      `RSS after the first pass ${first} KiB, after the second ${second} KiB`,
    );
  } finally {
    conn.close();
    await withTimeout(reader, 30_000, "reader");
  }
  // The agent is still fine for a new client.
  assert.deepEqual(await agent.request({ execute: "guest-ping" }), { return: {} });
});
