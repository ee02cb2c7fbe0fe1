/**
 * Tests of src/transport/methods.ts: the transport declarations the configuration, the permission
 * set and the factory read. Opening a channel is tested per transport (device_test.ts,
 * transport_e2e_test.ts); here only what fails before anything is opened.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ConfigError } from "../../src/config/mod.ts";
import { AddressFamily } from "../../src/linux/sockets.ts";
import { silentLogger } from "../../src/log.ts";
import {
  findTransportMethod,
  methodOfSocketFamily,
  parseVsockAddress,
  TRANSPORT_METHODS,
  transportMethod,
} from "../../src/transport/methods.ts";
import { unixSocketTempPath } from "../../src/transport/socket.ts";

Deno.test("TRANSPORT_METHODS declares qemu-ga's four methods, with its default paths", () => {
  assert.deepEqual(
    TRANSPORT_METHODS.map((method) => [method.name, method.defaultPath]),
    [
      ["virtio-serial", "/dev/virtio-ports/org.qemu.guest_agent.0"],
      ["isa-serial", "/dev/ttyS0"],
      ["unix-listen", undefined],
      ["vsock-listen", undefined],
    ],
  );
});

Deno.test("transportMethod() refuses unknown methods with qemu-ga's text", () => {
  assert.equal(transportMethod("unix-listen").name, "unix-listen");
  assert.throws(
    () => transportMethod("foo"),
    new ConfigError("unsupported channel method/type: foo"),
  );
  assert.equal(findTransportMethod("tcp-listen"), undefined);
});

Deno.test("methodOfSocketFamily() maps AF_UNIX and AF_VSOCK to their listen methods only", () => {
  assert.equal(methodOfSocketFamily(AddressFamily.AF_UNIX)?.name, "unix-listen");
  assert.equal(methodOfSocketFamily(AddressFamily.AF_VSOCK)?.name, "vsock-listen");
  assert.equal(methodOfSocketFamily(AddressFamily.AF_INET), undefined);
  assert.equal(methodOfSocketFamily(AddressFamily.AF_INET6), undefined);
});

Deno.test("each method declares the permissions its channel needs", () => {
  assert.deepEqual(transportMethod("virtio-serial").permissions("/dev/vport0p1"), {
    read: ["/dev/vport0p1"],
    write: ["/dev/vport0p1"],
    net: [],
    unstableVsock: false,
  });
  const temp = unixSocketTempPath("/run/q.sock");
  assert.deepEqual(transportMethod("unix-listen").permissions("/run/q.sock"), {
    read: ["/run/q.sock", temp],
    write: ["/run/q.sock", temp],
    net: ["unix:/run/q.sock", `unix:${temp}`],
    unstableVsock: false,
  });
  assert.deepEqual(transportMethod("vsock-listen").permissions("2:1234"), {
    read: [],
    write: [],
    net: ["vsock:2:1234"],
    unstableVsock: true,
  });
});

Deno.test("parseVsockAddress() takes <cid>:<port> of 32-bit numbers and nothing else", () => {
  assert.deepEqual(parseVsockAddress("2:1234"), { cid: 2, port: 1234 });
  assert.deepEqual(parseVsockAddress("4294967295:1"), { cid: 4294967295, port: 1 });
  for (const bad of ["", "2", "2:", ":1", "a:1", "4294967296:1", "1:4294967296", "vsock:2:1"]) {
    assert.throws(
      () => parseVsockAddress(bad),
      new ConfigError(`invalid vsock address '${bad}', expected <cid>:<port>`),
    );
  }
});

Deno.test("vsock-listen's open() refuses a bad -p before it listens", async () => {
  await assert.rejects(
    transportMethod("vsock-listen").open({ path: "host", vsockAllowedCids: [2] }, silentLogger),
    new ConfigError("invalid vsock address 'host', expected <cid>:<port>"),
  );
});
