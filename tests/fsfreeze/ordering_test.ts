import assert from "node:assert/strict";
import {
  type BlockTopology,
  type DeviceId,
  freezeWaves,
  holdersOf,
  thawList,
  thawOrder,
} from "../../src/fsfreeze/ordering.ts";
import { sysfsTopology } from "../../src/fsfreeze/topology.ts";
import { type MountEntry, readMountinfo, selectFreezable } from "../../src/fsfreeze/mountinfo.ts";
import { major, minor } from "../../src/linux/files.ts";
import { type Config, parseConfig } from "../../src/config/mod.ts";
import { agentFlags } from "../../src/permissions.ts";
import { assertNothingLeft, createLoopMounts, createNestedLoopMount } from "../_util/loopfs.ts";

let nextId = 100;

/** A selected mount as selectFreezable() returns it. */
function mount(mountPoint: string, device: DeviceId, raw: DeviceId = device): MountEntry {
  const [major, minor] = raw.split(":").map(Number) as [number, number];
  const [blockMajor, blockMinor] = device.split(":").map(Number) as [number, number];
  return {
    mountId: nextId++,
    parentId: 1,
    major,
    minor,
    root: "/",
    mountPoint,
    mountOptions: "rw",
    optionalFields: [],
    fsType: raw === device ? "ext4" : "btrfs",
    source: "/dev/x",
    superOptions: "rw",
    blockDevice: { major: blockMajor, minor: blockMinor },
  };
}

/** A topology from tables; anything not listed is unknown. */
function topology(tables: {
  backing?: Record<DeviceId, string>;
  slaves?: Record<DeviceId, DeviceId[]>;
  disks?: Record<DeviceId, DeviceId>;
  files?: Record<string, DeviceId>;
}): BlockTopology {
  return {
    loopBackingFile: (device) => tables.backing?.[device],
    slaves: (device) => tables.slaves?.[device] ?? [],
    wholeDisk: (device) => tables.disks?.[device],
    fileDevice: (path) => tables.files?.[path],
  };
}

function names(waves: MountEntry[][]): string[][] {
  return waves.map((wave) => wave.map((m) => m.mountPoint));
}

Deno.test("freezeWaves() freezes a loop image's mount before the mount holding the image", () => {
  const mounts = [mount("/data", "8:16"), mount("/img", "7:1"), mount("/other", "8:32")];
  const topo = topology({
    backing: { "7:1": "/data/disk.img" },
    files: { "/data/disk.img": "8:16" },
  });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/other", "/img"], ["/data"]]);
});

Deno.test("freezeWaves() follows dm/md slaves down to a loop device's backing file", () => {
  const mounts = [mount("/data", "8:16"), mount("/vol", "253:3")];
  const topo = topology({
    slaves: { "253:3": ["253:2"], "253:2": ["9:0"], "9:0": ["7:4", "7:5"] },
    backing: { "7:5": "/data/b.img" },
    files: { "/data/b.img": "8:16" },
  });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/vol"], ["/data"]]);
});

Deno.test("freezeWaves() orders a stacked device built on another mount's own device", () => {
  const mounts = [mount("/vol", "253:1"), mount("/raw", "8:16")];
  const topo = topology({ slaves: { "253:1": ["8:16"] } });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/vol"], ["/raw"]]);
});

Deno.test("freezeWaves() resolves a partition of a loop device to the loop's backing file", () => {
  const mounts = [mount("/data", "8:16"), mount("/part", "259:0")];
  const topo = topology({
    disks: { "259:0": "7:2" },
    backing: { "7:2": "/data/p.img" },
    files: { "/data/p.img": "8:16" },
  });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/part"], ["/data"]]);
});

Deno.test("freezeWaves() matches a backing file on btrfs by its anonymous device", () => {
  const mounts = [mount("/home", "8:32", "0:45"), mount("/img", "7:1")];
  const topo = topology({ backing: { "7:1": "/home/vm.img" }, files: { "/home/vm.img": "0:45" } });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/img"], ["/home"]]);
});

Deno.test("freezeWaves() freezes nested mount points before their parents", () => {
  const mounts = [
    mount("/", "254:0"),
    mount("/srv", "8:1"),
    mount("/srv/sub", "8:2"),
    mount("/srvx", "8:3"),
  ];
  assert.deepEqual(names(freezeWaves(mounts, topology({}))), [
    ["/srvx", "/srv/sub"],
    ["/srv"],
    ["/"],
  ]);
});

Deno.test("freezeWaves() puts independent mounts in one wave, in reverse mountinfo order", () => {
  const mounts = [mount("/a", "8:1"), mount("/b", "8:2"), mount("/c", "8:3")];
  assert.deepEqual(names(freezeWaves(mounts, topology({}))), [["/c", "/b", "/a"]]);
});

