/**
 * The real {@link BlockTopology}: how block devices stack, read from sysfs. The ordering policy
 * (ordering.ts) takes it as an argument; tests pass fixtures.
 *
 * @module
 */

import { major, minor, readDir, readTextFileRaw, realpath, stat } from "../linux/files.ts";
import type { BlockTopology, DeviceId } from "./ordering.ts";

/**
 * The real topology, read from sysfs (`/sys/dev/block/M:m/{loop/backing_file,slaves,partition}`)
 * and `stat()`. Errors read as "unknown". `sysDevBlock` points elsewhere only in tests.
 *
 * Everything goes through libc: Deno refuses its own fs APIs under /sys to anything but
 * `--allow-all`, and a loop device's backing file may lie outside the agent's read permission
 * (only its device number is wanted, never its contents).
 */
export function sysfsTopology(sysDevBlock = "/sys/dev/block"): BlockTopology {
  return {
    loopBackingFile(device) {
      const text = readOrUndefined(`${sysDevBlock}/${device}/loop/backing_file`);
      // The kernel prints the path and a newline; a path ending in a newline is beyond repair.
      return text === undefined || text === "\n" ? undefined : text.replace(/\n$/, "");
    },
    slaves(device) {
      const directory = `${sysDevBlock}/${device}/slaves`;
      const slaves: DeviceId[] = [];
      try {
        for (const entry of readDir(directory)) {
          // Each entry links to the slave's own sysfs directory, whose `dev` names it.
          const id = readOrUndefined(`${directory}/${entry.name}/dev`)?.trim();
          if (id) slaves.push(id);
        }
      } catch {
        // not stacked, or not readable: no edge
      }
      return slaves;
    },
    wholeDisk(device) {
      const path = `${sysDevBlock}/${device}`;
      if (readOrUndefined(`${path}/partition`) === undefined) return undefined;
      try {
        // A partition's sysfs directory sits inside its disk's directory.
        const real = realpath(path);
        return readOrUndefined(`${real.slice(0, real.lastIndexOf("/"))}/dev`)?.trim();
      } catch {
        return undefined;
      }
    },
    fileDevice(path) {
      try {
        const { dev } = stat(path);
        return `${major(dev)}:${minor(dev)}`;
      } catch {
        return undefined; // a deleted backing file
      }
    },
  };
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readTextFileRaw(path);
  } catch {
    return undefined;
  }
}
