/**
 * Tests of src/commands/system/disk_address.ts. The sysfs layouts of buses this machine does not
 * have (AHCI, PIIX IDE, virtio-scsi behind a bridge, NVMe, device-mapper, virtio-mmio) are
 * modelled on real kernels' paths; the real walk on this machine's root disk is compared with
 * qemu-ga itself in qemu_ga_compare_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AgentError } from "../../../src/errors.ts";
import { errnoNumber, SyscallError } from "../../../src/linux/errno.ts";
import { major, minor } from "../../../src/linux/files.ts";
import type { DirEntry } from "../../../src/linux/structs.ts";
import {
  deviceDisks,
  type GuestDiskAddress,
  parseProperties,
  type SysfsSources,
  SYSTEM_SYSFS_SOURCES,
} from "../../../src/commands/system/disk_address.ts";

interface FakeTree {
  /** Symbolic links: path → absolute target (resolved by prefix, as realpath does). */
  links: Record<string, string>;
  /** PCI function directory → driver name. */
  drivers?: Record<string, string>;
  dirs?: Record<string, string[]>;
  files?: Record<string, string>;
  udev?: Record<string, string>;
  /** realpath failures: path → errno name. */
  failures?: Record<string, string>;
}

/** A stand-in sysfs: only what a test lists exists. */
function fakeSysfs(tree: FakeTree): SysfsSources {
  const resolve = (path: string): string | undefined => {
    for (const [link, target] of Object.entries(tree.links)) {
      if (path === link || path.startsWith(`${link}/`)) {
        return resolve(target + path.slice(link.length)) ?? target + path.slice(link.length);
      }
    }
    return undefined;
  };
  const exists = (path: string): boolean =>
    Object.values(tree.links).some((t) => t === path || t.startsWith(`${path}/`)) ||
    Object.keys(tree.dirs ?? {}).includes(path);
  return {
    realpath: (path) => {
      const failure = tree.failures?.[path];
      if (failure) throw new SyscallError("realpath", errnoNumber(failure), path);
      const real = resolve(path) ?? path;
      if (!exists(real)) throw new SyscallError("realpath", errnoNumber("ENOENT"), path);
      return real;
    },
    readlink: (path) => {
      const driver = tree.drivers?.[path.replace(/\/driver$/, "")];
      return path.endsWith("/driver") && driver ? `../../../bus/pci/drivers/${driver}` : undefined;
    },
    readDir: (path) => {
      const names = tree.dirs?.[path];
      if (names === undefined) throw new SyscallError("opendir", errnoNumber("ENOENT"), path);
      return names.map((name): DirEntry => ({ name, ino: 1, type: "symlink" }));
    },
    readText: (path) => tree.files?.[path],
    udevData: (id) => tree.udev?.[id],
  };
}

const NO_PCI = { domain: -1, bus: -1, slot: -1, function: -1 };

function disk(fields: Partial<GuestDiskAddress>): GuestDiskAddress {
  return { "pci-controller": NO_PCI, "bus-type": "unknown", bus: 0, target: 0, unit: 0, ...fields };
}

function uevent(major: number, minor: number, name: string): string {
  return `MAJOR=${major}\nMINOR=${minor}\nDEVNAME=${name}\nDEVTYPE=disk\n`;
}

const VDA1 = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda/vda1";

Deno.test("deviceDisks() places a virtio-blk partition with its node and udev serial", () => {
  const sysfs = fakeSysfs({
    links: { "/sys/dev/block/254:1": VDA1 },
    drivers: { "/sys/devices/pci0000:00/0000:00:02.0": "virtio-pci" },
    files: { [`${VDA1}/uevent`]: uevent(254, 1, "vda1") },
    udev: { "b254:1": "S:disk/by-id/virtio-os\nE:ID_SERIAL=os-disk\nE:ID_PART_ENTRY_NUMBER=1\n" },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/254:1", sysfs), {
    name: "vda1",
    disks: [disk({
      "pci-controller": { domain: 0, bus: 0, slot: 2, function: 0 },
      "bus-type": "virtio",
      serial: "os-disk",
      dev: "/dev/vda1",
    })],
  });
});

Deno.test("deviceDisks() walks through a PCI bridge to a virtio-scsi disk and takes its LUN", () => {
  const sdb = "/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio3/host2/target2:0:0/" +
    "2:0:0:3/block/sdb";
  const sysfs = fakeSysfs({
    links: { "/sys/dev/block/8:16": sdb },
    drivers: {
      "/sys/devices/pci0000:00/0000:00:1c.0": "pcieport",
      "/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0": "virtio-pci",
    },
    dirs: { "/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio3": ["host2", "driver"] },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/8:16", sysfs).disks, [disk({
    "pci-controller": { domain: 0, bus: 1, slot: 0, function: 0 },
    "bus-type": "scsi",
    unit: 3,
  })]);
});

Deno.test("deviceDisks() numbers an AHCI port by its rank among the controller's ports", () => {
  const controller = "/sys/devices/pci0000:00/0000:00:1f.2";
  const sysfs = fakeSysfs({
    links: { "/sys/dev/block/8:0": `${controller}/ata3/host2/target2:0:0/2:0:0:0/block/sda` },
    drivers: { [controller]: "ahci" },
    dirs: { [controller]: ["ata6", "ata1", "ata3", "driver", "ata2", "ata5", "ata4"] },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/8:0", sysfs).disks, [disk({
    "pci-controller": { domain: 0, bus: 0, slot: 0x1f, function: 2 },
    "bus-type": "sata",
    unit: 2,
  })]);
});

