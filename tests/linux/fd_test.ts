/**
 * Tests of src/linux/fd.ts: descriptors opened, read, written, polled and flagged through libc.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SyscallError } from "../../src/linux/errno.ts";
import {
  close,
  closeQuietly,
  EFD_NONBLOCK,
  eventfd,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDONLY,
  open,
  Poll,
  poll,
  read as libcRead,
  setCloseOnExec,
  setNonBlocking,
  write as libcWrite,
} from "../../src/linux/fd.ts";
import { isSyscallError } from "../_util/linux.ts";

Deno.test("close() throws SyscallError EBADF for fd -1", () => {
  assert.throws(() => close(-1), isSyscallError("close", "EBADF"));
});

Deno.test("open() throws SyscallError ENOENT naming the path when it does not exist", () => {
  const path = "/agent_test_no_such_dir/x";
  assert.throws(() => open(path, O_RDONLY), (err) => {
    return isSyscallError("open", "ENOENT")(err) && (err as SyscallError).path === path;
  });
});

Deno.test("open() returns a descriptor that close() accepts once", () => {
  const fd = open("/proc/self/mountinfo", O_RDONLY);
  assert.ok(fd >= 0);
  close(fd);
  assert.throws(() => close(fd), isSyscallError("close", "EBADF"));
});

Deno.test("write() throws SyscallError EBADF for fd -1", () => {
  assert.throws(
    () => libcWrite(-1, new Uint8Array(1)),
    (e) => e instanceof SyscallError && e.code === "EBADF" && e.syscall === "write",
  );
});

Deno.test("poll() and read() on an eventfd: timeout, then readable, then EAGAIN", () => {
  const fd = eventfd(EFD_NONBLOCK);
  try {
    const entries = [{ fd, events: Poll.POLLIN, revents: 0 }];
    assert.equal(poll(entries, 0), 0, "a fresh eventfd is not readable");
    const one = new Uint8Array(8);
    new DataView(one.buffer).setBigUint64(0, 1n, true);
    assert.equal(libcWrite(fd, one), 8);
    assert.equal(poll(entries, 0), 1);
    assert.equal(entries[0]!.revents & Poll.POLLIN, Poll.POLLIN);
    assert.equal(libcRead(fd, new Uint8Array(8)), 8);
    assert.throws(
      () => libcRead(fd, new Uint8Array(8)),
      (e) => e instanceof SyscallError && e.code === "EAGAIN",
    );
  } finally {
    close(fd);
  }
});

/** The `flags` line of /proc/self/fdinfo/<fd>: the open file's status flags, octal. */
async function fdFlags(fd: number): Promise<number> {
  const info = await Deno.readTextFile(`/proc/self/fdinfo/${fd}`);
  return parseInt(/^flags:\s+([0-7]+)$/m.exec(info)?.[1] ?? "", 8);
}

Deno.test("open() always adds O_CLOEXEC; setNonBlocking() and setCloseOnExec() set their flags", async () => {
  const fd = open("/proc/self/mountinfo", O_RDONLY);
  try {
    assert.equal(await fdFlags(fd) & O_CLOEXEC, O_CLOEXEC);
    assert.equal(await fdFlags(fd) & O_NONBLOCK, 0);
    setNonBlocking(fd);
    setCloseOnExec(fd);
    assert.equal(await fdFlags(fd) & (O_NONBLOCK | O_CLOEXEC), O_NONBLOCK | O_CLOEXEC);
  } finally {
    close(fd);
  }
});

Deno.test("setNonBlocking() and setCloseOnExec() throw SyscallError EBADF for fd -1", () => {
  assert.throws(() => setNonBlocking(-1), isSyscallError("fcntl(F_GETFL)", "EBADF"));
  assert.throws(() => setCloseOnExec(-1), isSyscallError("fcntl(F_GETFD)", "EBADF"));
});

Deno.test("closeQuietly() closes a descriptor and ignores one that is not open", () => {
  const fd = eventfd(EFD_NONBLOCK);
  closeQuietly(fd);
  assert.throws(() => close(fd), isSyscallError("close", "EBADF"));
  closeQuietly(fd);
  closeQuietly(-1);
});
