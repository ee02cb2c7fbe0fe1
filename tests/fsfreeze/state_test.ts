import assert from "node:assert/strict";
import { FileStateStore, type FrozenState, readState } from "../../src/fsfreeze/state.ts";

const STATE: FrozenState = {
  version: 1,
  cycle: "c1",
  agentPid: 1,
  startedAt: 1000,
  deadline: 2000,
  hook: "/h",
  mounts: ["/a"],
};

async function storeDir(): Promise<{ store: FileStateStore; dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  return {
    store: new FileStateStore(dir),
    dir,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("FileStateStore records, reads and removes a cycle; the file is owner-only", async () => {
  await using fixture = await storeDir();
  const { store } = fixture;
  assert.equal(store.exists(), false);
  store.write(STATE);
  assert.equal(store.exists(), true);
  assert.deepEqual(store.read(), STATE);
  assert.equal((await Deno.stat(store.paths.state)).mode! & 0o777, 0o600);
  store.remove();
  assert.equal(store.exists(), false);
  assert.equal(store.read(), undefined);
});

Deno.test("FileStateStore.write() creates the first record in place and replaces a later one whole", async () => {
  await using fixture = await storeDir();
  const { store, dir } = fixture;
  store.write(STATE);
  const first = (await Deno.stat(store.paths.state)).ino;
  const marked = { ...STATE, thawHookStarted: true };
  store.write(marked);
  assert.deepEqual(store.read(), marked);
  assert.notEqual((await Deno.stat(store.paths.state)).ino, first, "renamed into place");
  store.remove();
  store.remove(); // nothing there: fine
  await Deno.writeTextFile(`${dir}/theirs`, "theirs");
  await Deno.symlink(`${dir}/theirs`, store.paths.state);
  store.write(STATE);
  assert.deepEqual(store.read(), STATE);
  assert.equal(
    await Deno.readTextFile(`${dir}/theirs`),
    "theirs",
    "a symlink is replaced, not followed",
  );
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
    "qga.state.isfrozen",
    "theirs",
  ]);
});

Deno.test("FileStateStore.tryLock() has one holder at a time, and release() frees it", async () => {
  await using fixture = await storeDir();
  const first = fixture.store.tryLock();
  assert.ok(first);
  assert.equal(fixture.store.tryLock(), undefined, "a second locker waits");
  assert.equal(new FileStateStore(fixture.dir).tryLock(), undefined, "another store too");
  first.release();
  const second = fixture.store.tryLock();
  assert.ok(second);
  second.release();
});

Deno.test("FileStateStore.tryLock() is free again when the holding process dies", async () => {
  await using fixture = await storeDir();
  const script = `
    import { FileStateStore } from "${new URL("../../src/fsfreeze/state.ts", import.meta.url)}";
    const lock = new FileStateStore(Deno.args[0]).tryLock();
    console.log(lock ? "held" : "busy");
    await new Promise(() => {});
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script, fixture.dir],
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value).trim(), "held");
  assert.equal(fixture.store.tryLock(), undefined);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  const lock = fixture.store.tryLock();
  assert.ok(lock, "the kernel dropped the dead holder's lock");
  lock.release();
});

Deno.test("FileStateStore.tryLock() refuses a lock file that is a symlink or another user's", async () => {
  await using fixture = await storeDir();
  const victim = `${fixture.dir}/victim`;
  await Deno.writeTextFile(victim, "x");
  await Deno.symlink(victim, fixture.store.paths.lock);
  assert.throws(() => fixture.store.tryLock(), /ELOOP/);
  await Deno.remove(fixture.store.paths.lock);
  await Deno.writeTextFile(fixture.store.paths.lock, "");
  await Deno.chown(fixture.store.paths.lock, 65534, 65534);
  assert.throws(() => fixture.store.tryLock(), /owned by uid 65534/);
});

Deno.test("a cycle left under the earlier claim name is recorded again at start-up", async () => {
  await using fixture = await storeDir();
  await Deno.writeTextFile(fixture.store.paths.legacyClaim, JSON.stringify(STATE));
  fixture.store.adoptLegacyClaim();
  assert.equal(fixture.store.exists(), true);
  assert.equal(fixture.store.read()?.cycle, "c1");
  await assert.rejects(Deno.lstat(fixture.store.paths.legacyClaim), Deno.errors.NotFound);
  fixture.store.adoptLegacyClaim(); // nothing left to adopt
  assert.equal(fixture.store.read()?.cycle, "c1");
});

Deno.test("readState() treats an empty (qemu-ga style) state file as frozen with no details", async () => {
  await using fixture = await storeDir();
  await Deno.writeTextFile(fixture.store.paths.state, "");
  const state = readState(fixture.store.paths.state);
  assert.equal(state?.cycle, "unknown");
  assert.deepEqual(state?.mounts, []);
  assert.equal(readState(`${fixture.dir}/missing`), undefined);
});