Deno.test("freezeWaves() adds no edge for what it cannot resolve", () => {
  const mounts = [mount("/data", "8:16"), mount("/img", "7:1")];
  // A deleted backing file cannot be stat()ed.
  const topo = topology({ backing: { "7:1": "/data/gone.img (deleted)" } });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/img", "/data"]]);
});

Deno.test("freezeWaves() chains several levels: an image on an image on a disk", () => {
  const mounts = [mount("/outer", "8:16"), mount("/middle", "7:1"), mount("/inner", "7:2")];
  const topo = topology({
    backing: { "7:1": "/outer/m.img", "7:2": "/middle/i.img" },
    files: { "/outer/m.img": "8:16", "/middle/i.img": "7:1" },
  });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/inner"], ["/middle"], ["/outer"]]);
  assert.deepEqual(holdersOf(mounts, topo).map((set) => [...set].sort()), [[], [0], [0, 1]]);
});

Deno.test("freezeWaves() falls back to qemu-ga's order, one mount per wave, on a cycle", () => {
  const mounts = [mount("/a", "7:1"), mount("/b", "7:2"), mount("/c", "8:3")];
  const topo = topology({
    backing: { "7:1": "/b/a.img", "7:2": "/a/b.img" },
    files: { "/b/a.img": "7:2", "/a/b.img": "7:1" },
  });
  assert.deepEqual(names(freezeWaves(mounts, topo)), [["/c"], ["/b"], ["/a"]]);
});

Deno.test("freezeWaves() returns no waves for no mounts", () => {
  assert.deepEqual(freezeWaves([], topology({})), []);
});

