/**
 * Tests of src/linux/files.ts: each wrapper against a coreutils tool, on files, devices, links,
 * procfs and sysfs.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { SyscallError } from "../../src/linux/errno.ts";
import {
  type FileStat,
  lstat,
  major,
  minor,
  readDir,
  readlink,
  readSmallFile,
  readTextFileRaw,
  realpath,
  stat,
  writeKernelSetting,
} from "../../src/linux/files.ts";
import { fileType } from "../../src/linux/structs.ts";
import { isSyscallError, run, withTempDir } from "../_util/linux.ts";

Deno.test("major() and minor() decode rdev as stat(1) does, including large numbers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    for (const [maj, min] of [[7, 3], [259, 300], [8, 65536], [4095, 1048575]] as const) {
      const node = `${dir}/b_${maj}_${min}`;
      await run("mknod", [node, "b", String(maj), String(min)]);
      const [hexMajor, hexMinor] = (await run("stat", ["-c", "%t %T", node])).split(" ");
      const { rdev } = await Deno.stat(node);
      assert.ok(rdev !== null);
      assert.equal(major(rdev), parseInt(hexMajor ?? "", 16), node);
      assert.equal(minor(rdev), parseInt(hexMinor ?? "", 16), node);
      assert.deepEqual([major(rdev), minor(rdev)], [maj, min]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Files under /proc, /sys and /dev, read through libc (Deno's own fs APIs refuse those paths to
// anything but --allow-all). Each wrapper is checked against a coreutils tool.

/** What `stat -c` prints for our fields: mode in hex, st_dev in decimal, rdev major/minor in hex. */
const STAT_FORMAT = "%f %d %t %T %i %h %u %g %s";

function describeStat(info: FileStat): string {
  return [
    info.mode.toString(16),
    info.dev,
    major(info.rdev).toString(16),
    minor(info.rdev).toString(16),
    info.ino,
    info.nlink,
    info.uid,
    info.gid,
    info.size,
  ].join(" ");
}

Deno.test("readSmallFile() reads a file longer than one read() chunk byte for byte", async () => {
  await withTempDir(async (dir) => {
    const data = new Uint8Array(300_000);
    for (let offset = 0; offset < data.length; offset += 65536) {
      crypto.getRandomValues(data.subarray(offset, offset + 65536));
    }
    await Deno.writeFile(`${dir}/data`, data);
    assert.deepEqual(readSmallFile(`${dir}/data`), data);
    assert.deepEqual(readSmallFile(`${dir}/data`, { maxBytes: data.length }), data);
    assert.deepEqual(readSmallFile(`${dir}/data`, { regularFile: true }), data);
    const exact = data.subarray(0, 2 * 65536);
    await Deno.writeFile(`${dir}/exact`, exact);
    assert.deepEqual(readSmallFile(`${dir}/exact`, { regularFile: true }), exact);
    await Deno.writeFile(`${dir}/empty`, new Uint8Array());
    assert.deepEqual(readSmallFile(`${dir}/empty`), new Uint8Array());
    assert.deepEqual(readSmallFile(`${dir}/empty`, { regularFile: true }), new Uint8Array());
  });
});

Deno.test("readSmallFile() of a regular file stops at a short read: one read(2) for a small file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/long`, "x".repeat(70_000));
    await Deno.writeTextFile(`${dir}/short`, "yz");
    const module = JSON.stringify(import.meta.resolve("../../src/linux/files.ts"));
    const program = `
      const { readSmallFile } = await import(${module});
      for (const name of ["long", "short", "long"]) {
        const bytes = readSmallFile(${JSON.stringify(dir)} + "/" + name, { regularFile: true });
        console.log(name, bytes.length, new TextDecoder().decode(bytes.subarray(0, 2)));
      }`;
    const { code, stdout } = await new Deno.Command("strace", {
      args: [
        "-f",
        "-e",
        "trace=openat,read,close",
        "-o",
        `${dir}/trace`,
        Deno.execPath(),
        "eval",
        program,
      ],
      stdout: "piped",
    }).output();
    assert.equal(code, 0);
    assert.deepEqual(new TextDecoder().decode(stdout).trim().split("\n"), [
      "long 70000 xx",
      "short 2 yz",
      "long 70000 xx",
    ]);
    assert.deepEqual(readsPerOpen(await Deno.readTextFile(`${dir}/trace`), dir), [2, 1, 2]);
  });
});

