/**
 * Which mounts a freeze or thaw touches: qemu-ga's selection (mountinfo.ts), then our exclusions,
 * then the freeze scope — the configured scope intersected with the agent's Deno read permission,
 * checked before any FFI `open` (docs/design.md #8) — then the host's `mountpoints` filter.
 *
 * @module
 */

import type { Config } from "../config/mod.ts";
import { freezeWaves } from "./deps.ts";
import { applyExcludes, type MountEntry, readMountinfo, selectFreezable } from "./mountinfo.ts";
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

/** Whether `path` is `base` or below it. */
export function isUnder(path: string, base: string): boolean {
  if (base === "/") return path.startsWith("/");
  const prefix = base.endsWith("/") ? base : `${base}/`;
  return path === base.replace(/\/$/, "") || path.startsWith(prefix);
}

/** Whether the agent may freeze `mountPoint`: inside the configured scope and readable. */
export function scopeRefusal(mountPoint: string, scope: readonly string[]): string | undefined {
  if (!scope.some((base) => isUnder(mountPoint, base))) return "outside fsfreeze-scope";
  const permission = Deno.permissions.querySync({ name: "read", path: mountPoint });
  if (permission.state !== "granted") return "outside the agent's read permission";
  return undefined;
}

/**
 * Selects the mounts for a freeze (`requested` = freeze-list's `mountpoints`, matched by exact
 * string as qemu-ga) or, with `requested` undefined, for freeze-all and thaw.
 * @throws {Error} when /proc/self/mountinfo cannot be read
 */
export function selectMounts(config: Config, requested?: readonly string[]): Selection {
  const candidates = selectFreezable(readMountinfo());
  const wanted = requested === undefined ? undefined : new Set(requested);
  const matching = wanted ? candidates.filter((m) => wanted.has(m.mountPoint)) : candidates;
  const { kept, skipped: excluded } = applyExcludes(matching, config.fsfreezeExclude);
  const skipped: MountReport[] = excluded.map(({ mount, reason }) => ({
    ...describe(mount),
    status: "skipped",
    reason,
  }));
  const mounts: MountEntry[] = [];
  for (const mount of kept) {
    const refusal = scopeRefusal(mount.mountPoint, config.fsfreezeScope);
    if (refusal === undefined) mounts.push(mount);
    else skipped.push({ ...describe(mount), status: "skipped", reason: refusal });
  }
  for (const path of wanted ?? []) {
    if (!matching.some((m) => m.mountPoint === path)) {
      // qemu-ga ignores these silently; the report says why nothing happened.
      skipped.push({ mountPoint: path, status: "skipped", reason: "not a freezable mount point" });
    }
  }
  const waves = freezeWaves(mounts).map((wave) => wave.map((m) => m.mountPoint));
  return { mounts, waves, skipped };
}

function describe(mount: MountEntry): { mountPoint: string; fsType: string } {
  return { mountPoint: mount.mountPoint, fsType: mount.fsType };
}

/** Thaw order: the freeze waves reversed, flattened (holders before the mounts stored on them). */
export function thawOrder(waves: readonly string[][]): string[] {
  return [...waves].reverse().flat();
}
