/**
 * docs/protocol.md checklist item 13 against the real agent (spawned with the permission set the binary carries):
 * `guest-info` lists KubeVirt's ten required commands enabled while thawed, and each of the
 * system commands returns a reply valid against the QAPI schema whose values agree with what
 * the system's own tools report (hostname, date, uname, the shell reading os-release, ip, who,
 * findmnt, stat).
 *
 * `guest-shutdown` is only ever sent with arguments that are refused before anything runs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { flagsForArgv, type QgaClient, spawnAgent } from "../../_util/agent.ts";
import {
  GuestAgentInfo,
  GuestFilesystemInfoList,
  GuestHostName,
  GuestLoadAverage,
  GuestNetworkInterfaceList,
  GuestOSInfo,
  GuestTimezone,
  GuestUserList,
  parseJsonExact,
  type QapiType,
  schemaErrors,
} from "./_schema.ts";

/** `requiredGuestAgentCommands` of kubevirt/kubevirt pkg/virt-handler/guestagent.go. */
const KUBEVIRT_REQUIRED = [
  "guest-ping",
  "guest-get-time",
  "guest-info",
  "guest-shutdown",
  "guest-network-get-interfaces",
  "guest-get-fsinfo",
  "guest-get-host-name",
  "guest-get-users",
  "guest-get-timezone",
  "guest-get-osinfo",
];

async function run(program: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, `${program} ${args.join(" ")}: ${text}`);
  return text;
}

/** Sends one command and returns `return`, checked against `type`. */
async function call(client: QgaClient, execute: string, type: QapiType): Promise<unknown> {
  await client.send(JSON.stringify({ execute }));
  const reply = parseJsonExact(await client.readLine()) as Record<string, unknown>;
  assert.ok("return" in reply, `${execute}: ${JSON.stringify(reply, bigintText)}`);
  assert.deepEqual(schemaErrors(reply.return, type), [], execute);
  return reply.return;
}

function bigintText(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

Deno.test("guest-info lists KubeVirt's required commands enabled while thawed (item 13)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const info = await call(client, "guest-info", GuestAgentInfo) as {
    supported_commands: { name: string; enabled: boolean; "success-response": boolean }[];
  };
  const byName = new Map(info.supported_commands.map((c) => [c.name, c]));
  for (const name of [...KUBEVIRT_REQUIRED, "guest-get-load"]) {
    assert.equal(byName.get(name)?.enabled, true, `${name} enabled`);
  }
  assert.equal(byName.get("guest-shutdown")?.["success-response"], false);
  assert.equal(byName.get("guest-get-osinfo")?.["success-response"], true);
});

Deno.test("guest-get-time returns int nanoseconds of the wall clock", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const before = BigInt(Date.now()) * 1_000_000n;
  const time = await call(client, "guest-get-time", "int") as bigint;
  const after = BigInt(Date.now()) * 1_000_000n;
  // Date.now() truncates to the millisecond: allow that much below.
  assert.ok(time >= before && time <= after + 1_000_000n, `${before} <= ${time} <= ${after}`);
});

