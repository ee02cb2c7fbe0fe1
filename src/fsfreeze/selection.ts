/**
 * Which mounts a freeze or thaw touches: qemu-ga's selection (mountinfo.ts), then our exclusions,
 * then the freeze scope — the configured scope intersected with the agent's Deno read permission,
 * checked before any FFI `open` (docs/design.md #8) — then the host's `mountpoints`
 * filter; and the freeze waves of what is left (ordering.ts).
 *
 * The mount table is read through a small {@link MountTable} (the real one reads
 * /proc/self/mountinfo and sysfs through libc) only when the kernel says it may have changed, and
 * the work after reading it is done again only when its text changed: a guest's mounts rarely
 * change between two freezes.
 *
 * @module
 */

import { freezeWaves } from "./ordering.ts";
import type { BlockTopology } from "./ordering.ts";
import {
  applyExcludes,
  type MountEntry,
  parseMountinfo,
  selectFreezable,
  type StatBlockDevice,
} from "./mountinfo.ts";
import type { MountReport } from "./report.ts";

/** The mounts of one operation. */
export interface Selection {
  /** Mounts to act on, in mountinfo order. */
  mounts: MountEntry[];
  /** Freeze waves of mount points (dependents first); thaw walks them reversed. */
  waves: string[][];
  /** Mounts left out, with the reason (reported, and logged by the caller). */
  skipped: MountReport[];
}

/** What the selection reads (the real one: mountinfo.ts, topology.ts, Deno's permissions). */
export interface MountTable {
  /** The text of /proc/self/mountinfo. @throws when it cannot be read */
  readMountinfo(): string;
  /**
   * Whether the table may have changed since the previous call (true the first time); called
   * before each read. Absent: the text is read and compared every time.
   */
  mayHaveChanged?(): boolean;
  statBlockDevice: StatBlockDevice;
  topology(): BlockTopology;
  /** Whether the agent's read permission covers `path`. */
  mayRead(path: string): boolean;
}

/** What of the configuration the selection uses. */
export interface SelectionConfig {
  fsfreezeExclude: readonly string[];
  fsfreezeScope: readonly string[];
}

/** Whether `path` is `base` or below it. */
export function isUnder(path: string, base: string): boolean {
  if (base === "/") return path.startsWith("/");
  const prefix = base.endsWith("/") ? base : `${base}/`;
  return path === base.replace(/\/$/, "") || path.startsWith(prefix);
}

/** Why the agent may not freeze `mountPoint`, or `undefined` when it may. */
export function scopeRefusal(
  mountPoint: string,
  scope: readonly string[],
  mayRead: (path: string) => boolean,
): string | undefined {
  if (!scope.some((base) => isUnder(mountPoint, base))) return "outside fsfreeze-scope";
  if (!mayRead(mountPoint)) return "outside the agent's read permission";
  return undefined;
}

/** Selects mounts, remembering the last mount table's result. */
export class MountSelector {
  readonly #config: SelectionConfig;
  readonly #table: MountTable;
  #cached: { text: string; all: Selection } | undefined;

  constructor(config: SelectionConfig, table: MountTable) {
    this.#config = config;
    this.#table = table;
  }

  /**
   * The mounts for a freeze (`requested` = freeze-list's `mountpoints`, matched by exact string
   * as qemu-ga) or, with `requested` undefined, for freeze-all and thaw.
   * @throws {Error} when the mount table cannot be read
   */
  select(requested?: readonly string[]): Selection {
    const all = this.#all();
    if (requested === undefined) return all;
    return narrow(all, requested);
  }

  #all(): Selection {
    const changed = this.#table.mayHaveChanged?.() ?? true;
    const cached = this.#cached;
    if (!changed && cached !== undefined) return cached.all;
    this.#cached = undefined; // until the table has been read and worked out again
    const text = this.#table.readMountinfo();
    const all = cached?.text === text ? cached.all : this.#compute(text);
    this.#cached = { text, all };
    return all;
  }

  #compute(text: string): Selection {
    const candidates = selectFreezable(parseMountinfo(text), this.#table.statBlockDevice);
    const { kept, skipped: excluded } = applyExcludes(candidates, this.#config.fsfreezeExclude);
    const skipped: MountReport[] = excluded.map(({ mount, reason }) => ({
      ...describe(mount),
      status: "skipped",
      reason,
    }));
    const mounts: MountEntry[] = [];
    for (const mount of kept) {
      const refusal = scopeRefusal(
        mount.mountPoint,
        this.#config.fsfreezeScope,
        this.#table.mayRead,
      );
      if (refusal === undefined) mounts.push(mount);
      else skipped.push({ ...describe(mount), status: "skipped", reason: refusal });
    }
    const waves = freezeWaves(mounts, this.#table.topology()).map((wave) =>
      wave.map((m) => m.mountPoint)
    );
    return { mounts, waves, skipped };
  }
}

/** The part of `all` that `requested` names; requested paths that are not candidates reported. */
function narrow(all: Selection, requested: readonly string[]): Selection {
  const wanted = new Set(requested);
  const mounts = all.mounts.filter((m) => wanted.has(m.mountPoint));
  const waves = all.waves
    .map((wave) => wave.filter((mountPoint) => wanted.has(mountPoint)))
    .filter((wave) => wave.length > 0);
  const skipped = all.skipped.filter((m) => wanted.has(m.mountPoint));
  for (const path of wanted) {
    const known = mounts.some((m) => m.mountPoint === path) ||
      skipped.some((m) => m.mountPoint === path);
    // qemu-ga ignores these silently; the report says why nothing happened.
    if (!known) {
      skipped.push({ mountPoint: path, status: "skipped", reason: "not a freezable mount point" });
    }
  }
  return { mounts, waves, skipped };
}

function describe(mount: MountEntry): { mountPoint: string; fsType: string } {
  return { mountPoint: mount.mountPoint, fsType: mount.fsType };
}