/** How many read(2)s each open of a file in `dir` took, in order, from an strace log. */
function readsPerOpen(trace: string, dir: string): number[] {
  const counts: number[] = [];
  let fd: string | undefined;
  for (const line of trace.split("\n")) {
    const opened = line.match(/openat\(AT_FDCWD, "([^"]+)".* = (\d+)$/);
    if (opened && opened[1]!.startsWith(`${dir}/`)) {
      fd = opened[2];
      counts.push(0);
    } else if (fd !== undefined && line.includes(`read(${fd}, `)) {
      counts[counts.length - 1]!++;
    } else if (fd !== undefined && line.includes(`close(${fd})`)) {
      fd = undefined;
    }
  }
  return counts;
}

Deno.test("readTextFileRaw() reads procfs and sysfs files that report size 0, as cat does", async () => {
  for (const path of ["/proc/version", "/proc/filesystems", "/sys/kernel/uevent_seqnum"]) {
    if (path.startsWith("/proc/")) assert.equal(stat(path).size, 0, `${path} reports size 0`);
    assert.equal(readTextFileRaw(path), (await run("cat", [path])) + "\n", path);
  }
  // /proc/self is this process, so cat cannot check it: at least the root mount is there.
  assert.match(readTextFileRaw("/proc/self/mountinfo"), /^\d+ \d+ \d+:\d+ \S+ \/ /m);
});

Deno.test("readSmallFile() throws RangeError beyond maxBytes", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "12345");
    assert.throws(() => readSmallFile(`${dir}/f`, { maxBytes: 4 }), RangeError);
  });
});

Deno.test("readSmallFile() throws SyscallError from open() and read() naming the path", async () => {
  await withTempDir((dir) => {
    const missing = `${dir}/missing`;
    assert.throws(() => readSmallFile(missing), (err) => {
      return isSyscallError("open", "ENOENT")(err) && (err as SyscallError).path === missing;
    });
    // A directory opens read-only, and read() refuses it.
    assert.throws(() => readTextFileRaw(dir), (err) => {
      return isSyscallError("read", "EISDIR")(err) && (err as SyscallError).path === dir;
    });
  });
});

Deno.test("stat() and lstat() match stat(1) for files, directories, devices, links, procfs, sysfs", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "hello");
    await run("mknod", [`${dir}/blk`, "b", "4095", "1048575"]); // the largest numbers
    await run("mknod", [`${dir}/blk2`, "b", "259", "300"]);
    await Deno.symlink("file", `${dir}/link`);
    const paths = [
      `${dir}/file`,
      dir,
      `${dir}/blk`,
      `${dir}/blk2`,
      `${dir}/link`,
      "/dev/null",
      "/proc/version",
      "/sys/dev/block",
      "/",
    ];
    for (const path of paths) {
      // stat(1) follows links only with -L.
      assert.equal(describeStat(stat(path)), await run("stat", ["-L", "-c", STAT_FORMAT, path]));
      assert.equal(describeStat(lstat(path)), await run("stat", ["-c", STAT_FORMAT, path]));
    }
    assert.equal(fileType(stat(`${dir}/blk`).mode), "block-device");
    assert.equal(fileType(stat(`${dir}/link`).mode), "file");
    assert.equal(fileType(lstat(`${dir}/link`).mode), "symlink");
    assert.equal(fileType(stat("/dev/null").mode), "char-device");
    assert.deepEqual([major(stat(`${dir}/blk`).rdev), minor(stat(`${dir}/blk`).rdev)], [
      4095,
      1048575,
    ]);
  });
});

