/**
 * Tests of src/commands/system/network.ts: the pure parts with fixtures, the assembly with
 * stand-in sources for cases this machine does not have (alias labels, interfaces that vanish),
 * and the real sources against `ip -j link` and `/proc/net/dev` as cat reads it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  guestNetworkInterfaces,
  hardwareAddress,
  type NetworkSources,
  parseNetDev,
  prefixLength,
  SYSTEM_NETWORK_SOURCES,
} from "../../../src/commands/system/network.ts";

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   15597     249    0    0    0     0          0         0    15597     249    0    0    0     0       0          0
  eth0: 18446744073709551615 1582 1 2 3 4 5 6 93662 1180 7 8 9 10 11 12
  bad0: 1 2 3
`;

Deno.test("parseNetDev() reads qemu-ga's eight counters as uint64 and skips malformed lines", () => {
  assert.deepEqual(parseNetDev(NET_DEV), [
    {
      name: "lo",
      statistics: {
        "rx-bytes": 15597n,
        "rx-packets": 249n,
        "rx-errs": 0n,
        "rx-dropped": 0n,
        "tx-bytes": 15597n,
        "tx-packets": 249n,
        "tx-errs": 0n,
        "tx-dropped": 0n,
      },
    },
    {
      name: "eth0",
      statistics: {
        "rx-bytes": 18446744073709551615n,
        "rx-packets": 1582n,
        "rx-errs": 1n,
        "rx-dropped": 2n,
        "tx-bytes": 93662n,
        "tx-packets": 1180n,
        "tx-errs": 7n,
        "tx-dropped": 8n,
      },
    },
  ]);
});

Deno.test("hardwareAddress() gives six bytes as SIOCGIFHWADDR does", () => {
  assert.equal(hardwareAddress("02:FC:00:00:00:01\n"), "02:fc:00:00:00:01");
  assert.equal(hardwareAddress("\n"), "00:00:00:00:00:00"); // tun: no link-layer address
  assert.equal(hardwareAddress("0a:0b:0c:0d"), "0a:0b:0c:0d:00:00");
  // InfiniBand's 20-byte addresses: qemu-ga copies the first six.
  assert.equal(
    hardwareAddress("80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:b1:c2"),
    "80:00:00:48:fe:80",
  );
});

Deno.test("prefixLength() counts the set bits of IPv4 and IPv6 netmasks", () => {
  assert.equal(prefixLength("255.255.255.0"), 24);
  assert.equal(prefixLength("255.0.0.0"), 8);
  assert.equal(prefixLength("0.0.0.0"), 0);
  assert.equal(prefixLength("ffff:ffff:ffff:ffff::"), 64);
  assert.equal(prefixLength("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 128);
  assert.equal(prefixLength("ffff:ff00::"), 24);
  assert.equal(prefixLength("::"), 0);
});

function address(
  name: string,
  family: "IPv4" | "IPv6",
  value: string,
  netmask: string,
): Deno.NetworkInterfaceInfo {
  return { name, family, address: value, netmask, scopeid: null, cidr: "", mac: "" };
}

const STANDIN: NetworkSources = {
  netDev: () => parseNetDev(NET_DEV.replace("  bad0: 1 2 3\n", "  down0: " + "0 ".repeat(16))),
  ifindex: (name) => ({ lo: 1, eth0: 3, down0: 2 } as Record<string, number>)[name],
  address: (name) =>
    ({ lo: "00:00:00:00:00:00\n", eth0: "52:54:00:12:34:56\n" } as Record<string, string>)[name],
  addresses: () => [
    address("lo", "IPv4", "127.0.0.1", "255.0.0.0"),
    address("eth0", "IPv4", "192.0.2.2", "255.255.255.0"),
    address("eth0:1", "IPv4", "192.0.2.3", "255.255.255.255"),
    address("lo", "IPv6", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    address("eth0", "IPv6", "fe80::5054:ff:fe12:3456", "ffff:ffff:ffff:ffff::"),
  ],
};

Deno.test("guestNetworkInterfaces() orders by index, adds aliases, and counts only addressed ones", () => {
  const interfaces = guestNetworkInterfaces(STANDIN);
  assert.deepEqual(interfaces.map((i) => i.name), ["lo", "down0", "eth0", "eth0:1"]);
  const [lo, down0, eth0, alias] = interfaces;
  assert.deepEqual(lo?.["ip-addresses"], [
    { "ip-address": "127.0.0.1", "ip-address-type": "ipv4", prefix: 8 },
    { "ip-address": "::1", "ip-address-type": "ipv6", prefix: 128 },
  ]);
  assert.equal(lo?.statistics?.["rx-packets"], 249n);
  // No address: no counters and no ip-addresses member; no sysfs address: no hardware-address.
  assert.deepEqual(down0, { name: "down0" });
  assert.equal(eth0?.["hardware-address"], "52:54:00:12:34:56");
  assert.equal(eth0?.["ip-addresses"]?.length, 2);
  assert.equal(eth0?.statistics?.["tx-dropped"], 8n);
  // An alias label is its own entry with its device's address and no counters of its own.
  assert.deepEqual(alias, {
    name: "eth0:1",
    "hardware-address": "52:54:00:12:34:56",
    "ip-addresses": [{ "ip-address": "192.0.2.3", "ip-address-type": "ipv4", prefix: 32 }],
  });
});

Deno.test("SYSTEM_NETWORK_SOURCES read the interfaces ip -j link lists", async () => {
  const output = await new Deno.Command("ip", { args: ["-j", "link"] }).output();
  const links = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    ifindex: number;
    ifname: string;
    address?: string;
  }[];
  const netDev = SYSTEM_NETWORK_SOURCES.netDev();
  assert.deepEqual(netDev.map((d) => d.name).sort(), links.map((l) => l.ifname).sort());
  for (const link of links) {
    assert.equal(SYSTEM_NETWORK_SOURCES.ifindex(link.ifname), link.ifindex);
    if (link.address !== undefined) {
      assert.equal(SYSTEM_NETWORK_SOURCES.address(link.ifname)?.trim(), link.address);
    }
  }
  assert.equal(SYSTEM_NETWORK_SOURCES.ifindex("no-such-interface"), undefined);
});
