import assert from "node:assert/strict";
import {
  applyExcludes,
  type DeviceNumber,
  type MountEntry,
  parseMountinfo,
  parseMountinfoLine,
  readMountinfo,
  selectFreezable,
  statBlockDevice,
  unescapeOctal,
} from "../../src/fsfreeze/mountinfo.ts";
import { assertNothingLeft, createBindMount, createLoopMounts } from "../_util/loopfs.ts";

// A mount table as a guest might have it: root on dm, /boot on a partition, a bind mount of /srv,
// btrfs with two subvolumes, a btrfs on a non-device source, tmpfs, overlay and NFS.
const MOUNTINFO = [
  "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw",
  "23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw",
  "24 22 259:1 / /boot rw,relatime shared:30 - xfs /dev/nvme0n1p1 rw,attr2",
  "25 24 259:2 / /boot/efi rw,relatime shared:31 - vfat /dev/nvme0n1p2 rw,fmask=0077",
  "26 22 8:17 / /srv\\040data rw,relatime shared:32 master:3 - ext4 /dev/sdb1 rw",
  "27 22 8:17 /www /var/www rw,relatime shared:33 - ext4 /dev/sdb1 rw",
  "28 22 0:45 /@home /home rw,relatime shared:34 - btrfs /dev/sdc rw,subvol=/@home",
  "29 22 0:46 /@snap /snapshots rw,relatime shared:35 - btrfs /dev/sdc rw,subvol=/@snap",
  "30 22 0:47 / /pool rw,relatime - btrfs pool-by-label rw",
  "31 22 0:48 / /run rw,nosuid shared:36 - tmpfs tmpfs rw,mode=755",
  "32 22 0:49 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a",
  "33 22 0:50 / /mnt/nfs rw - nfs4 server:/export rw,vers=4.2",
].join("\n") + "\n";

const BLOCK_DEVICES: Record<string, DeviceNumber> = { "/dev/sdc": { major: 8, minor: 32 } };
const fakeStat = (path: string): DeviceNumber | undefined => BLOCK_DEVICES[path];

function mountPoints(entries: readonly MountEntry[]): string[] {
  return entries.map((entry) => entry.mountPoint);
}

Deno.test("parseMountinfoLine() reads every field and decodes octal escapes", () => {
  const line =
    "36 35 98:0 /mnt1\\134x /mnt\\040two rw,noatime master:1 shared:2 - ext3 /dev/my\\011disk rw,errors=continue";
  assert.deepEqual(parseMountinfoLine(line), {
    mountId: 36,
    parentId: 35,
    major: 98,
    minor: 0,
    root: "/mnt1\\x",
    mountPoint: "/mnt two",
    mountOptions: "rw,noatime",
    optionalFields: ["master:1", "shared:2"],
    fsType: "ext3",
    source: "/dev/my\tdisk",
    superOptions: "rw,errors=continue",
  });
});

Deno.test("parseMountinfoLine() returns undefined for malformed lines", () => {
  assert.equal(parseMountinfoLine("36 35 98:0 / /mnt rw ext3 /dev/x rw"), undefined); // no " - "
  assert.equal(parseMountinfoLine("36 35 98 / /mnt rw - ext3 /dev/x rw"), undefined);
  assert.equal(parseMountinfoLine("x 35 98:0 / /mnt rw - ext3 /dev/x rw"), undefined);
  assert.equal(parseMountinfoLine("36 35 98:0 / /mnt rw -"), undefined);
});

Deno.test("parseMountinfo() keeps file order and skips malformed lines", () => {
  const entries = parseMountinfo(MOUNTINFO + "garbage line\n");
  assert.equal(entries.length, 12);
  assert.deepEqual(entries.map((e) => e.mountId), [22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33]);
  assert.equal(entries[4]?.mountPoint, "/srv data");
});

Deno.test("unescapeOctal() decodes only three-digit octal escapes", () => {
  assert.equal(unescapeOctal("a\\040b\\011c\\012d\\134e"), "a b\tc\nd\\e");
  assert.equal(unescapeOctal("\\04x\\9999"), "\\04x\\9999");
});

Deno.test("selectFreezable() follows qemu-ga: real devices, btrfs on block devices, first of each device", () => {
  const selected = selectFreezable(parseMountinfo(MOUNTINFO), fakeStat);
  // /proc, tmpfs, overlay, NFS: anonymous devices. /var/www: same device as /srv data.
  // /snapshots: same btrfs device as /home. /pool: btrfs whose source is no block device.
  assert.deepEqual(mountPoints(selected), ["/", "/boot", "/boot/efi", "/srv data", "/home"]);
  assert.deepEqual(selected.map((e) => e.blockDevice), [
    { major: 253, minor: 0 },
    { major: 259, minor: 1 },
    { major: 259, minor: 2 },
    { major: 8, minor: 17 },
    { major: 8, minor: 32 },
  ]);
  assert.equal(selected[4]?.major, 0, "mountinfo's own numbers are kept");
});

Deno.test("selectFreezable() keeps the first mountinfo occurrence of a device", () => {
  const lines = [
    "40 22 8:17 /www /var/www rw - ext4 /dev/sdb1 rw",
    "41 22 8:17 / /srv rw - ext4 /dev/sdb1 rw",
  ].join("\n");
  assert.deepEqual(mountPoints(selectFreezable(parseMountinfo(lines), fakeStat)), ["/var/www"]);
});

