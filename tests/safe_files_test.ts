/**
 * Creating files without following planted entries, on real files: symlinks, FIFOs and files owned
 * by another user at every name the agent writes, and directories others could write.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkDirectory,
  checkOwnFileOrAbsent,
  openOwnFile,
  parentDirectory,
  removeQuietly,
  UnsafePathError,
  writeAllSync,
  writeFileAtomic,
} from "../src/safe_files.ts";
import { run } from "./_util/linux.ts";

/** An unprivileged user that owns nothing of ours (Debian's `nobody`). */
const OTHER_UID = 65534;

/** A private temp dir with a victim file outside the directory the agent writes in. */
async function workspace(): Promise<
  { dir: string; victim: string; victimText: string } & AsyncDisposable
> {
  const root = await Deno.makeTempDir({ prefix: "agent_test_safe_" });
  const dir = `${root}/state`;
  await Deno.mkdir(dir);
  const victim = `${root}/victim`;
  const victimText = "must never change\n";
  await Deno.writeTextFile(victim, victimText);
  return {
    dir,
    victim,
    victimText,
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

async function otherUsersFile(path: string): Promise<void> {
  await Deno.writeTextFile(path, "someone else's\n");
  await Deno.chown(path, OTHER_UID, OTHER_UID);
}

type Plant = (path: string, victim: string) => Promise<void>;

const PLANTS: Record<string, Plant> = {
  "a symlink": (path, victim) => Deno.symlink(victim, path),
  "a FIFO": async (path) => {
    await run("mkfifo", [path]);
  },
  "another user's file": (path) => otherUsersFile(path),
};

function isUnsafe(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof UnsafePathError && pattern.test(err.message);
}

for (const [kind, plant] of Object.entries(PLANTS)) {
  Deno.test(`writeFileAtomic() replaces ${kind} at its temp name without touching its target`, async () => {
    await using ws = await workspace();
    const path = `${ws.dir}/qga.state.isfrozen`;
    await plant(`${path}.tmp-${Deno.pid}`, ws.victim);
    writeFileAtomic(path, "{}\n");
    assert.equal(await Deno.readTextFile(path), "{}\n");
    assert.equal((await Deno.lstat(path)).isFile, true);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(ws.victim), ws.victimText);
    await assert.rejects(Deno.lstat(`${path}.tmp-${Deno.pid}`), Deno.errors.NotFound);
  });

  Deno.test(`openOwnFile() refuses ${kind} and leaves its target alone`, async () => {
    await using ws = await workspace();
    const path = `${ws.dir}/agent.log`;
    await plant(path, ws.victim);
    assert.throws(
      () => openOwnFile(path, { append: true, mode: 0o640, what: "log file" }),
      isUnsafe(
        new RegExp(`^log file ${path} is (a symbolic link|a FIFO|owned by uid ${OTHER_UID})`),
      ),
    );
    assert.equal(await Deno.readTextFile(ws.victim), ws.victimText);
  });

  Deno.test(`checkOwnFileOrAbsent() refuses ${kind}`, async () => {
    await using ws = await workspace();
    const path = `${ws.dir}/fsfreeze-agent.report.json`;
    await plant(path, ws.victim);
    assert.throws(() => checkOwnFileOrAbsent(path, "report file"), isUnsafe(/: remove it$/));
  });
}

Deno.test("writeFileAtomic() replaces a symlink at the final name, not the file it points at", async () => {
  await using ws = await workspace();
  const path = `${ws.dir}/fsfreeze-agent.report.json`;
  await Deno.symlink(ws.victim, path);
  writeFileAtomic(path, "report\n");
  assert.equal((await Deno.lstat(path)).isFile, true);
  assert.equal(await Deno.readTextFile(ws.victim), ws.victimText);
});

Deno.test("openOwnFile() appends to its own file and creates an absent one exclusively", async () => {
  await using ws = await workspace();
  const path = `${ws.dir}/agent.log`;
  const encoder = new TextEncoder();
  for (const line of ["one\n", "two\n"]) {
    const file = openOwnFile(path, { append: true, mode: 0o640, what: "log file" });
    file.writeSync(encoder.encode(line));
    file.close();
  }
  assert.equal(await Deno.readTextFile(path), "one\ntwo\n");
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o640);
  const pidfile = openOwnFile(path, { append: false, mode: 0o644, what: "pidfile" });
  pidfile.writeSync(encoder.encode("42\n"));
  pidfile.close();
  assert.equal(await Deno.readTextFile(path), "42\n", "truncated, not appended");
});

Deno.test("checkDirectory() refuses a directory others may write unless sticky, and another owner's", async () => {
  await using ws = await workspace();
  checkDirectory(ws.dir, "state directory");
  for (const mode of [0o777, 0o775, 0o757]) {
    await Deno.chmod(ws.dir, mode);
    assert.throws(
      () => checkDirectory(ws.dir, "state directory"),
      isUnsafe(/^state directory .* is writable by (others|its group) and not sticky/),
    );
  }
  await Deno.chmod(ws.dir, 0o1777);
  checkDirectory(ws.dir, "state directory"); // as /tmp: nobody can replace our entries
  await Deno.chmod(ws.dir, 0o700);
  await Deno.chown(ws.dir, OTHER_UID, OTHER_UID);
  assert.throws(
    () => checkDirectory(ws.dir, "state directory"),
    isUnsafe(new RegExp(`is owned by uid ${OTHER_UID}, not by root or this agent's user`)),
  );
  await Deno.chown(ws.dir, 0, 0);
  assert.throws(
    () => checkDirectory(`${ws.dir}/missing`, "pidfile directory"),
    isUnsafe(/does not exist$/),
  );
});

Deno.test("writeAllSync() writes every byte to a sink that takes a few at a time", () => {
  const written: number[] = [];
  const sink = {
    writeSync(bytes: Uint8Array): number {
      const taken = bytes.subarray(0, 3);
      written.push(...taken);
      return taken.length;
    },
  };
  writeAllSync(sink, new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
  assert.deepEqual(written, [1, 2, 3, 4, 5, 6, 7]);
});

Deno.test("removeQuietly() removes an entry and ignores one that is gone", async () => {
  await using ws = await workspace();
  const path = `${ws.dir}/entry`;
  await Deno.writeTextFile(path, "x");
  removeQuietly(path);
  await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  removeQuietly(path);
});

Deno.test("parentDirectory() names the directory holding a path, as dirname(3)", () => {
  const cases: [string, string][] = [
    ["/run/qga.sock", "/run"],
    ["/run/fsfreeze/agent.pid", "/run/fsfreeze"],
    ["/qga.sock", "/"],
    ["/", "/"],
    ["/run/dir/", "/run"],
    ["/run//qga.sock", "/run"],
    ["qga.sock", "."],
    ["dir/qga.sock", "dir"],
  ];
  for (const [path, parent] of cases) assert.equal(parentDirectory(path), parent, path);
});
