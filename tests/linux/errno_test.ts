/**
 * Tests of src/linux/errno.ts: the errno table and the texts of SyscallError.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  Errno,
  errnoCode,
  errnoNumber,
  errorReason,
  strerror,
  SyscallError,
} from "../../src/linux/errno.ts";

Deno.test("errnoNumber(), errnoCode() and strerror() agree with glibc's table", () => {
  assert.equal(errnoNumber("ENOENT"), 2);
  assert.equal(errnoCode(Errno.EBUSY), "EBUSY");
  assert.equal(strerror(errnoNumber("EOPNOTSUPP")), "Operation not supported");
});

Deno.test("SyscallError names the call, the path and the errno; errorReason() gives glibc's text", () => {
  const err = new SyscallError("open", errnoNumber("ENOENT"), "/x");
  assert.equal(err.message, 'open "/x": ENOENT (No such file or directory)');
  assert.equal(err.code, "ENOENT");
  assert.equal(errorReason(err), "No such file or directory");
  assert.equal(errorReason(new Error("not a system call")), "not a system call");
});
