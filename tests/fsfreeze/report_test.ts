import assert from "node:assert/strict";
import { type CycleReport, micros, outputTail, renderReport } from "../../src/fsfreeze/report.ts";

Deno.test("outputTail() keeps the last lines, bounded", () => {
  const many = Array.from({ length: 100 }, (_, i) => `line ${i}`).join("\n") + "\n";
  const tail = outputTail(many).split("\n");
  assert.equal(tail.at(-1), "line 99");
  assert.ok(tail.length <= 21);
  assert.ok(outputTail("x".repeat(100_000)).length <= 4096);
});

Deno.test("micros() gives whole microseconds", () => {
  assert.equal(micros(1.2345678), 1235);
});

Deno.test("renderReport() shows hooks with their output and mounts with reasons", () => {
  const report: CycleReport = {
    cycle: "c",
    command: "guest-fsfreeze-freeze",
    startedAt: "2026-01-01T00:00:00.000Z",
    state: "thawed",
    frozenCount: 1,
    deadline: null,
    freezeWindowUs: 1500,
    hooks: [{
      path: "/h",
      phase: "freeze",
      exitCode: 0,
      signal: null,
      timedOut: false,
      startedAt: "2026-01-01T00:00:00.000Z",
      durationUs: 2000,
      outputTail: "flushed",
    }],
    mounts: [
      { mountPoint: "/a", status: "frozen", freezeUs: 300, thawed: true, thawUs: 100 },
      { mountPoint: "/b", status: "skipped", reason: "outside fsfreeze-scope" },
    ],
    thaw: { by: "host", at: "2026-01-01T00:00:01.000Z", count: 1, durationUs: 400 },
  };
  const text = renderReport(report);
  assert.match(text, /freeze window 1\.500 ms/);
  assert.match(text, /hook freeze \/h: exit 0 in 2\.000 ms\n {4}\| flushed/);
  assert.match(text, /mount \/a: frozen \(freeze 0\.300 ms, thaw 0\.100 ms\)/);
  assert.match(text, /mount \/b: skipped \(outside fsfreeze-scope\)/);
  assert.match(text, /thawed by host at .*: 1 filesystems/);
});
