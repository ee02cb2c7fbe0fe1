/**
 * The `disk` list of `guest-get-fsinfo`: which disks hold a block device, and where each sits on
 * its bus (`GuestDiskAddress`), found in sysfs the way qemu-ga's `build_guest_fsinfo_for_device`
 * finds it: device-mapper and md devices through their `slaves/`, PCI disks by walking the PCI
 * path to a known driver (virtio, AHCI, PIIX IDE, LSI SCSI, NVMe, USB), non-PCI virtio by its
 * path. The device node and serial come from what libudev reports: `DEVNAME` in the device's
 * `uevent`, `ID_SERIAL` in udev's database.
 *
 * Not covered: s390x channel I/O (`ccw-address`): Deno does not run on s390x.
 *
 * @module
 */

import { genericError } from "../../errors.ts";
import { type DirEntry, readDir, readlink, readTextFileRaw, realpath } from "../../linux/files.ts";
import { errorReason, SyscallError } from "../../linux/errno.ts";

/** `GuestPCIAddress` of the QAPI schema; -1 in every field means "not a PCI device". */
export interface GuestPCIAddress {
  domain: number;
  bus: number;
  slot: number;
  function: number;
}

/** `GuestDiskBusType` values qemu-ga reports on Linux. */
export type GuestDiskBusType = "ide" | "scsi" | "virtio" | "sata" | "nvme" | "usb" | "unknown";

/** `GuestDiskAddress` of the QAPI schema (without the s390x `ccw-address`). */
export interface GuestDiskAddress {
  "pci-controller": GuestPCIAddress;
  "bus-type": GuestDiskBusType;
  bus: number;
  target: number;
  unit: number;
  serial?: string;
  dev?: string;
}

/** The file-system reads this module makes; the real ones go to sysfs and udev's database. */
export interface SysfsSources {
  /**
   * realpath(3).
   * @throws {SyscallError}
   */
  realpath(path: string): string;
  /** The target of a symbolic link, undefined when there is none. */
  readlink(path: string): string | undefined;
  /**
   * The entries of a directory.
   * @throws {SyscallError} ENOENT when it does not exist
   */
  readDir(path: string): DirEntry[];
  /** A small sysfs file's text, undefined when it cannot be read. */
  readText(path: string): string | undefined;
  /** udev's database record of a device (`b<major>:<minor>`), undefined when there is none. */
  udevData(id: string): string | undefined;
}

/** Where udev keeps its per-device database (what libudev reads properties from). */
export const UDEV_DATA_DIR = "/run/udev/data";

/** The real sources: sysfs through libc (Deno refuses its fs APIs there), udev's data by Deno. */
export const SYSTEM_SYSFS_SOURCES: SysfsSources = {
  realpath,
  readlink: (path) => {
    try {
      return readlink(path);
    } catch {
      return undefined;
    }
  },
  readDir,
  readText: (path) => {
    try {
      return readTextFileRaw(path, { maxBytes: 64 * 1024 });
    } catch {
      return undefined;
    }
  },
  udevData: (id) => {
    try {
      return Deno.readTextFileSync(`${UDEV_DATA_DIR}/${id}`);
    } catch (err) {
      // A permission set without udev's database is a build mistake: say so.
      if (err instanceof Deno.errors.NotCapable) throw err;
      return undefined; // no udev database (containers, early boot): no serial, as libudev
    }
  },
};

/** The name and the disks of one block device. */
export interface DeviceDisks {
  /** The kernel name of the device (`vda1`, `dm-0`), or the last path component if it is gone. */
  name: string | undefined;
  /** Disks, most recently found first (qemu-ga prepends). */
  disks: GuestDiskAddress[];
}

/** PCI drivers whose disks qemu-ga can place. */
const PCI_DISK_DRIVERS = new Set([
  "ata_piix",
  "sym53c8xx",
  "virtio-pci",
  "ahci",
  "nvme",
  "xhci_hcd",
  "ehci-pci",
]);

/** The last component of a path. */
function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/** qemu-ga's `error_setg_errno(errp, errno, "<call>(\"<path>\")")` text. */
function syscallFailure(call: string, path: string, err: unknown): Error {
  return genericError(`${call}("${path}"): ${errorReason(err)}`, { cause: err });
}

