/**
 * Tests of src/linux/sockets.ts on a unix socket Deno listens on (found by its address among this
 * process's descriptors), and on descriptors that are not sockets. The address decoding of every
 * family is tested with activated.ts in tests/transport/activated_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { close, O_RDONLY, open } from "../../src/linux/fd.ts";
import {
  accept4,
  AddressFamily,
  getsockname,
  getsockoptInt,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SocketOption,
  SocketType,
  SOL_SOCKET,
} from "../../src/linux/sockets.ts";
import { isSyscallError, socketBoundTo, withTempDir } from "../_util/linux.ts";

Deno.test("getsockname() and getsockoptInt() describe a listening unix stream socket", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/s.sock`;
    using _listener = Deno.listen({ transport: "unix", path });
    const fd = socketBoundTo(path);
    assert.deepEqual(getsockname(fd), { transport: "unix", path });
    assert.equal(getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_DOMAIN), AddressFamily.AF_UNIX);
    assert.equal(getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_TYPE), SocketType.SOCK_STREAM);
    assert.equal(getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_ACCEPTCONN), 1);
  });
});

Deno.test("accept4() takes a queued client, and throws EAGAIN when none is queued", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/s.sock`;
    using _listener = Deno.listen({ transport: "unix", path });
    const fd = socketBoundTo(path);
    // Deno's listener is non-blocking: nothing queued is EAGAIN, not a wait.
    assert.throws(
      () => accept4(fd, SOCK_NONBLOCK | SOCK_CLOEXEC),
      isSyscallError("accept4", "EAGAIN"),
    );
    using _client = await Deno.connect({ transport: "unix", path });
    const accepted = accept4(fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
    try {
      assert.ok(accepted.fd > 2);
      assert.deepEqual(accepted.peer, { transport: "unix", path: "" }, "an unnamed client");
      assert.deepEqual(getsockname(accepted.fd), { transport: "unix", path });
    } finally {
      close(accepted.fd);
    }
  });
});

Deno.test("the socket calls throw ENOTSOCK for a file and EBADF for fd -1", () => {
  const fd = open("/proc/self/mountinfo", O_RDONLY);
  try {
    assert.throws(() => getsockname(fd), isSyscallError("getsockname", "ENOTSOCK"));
    assert.throws(
      () => getsockoptInt(fd, SOL_SOCKET, SocketOption.SO_DOMAIN),
      isSyscallError("getsockopt", "ENOTSOCK"),
    );
    assert.throws(() => accept4(fd, 0), isSyscallError("accept4", "ENOTSOCK"));
  } finally {
    close(fd);
  }
  assert.throws(() => getsockname(-1), isSyscallError("getsockname", "EBADF"));
});
