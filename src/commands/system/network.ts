/**
 * `guest-network-get-interfaces`: every network interface with its hardware address, and for
 * those with IP addresses the addresses, prefixes and `/proc/net/dev` counters, as qemu-ga's
 * `qmp_guest_network_get_interfaces` builds them from getifaddrs(3).
 *
 * Addresses come from `Deno.networkInterfaces()` (getifaddrs' AF_INET/AF_INET6 entries); the
 * interfaces without addresses and the hardware addresses, which qemu-ga takes from the
 * AF_PACKET entries and SIOCGIFHWADDR, come from sysfs.
 *
 * @module
 */

import { readTextFileRaw } from "../../linux/files.ts";

/** `GuestIpAddress` of the QAPI schema. */
export interface GuestIpAddress {
  "ip-address": string;
  "ip-address-type": "ipv4" | "ipv6";
  prefix: number;
}

/** `GuestNetworkInterfaceStat` of the QAPI schema (all uint64). */
export interface GuestNetworkInterfaceStat {
  "rx-bytes": bigint;
  "rx-packets": bigint;
  "rx-errs": bigint;
  "rx-dropped": bigint;
  "tx-bytes": bigint;
  "tx-packets": bigint;
  "tx-errs": bigint;
  "tx-dropped": bigint;
}

/** `GuestNetworkInterface` of the QAPI schema. */
export interface GuestNetworkInterface {
  name: string;
  "hardware-address"?: string;
  "ip-addresses"?: GuestIpAddress[];
  statistics?: GuestNetworkInterfaceStat;
}

/** One line of `/proc/net/dev`: an interface and its counters. */
export interface NetDevEntry {
  name: string;
  statistics: GuestNetworkInterfaceStat;
}

/**
 * Parses `/proc/net/dev` (two header lines, then `name: 16 counters`), in the kernel's order.
 * The counters qemu-ga reports are receive 1–4 and transmit 1–4 (bytes, packets, errs, drop).
 */
export function parseNetDev(text: string): NetDevEntry[] {
  const entries: NetDevEntry[] = [];
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":");
    if (colon === -1) continue;
    const fields = line.slice(colon + 1).trim().split(/\s+/);
    if (fields.length !== 16 || !fields.every((f) => /^\d+$/.test(f))) continue;
    const n = (i: number): bigint => BigInt(fields[i]!);
    entries.push({
      name: line.slice(0, colon).trim(),
      statistics: {
        "rx-bytes": n(0),
        "rx-packets": n(1),
        "rx-errs": n(2),
        "rx-dropped": n(3),
        "tx-bytes": n(8),
        "tx-packets": n(9),
        "tx-errs": n(10),
        "tx-dropped": n(11),
      },
    });
  }
  return entries;
}

/**
 * A sysfs `address` ("aa:bb:..") as SIOCGIFHWADDR gives it to qemu-ga: the first 6 bytes,
 * zero-filled (devices without a link-layer address report 00:00:00:00:00:00).
 */
export function hardwareAddress(sysfsAddress: string): string {
  const bytes = sysfsAddress.trim() === "" ? [] : sysfsAddress.trim().split(":");
  return Array.from({ length: 6 }, (_, i) => (bytes[i] ?? "00").toLowerCase().padStart(2, "0"))
    .join(":");
}

/** Where an interface's facts come from; the real one reads sysfs and procfs. */
export interface NetworkSources {
  /** `/proc/net/dev`, in the kernel's order. */
  netDev(): NetDevEntry[];
  /** The interface's index, used to order them as getifaddrs does; undefined if unknown. */
  ifindex(name: string): number | undefined;
  /** The sysfs `address` text of a device, undefined if unreadable. */
  address(name: string): string | undefined;
  /** IP addresses, in getifaddrs order. */
  addresses(): Deno.NetworkInterfaceInfo[];
}

/** The real sources: sysfs and procfs through libc (Deno refuses its own fs APIs there). */
export const SYSTEM_NETWORK_SOURCES: NetworkSources = {
  netDev: () => parseNetDev(readTextFileRaw("/proc/net/dev")),
  ifindex: (name) => {
    const text = readOptional(`/sys/class/net/${name}/ifindex`);
    return text === undefined ? undefined : Number(text.trim());
  },
  address: (name) => readOptional(`/sys/class/net/${name}/address`),
  addresses: () => Deno.networkInterfaces(),
};

function readOptional(path: string): string | undefined {
  try {
    return readTextFileRaw(path, { maxBytes: 4096 });
  } catch {
    return undefined; // the interface went away meanwhile
  }
}

/** Bits set in a dotted IPv4 or colon IPv6 netmask, as qemu-ga counts the prefix. */
export function prefixLength(netmask: string): number {
  let bits = 0;
  if (netmask.includes(".")) {
    for (const part of netmask.split(".")) bits += popcount(Number(part));
    return bits;
  }
  const [head = "", tail = ""] = netmask.split("::");
  for (const group of [...head.split(":"), ...tail.split(":")]) {
    if (group !== "") bits += popcount(parseInt(group, 16));
  }
  return bits;
}

function popcount(value: number): number {
  let bits = 0;
  for (let v = value; v > 0; v >>= 1) bits += v & 1;
  return bits;
}

/**
 * `guest-network-get-interfaces`: interfaces in index order, then any further names getifaddrs
 * gives (IPv4 alias labels such as `eth0:1`). Counters only for interfaces with an address, as
 * qemu-ga.
 */
export function guestNetworkInterfaces(
  sources: NetworkSources = SYSTEM_NETWORK_SOURCES,
): GuestNetworkInterface[] {
  const devices = sources.netDev();
  const order = devices.map((device, position) => ({
    device,
    position,
    index: sources.ifindex(device.name) ?? Number.MAX_SAFE_INTEGER,
  })).sort((a, b) => a.index - b.index || a.position - b.position);
  const interfaces = new Map<string, GuestNetworkInterface>();
  const add = (name: string): GuestNetworkInterface => {
    let entry = interfaces.get(name);
    if (entry === undefined) {
      // An alias label shares its device's address (the kernel strips ":N" for SIOCGIFHWADDR).
      const address = sources.address(name.split(":")[0]!);
      entry = { name };
      if (address !== undefined) entry["hardware-address"] = hardwareAddress(address);
      interfaces.set(name, entry);
    }
    return entry;
  };
  for (const { device } of order) add(device.name);
  const statistics = new Map(devices.map((device) => [device.name, device.statistics]));
  for (const info of sources.addresses()) {
    const entry = add(info.name);
    (entry["ip-addresses"] ??= []).push({
      "ip-address": info.address,
      "ip-address-type": info.family === "IPv4" ? "ipv4" : "ipv6",
      prefix: prefixLength(info.netmask),
    });
    const counters = statistics.get(info.name);
    if (counters !== undefined) entry.statistics = counters;
  }
  return [...interfaces.values()];
}