/**
 * The disks under the block device at `devpath` (`/sys/dev/block/M:m`), following
 * device-mapper/md slaves down to real devices.
 * @throws {AgentError} GenericError with qemu-ga's text when sysfs cannot be walked
 */
export function deviceDisks(
  devpath: string,
  sources: SysfsSources = SYSTEM_SYSFS_SOURCES,
): DeviceDisks {
  const result: DeviceDisks = { name: undefined, disks: [] };
  collect(devpath, result, sources);
  return result;
}

function collect(devpath: string, result: DeviceDisks, sources: SysfsSources): void {
  let syspath: string;
  try {
    syspath = sources.realpath(devpath);
  } catch (err) {
    if (!(err instanceof SyscallError) || err.code !== "ENOENT") {
      throw syscallFailure("realpath", devpath, err);
    }
    // The device node may be missing in a container: name it after the path.
    result.name ??= basename(devpath);
    return;
  }
  result.name ??= basename(syspath);
  if (syspath.includes("/devices/virtual/block/")) {
    collectSlaves(syspath, result, sources);
    return;
  }
  const disk = realDeviceDisk(syspath, sources);
  if (disk !== undefined) result.disks.unshift(disk);
}

function collectSlaves(syspath: string, result: DeviceDisks, sources: SysfsSources): void {
  const slaves = `${syspath}/slaves`;
  let entries: DirEntry[];
  try {
    entries = sources.readDir(slaves);
  } catch (err) {
    if (err instanceof SyscallError && err.code === "ENOENT") return; // loop devices have none
    throw syscallFailure("opendir", slaves, err);
  }
  for (const entry of entries) {
    if (entry.type === "symlink") collect(`${slaves}/${entry.name}`, result, sources);
  }
}

/** A real (non-virtual) device's address; undefined when nothing at all is known about it. */
function realDeviceDisk(syspath: string, sources: SysfsSources): GuestDiskAddress | undefined {
  const disk: GuestDiskAddress = {
    "pci-controller": { domain: -1, bus: -1, slot: -1, function: -1 },
    "bus-type": "unknown",
    bus: 0,
    target: 0,
    unit: 0,
  };
  const uevent = parseProperties(sources.readText(`${syspath}/uevent`) ?? "", "");
  const devname = uevent.get("DEVNAME");
  if (devname !== undefined) disk.dev = devname.startsWith("/") ? devname : `/dev/${devname}`;
  const major = uevent.get("MAJOR");
  const minor = uevent.get("MINOR");
  if (major !== undefined && minor !== undefined) {
    const serial = parseProperties(sources.udevData(`b${major}:${minor}`) ?? "", "E:")
      .get("ID_SERIAL");
    if (serial !== undefined && serial !== "") disk.serial = serial;
  }
  let placed = false;
  if (syspath.includes("/devices/pci")) placed = placePciDisk(syspath, disk, sources);
  else if (syspath.includes("/virtio")) placed = placeNonPciVirtioDisk(syspath, disk);
  return placed || disk.dev !== undefined || disk.serial !== undefined ? disk : undefined;
}

/** `KEY=value` lines (after `prefix`) of a uevent file or a udev database record. */
export function parseProperties(text: string, prefix: string): Map<string, string> {
  const properties = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(prefix)) continue;
    const equals = line.indexOf("=", prefix.length);
    if (equals !== -1) properties.set(line.slice(prefix.length, equals), line.slice(equals + 1));
  }
  return properties;
}

