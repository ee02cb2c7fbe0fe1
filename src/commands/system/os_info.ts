/**
 * `guest-get-osinfo`: uname(2) and os-release(5), as qemu-ga's `qmp_guest_get_osinfo` reports
 * them (`GuestOSInfo`: every member optional, absent when unknown).
 *
 * @module
 */

import { uname } from "../../linux/system.ts";

/** `GuestOSInfo` of the QAPI schema. */
export interface GuestOSInfo {
  "kernel-release"?: string;
  "kernel-version"?: string;
  machine?: string;
  id?: string;
  name?: string;
  "pretty-name"?: string;
  version?: string;
  "version-id"?: string;
  variant?: string;
  "variant-id"?: string;
}

/** Where qemu-ga looks for os-release, in order (the first readable one wins). */
export const OS_RELEASE_PATHS: readonly string[] = ["/etc/os-release", "/usr/lib/os-release"];

/** os-release keys and the `GuestOSInfo` members they fill. */
const OS_RELEASE_KEYS: ReadonlyArray<readonly [string, keyof GuestOSInfo]> = [
  ["ID", "id"],
  ["NAME", "name"],
  ["PRETTY_NAME", "pretty-name"],
  ["VERSION", "version"],
  ["VERSION_ID", "version-id"],
  ["VARIANT", "variant"],
  ["VARIANT_ID", "variant-id"],
];

/** Characters a backslash escapes inside double quotes (qemu-ga's set; os-release(5) names four). */
const ESCAPABLE = new Set(["$", "'", '"', "\\", "`"]);

/**
 * One os-release value as a shell would read it: in double quotes with `\$ \" \\ \` \'` escapes,
 * in single quotes literally; unquoted, cut at the first space or `;` as qemu-ga does.
 * (qemu-ga mistakes single quotes for unquoted text; os-release(5) allows both.)
 */
export function osReleaseValue(raw: string): string {
  const quote = raw[0];
  if (quote === "'") {
    const end = raw.indexOf("'", 1);
    return raw.slice(1, end === -1 ? undefined : end);
  }
  if (quote !== '"') return raw.split(/[ ;]/, 1)[0] ?? "";
  let value = "";
  for (let i = 1; i < raw.length; i++) {
    const char = raw[i]!;
    if (char === '"') break;
    if (char === "\\" && ESCAPABLE.has(raw[i + 1] ?? "")) {
      value += raw[++i];
    } else {
      value += char;
    }
  }
  return value;
}

/**
 * Parses os-release text into its keys (values unquoted): `KEY=value` lines, `#` comments and
 * blank lines skipped, whitespace around key and value trimmed (GKeyFile's rules), the last of
 * repeated keys wins.
 */
export function parseOsRelease(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const equals = trimmed.indexOf("=");
    if (equals <= 0) continue;
    values.set(
      trimmed.slice(0, equals).trimEnd(),
      osReleaseValue(trimmed.slice(equals + 1).trim()),
    );
  }
  return values;
}

/** The os-release members of `GuestOSInfo` from parsed os-release keys. */
export function osReleaseInfo(values: ReadonlyMap<string, string>): GuestOSInfo {
  const info: GuestOSInfo = {};
  for (const [key, member] of OS_RELEASE_KEYS) {
    const value = values.get(key);
    if (value !== undefined) info[member] = value;
  }
  return info;
}

/** Reads the first os-release file that exists and is UTF-8 (qemu-ga skips the others). */
export function readOsRelease(paths: readonly string[] = OS_RELEASE_PATHS): Map<string, string> {
  for (const path of paths) {
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(Deno.readFileSync(path));
      return parseOsRelease(text);
    } catch (err) {
      // A permission set without the file is a build mistake: say so.
      if (err instanceof Deno.errors.NotCapable) throw err;
      // Missing, unreadable or not UTF-8: qemu-ga logs a warning and tries the next file.
    }
  }
  return new Map();
}

/** `guest-get-osinfo`: kernel fields from uname(2), the rest from os-release. */
export function guestOsInfo(): GuestOSInfo {
  const kernel = uname();
  return {
    "kernel-release": kernel.release,
    "kernel-version": kernel.version,
    machine: kernel.machine,
    ...osReleaseInfo(readOsRelease()),
  };
}
