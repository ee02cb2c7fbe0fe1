/**
 * Tests of src/commands/system/fsinfo.ts and the libc wrappers it and the other system commands
 * use (statvfs, uname, clock_gettime), against coreutils' `stat -f` and `uname` and a loop-mounted
 * filesystem made for the test (nothing is frozen here).
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
import {
  CLOCK_REALTIME,
  clockGettime,
  type Statvfs,
  statvfs,
  SyscallError,
  uname,
} from "../../../src/linux/libc.ts";
import { createBindMount, createLoopMounts } from "../../_util/loopfs.ts";

async function run(program: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command(program, { args, stdout: "piped" }).output();
  assert.equal(output.code, 0, `${program} ${args.join(" ")}`);
  return new TextDecoder().decode(output.stdout).trim();
}

/** `stat -f` of a path: fundamental block size, blocks, free, available, inodes, free inodes. */
async function statF(path: string): Promise<bigint[]> {
  return (await run("stat", "-f", "-c", "%S %b %f %a %c %d", path)).split(" ").map(BigInt);
}

Deno.test("statvfs() reads the fields stat -f reports on a private tmpfs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    await run("mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=100", "tmpfs", dir);
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
      await run("umount", dir);
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
      await run("uname", "-s"),
      await run("uname", "-n"),
      await run("uname", "-r"),
      await run("uname", "-v"),
      await run("uname", "-m"),
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