Deno.test("guest-get-host-name, -timezone and -osinfo agree with hostname, date, uname and sh", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const host = await call(client, "guest-get-host-name", GuestHostName);
  assert.deepEqual(host, { "host-name": (await run("hostname")).trim() });

  const zone = await call(client, "guest-get-timezone", GuestTimezone);
  const [abbreviation, clock] = (await run("date", "+%Z %::z")).trim().split(" ");
  const [hours, minutes, seconds] = clock!.slice(1).split(":").map(Number);
  const offset = (clock!.startsWith("-") ? -1 : 1) * (hours! * 3600 + minutes! * 60 + seconds!);
  assert.deepEqual(zone, { zone: abbreviation, offset: BigInt(offset) });

  const os = await call(client, "guest-get-osinfo", GuestOSInfo) as Record<string, string>;
  assert.equal(os["kernel-release"], (await run("uname", "-r")).trim());
  assert.equal(os["kernel-version"], (await run("uname", "-v")).trim());
  assert.equal(os.machine, (await run("uname", "-m")).trim());
  // The shell is the reference reader of os-release(5).
  const keys = ["ID", "NAME", "PRETTY_NAME", "VERSION", "VERSION_ID", "VARIANT", "VARIANT_ID"];
  const script = ". /etc/os-release; " +
    keys.map((key) => `[ -z "\${${key}+set}" ] || printf '%s\\n' "${key}=$${key}"`).join("; ");
  const expected = Object.fromEntries(
    (await run("sh", "-c", script)).split("\n").filter((l) => l !== "").map((line) => {
      const [key, ...value] = line.split("=");
      return [key!.toLowerCase().replace("_", "-"), value.join("=")];
    }),
  );
  const fromOsRelease = Object.fromEntries(
    Object.entries(os).filter(([key]) => !key.startsWith("kernel-") && key !== "machine"),
  );
  assert.deepEqual(fromOsRelease, expected);
});

Deno.test("guest-network-get-interfaces agrees with ip -j addr", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const interfaces = await call(
    client,
    "guest-network-get-interfaces",
    GuestNetworkInterfaceList,
  ) as {
    name: string;
    "hardware-address"?: string;
    "ip-addresses"?: { "ip-address": string; prefix: bigint }[];
    statistics?: Record<string, bigint>;
  }[];
  const links = JSON.parse(await run("ip", "-j", "addr")) as {
    ifname: string;
    address?: string;
    addr_info: { local: string; prefixlen: number }[];
  }[];
  const byName = new Map(interfaces.map((i) => [i.name, i]));
  for (const link of links) {
    const entry = byName.get(link.ifname);
    assert.ok(entry, `${link.ifname} listed`);
    const mac = link.address?.length === 17 ? link.address : "00:00:00:00:00:00";
    assert.equal(entry["hardware-address"], mac, link.ifname);
    const addresses = (entry["ip-addresses"] ?? []).map((a) => `${a["ip-address"]}/${a.prefix}`);
    assert.deepEqual(
      addresses.sort(),
      link.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort(),
      link.ifname,
    );
    // qemu-ga reads the counters only for interfaces that have an address.
    assert.equal(entry.statistics !== undefined, addresses.length > 0, link.ifname);
  }
  assert.deepEqual([...byName.keys()].sort(), links.map((l) => l.ifname).sort());
});

Deno.test("guest-get-users agrees with who", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const users = await call(client, "guest-get-users", GuestUserList) as { user: string }[];
  const names = new Set(
    (await run("who")).split("\n").filter((l) => l !== "").map((l) => l.split(/\s+/)[0]!),
  );
  assert.deepEqual(users.map((u) => u.user).sort(), [...names].sort());
});

Deno.test("guest-get-fsinfo lists / as findmnt, lsblk and stat -f describe it", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const list = await call(client, "guest-get-fsinfo", GuestFilesystemInfoList) as {
    name: string;
    mountpoint: string;
    type: string;
    "used-bytes": bigint;
    "total-bytes": bigint;
    "total-bytes-privileged": bigint;
    disk: { dev?: string }[];
  }[];
  const root = list.find((fs) => fs.mountpoint === "/");
  assert.ok(root, "/ is listed");
  const [source, fstype] = (await run("findmnt", "-n", "-o", "SOURCE,FSTYPE", "/")).trim().split(
    /\s+/,
  );
  assert.equal(root.type, fstype);
  const kernelName = (await run("lsblk", "-dno", "KNAME", source!)).trim();
  assert.equal(root.name, kernelName);
  if (!kernelName.startsWith("dm-") && !kernelName.startsWith("md")) {
    assert.equal(root.disk[0]?.dev, `/dev/${kernelName}`);
  }
  const [blocks, blockSize] = (await run("stat", "-f", "-c", "%b %S", "/")).trim().split(" ");
  assert.equal(root["total-bytes-privileged"], BigInt(blocks!) * BigInt(blockSize!));
  assert.ok(root["used-bytes"] <= root["total-bytes"]);
  assert.ok(root["total-bytes"] <= root["total-bytes-privileged"]);
  // Only block-device mounts, never pseudo filesystems.
  for (const fs of list) assert.notEqual(fs.type, "tmpfs", fs.mountpoint);
});

