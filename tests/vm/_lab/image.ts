/**
 * The lab's base guest image: Debian with systemd, udev, its own kernel and initramfs, MariaDB and
 * Debian's qemu-guest-agent, built by `image/build.sh` (mmdebstrap, then `mkfs.ext4 -d`) and cached
 * outside the checkout under a hash of every input: the script, the files it copies into the
 * guest (`image/rootfs/`), the package list, suite and mirrors. A second run reuses the image; a
 * change to any input builds a new one. Builds happen in a temp dir that is renamed into place,
 * so an interrupted build never leaves a half-built image under a valid key.
 *
 * The kernel is handed to QEMU uncompressed (`vmlinux`, extracted here from the guest's vmlinuz):
 * under TCG the compressed kernel spends minutes decompressing itself.
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { note, onExit, run, runSyncQuietly, secondsSince, shellQuote } from "./proc.ts";

const IMAGE_DIR = fileURLToPath(new URL("./image/", import.meta.url));
const BUILD_SCRIPT = join(IMAGE_DIR, "build.sh");
const ROOTFS_DIR = join(IMAGE_DIR, "rootfs");

/** Where built images live (outside the checkout, so CI caches can keep it). */
export const CACHE_ROOT = Deno.env.get("FSFREEZE_AGENT_VM_CACHE") ?? "/var/cache/fsfreeze-agent-vm";
const KEEP_IMAGES = 3;
const BUILD_TIMEOUT_MS = 40 * 60_000;

/** Everything the build script gets besides its own text and the rootfs files. */
export const IMAGE_INPUTS = {
  suite: "bookworm",
  mirror: "http://deb.debian.org/debian",
  securityMirror: "http://deb.debian.org/debian-security",
  hostname: "fsfa-lab-guest",
  diskSize: "4G",
  packages: [
    // boot: systemd as PID 1, udev (starts the agent on its port), the guest's own kernel
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "linux-image-amd64",
    "initramfs-tools",
    // the baseline agent, and the application under the write load
    "qemu-guest-agent",
    "mariadb-server",
    "mariadb-client",
    // what the scenarios run in the guest (ps, ip, fsfreeze is in util-linux)
    "procps",
    "iproute2",
    "psmisc",
    "e2fsprogs",
    // the small initramfs (image/rootfs/etc/initramfs-tools) is lz4-compressed
    "lz4",
  ],
} as const;

/** A built base image. */
export interface BaseImage {
  /** The cache entry's directory. */
  dir: string;
  key: string;
  /** ext4 root filesystem, no partition table (sparse raw file). */
  disk: string;
  vmlinux: string;
  initrd: string;
  /** Whether this run built it (false: taken from the cache). */
  built: boolean;
  /** Seconds the build took (0 when cached). */
  buildSeconds: number;
}

async function sha256Hex(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every regular file under `dir`, as paths relative to it, sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (current: string): Promise<void> => {
    for await (const entry of Deno.readDir(current)) {
      const path = join(current, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile) files.push(relative(dir, path));
      else throw new Error(`${path}: only regular files and directories belong in rootfs/`);
    }
  };
  await walk(dir);
  return files.sort();
}

/** The cache key: a hash of the script, the rootfs files (path, mode, content) and the inputs. */
export async function imageKey(): Promise<string> {
  const parts: string[] = [JSON.stringify(IMAGE_INPUTS), await Deno.readTextFile(BUILD_SCRIPT)];
  for (const file of await listFiles(ROOTFS_DIR)) {
    const path = join(ROOTFS_DIR, file);
    const mode = ((await Deno.stat(path)).mode ?? 0) & 0o777;
    const content = await sha256Hex(await Deno.readFile(path));
    parts.push(`${file} ${mode.toString(8)} ${content}`);
  }
  return (await sha256Hex(new TextEncoder().encode(parts.join("\n")))).slice(0, 16);
}

function entryFiles(dir: string, key: string, built: boolean, buildSeconds: number): BaseImage {
  return {
    dir,
    key,
    disk: join(dir, "disk.raw"),
    vmlinux: join(dir, "vmlinux"),
    initrd: join(dir, "initrd.img"),
    built,
    buildSeconds,
  };
}

