/**
 * Whether the state directory lives on a filesystem that is frozen: then nothing may be written
 * there until thaw (a write would block the agent, and nothing could thaw it).
 *
 * @module
 */

/** True when `statedir` is on the same filesystem as one of `frozenMounts` (or cannot be told). */
export function statedirFrozen(statedir: string, frozenMounts: readonly string[]): boolean {
  let device: number;
  try {
    device = Deno.statSync(statedir).dev;
  } catch {
    return true; // unknown: assume the worst
  }
  return frozenMounts.some((mount) => {
    try {
      return Deno.statSync(mount).dev === device;
    } catch {
      return true;
    }
  });
}