Deno.test("sysfsTopology() reads slaves, partitions and loop backing files from a sysfs tree", async () => {
  const root = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    // The shape of /sys: /sys/dev/block/M:m links into /sys/devices/…; slaves link to siblings.
    const devices = `${root}/devices/virtual/block`;
    const make = async (path: string, dev: string): Promise<void> => {
      await Deno.mkdir(path, { recursive: true });
      await Deno.writeTextFile(`${path}/dev`, `${dev}\n`);
    };
    await make(`${devices}/dm-0`, "253:0");
    await make(`${devices}/loop1`, "7:1");
    await make(`${devices}/loop2`, "7:2");
    await make(`${devices}/loop2/loop2p1`, "259:0");
    await Deno.writeTextFile(`${devices}/loop2/loop2p1/partition`, "1\n");
    await Deno.mkdir(`${devices}/loop1/loop`);
    await Deno.writeTextFile(`${devices}/loop1/loop/backing_file`, "/data/with space.img\n");
    await Deno.mkdir(`${devices}/dm-0/slaves`);
    await Deno.symlink("../../loop1", `${devices}/dm-0/slaves/loop1`);
    await Deno.mkdir(`${root}/dev/block`, { recursive: true });
    for (
      const [id, path] of [["253:0", "dm-0"], ["7:1", "loop1"], ["7:2", "loop2"], [
        "259:0",
        "loop2/loop2p1",
      ]]
    ) {
      await Deno.symlink(`../../devices/virtual/block/${path}`, `${root}/dev/block/${id}`);
    }
    const topo = sysfsTopology(`${root}/dev/block`);
    assert.deepEqual(topo.slaves("253:0"), ["7:1"]);
    assert.deepEqual(topo.slaves("7:1"), []);
    assert.equal(topo.loopBackingFile("7:1"), "/data/with space.img");
    assert.equal(topo.loopBackingFile("253:0"), undefined);
    assert.equal(topo.wholeDisk("259:0"), "7:2");
    assert.equal(topo.wholeDisk("7:2"), undefined);
    assert.equal(topo.wholeDisk("1:99"), undefined);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("sysfsTopology() resolves a real loop image stored on a loop mount", async () => {
  {
    await using fixture = await createLoopMounts(1);
    const nested = await createNestedLoopMount(fixture);
    const topo = sysfsTopology();
    const rdev = (await Deno.stat(nested.device)).rdev ?? 0;
    const loopId = `${major(rdev)}:${minor(rdev)}`;
    assert.equal(topo.loopBackingFile(loopId), nested.image);
    const holder = (await Deno.stat(nested.holder)).dev;
    assert.equal(topo.fileDevice(nested.image), `${major(holder)}:${minor(holder)}`);
    assert.deepEqual(topo.slaves(loopId), []);
    assert.equal(topo.wholeDisk(loopId), undefined);
    assert.equal(topo.fileDevice(`${fixture.dir}/missing`), undefined);
  }
  await assertNothingLeft();
});

Deno.test("freezeWaves() with real sysfs puts a nested loop mount before its holder", async () => {
  {
    await using fixture = await createLoopMounts(4);
    const nested = await createNestedLoopMount(fixture, { index: 2 });
    // Only our own mounts, from the real mount table (never frozen here).
    const ours = selectFreezable(readMountinfo())
      .filter((m) => m.mountPoint.startsWith(`${fixture.dir}/`));
    assert.equal(ours.length, 5);
    const waves = names(freezeWaves(ours, sysfsTopology()));
    const others = fixture.mounts.filter((m) => m !== nested.holder && m !== nested.mount);
    assert.deepEqual(waves, [[nested.mount, ...others.reverse()], [nested.holder]]);
  }
  await assertNothingLeft();
});

/** The child of the next test: the production readers, printing what they found as JSON. */
function narrowPermissionScript(): string {
  const src = (path: string): string => new URL(`../../src/${path}`, import.meta.url).href;
  return `
import { freezeWaves } from "${src("fsfreeze/ordering.ts")}";
import { sysfsTopology } from "${src("fsfreeze/topology.ts")}";
import { readMountinfo, selectFreezable, statBlockDevice } from "${src("fsfreeze/mountinfo.ts")}";
const [ext4Dir, btrfsDir, btrfsDevice] = Deno.args;
const entries = readMountinfo();
const candidates = selectFreezable(entries);
const under = (dir) => (m) => m.mountPoint.startsWith(dir + "/");
// Nothing is frozen here: the waves are only computed.
console.log(JSON.stringify({
  btrfsCandidates: candidates.filter(under(btrfsDir)).map((m) => [m.mountPoint, m.blockDevice]),
  btrfsDevice: statBlockDevice(btrfsDevice) ?? null,
  waves: freezeWaves(candidates.filter(under(ext4Dir)), sysfsTopology())
    .map((wave) => wave.map((m) => m.mountPoint)),
}));
`;
}

async function runChild(
  args: string[],
): Promise<{ success: boolean; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), { args, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return {
    success: output.success,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function blockDeviceOf(path: string): Promise<{ major: number; minor: number }> {
  const output = await new Deno.Command("stat", { args: ["-c", "%t %T", path] }).output();
  const [hexMajor, hexMinor] = new TextDecoder().decode(output.stdout).trim().split(" ");
  return { major: parseInt(hexMajor ?? "", 16), minor: parseInt(hexMinor ?? "", 16) };
}

Deno.test("readMountinfo(), statBlockDevice() and freezeWaves() work under the agent's own permission set", async () => {
  {
    await using ext4 = await createLoopMounts(1);
    const nested = await createNestedLoopMount(ext4);
    await using btrfs = await createLoopMounts(1, { fsType: "btrfs" });
    const work = await Deno.makeTempDir({ prefix: "agent_test_" });
    try {
      const parsed = parseConfig(
        [
          "-m",
          "unix-listen",
          "-p",
          `${work}/agent.sock`,
          "-t",
          `${work}/state`,
          `--fsfreeze-scope=${ext4.dir},${btrfs.dir}`,
        ],
        {},
        () => undefined,
      );
      assert.equal(parsed.action, "run");
      const flags = agentFlags(
        (parsed as { config: Config }).config,
        { selfExecutable: Deno.execPath() },
      );
      assert.ok(!flags.includes("-A") && !flags.includes("--allow-all"));
      // No extra --allow-read for the script or src/: `deno run` loads a script's static imports
      // without asking for read permission (Workers would need it; this script starts none).
      const script = `${work}/child.ts`;
      await Deno.writeTextFile(script, narrowPermissionScript());

      // Control: under these flags Deno's own fs API is refused /proc, so a pass below means the
      // production code does not use it.
      await Deno.writeTextFile(
        `${work}/control.ts`,
        `Deno.readTextFileSync("/proc/self/mountinfo");`,
      );
      const control = await runChild(["run", ...flags, `${work}/control.ts`]);
      assert.equal(control.success, false);
      assert.match(control.stderr, /NotCapable/);

      const child = await runChild([
        "run",
        ...flags,
        script,
        ext4.dir,
        btrfs.dir,
        btrfs.devices[0] as string,
      ]);
      assert.ok(child.success, child.stderr);
      const result = JSON.parse(child.stdout);
      const btrfsDevice = await blockDeviceOf(btrfs.devices[0] as string);
      assert.deepEqual(result.btrfsDevice, btrfsDevice);
      assert.deepEqual(result.btrfsCandidates, [[btrfs.mounts[0], btrfsDevice]]);
      // The loop mount stored on the holder is frozen first (real sysfs, real stat of the image).
      assert.deepEqual(result.waves, [[nested.mount], [nested.holder]]);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  }
  await assertNothingLeft();
});

Deno.test("thawOrder() reverses the waves; thawList() adds recorded mounts no longer selected", () => {
  const waves = [["/other", "/img"], ["/data"]];
  assert.deepEqual(thawOrder(waves), ["/data", "/other", "/img"]);
  assert.deepEqual(thawList(waves, ["/img", "/gone", "/data"]), [
    "/data",
    "/other",
    "/img",
    "/gone",
  ]);
  assert.deepEqual(thawList(undefined, ["/a", "/b"]), ["/a", "/b"], "no selection: recorded only");
});