Deno.test("applyExcludes() drops exact mount points and fs types, with reasons", () => {
  const mounts = selectFreezable(parseMountinfo(MOUNTINFO), fakeStat);
  const { kept, skipped } = applyExcludes(mounts, ["/boot/efi/", "/srv data", "btrfs", "vfat"]);
  assert.deepEqual(mountPoints(kept), ["/", "/boot"]);
  assert.deepEqual(skipped.map((s) => [s.mount.mountPoint, s.reason]), [
    ["/boot/efi", "excluded by fsfreeze-exclude (fs type vfat)"],
    ["/srv data", "excluded by fsfreeze-exclude (mount point /srv data)"],
    ["/home", "excluded by fsfreeze-exclude (fs type btrfs)"],
  ]);
});

Deno.test("applyExcludes() keeps everything when nothing is excluded", () => {
  const mounts = selectFreezable(parseMountinfo(MOUNTINFO), fakeStat);
  assert.deepEqual(applyExcludes(mounts, []), { kept: mounts, skipped: [] });
});

Deno.test("readMountinfo() agrees with findmnt about this machine's mounts", async () => {
  const output = await new Deno.Command("findmnt", {
    args: ["--raw", "--noheadings", "--kernel", "--output", "ID,MAJ:MIN,FSTYPE,TARGET"],
  }).output();
  assert.ok(output.success);
  const fromFindmnt = new TextDecoder().decode(output.stdout).trim().split("\n")
    .filter((line) => !line.includes("\\")); // findmnt escapes differently (\x20)
  const ours = new Set(
    readMountinfo().map((e) => `${e.mountId} ${e.major}:${e.minor} ${e.fsType} ${e.mountPoint}`),
  );
  assert.ok(fromFindmnt.length > 3);
  for (const line of fromFindmnt) assert.ok(ours.has(line), `missing ${line}`);
});

Deno.test("statBlockDevice() returns a block device's numbers and nothing for other files", async () => {
  await using fixture = await createLoopMounts(1);
  const device = fixture.devices[0] as string;
  const output = await new Deno.Command("stat", { args: ["-c", "%t %T", device] }).output();
  const [hexMajor, hexMinor] = new TextDecoder().decode(output.stdout).trim().split(" ");
  assert.deepEqual(statBlockDevice(device), {
    major: parseInt(hexMajor ?? "", 16),
    minor: parseInt(hexMinor ?? "", 16),
  });
  assert.equal(statBlockDevice(fixture.images[0] as string), undefined);
  assert.equal(statBlockDevice("/dev/null"), undefined);
  assert.equal(statBlockDevice("none"), undefined);
});

Deno.test("selectFreezable() lists a loop mount once beside its bind mount (real mountinfo)", async () => {
  {
    await using fixture = await createLoopMounts(1);
    const bind = await createBindMount(fixture, { name: "bind with space" });
    const mine = (entries: readonly MountEntry[]): MountEntry[] =>
      entries.filter((e) => e.mountPoint.startsWith(`${fixture.dir}/`));
    // Both are in the mount table, the bind mount's name decoded…
    assert.deepEqual(mountPoints(mine(readMountinfo())), [fixture.mounts[0], bind]);
    // …but only the first is a candidate. (Asserting about our own mounts only; nothing freezes.)
    const candidates = mine(selectFreezable(readMountinfo()));
    assert.deepEqual(mountPoints(candidates), [fixture.mounts[0]]);
    assert.deepEqual(candidates[0]?.blockDevice, statBlockDevice(fixture.devices[0] as string));
  }
  await assertNothingLeft();
});

Deno.test("selectFreezable() takes a btrfs mount's numbers from its loop device (real mountinfo)", async () => {
  await using fixture = await createLoopMounts(1, { fsType: "btrfs" });
  const entry = readMountinfo().find((e) => e.mountPoint === fixture.mounts[0]);
  assert.equal(entry?.major, 0, "btrfs shows an anonymous device in mountinfo");
  const candidate = selectFreezable(readMountinfo()).find((e) =>
    e.mountPoint === fixture.mounts[0]
  );
  assert.ok(candidate, "btrfs on a block device is a candidate");
  assert.deepEqual(candidate.blockDevice, statBlockDevice(fixture.devices[0] as string));
});

/** The child of the next test: a watch and the mounts it should notice, in its own namespace. */
function watchScript(dir: string): string {
  const mountinfo = new URL("../../src/fsfreeze/mountinfo.ts", import.meta.url).href;
  return `
import { MountinfoWatch } from "${mountinfo}";
const run = (args) => new Deno.Command("mount", { args }).outputSync().success || Deno.exit(2);
const watch = new MountinfoWatch();
const seen = [watch.mayHaveChanged(), watch.mayHaveChanged()];
run(["-t", "tmpfs", "watched", ${JSON.stringify(dir)}]);
seen.push(watch.mayHaveChanged(), watch.mayHaveChanged());
run(["-o", "remount,ro", ${JSON.stringify(dir)}]);
seen.push(watch.mayHaveChanged());
new Deno.Command("umount", { args: [${JSON.stringify(dir)}] }).outputSync();
seen.push(watch.mayHaveChanged(), watch.mayHaveChanged());
console.log(JSON.stringify(seen));
`;
}

Deno.test("MountinfoWatch notices a mount, a remount and an unmount, and nothing else", async () => {
  // A private mount namespace: other work on this machine cannot change the table it watches.
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    const output = await new Deno.Command("unshare", {
      args: ["--mount", "--propagation", "private", Deno.execPath(), "eval", watchScript(dir)],
      stdin: "null",
    }).output();
    const decoder = new TextDecoder();
    assert.ok(output.success, decoder.decode(output.stderr));
    assert.deepEqual(JSON.parse(decoder.decode(output.stdout)), [
      true, // the first call cannot know
      false,
      true, // mounted
      false,
      true, // remounted
      true, // unmounted
      false,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
