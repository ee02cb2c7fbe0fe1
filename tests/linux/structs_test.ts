import assert from "node:assert/strict";
import { major, minor } from "../../src/linux/files.ts";
import {
  DIRENT_RECLEN_OFFSET,
  fileType,
  makedev,
  readDirent,
  readStatx,
  S_IFBLK,
  S_IFDIR,
  S_IFLNK,
  STATX_SIZE,
} from "../../src/linux/structs.ts";

Deno.test("makedev() is the inverse of major() and minor(), up to the kernel's largest numbers", () => {
  for (const [maj, min] of [[0, 0], [7, 3], [259, 300], [8, 65536], [4095, 1048575]] as const) {
    const dev = makedev(maj, min);
    assert.deepEqual([major(dev), minor(dev)], [maj, min]);
  }
  assert.equal(makedev(7, 3), 0x703, "old 16-bit numbers keep their meaning");
});

Deno.test("fileType() names a mode's S_IFMT bits and nothing else", () => {
  assert.equal(fileType(S_IFBLK | 0o660), "block-device");
  assert.equal(fileType(S_IFDIR | 0o7777), "directory");
  assert.equal(fileType(S_IFLNK | 0o777), "symlink");
  assert.equal(fileType(0o644), "unknown");
});

Deno.test("readStatx() and readDirent() throw RangeError for buffers too short to hold the struct", () => {
  assert.throws(() => readStatx(new Uint8Array(STATX_SIZE - 1)), RangeError);
  assert.throws(() => readDirent(new Uint8Array(DIRENT_RECLEN_OFFSET + 3)), RangeError);
});

Deno.test("readDirent() reads a record's inode, d_type and NUL-terminated name", () => {
  const record = new Uint8Array(32);
  const view = new DataView(record.buffer);
  view.setBigUint64(0, 123456789n, true);
  view.setUint16(DIRENT_RECLEN_OFFSET, record.length, true);
  view.setUint8(18, 10); // DT_LNK
  record.set(new TextEncoder().encode("7:0\0garbage"), 19);
  assert.deepEqual(readDirent(record), { name: "7:0", ino: 123456789, type: "symlink" });
});
