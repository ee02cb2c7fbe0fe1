import assert from "node:assert/strict";
import { AfterReply } from "../src/agent.ts";

Deno.test("AfterReply.schedule() runs work after the reply in progress, or at once when idle", async () => {
  const afterReply = new AfterReply();
  const ran: string[] = [];
  afterReply.answering();
  const saved = afterReply.schedule(() => ran.push("report saved"));
  await Promise.resolve();
  assert.deepEqual([...ran], []);
  afterReply.replied();
  await saved;
  assert.deepEqual([...ran], ["report saved"]);
  await afterReply.schedule(() => ran.push("idle work"));
  assert.deepEqual([...ran], ["report saved", "idle work"]);
});

Deno.test("AfterReply.afterNextReply() waits for the next reply even when idle, and runs once", async () => {
  const afterReply = new AfterReply();
  let runs = 0;
  afterReply.afterNextReply(() => runs++);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(runs, 0);
  afterReply.answering();
  assert.equal(runs, 0);
  afterReply.replied();
  assert.equal(runs, 1);
  afterReply.answering();
  afterReply.replied();
  assert.equal(runs, 1);
});