const PCI_FUNCTION = /^\/([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)/;

function pciAddress(match: RegExpExecArray): GuestPCIAddress {
  const [domain, bus, slot, fn] = match.slice(1, 5).map((hex) => parseInt(hex, 16));
  return { domain: domain!, bus: bus!, slot: slot!, function: fn! };
}

/** `target<host>:<channel>:<id>/<h>:<c>:<id>:<lun>` → the last three numbers. */
function scsiTarget(syspath: string): [number, number, number] | undefined {
  const at = syspath.indexOf("/target");
  if (at === -1) return undefined;
  const match = /^\d+:\d+:\d+\/\d+:(\d+):(\d+):(\d+)/.exec(syspath.slice(at + 7));
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : undefined;
}

/** Sorted numbers of the `ata<N>` or `host<N>` entries of `dir` (at most 8, as qemu-ga). */
function hostNumbers(dir: string, ata: boolean, sources: SysfsSources): number[] {
  let entries: DirEntry[];
  try {
    entries = sources.readDir(dir);
  } catch (err) {
    throw syscallFailure("opendir", dir, err);
  }
  const pattern = ata ? /^ata(\d+)/ : /^host(\d+)/;
  const numbers: number[] = [];
  for (const entry of entries) {
    if (numbers.length === 8) break;
    const match = pattern.exec(entry.name);
    if (match) numbers.push(Number(match[1]));
  }
  return numbers.sort((a, b) => a - b);
}

/** qemu-ga's `build_guest_fsinfo_for_pci_dev`: true when the disk could be placed. */
function placePciDisk(syspath: string, disk: GuestDiskAddress, sources: SysfsSources): boolean {
  const root = syspath.indexOf("/devices/pci") + "/devices/pci".length;
  const first = /^[0-9a-fA-F]+:[0-9a-fA-F]+(\/[0-9a-fA-F]+:[0-9a-fA-F]+:[0-9a-fA-F]+\.[0-9a-fA-F]+)/
    .exec(syspath.slice(root));
  if (!first) return false;
  let pci = pciAddress(PCI_FUNCTION.exec(first[1]!)!);
  let end = root + first[0].length;
  let driver: string;
  // Walk down through bridges until a function bound to a disk driver.
  for (;;) {
    const link = sources.readlink(`${syspath.slice(0, end)}/driver`);
    if (link !== undefined && PCI_DISK_DRIVERS.has(basename(link))) {
      driver = basename(link);
      break;
    }
    const next = PCI_FUNCTION.exec(syspath.slice(end));
    if (!next) return false;
    pci = pciAddress(next);
    end += next[0].length;
  }
  const target = scsiTarget(syspath);
  let hostAt = syspath.indexOf("/ata");
  const ata = hostAt !== -1;
  if (!ata) hostAt = syspath.indexOf("/host");
  const hostMatch = hostAt === -1 ? null : /^\d+/.exec(syspath.slice(hostAt + (ata ? 4 : 5)));
  const host = hostMatch ? Number(hostMatch[0]) : undefined;
  const hosts = host === undefined ? [] : hostNumbers(syspath.slice(0, hostAt), ata, sources);
  disk["pci-controller"] = pci;
  switch (driver) {
    case "ata_piix": {
      // One host per IDE bus; target*:0:<unit>:0.
      const bus = hosts.indexOf(host ?? -1);
      if (target === undefined || bus === -1) return false;
      Object.assign(disk, { "bus-type": "ide", bus, unit: target[1] });
      return true;
    }
    case "sym53c8xx":
      if (target === undefined) return false;
      Object.assign(disk, { "bus-type": "scsi", unit: target[1] });
      return true;
    case "virtio-pci":
      // virtio-scsi: target*:0:0:<unit>; virtio-blk: one disk per device.
      if (target !== undefined) Object.assign(disk, { "bus-type": "scsi", unit: target[2] });
      else disk["bus-type"] = "virtio";
      return true;
    case "ahci": {
      // One host per port.
      const unit = hosts.indexOf(host ?? -1);
      if (target === undefined || unit === -1) return false;
      Object.assign(disk, { "bus-type": "sata", unit });
      return true;
    }
    case "nvme":
      disk["bus-type"] = "nvme";
      return true;
    default: // xhci_hcd, ehci-pci
      disk["bus-type"] = "usb";
      return true;
  }
}

/** qemu-ga's `build_guest_fsinfo_for_nonpci_virtio` (virtio-mmio, e.g. on arm `virt`). */
function placeNonPciVirtioDisk(syspath: string, disk: GuestDiskAddress): boolean {
  if (!syspath.includes("/virtio") || !syspath.includes("/block")) return false;
  const target = scsiTarget(syspath);
  if (target !== undefined) {
    Object.assign(disk, { "bus-type": "scsi", bus: target[0], target: target[1], unit: target[2] });
  } else {
    disk["bus-type"] = "virtio";
  }
  return true;
}
