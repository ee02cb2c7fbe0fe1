/**
 * Disk snapshots of a lab guest and their checks outside the guest: `virsh snapshot-create-as
 * --disk-only --atomic [--quiesce]` onto a new qcow2 file (the image the guest wrote to until then
 * becomes the snapshot), a raw copy of that image's backing chain (`qemu-img convert -U`: it is
 * read-only from then on), read-only `fsck`s of the copy, a MariaDB started on a copy of its data
 * directory (on the host, private datadir and socket, no network), and `virsh blockcommit --active
 * --pivot --shallow` to merge the snapshot file back into the per-run overlay (never further down:
 * the chain's bottom is shared with nothing, but --shallow keeps even that untouched).
 *
 * @module
 */

import { join } from "node:path";
import { type ImageCheck } from "../../_util/snapshot.ts";
import { startMariaDb } from "../../_util/mariadb.ts";
import { loopMount } from "./disk.ts";
import type { Guest } from "./guest.ts";
import { output, run, secondsSince } from "./proc.ts";

/** The guest's MariaDB sizes (image/rootfs/etc/mysql/mariadb.conf.d/90-lab.cnf). */
const GUEST_MARIADB_ARGS = ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M"];

/** What `snapshot-create-as` did. */
export interface Snapshot {
  /** The image that became the snapshot (the domain's disk before; its chain is the content). */
  image: string;
  /** The new top of the chain the domain writes to now. */
  top: string;
  seconds: number;
}

/** Takes a disk-only snapshot of vda onto `<dir>/<name>.qcow2`. */
export async function takeSnapshot(
  guest: Guest,
  name: string,
  quiesce: boolean,
): Promise<Snapshot> {
  const top = join(guest.dir, `${name}.qcow2`);
  const start = performance.now();
  const result = await guest.virsh([
    "snapshot-create-as",
    guest.name,
    name,
    "--disk-only",
    "--atomic",
    ...(quiesce ? ["--quiesce"] : []),
    "--no-metadata",
    "--diskspec",
    `vda,file=${top}`,
  ], 600_000);
  const seconds = secondsSince(start);
  if (result.code !== 0) {
    throw new Error(
      `snapshot-create-as ${quiesce ? "--quiesce " : ""}failed: ${
        (result.stderr + result.stdout).trim()
      }`,
    );
  }
  return { image: guest.disk.overlay, top, seconds };
}

/** Merges the snapshot's top file back into the overlay and pivots the domain to it. */
export async function commitSnapshot(guest: Guest, snapshot: Snapshot): Promise<void> {
  const result = await guest.virsh(
    ["blockcommit", guest.name, "vda", "--active", "--pivot", "--shallow"],
    600_000,
  );
  if (result.code !== 0) {
    throw new Error(`blockcommit failed: ${(result.stderr + result.stdout).trim()}`);
  }
  const source = await output("virsh", ["-c", "qemu:///system", "domblklist", guest.name]);
  if (!source.includes(snapshot.image)) {
    throw new Error(`vda is not back on ${snapshot.image}:\n${source}`);
  }
  await Deno.remove(snapshot.top);
}

/** What the host found in a snapshot. */
export interface SnapshotContent {
  /**
   * The filesystem checks: `quick` (`fsck -n`), `state` and `features` of the untouched copy;
   * `full` (`e2fsck -f -n`) once the kernel has mounted the copy (and unmounted it again).
   */
  check: ImageCheck;
  /**
   * `e2fsck -f -n` of the untouched copy. A snapshot of a mounted filesystem holds the orphan list
   * (files deleted while still open, e.g. MariaDB's temporary files); the kernel releases those
   * when it mounts the filesystem, e2fsck -n only reports them.
   */
  untouched: { code: number; output: string };
  /** mariadbd started on a copy of the data directory. */
  started: boolean;
  /** [ERROR] lines of its error log (all lines if it did not start). */
  errors: string[];
  /** Whether InnoDB ran a crash recovery. */
  crashRecovery: boolean;
  /** Rows of lab.t, and their smallest and largest id. */
  rows: number;
  minId: number;
  maxId: number;
}

/**
 * Reads a snapshot outside the guest: a raw copy of its chain; read-only checks of the copy; a
 * loop mount of the copy (as a restored guest's boot would mount it) to copy the MariaDB data
 * directory out; a full check after that mount; then MariaDB on the data directory's copy.
 */
export async function inspectSnapshot(
  snapshot: Snapshot,
  workDir: string,
): Promise<SnapshotContent> {
  const raw = join(workDir, "snapshot.raw");
  await run("qemu-img", ["convert", "-U", "-f", "qcow2", "-O", "raw", snapshot.image, raw], {
    timeoutMs: 900_000,
  });
  try {
    const untouched = await checkFilesystem(raw);
    const datadir = join(workDir, "mysql");
    {
      await using mount = await loopMount(raw, join(workDir, "mnt"));
      await run("cp", ["-a", join(mount.mountPoint, "var/lib/mysql"), datadir]);
    }
    await Deno.remove(join(workDir, "mnt"));
    const full = await exec("e2fsck", ["-f", "-n", raw]);
    try {
      return {
        check: { ...untouched, full },
        untouched: untouched.full,
        ...await startOnCopy(datadir),
      };
    } finally {
      await Deno.remove(datadir, { recursive: true });
    }
  } finally {
    await Deno.remove(raw);
  }
}

async function exec(command: string, args: string[]): Promise<{ code: number; output: string }> {
  const result = await run(command, args, { allowFailure: true, timeoutMs: 600_000 });
  return { code: result.code, output: (result.stdout + result.stderr).trim() };
}

function field(header: string, name: string): string {
  const line = header.split("\n").find((l) => l.startsWith(`${name}:`));
  return line === undefined ? "" : line.slice(name.length + 1).trim();
}

/** The read-only checks of tests/_util/snapshot.ts, on the raw copy (not mounted). */
async function checkFilesystem(raw: string): Promise<ImageCheck> {
  const quick = await exec("fsck", ["-n", raw]);
  const full = await exec("e2fsck", ["-f", "-n", raw]);
  const header = await output("dumpe2fs", ["-h", raw]);
  return {
    quick,
    full,
    state: field(header, "Filesystem state"),
    features: field(header, "Filesystem features").split(/\s+/).filter((f) => f !== ""),
  };
}

async function startOnCopy(datadir: string): Promise<Omit<SnapshotContent, "check" | "untouched">> {
  await run("chown", ["-R", "mysql:mysql", datadir]);
  let server;
  try {
    server = await startMariaDb(datadir, { initialize: false, serverArgs: GUEST_MARIADB_ARGS });
  } catch (err) {
    const text = String(err instanceof Error ? err.message : err);
    return {
      started: false,
      errors: text.split("\n"),
      crashRecovery: false,
      rows: 0,
      minId: 0,
      maxId: 0,
    };
  }
  try {
    const [rows, minId, maxId] = (await server.query(
      "SELECT COUNT(*), COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM lab.t",
    )).split("\t").map(Number);
    const log = await server.errorLog();
    return {
      started: true,
      errors: log.split("\n").filter((line) => line.includes("[ERROR]")),
      crashRecovery: /crash recovery/i.test(log),
      rows: rows ?? 0,
      minId: minId ?? 0,
      maxId: maxId ?? 0,
    };
  } finally {
    await server.stop();
  }
}
