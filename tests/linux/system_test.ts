/**
 * Tests of src/linux/system.ts against coreutils' `stat -f` and `uname` and the wall clock.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SyscallError } from "../../src/linux/errno.ts";
import { CLOCK_REALTIME, clockGettime, statvfs, uname } from "../../src/linux/system.ts";
import { run, statF } from "../_util/linux.ts";

Deno.test("statvfs() reads the fields stat -f reports on a private tmpfs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    await run("mount", ["-t", "tmpfs", "-o", "size=1m,nr_inodes=100", "tmpfs", dir]);
    try {
      await Deno.writeTextFile(`${dir}/file`, "x".repeat(10_000));
      const stats = statvfs(dir);
      assert.deepEqual(
        [stats.frsize, stats.blocks, stats.bfree, stats.bavail, stats.files, stats.ffree],
        await statF(dir),
      );
      assert.equal(stats.blocks, 256n); // 1 MiB of 4 KiB pages: the offsets are not off by one
      assert.equal(stats.files, 100n);
      assert.equal(stats.namemax, 255n);
    } finally {
      await run("umount", [dir]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("statvfs() throws SyscallError ENOENT for a missing path", () => {
  assert.throws(
    () => statvfs("/nonexistent/path"),
    (err) => err instanceof SyscallError && err.code === "ENOENT" && err.syscall === "statvfs",
  );
});

Deno.test("uname() reports what uname(1) prints", async () => {
  const info = uname();
  assert.deepEqual(
    [info.sysname, info.nodename, info.release, info.version, info.machine],
    [
      await run("uname", ["-s"]),
      await run("uname", ["-n"]),
      await run("uname", ["-r"]),
      await run("uname", ["-v"]),
      await run("uname", ["-m"]),
    ],
  );
});

Deno.test("clockGettime() reads the wall clock in nanoseconds", () => {
  const before = BigInt(Date.now()) * 1_000_000n;
  const now = clockGettime(CLOCK_REALTIME);
  const after = BigInt(Date.now()) * 1_000_000n;
  assert.ok(now >= before && now < after + 1_000_000n, `${before} <= ${now} <= ${after}`);
  assert.throws(
    () => clockGettime(-9999),
    (err) => err instanceof SyscallError && err.code === "EINVAL",
  );
});
