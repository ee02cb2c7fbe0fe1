/**
 * Tests of src/commands/system/fsinfo.ts, with a loop-mounted filesystem made for the test
 * (nothing is frozen here). The system calls it uses are tested in tests/linux/system_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  filesystemSizes,
  type FsinfoSources,
  guestFsinfo,
} from "../../../src/commands/system/fsinfo.ts";
import type { MountEntry } from "../../../src/fsfreeze/mountinfo.ts";
import type { Statvfs } from "../../../src/linux/system.ts";
import { SyscallError } from "../../../src/linux/errno.ts";
import { statF } from "../../_util/linux.ts";
import { createBindMount, createLoopMounts } from "../../_util/loopfs.ts";

Deno.test("filesystemSizes() counts reserved blocks only in total-bytes-privileged", () => {
  const stats = {
    frsize: 4096n,
    blocks: 1000n,
    bfree: 300n,
    bavail: 250n,
  } as Statvfs;
  assert.deepEqual(filesystemSizes(stats), {
    "used-bytes": 700n * 4096n,
    "total-bytes": 950n * 4096n,
    "total-bytes-privileged": 1000n * 4096n,
  });
});

function mount(mountPoint: string, major: number, minor: number, fsType = "ext4"): MountEntry {
  return {
    mountId: 1,
    parentId: 0,
    major,
    minor,
    root: "/",
    mountPoint,
    mountOptions: "rw",
    optionalFields: [],
    fsType,
    source: "/dev/x",
    superOptions: "rw",
  };
}

Deno.test("guestFsinfo() lists mounts in reverse and leaves out sizes statvfs cannot give", () => {
  const sources: FsinfoSources = {
    mounts: () => [
      mount("/", 254, 0),
      { ...mount("/srv", 0, 45, "btrfs"), blockDevice: { major: 254, minor: 16 } },
    ],
    statvfs: (path) => {
      if (path === "/srv") throw new SyscallError("statvfs", 2, path);
      return { frsize: 512n, blocks: 10n, bfree: 4n, bavail: 2n } as Statvfs;
    },
    sysfs: {
      realpath: (path) => {
        if (path === "/sys/dev/block/254:0") return "/sys/devices/virtual/block/fake0";
        throw new SyscallError("realpath", 2, path);
      },
      readlink: () => undefined,
      readDir: (path) => {
        throw new SyscallError("opendir", 2, path);
      },
      readText: () => undefined,
      udevData: () => undefined,
    },
  };
  assert.deepEqual(guestFsinfo(sources), [
    // btrfs: the device its source names, not the anonymous 0:45 (gone here: named after it).
    { name: "254:16", mountpoint: "/srv", type: "btrfs", disk: [] },
    {
      name: "fake0",
      mountpoint: "/",
      type: "ext4",
      "used-bytes": 3072n,
      "total-bytes": 4096n,
      "total-bytes-privileged": 5120n,
      disk: [],
    },
  ]);
});

Deno.test("guestFsinfo() lists a loop-mounted filesystem once, with stat -f's sizes", async () => {
  await using loops = await createLoopMounts(1);
  const [mountPoint] = loops.mounts;
  const bind = await createBindMount(loops);
  const list = guestFsinfo();
  assert.equal(
    list.filter((fs) => fs.mountpoint === bind).length,
    0,
    "a bind mount is a duplicate",
  );
  const entry = list.find((fs) => fs.mountpoint === mountPoint);
  assert.ok(entry, `${mountPoint} listed`);
  const [size, blocks, free, available] = await statF(mountPoint!);
  assert.deepEqual(entry, {
    name: loops.devices[0]!.replace("/dev/", ""),
    mountpoint: mountPoint,
    type: "ext4",
    "used-bytes": (blocks! - free!) * size!,
    "total-bytes": (blocks! - free! + available!) * size!,
    "total-bytes-privileged": blocks! * size!,
    disk: [], // a loop device has no disk below it
  });
});
