/**
 * Tests of the test-side QAPI checker (_schema.ts): it must reject what qemu's schema rejects,
 * or the end-to-end checks built on it could not fail.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  GuestFilesystemInfoList,
  GuestTimezone,
  GuestUserList,
  parseJsonExact,
  schemaErrors,
} from "./_schema.ts";

Deno.test("schemaErrors() reports missing, extra and mistyped members", () => {
  assert.deepEqual(schemaErrors(parseJsonExact('{"zone": "UTC", "offset": 0}'), GuestTimezone), []);
  assert.deepEqual(schemaErrors(parseJsonExact('{"offset": 3600}'), GuestTimezone), []);
  assert.deepEqual(schemaErrors(parseJsonExact('{"zone": "UTC"}'), GuestTimezone), [
    "return.offset: missing",
  ]);
  assert.deepEqual(schemaErrors(parseJsonExact('{"offset": 1.5}'), GuestTimezone), [
    "return.offset: number 1.5 is not int",
  ]);
  assert.deepEqual(schemaErrors(parseJsonExact('{"offset": 0, "name": "x"}'), GuestTimezone), [
    "return.name: not a member of the type",
  ]);
});

Deno.test("schemaErrors() checks list items, enums, uint64 ranges and numbers", () => {
  const fs = (disk: string, used = "1"): unknown =>
    parseJsonExact(
      `[{"name": "vda", "mountpoint": "/", "type": "ext4", "used-bytes": ${used}, "disk": [${disk}]}]`,
    );
  const address = (bus: string): string =>
    `{"pci-controller": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "bus-type": "${bus}", ` +
    `"bus": 0, "target": 0, "unit": 0}`;
  assert.deepEqual(schemaErrors(fs(address("virtio")), GuestFilesystemInfoList), []);
  assert.deepEqual(schemaErrors(fs(address("floppy")), GuestFilesystemInfoList), [
    'return[0].disk[0].bus-type: "floppy" is not one of ' +
    "ide|fdc|scsi|virtio|xen|usb|uml|sata|sd|unknown|ieee1394|ssa|fibre|raid|iscsi|sas|mmc|" +
    "virtual|file-backed-virtual|nvme",
  ]);
  assert.deepEqual(schemaErrors(fs("", "-1"), GuestFilesystemInfoList), [
    "return[0].used-bytes: bigint -1 is not uint64",
  ]);
  assert.deepEqual(schemaErrors(fs("", "18446744073709551616"), GuestFilesystemInfoList), [
    "return[0].used-bytes: bigint 18446744073709551616 is not uint64",
  ]);
  assert.deepEqual(
    schemaErrors(
      parseJsonExact('[{"user": "a", "login-time": 1.25}, {"user": "b", "login-time": 2}]'),
      GuestUserList,
    ),
    [],
  );
  assert.deepEqual(schemaErrors(parseJsonExact('{"user": "a"}'), GuestUserList), [
    "return: not a list",
  ]);
});
