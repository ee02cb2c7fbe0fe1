/**
 * GLib `GKeyFile` reading and writing, as far as qemu-ga's config file needs it: groups, comments,
 * `key=value` with whitespace around `=` ignored, `\s \n \t \r \\` escapes, and GLib's error texts
 * (qemu-ga prints them after `error loading configuration from path: <p>, `).
 *
 * @module
 */

/** A parse error, with GLib's wording. */
export class KeyFileError extends Error {
  override name = "KeyFileError";
}

/** Parsed key file: group name → (key → raw, escaped value). Later duplicates win, as in GLib. */
export type KeyFile = Map<string, Map<string, string>>;

/** Parses key file text. Throws {@link KeyFileError} on a line that is not a group, key or comment. */
export function parseKeyFile(text: string): KeyFile {
  const groups: KeyFile = new Map();
  let current: Map<string, string> | undefined;
  for (const rawLine of text.split("\n")) {
    const line = rawLine.replace(/\r$/, "").replace(/^[ \t\f\v]+/, "");
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("[")) {
      const close = line.indexOf("]");
      if (close === -1) throw invalidLine(rawLine);
      const name = line.slice(1, close);
      current = groups.get(name) ?? new Map();
      groups.set(name, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) throw invalidLine(rawLine);
    if (!current) {
      throw new KeyFileError("Key file does not start with a group");
    }
    const key = line.slice(0, eq).replace(/[ \t]+$/, "");
    const value = line.slice(eq + 1).replace(/^[ \t]+/, "");
    current.set(key, value);
  }
  return groups;
}

function invalidLine(line: string): KeyFileError {
  return new KeyFileError(
    `Key file contains line “${line}” which is not a key-value pair, group, or comment`,
  );
}

/** Reads a string value: unescapes `\s \n \t \r \\` (GLib `g_key_file_get_string`). */
export function keyFileString(raw: string, key: string): string {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== "\\") {
      out += ch;
      continue;
    }
    const next = raw[++i];
    const unescaped = next === undefined ? undefined : ESCAPES[next];
    if (unescaped === undefined) {
      throw new KeyFileError(
        `Key file contains escape sequence “\\${next ?? ""}” which is invalid (key “${key}”)`,
      );
    }
    out += unescaped;
  }
  return out;
}

const ESCAPES: Record<string, string> = { s: " ", n: "\n", t: "\t", r: "\r", "\\": "\\" };

/** Reads a boolean value: `true`/`false`/`1`/`0` (GLib `g_key_file_get_boolean`). */
export function keyFileBoolean(raw: string, key: string): boolean {
  const value = raw.replace(/[ \t]+$/, "");
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  throw uninterpretable(key);
}

/** Reads a non-negative integer value (our own keys, e.g. timeouts in seconds). */
export function keyFileUnsigned(raw: string, key: string): number {
  const value = raw.trim();
  if (!/^\d{1,9}$/.test(value)) throw uninterpretable(key);
  return Number(value);
}

function uninterpretable(key: string): KeyFileError {
  return new KeyFileError(
    `Key file contains key “${key}” which has a value that cannot be interpreted.`,
  );
}

/** Escapes a string for writing (GLib `g_key_file_set_string`). */
export function escapeKeyFileString(value: string): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const ch = value[i]!;
    if (ch === " " && i === 0) out += "\\s";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\\") out += "\\\\";
    else out += ch;
  }
  return out;
}

/** Renders one group as GLib's `g_key_file_to_data` does. */
export function renderKeyFileGroup(
  group: string,
  entries: ReadonlyArray<readonly [string, string]>,
): string {
  return `[${group}]\n` + entries.map(([k, v]) => `${k}=${v}\n`).join("");
}
