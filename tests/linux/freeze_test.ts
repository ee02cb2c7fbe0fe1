/**
 * Tests of src/linux/freeze.ts. Only fd -1: FIFREEZE on a real filesystem is tested with loop
 * mounts in tests/fsfreeze/freezer_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fifreeze, fithaw } from "../../src/linux/freeze.ts";
import { isSyscallError } from "../_util/linux.ts";

Deno.test("fifreeze() and fithaw() throw SyscallError EBADF for fd -1", () => {
  // fd -1 reaches no filesystem: the only safe way to exercise these outside a test loop mount.
  assert.throws(() => fifreeze(-1, "/x"), isSyscallError("ioctl(FIFREEZE)", "EBADF"));
  assert.throws(() => fithaw(-1, "/x"), isSyscallError("ioctl(FITHAW)", "EBADF"));
});
