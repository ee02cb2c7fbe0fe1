/**
 * Tests of src/linux/own_files.ts: the state directory's files through libc, checked with Deno's
 * own fs API and coreutils; planted symlinks are never followed.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  createFileExclusive,
  entryExists,
  readOwnFile,
  removeFile,
  renameFile,
} from "../../src/linux/own_files.ts";
import { isSyscallError, run, withTempDir } from "../_util/linux.ts";

const encoder = new TextEncoder();

Deno.test("createFileExclusive() creates the file with its mode and bytes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/state`;
    createFileExclusive(path, encoder.encode('{"cycle":"a"}\n'), 0o600);
    assert.equal(await Deno.readTextFile(path), '{"cycle":"a"}\n');
    assert.equal(await run("stat", ["-c", "%a %F", path]), "600 regular file");
  });
});

Deno.test("createFileExclusive() refuses an existing file and a symlink, touching neither", async () => {
  await withTempDir(async (dir) => {
    const target = `${dir}/target`;
    await Deno.writeTextFile(target, "theirs");
    await Deno.symlink(target, `${dir}/link`);
    await Deno.symlink(`${dir}/nowhere`, `${dir}/dangling`);
    for (const name of ["target", "link", "dangling"]) {
      assert.throws(
        () => createFileExclusive(`${dir}/${name}`, encoder.encode("ours"), 0o600),
        isSyscallError("open", "EEXIST"),
        name,
      );
    }
    assert.equal(await Deno.readTextFile(target), "theirs");
    assert.equal(entryExists(`${dir}/nowhere`), false);
  });
});

Deno.test("readOwnFile() reads a file of any length, undefined when absent, never through a symlink", async () => {
  await withTempDir(async (dir) => {
    const long = "x".repeat(10_000) + "é\n";
    await Deno.writeTextFile(`${dir}/long`, long);
    assert.equal(readOwnFile(`${dir}/long`), long);
    await Deno.writeTextFile(`${dir}/empty`, "");
    assert.equal(readOwnFile(`${dir}/empty`), "");
    assert.equal(readOwnFile(`${dir}/missing`), undefined);
    await Deno.symlink(`${dir}/long`, `${dir}/link`);
    assert.throws(() => readOwnFile(`${dir}/link`), isSyscallError("open", "ELOOP"));
  });
});

Deno.test("renameFile() replaces a symlink at the target, not the file it points at", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/theirs`, "theirs");
    await Deno.symlink(`${dir}/theirs`, `${dir}/report`);
    await Deno.writeTextFile(`${dir}/temp`, "ours");
    renameFile(`${dir}/temp`, `${dir}/report`);
    assert.equal((await Deno.lstat(`${dir}/report`)).isFile, true);
    assert.equal(await Deno.readTextFile(`${dir}/report`), "ours");
    assert.equal(await Deno.readTextFile(`${dir}/theirs`), "theirs");
    assert.equal(entryExists(`${dir}/temp`), false);
    assert.throws(() => renameFile(`${dir}/temp`, `${dir}/x`), isSyscallError("rename", "ENOENT"));
  });
});

Deno.test("removeFile() unlinks a file or a symlink itself; false when nothing is there", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/theirs`, "theirs");
    await Deno.symlink(`${dir}/theirs`, `${dir}/link`);
    assert.equal(removeFile(`${dir}/link`), true);
    assert.equal(await Deno.readTextFile(`${dir}/theirs`), "theirs");
    assert.equal(removeFile(`${dir}/theirs`), true);
    assert.equal(removeFile(`${dir}/theirs`), false);
    await Deno.mkdir(`${dir}/sub`);
    assert.throws(() => removeFile(`${dir}/sub`), isSyscallError("unlink", "EISDIR"));
  });
});

Deno.test("entryExists() sees files, directories and dangling symlinks; throws past a file", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    await Deno.symlink(`${dir}/nowhere`, `${dir}/dangling`);
    assert.equal(entryExists(`${dir}/file`), true);
    assert.equal(entryExists(dir), true);
    assert.equal(entryExists(`${dir}/dangling`), true);
    assert.equal(entryExists(`${dir}/missing`), false);
    assert.throws(() => entryExists(`${dir}/file/below`), isSyscallError("lstat", "ENOTDIR"));
  });
});

Deno.test("entryExists() answers for a path Deno refuses (under /dev) through libc", async () => {
  const shm = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "own_files_test_" });
  try {
    await Deno.writeTextFile(`${shm}/file`, "");
    const program =
      `import { entryExists } from ${
        JSON.stringify(new URL("../../src/linux/own_files.ts", import.meta.url).href)
      };\nconsole.log(entryExists(${JSON.stringify(`${shm}/file`)}), ` +
      `entryExists(${JSON.stringify(`${shm}/missing`)}));\n`;
    await Deno.writeTextFile(`${shm}/program.ts`, program);
    // Not --allow-all: without it Deno refuses every path under /dev, granted or not.
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", `--allow-read=${shm}`, "--allow-ffi", `${shm}/program.ts`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal(new TextDecoder().decode(stdout).trim(), "true false");
  } finally {
    await Deno.remove(shm, { recursive: true });
  }
});