Deno.test("stat() and lstat() throw SyscallError ENOENT naming the path", () => {
  const path = "/agent_test_no_such_dir/x";
  for (const [call, syscall] of [[stat, "stat"], [lstat, "lstat"]] as const) {
    assert.throws(() => call(path), (err) => {
      return isSyscallError(syscall, "ENOENT")(err) && (err as SyscallError).path === path;
    });
  }
});

Deno.test("readlink() returns a link's stored target as readlink(1) does", async () => {
  await withTempDir(async (dir) => {
    await Deno.symlink("../some where/ünïcode", `${dir}/relative`);
    await Deno.symlink(dir, `${dir}/absolute`);
    const sysfsLink = `/sys/dev/block/${(await run("ls", ["/sys/dev/block"])).split("\n")[0]}`;
    for (const path of [`${dir}/relative`, `${dir}/absolute`, sysfsLink, `/proc/${Deno.pid}/exe`]) {
      assert.equal(readlink(path), await run("readlink", [path]), path);
    }
    await Deno.writeTextFile(`${dir}/file`, "");
    assert.throws(() => readlink(`${dir}/file`), isSyscallError("readlink", "EINVAL"));
  });
});

Deno.test("realpath() resolves links, . and .. as readlink -f does, and throws ENOENT", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/a/b`, { recursive: true });
    await Deno.symlink("a/b", `${dir}/to_b`);
    const sysfsLink = `/sys/dev/block/${(await run("ls", ["/sys/dev/block"])).split("\n")[0]}`;
    for (const path of [`${dir}/to_b/../b/.`, `${dir}/to_b`, sysfsLink, `/proc/${Deno.pid}/cwd`]) {
      assert.equal(realpath(path), await run("readlink", ["-f", path]), path);
    }
    assert.throws(() => realpath(`${dir}/missing/x`), isSyscallError("realpath", "ENOENT"));
  });
});

Deno.test("readDir() lists names and types as find(1) does, without . and ..", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file with space`, "");
    await Deno.mkdir(`${dir}/sub`);
    await Deno.symlink("sub", `${dir}/link`);
    await run("mkfifo", [`${dir}/fifo`]);
    await run("mknod", [`${dir}/blk`, "b", "7", "99"]);
    const letter: Record<string, string> = {
      "file": "f",
      "directory": "d",
      "symlink": "l",
      "fifo": "p",
      "block-device": "b",
    };
    const ours = readDir(dir).map((e) => `${e.name}/${letter[e.type]}`).sort();
    const find = await run("find", [dir, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f/%y\n"]);
    assert.deepEqual(ours, find.split("\n").sort());
    assert.equal(ours.length, 5);
    const inode = await run("stat", ["-c", "%i", `${dir}/sub`]);
    assert.equal(String(readDir(dir).find((e) => e.name === "sub")?.ino), inode);
  });
});

Deno.test("readDir() lists a sysfs directory as ls -A does", async () => {
  const names = readDir("/sys/dev/block").map((e) => e.name).sort();
  assert.ok(names.length > 0);
  assert.deepEqual(names, (await run("ls", ["-A", "/sys/dev/block"])).split("\n").sort());
});

Deno.test("readDir() throws SyscallError from opendir() for a missing path or a file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    assert.throws(() => readDir(`${dir}/missing`), isSyscallError("opendir", "ENOENT"));
    assert.throws(() => readDir(`${dir}/file`), isSyscallError("opendir", "ENOTDIR"));
  });
});

Deno.test("writeKernelSetting() writes an existing file in one write; never creates one", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/setting`, "0\n");
    writeKernelSetting(`${dir}/setting`, "1\n");
    assert.equal(await Deno.readTextFile(`${dir}/setting`), "1\n");
    assert.throws(
      () => writeKernelSetting(`${dir}/missing`, "1\n"),
      isSyscallError("open", "ENOENT"),
    );
    assert.equal(await Deno.stat(`${dir}/missing`).catch(() => undefined), undefined);
  });
});