Deno.test("guest-get-load returns /proc/loadavg's figures", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const sample = async (): Promise<string> =>
    (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  const before = await sample();
  const load = await call(client, "guest-get-load", GuestLoadAverage) as Record<string, number>;
  const after = await sample();
  // The kernel updates the figures every 5 s: the reply matches one of the two samples.
  const seen = [load.load1m, load.load5m, load.load15m].map((v) => Number(v).toFixed(2)).join(" ");
  assert.ok(seen === before || seen === after, `${seen} vs ${before} / ${after}`);
});

Deno.test("guest-shutdown refuses a bad mode with qemu-ga's texts and runs nothing", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const cases: [unknown, string][] = [
    [{ mode: "bogus" }, "mode is invalid (valid values are: halt|powerdown|reboot"],
    [{ mode: "Reboot" }, "mode is invalid (valid values are: halt|powerdown|reboot"],
    [{ mode: 1 }, "Invalid parameter type for 'mode', expected: string"],
    [{ mode: "halt", delay: 5 }, "Parameter 'delay' is unexpected"],
  ];
  for (const [args, desc] of cases) {
    await client.send(JSON.stringify({ execute: "guest-shutdown", arguments: args, id: 7 }));
    assert.deepEqual(JSON.parse(await client.readLine()), {
      error: { class: "GenericError", desc },
      id: 7,
    });
  }
  assert.doesNotMatch(agent.stderr, /guest-shutdown called/);
});

Deno.test("the agent's permission set grants exactly what the system commands use", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    const argv = [
      "-m",
      "unix-listen",
      "-p",
      `${dir}/qga.sock`,
      "-t",
      dir,
      `--fsfreeze-scope=${dir}`,
    ];
    const probe = `${dir}/probe.ts`;
    const descriptors: [string, Deno.PermissionDescriptor, "granted" | "denied"][] = [
      ["run shutdown", { name: "run", command: "/sbin/shutdown" }, "granted"],
      ["run systemctl", { name: "run", command: "/bin/systemctl" }, "denied"],
      ["sys hostname", { name: "sys", kind: "hostname" }, "granted"],
      ["sys networkInterfaces", { name: "sys", kind: "networkInterfaces" }, "granted"],
      ["sys osRelease", { name: "sys", kind: "osRelease" }, "denied"],
      ["read os-release", { name: "read", path: "/etc/os-release" }, "granted"],
      ["read lib os-release", { name: "read", path: "/usr/lib/os-release" }, "granted"],
      ["read localtime", { name: "read", path: "/etc/localtime" }, "granted"],
      ["read utmp", { name: "read", path: "/var/run/utmp" }, "granted"],
      ["read udev", { name: "read", path: "/run/udev/data/b254:0" }, "granted"],
      ["read passwd", { name: "read", path: "/etc/passwd" }, "denied"],
    ];
    await Deno.writeTextFile(
      probe,
      `const d = ${JSON.stringify(descriptors.map(([, d]) => d))};\n` +
        "console.log(JSON.stringify(d.map((x) => Deno.permissions.querySync(x).state)));\n",
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...flagsForArgv(argv, { QGA_CONF: `${dir}/none.conf` }), probe],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    const states = JSON.parse(new TextDecoder().decode(output.stdout)) as string[];
    const expectedStates = descriptors.map(([what, , state]) => `${what}: ${state}`);
    // "prompt" under --no-prompt is a denial.
    const actual = descriptors.map(([what], i) =>
      `${what}: ${states[i] === "prompt" ? "denied" : states[i]}`
    );
    assert.deepEqual(actual, expectedStates);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
