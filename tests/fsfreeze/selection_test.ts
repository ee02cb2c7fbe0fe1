/**
 * Mount selection with a fake mount table: exclusions, the freeze scope, freeze-list's filter and
 * the cache that skips the work when the mount table did not change.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { BlockTopology } from "../../src/fsfreeze/ordering.ts";
import { MountSelector, type MountTable } from "../../src/fsfreeze/selection.ts";

const NO_STACKING: BlockTopology = {
  loopBackingFile: () => undefined,
  slaves: () => [],
  wholeDisk: () => undefined,
  fileDevice: () => undefined,
};

function line(id: number, device: string, mountPoint: string, fsType = "ext4"): string {
  return `${id} 1 ${device} / ${mountPoint} rw,relatime shared:1 - ${fsType} /dev/x rw`;
}

/** A mount table whose text the test sets, counting the work done on it. */
function table(text: () => string): MountTable & { topologies: number } {
  const fake = {
    topologies: 0,
    readMountinfo: text,
    statBlockDevice: () => undefined,
    topology: () => {
      fake.topologies++;
      return NO_STACKING;
    },
    mayRead: (path: string) => !path.startsWith("/secret"),
  };
  return fake;
}

Deno.test("MountSelector selects in scope, skips excluded and unreadable mounts, with reasons", () => {
  const text = [
    line(1, "8:1", "/"),
    line(2, "8:2", "/srv"),
    line(3, "8:3", "/srv/tmp", "tmpfs"),
    line(4, "8:4", "/srv/data"),
    line(5, "0:40", "/srv/proc", "proc"),
    line(6, "8:6", "/secret"),
  ].join("\n");
  const selector = new MountSelector(
    { fsfreezeExclude: ["tmpfs", "/srv/data"], fsfreezeScope: ["/srv", "/secret"] },
    table(() => text),
  );
  const selection = selector.select();
  assert.deepEqual(selection.mounts.map((m) => m.mountPoint), ["/srv"]);
  assert.deepEqual(selection.waves, [["/srv"]]);
  assert.deepEqual(
    selection.skipped.map((m) => [m.mountPoint, m.reason]),
    [
      ["/srv/tmp", "excluded by fsfreeze-exclude (fs type tmpfs)"],
      ["/srv/data", "excluded by fsfreeze-exclude (mount point /srv/data)"],
      ["/", "outside fsfreeze-scope"],
      ["/secret", "outside the agent's read permission"],
    ],
  );
});

Deno.test("MountSelector.select(list) keeps the waves' order and reports unknown mount points", () => {
  const text = [line(1, "8:1", "/a"), line(2, "8:2", "/b"), line(3, "8:3", "/c")].join("\n");
  const selector = new MountSelector(
    { fsfreezeExclude: [], fsfreezeScope: ["/"] },
    table(() => text),
  );
  const selection = selector.select(["/c", "/a", "/nope"]);
  assert.deepEqual(selection.mounts.map((m) => m.mountPoint), ["/a", "/c"]);
  assert.deepEqual(selection.waves, [["/c", "/a"]]);
  assert.deepEqual(selection.skipped, [
    { mountPoint: "/nope", status: "skipped", reason: "not a freezable mount point" },
  ]);
});

Deno.test("MountSelector does the work again only when the mount table changed", () => {
  let text = line(1, "8:1", "/a");
  const fake = table(() => text);
  const selector = new MountSelector({ fsfreezeExclude: [], fsfreezeScope: ["/"] }, fake);
  selector.select();
  selector.select(["/a"]);
  selector.select();
  assert.equal(fake.topologies, 1);
  text += "\n" + line(2, "8:2", "/b");
  assert.deepEqual(selector.select().mounts.map((m) => m.mountPoint), ["/a", "/b"]);
  assert.equal(fake.topologies, 2);
});

Deno.test("MountSelector reads the table only when it may have changed, and never caches a failed read", () => {
  let text = line(1, "8:1", "/a");
  let reads = 0;
  let changed = true;
  let failing = false;
  const fake = table(() => {
    reads++;
    if (failing) throw new Error("cannot read");
    return text;
  });
  fake.mayHaveChanged = () => changed;
  const selector = new MountSelector({ fsfreezeExclude: [], fsfreezeScope: ["/"] }, fake);
  selector.select();
  changed = false;
  selector.select();
  selector.select(["/a"]);
  assert.equal(reads, 1);
  text += "\n" + line(2, "8:2", "/b");
  changed = true;
  failing = true;
  assert.throws(() => selector.select(), /cannot read/);
  changed = false;
  failing = false;
  // The change the failed read missed is not lost: the table is read again.
  assert.deepEqual(selector.select().mounts.map((m) => m.mountPoint), ["/a", "/b"]);
  assert.equal(reads, 3);
});
