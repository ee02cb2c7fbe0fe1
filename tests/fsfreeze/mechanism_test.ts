/**
 * The real mechanism's kernel setting for `fsfreeze-expedite` (src/fsfreeze/mechanism.ts), on a
 * file standing in for `/sys/kernel/rcu_expedited`: the machine's own setting is never touched
 * here (a guest test changes it, tests/vm).
 *
 * @module
 */

import assert from "node:assert/strict";
import { kernelGracePeriods, RCU_EXPEDITED } from "../../src/fsfreeze/mechanism.ts";
import { withTempDir } from "../_util/linux.ts";

Deno.test("kernelGracePeriods() reads and sets the setting as the kernel writes it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/rcu_expedited`;
    await Deno.writeTextFile(path, "0\n");
    const periods = kernelGracePeriods(path);
    assert.equal(periods.expedited(), false);
    periods.setExpedited(true);
    assert.equal(await Deno.readTextFile(path), "1\n");
    assert.equal(periods.expedited(), true);
    periods.setExpedited(false);
    assert.equal(await Deno.readTextFile(path), "0\n");
  });
});

Deno.test("kernelGracePeriods() names the kernel's file, which this kernel has", () => {
  assert.equal(RCU_EXPEDITED, "/sys/kernel/rcu_expedited");
  assert.match(Deno.readTextFileSync(RCU_EXPEDITED), /^[0-9]+\n$/);
});
