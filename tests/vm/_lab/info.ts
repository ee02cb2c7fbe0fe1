/**
 * The guest-information commands as libvirt presents them (`virsh guestinfo`, `domfsinfo`,
 * `domifaddr --source agent`, `domtime`, `domhostname --source agent`, `guestvcpus`), normalised
 * so that two
 * agents in the same image can be compared: values that legitimately differ between two boots
 * (login times, used bytes, the clock) are replaced by placeholders.
 *
 * @module
 */

import type { Guest } from "./guest.ts";

/** `virsh guestinfo` as key/value pairs, grouped by section ("os", "fs", "if", ...). */
export type GuestInfo = Record<string, Record<string, string>>;

/** What the commands returned (normalised), or their error texts. */
export interface InfoSnapshot {
  guestinfo: GuestInfo;
  domfsinfo: string;
  domifaddr: string;
  domhostname: string;
  /** `guestvcpus` (served by qemu-ga, or by fsfreeze-agent's delegate). */
  guestvcpus: string;
  /** `domtime`: the guest's clock minus the host's, seconds (not compared). */
  clockOffset: number | string;
}

/** Keys whose values differ between boots of the same image. */
const VOLATILE = [/^user\.\d+\.login-time$/, /^fs\.\d+\.used-bytes$/];

/** Parses `key : value` lines into sections keyed by the part before the first dot. */
export function parseGuestInfo(text: string): GuestInfo {
  const sections: GuestInfo = {};
  for (const line of text.split("\n")) {
    const match = line.match(/^(\S+)\s*:\s?(.*)$/);
    if (match === null) continue;
    const [, key, value] = match as unknown as [string, string, string];
    const section = key.split(".")[0] as string;
    const normalised = VOLATILE.some((re) => re.test(key)) ? "<varies>" : value.trim();
    (sections[section] ??= {})[key] = normalised;
  }
  return sections;
}

async function virshText(guest: Guest, args: string[]): Promise<string> {
  const result = await guest.virsh([...args]);
  const text = result.stdout.trim();
  return result.code === 0 ? text : `error: ${(result.stderr + text).trim()}`;
}

/** `virsh guestinfo`, parsed. */
export async function guestInfo(guest: Guest): Promise<GuestInfo> {
  return parseGuestInfo(await virshText(guest, ["guestinfo", guest.name]));
}

/** `virsh guestvcpus`, or its error text. */
export async function guestVcpus(guest: Guest): Promise<string> {
  return await virshText(guest, ["guestvcpus", guest.name]);
}

/** Runs the six commands against `guest`. */
export async function collectInfo(guest: Guest): Promise<InfoSnapshot> {
  const guestinfo = await guestInfo(guest);
  const domfsinfo = await virshText(guest, ["domfsinfo", guest.name]);
  const domifaddr = await virshText(guest, ["domifaddr", guest.name, "--source", "agent"]);
  const domhostname = await virshText(guest, ["domhostname", guest.name, "--source", "agent"]);
  const guestvcpus = await guestVcpus(guest);
  const time = await virshText(guest, ["domtime", guest.name]);
  const seconds = Number(time.match(/^Time:\s*(\d+)/)?.[1]);
  const clockOffset = Number.isFinite(seconds) ? seconds - Math.round(Date.now() / 1000) : time;
  return { guestinfo, domfsinfo, domifaddr, domhostname, guestvcpus, clockOffset };
}

/** Sections of `baseline` missing from `other`, and sections whose fields differ. */
export function compareGuestInfo(
  baseline: GuestInfo,
  other: GuestInfo,
): { missing: string[]; extra: string[]; different: string[] } {
  const missing = Object.keys(baseline).filter((section) => !(section in other));
  const extra = Object.keys(other).filter((section) => !(section in baseline));
  const different: string[] = [];
  for (const section of Object.keys(baseline).filter((s) => s in other)) {
    const a = baseline[section] as Record<string, string>;
    const b = other[section] as Record<string, string>;
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (a[key] !== b[key]) {
        different.push(`${key}: qemu-ga ${a[key] ?? "(none)"}, ours ${b[key] ?? "(none)"}`);
      }
    }
  }
  return { missing, extra, different };
}