/**
 * The base image for the current inputs: from the cache, or built now (about 3-5 minutes).
 * Concurrent callers on one machine wait for each other (a lock file in the cache).
 */
export async function ensureBaseImage(): Promise<BaseImage> {
  await Deno.mkdir(CACHE_ROOT, { recursive: true });
  const key = await imageKey();
  const dir = join(CACHE_ROOT, key);
  using lock = await Deno.open(join(CACHE_ROOT, ".lock"), { create: true, write: true });
  await lock.lock(true);
  try {
    await removeStaleBuilds();
    if (await isComplete(dir)) {
      const now = new Date();
      await Deno.utime(join(dir, "manifest.json"), now, now);
      return entryFiles(dir, key, false, 0);
    }
    const start = performance.now();
    await build(dir, key);
    await pruneOldImages(key);
    return entryFiles(dir, key, true, secondsSince(start));
  } finally {
    await lock.unlock();
  }
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    await Deno.stat(join(dir, "manifest.json"));
    return true;
  } catch {
    return false;
  }
}

async function build(dir: string, key: string): Promise<void> {
  const tmp = await Deno.makeTempDir({ dir: CACHE_ROOT, prefix: `.build-${key}-` });
  const unregister = onExit(`image build ${tmp}`, removeBuildDirCommand(tmp));
  note(`building the guest image ${key} in ${tmp} (mmdebstrap ${IMAGE_INPUTS.suite}; minutes)`);
  try {
    const start = performance.now();
    const log = join(tmp, "build.log");
    const result = await run("bash", [
      "-c",
      'exec >"$1" 2>&1; bash "$2" "$3" "$4"',
      "build",
      log,
      BUILD_SCRIPT,
      tmp,
      ROOTFS_DIR,
    ], {
      timeoutMs: BUILD_TIMEOUT_MS,
      allowFailure: true,
      env: buildEnv(),
    });
    if (result.code !== 0 || result.signal !== null) {
      const tail = (await Deno.readTextFile(log).catch(() => "")).slice(-4000);
      throw new Error(`the guest image build failed (${result.signal ?? result.code}):\n${tail}`);
    }
    await extractVmlinux(join(tmp, "vmlinuz"), join(tmp, "vmlinux"));
    await Deno.remove(join(tmp, "vmlinuz"));
    const manifest = {
      key,
      inputs: IMAGE_INPUTS,
      builtAt: new Date().toISOString(),
      buildSeconds: secondsSince(start),
    };
    await Deno.writeTextFile(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
    await Deno.rename(tmp, dir);
    note(`built the guest image ${key} in ${manifest.buildSeconds} s`);
  } finally {
    await removeBuildDir(tmp);
    unregister();
  }
}

function buildEnv(): Record<string, string> {
  return {
    LAB_SUITE: IMAGE_INPUTS.suite,
    LAB_MIRROR: IMAGE_INPUTS.mirror,
    LAB_SECURITY_MIRROR: IMAGE_INPUTS.securityMirror,
    LAB_PACKAGES: IMAGE_INPUTS.packages.join(" "),
    LAB_HOSTNAME: IMAGE_INPUTS.hostname,
    LAB_DISK_SIZE: IMAGE_INPUTS.diskSize,
  };
}

/** Mount points at or under `dir` in this process's mount namespace, deepest first. */
function mountsUnder(dir: string): string[] {
  const mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
  const points = mountinfo.split("\n").map((line) => line.split(" ")[4] ?? "").filter((point) =>
    point === dir || point.startsWith(`${dir}/`)
  );
  return points.sort((a, b) => b.length - a.length);
}

/**
 * Removes a build dir, but never through a mount: mmdebstrap mounts /proc, /sys and /dev into the
 * root it builds, and deleting through those would delete the host's files.
 */
function removeBuildDirSync(dir: string): void {
  for (const point of mountsUnder(dir)) runSyncQuietly("umount", ["-l", point]);
  const left = mountsUnder(dir);
  if (left.length > 0) {
    note(`NOT removing ${dir}: still mounted there: ${left.join(", ")}`);
    return;
  }
  runSyncQuietly("rm", ["-rf", "--one-file-system", dir]);
}

/** {@link removeBuildDirSync} as a shell command, for the exit cleanups. */
function removeBuildDirCommand(dir: string): string {
  const under = `awk -v d=${shellQuote(dir)} '$5 == d || index($5, d "/") == 1 { print $5 }' ` +
    "/proc/self/mountinfo";
  return `for m in $(${under} | sort -r); do umount -l "$m"; done; ` +
    `[ -z "$(${under})" ] && rm -rf --one-file-system ${shellQuote(dir)}`;
}

async function removeBuildDir(dir: string): Promise<void> {
  try {
    await Deno.stat(dir);
  } catch {
    return; // renamed into place
  }
  removeBuildDirSync(dir);
}

/** Build dirs of interrupted runs (only ever one at a time runs: we hold the lock). */
async function removeStaleBuilds(): Promise<void> {
  for await (const entry of Deno.readDir(CACHE_ROOT)) {
    if (entry.isDirectory && entry.name.startsWith(".build-")) {
      note(`removing the interrupted build ${entry.name}`);
      removeBuildDirSync(join(CACHE_ROOT, entry.name));
    }
  }
}

/** Keeps the most recently used images (by their manifest's time), removes the rest. */
async function pruneOldImages(current: string): Promise<void> {
  const images: { name: string; used: number }[] = [];
  for await (const entry of Deno.readDir(CACHE_ROOT)) {
    if (!entry.isDirectory || entry.name.startsWith(".") || entry.name === current) continue;
    const manifest = join(CACHE_ROOT, entry.name, "manifest.json");
    const used = await Deno.stat(manifest).then((s) => s.mtime?.getTime() ?? 0, () => 0);
    images.push({ name: entry.name, used });
  }
  images.sort((a, b) => b.used - a.used);
  for (const image of images.slice(KEEP_IMAGES - 1)) {
    note(`removing the old guest image ${image.name}`);
    removeBuildDirSync(join(CACHE_ROOT, image.name));
  }
}

const COMPRESSED_KERNEL_FORMATS = [
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], command: "xz -dc" },
  { magic: [0x28, 0xb5, 0x2f, 0xfd], command: "zstd -dcq" },
  { magic: [0x1f, 0x8b, 0x08], command: "gzip -dc" },
];