Deno.test("deviceDisks() gives a PIIX IDE disk its bus and unit", () => {
  const controller = "/sys/devices/pci0000:00/0000:00:01.1";
  const sysfs = fakeSysfs({
    links: { "/sys/dev/block/8:32": `${controller}/ata2/host1/target1:0:1/1:0:1:0/block/sdc` },
    drivers: { [controller]: "ata_piix" },
    dirs: { [controller]: ["ata2", "ata1"] },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/8:32", sysfs).disks, [disk({
    "pci-controller": { domain: 0, bus: 0, slot: 1, function: 1 },
    "bus-type": "ide",
    bus: 1,
    unit: 1,
  })]);
});

Deno.test("deviceDisks() reports NVMe and virtio-mmio disks by bus type", () => {
  const nvme = "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1";
  const mmio = "/sys/devices/platform/a003e00.virtio_mmio/virtio1/block/vda";
  const sysfs = fakeSysfs({
    links: { "/sys/dev/block/259:0": nvme, "/sys/dev/block/254:0": mmio },
    drivers: { "/sys/devices/pci0000:00/0000:00:04.0": "nvme" },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/259:0", sysfs).disks, [disk({
    "pci-controller": { domain: 0, bus: 0, slot: 4, function: 0 },
    "bus-type": "nvme",
  })]);
  assert.deepEqual(deviceDisks("/sys/dev/block/254:0", sysfs).disks, [
    disk({ "bus-type": "virtio" }),
  ]);
});

Deno.test("deviceDisks() follows device-mapper slaves and names the mapped device", () => {
  const dm = "/sys/devices/virtual/block/dm-0";
  const vdb = "/sys/devices/pci0000:00/0000:00:05.0/virtio4/block/vdb";
  const sysfs = fakeSysfs({
    links: {
      "/sys/dev/block/253:0": dm,
      [`${dm}/slaves/vda1`]: VDA1,
      [`${dm}/slaves/vdb`]: vdb,
    },
    drivers: {
      "/sys/devices/pci0000:00/0000:00:02.0": "virtio-pci",
      "/sys/devices/pci0000:00/0000:00:05.0": "virtio-pci",
    },
    dirs: { [`${dm}/slaves`]: ["vda1", "vdb"] },
    files: { [`${vdb}/uevent`]: uevent(254, 16, "vdb") },
  });
  const { name, disks } = deviceDisks("/sys/dev/block/253:0", sysfs);
  assert.equal(name, "dm-0");
  // qemu-ga prepends: the last slave comes first.
  assert.deepEqual(disks.map((d) => d["pci-controller"].slot), [5, 2]);
  assert.equal(disks[0]?.dev, "/dev/vdb");
});

Deno.test("deviceDisks() lists no disk for a loop device or an unknown controller", () => {
  const sysfs = fakeSysfs({
    links: {
      "/sys/dev/block/7:0": "/sys/devices/virtual/block/loop0",
      "/sys/dev/block/8:48": "/sys/devices/pci0000:00/0000:00:06.0/host5/target5:2:0/5:2:0:0/" +
        "block/sdd",
    },
    drivers: { "/sys/devices/pci0000:00/0000:00:06.0": "megaraid_sas" },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/7:0", sysfs), { name: "loop0", disks: [] });
  assert.deepEqual(deviceDisks("/sys/dev/block/8:48", sysfs), { name: "sdd", disks: [] });
});

Deno.test("deviceDisks() keeps a disk it cannot place when it knows its node", () => {
  const mmc = "/sys/devices/platform/fe320000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0";
  const sysfs = fakeSysfs({
    links: { "/sys/dev/block/179:0": mmc },
    files: { [`${mmc}/uevent`]: uevent(179, 0, "mmcblk0") },
  });
  assert.deepEqual(deviceDisks("/sys/dev/block/179:0", sysfs).disks, [
    disk({ dev: "/dev/mmcblk0" }),
  ]);
});

Deno.test("deviceDisks() names a vanished device after its path and fails on other errors", () => {
  const sysfs = fakeSysfs({ links: {}, failures: { "/sys/dev/block/8:2": "EACCES" } });
  assert.deepEqual(deviceDisks("/sys/dev/block/8:1", sysfs), { name: "8:1", disks: [] });
  assert.throws(
    () => deviceDisks("/sys/dev/block/8:2", sysfs),
    (err) =>
      err instanceof AgentError &&
      err.message === 'realpath("/sys/dev/block/8:2"): Permission denied',
  );
});

Deno.test("parseProperties() reads uevent lines and udev's E: records", () => {
  assert.deepEqual(
    parseProperties("MAJOR=8\nDEVNAME=sda\nBROKEN\n", ""),
    new Map([["MAJOR", "8"], ["DEVNAME", "sda"]]),
  );
  assert.deepEqual(
    parseProperties("S:disk/by-id/x\nE:ID_SERIAL=QM0001=2\nG:systemd\n", "E:"),
    new Map([["ID_SERIAL", "QM0001=2"]]),
  );
});

Deno.test("SYSTEM_SYSFS_SOURCES resolve the root device as readlink -f and read its uevent", async () => {
  const info = await Deno.stat("/");
  const device = `${major(info.dev)}:${minor(info.dev)}`;
  const expected = new TextDecoder().decode(
    (await new Deno.Command("readlink", { args: ["-f", `/sys/dev/block/${device}`] }).output())
      .stdout,
  ).trim();
  const real = SYSTEM_SYSFS_SOURCES.realpath(`/sys/dev/block/${device}`);
  assert.equal(real, expected);
  assert.match(SYSTEM_SYSFS_SOURCES.readText(`${real}/uevent`) ?? "", /^MAJOR=/m);
  assert.equal(SYSTEM_SYSFS_SOURCES.readText(`${real}/no-such-file`), undefined);
});
