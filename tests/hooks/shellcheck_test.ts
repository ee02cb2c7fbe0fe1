/**
 * Lints the shipped hook scripts (dispatcher and samples) and the hook test fixtures with
 * shellcheck as POSIX sh: they run under dash on Debian and busybox-like shells elsewhere.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DISPATCHER, FIXTURES_DIR, SAMPLES_DIR } from "../_util/hook_dir.ts";

async function filesIn(dir: string, suffix: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(suffix)) files.push(`${dir}/${entry.name}`);
  }
  return files.sort();
}

Deno.test("hook scripts pass `shellcheck --shell=sh` at every severity", async () => {
  const samples = await filesIn(SAMPLES_DIR, ".sh.sample");
  const fixtures = await filesIn(FIXTURES_DIR, ".sh");
  assert.ok(samples.length >= 2, `samples: ${samples}`);
  assert.ok(fixtures.length >= 1, `fixtures: ${fixtures}`);
  const output = await new Deno.Command("shellcheck", {
    args: ["--shell=sh", "--severity=style", DISPATCHER, ...samples, ...fixtures],
    stdin: "null",
  }).output();
  const report = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, report);
});
