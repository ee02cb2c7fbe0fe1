/**
 * Tests of src/linux/libc.ts: libc is found among the candidates and loads once.
 *
 * @module
 */

import assert from "node:assert/strict";
import { LIBC_CANDIDATES, loadLibc } from "../../src/linux/libc.ts";

Deno.test("loadLibc() opens libc from one of LIBC_CANDIDATES, and again without harm", async () => {
  loadLibc();
  loadLibc();
  const maps = await Deno.readTextFile("/proc/self/maps");
  assert.ok(
    LIBC_CANDIDATES.some((path) => maps.includes(path)) ||
      // A candidate may be a link (/lib -> usr/lib): the mapping names the resolved file.
      LIBC_CANDIDATES.some((path) => maps.includes(Deno.realPathSync(path))),
    "libc mapped from a candidate path",
  );
});

Deno.test("LIBC_CANDIDATES are absolute paths of libc.so.6, each listed once", () => {
  assert.ok(LIBC_CANDIDATES.length > 0);
  assert.equal(new Set(LIBC_CANDIDATES).size, LIBC_CANDIDATES.length);
  for (const path of LIBC_CANDIDATES) {
    assert.match(path, /^\/(usr\/)?lib[^/]*\/(.*\/)?libc\.so\.6$/);
  }
});
