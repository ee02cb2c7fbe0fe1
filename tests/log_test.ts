import assert from "node:assert/strict";
import { createLogger, formatFields } from "../src/log.ts";

function collector(): { lines: string[]; sink: { writeSync(p: Uint8Array): number } } {
  const lines: string[] = [];
  const decoder = new TextDecoder();
  return { lines, sink: { writeSync: (p) => (lines.push(decoder.decode(p)), p.length) } };
}

Deno.test("AgentLogger writes journald priorities and respects the level", () => {
  const { lines, sink } = collector();
  const log = createLogger({ level: "info", journald: true, stderr: sink });
  log.debug("hidden");
  log.info("shown", { cmd: "guest-ping", ms: 2 });
  log.warn("careful");
  log.error("broken");
  assert.deepEqual(lines, ["<6>shown cmd=guest-ping ms=2\n", "<4>careful\n", "<3>broken\n"]);
});

Deno.test("formatFields() quotes values with spaces and skips undefined", () => {
  assert.equal(formatFields({ a: "x y", b: undefined, c: 1, d: "" }), ' a="x y" c=1 d=""');
});

Deno.test("AgentLogger holds log file lines while frozen and writes them after thaw", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const path = `${dir}/agent.log`;
  const { sink } = collector();
  const log = createLogger({ level: "info", journald: true, stderr: sink, logFile: path });
  log.openFile();
  log.info("before");
  log.holdFileWrites();
  log.info("while frozen");
  assert.doesNotMatch(await Deno.readTextFile(path), /while frozen/);
  log.releaseFileWrites();
  log.info("after");
  log.close();
  const lines = (await Deno.readTextFile(path)).trim().split("\n");
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^\d+\.\d{6}: info: before$/);
  assert.match(lines[1]!, /: info: while frozen$/);
  assert.match(lines[2]!, /: info: after$/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("AgentLogger stamps stderr lines with their time while frozen (journald may lag)", () => {
  const { lines, sink } = collector();
  const log = createLogger({ level: "info", journald: true, stderr: sink });
  log.info("before");
  log.holdFileWrites();
  log.info("while frozen", { mount: "/" });
  log.releaseFileWrites();
  log.info("after");
  assert.equal(lines[0], "<6>before\n");
  assert.match(lines[1]!, /^<6>while frozen mount=\/ at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n$/);
  assert.equal(lines[2], "<6>after\n");
});