function indexOfBytes(haystack: Uint8Array, needle: readonly number[], from = 0): number {
  outer: for (let i = from; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

async function isElf(path: string): Promise<boolean> {
  using file = await Deno.open(path);
  const head = new Uint8Array(4);
  const read = await file.read(head);
  return read === 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}

/**
 * Extracts the ELF kernel from a bzImage: tries each compressed payload it finds (by magic, as
 * the kernel's scripts/extract-vmlinux does) until one decompresses to an ELF file. The
 * decompressor's complaint about the data after the payload is expected and ignored.
 */
export async function extractVmlinux(vmlinuz: string, vmlinux: string): Promise<void> {
  const data = await Deno.readFile(vmlinuz);
  for (const format of COMPRESSED_KERNEL_FORMATS) {
    for (
      let at = indexOfBytes(data, format.magic);
      at >= 0;
      at = indexOfBytes(data, format.magic, at + 1)
    ) {
      await run("bash", [
        "-c",
        `tail -c +$(($1 + 1)) "$2" | ${format.command} >"$3" 2>/dev/null; true`,
        "extract",
        String(at),
        vmlinuz,
        vmlinux,
      ]);
      if (await isElf(vmlinux)) return;
    }
  }
  await Deno.remove(vmlinux).catch(() => {});
  throw new Error(`no xz, zstd or gzip payload in ${vmlinuz} decompresses to an ELF kernel`);
}

/** The directory of a base image's files (for messages). */
export function describeImage(image: BaseImage): string {
  const how = image.built ? `built in ${image.buildSeconds} s` : "cached";
  return `${dirname(image.disk)} (${how})`;
}
