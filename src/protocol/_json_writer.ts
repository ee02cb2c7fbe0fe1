/**
 * qemu's JSON writer (`json-writer.c` via `qobject_to_json`): compact output with `": "` and
 * `", "`, object members in QDict iteration order, qemu's string escapes, and doubles printed as
 * C's `%.17g` (glibc rounding, `inf`/`nan` included). Output is always pure ASCII.
 *
 * @module
 */

import type { JsonValue } from "./json.ts";

/** QDict's bucket count (`QDICT_BUCKET_MAX`). */
const QDICT_BUCKETS = 512;

/** A member name with its QDict bucket and its printed form, memoised (keys repeat a lot). */
interface KeyInfo {
  bucket: number;
  quoted: string;
}

/** Bounded memo; the agent's own keys are few and fixed, a host's may be anything. */
const keyCache = new Map<string, KeyInfo>();
const KEY_CACHE_LIMIT = 4096;

/** Longer keys are not memoised, so a hostile key cannot pin memory. */
const KEY_CACHE_MAX_LENGTH = 256;

function keyInfo(key: string): KeyInfo {
  let info = keyCache.get(key);
  if (info === undefined) {
    info = { bucket: hashBucket(key), quoted: quoteJsonString(key) };
    if (key.length > KEY_CACHE_MAX_LENGTH) return info;
    if (keyCache.size >= KEY_CACHE_LIMIT) keyCache.clear();
    keyCache.set(key, info);
  }
  return info;
}

/** Adds one byte to qemu's `tdb_hash` sum (the length term is added at the end). */
function hashByte(sum: number, byte: number, index: number): number {
  return (sum + (byte << ((index * 5) % 24))) | 0;
}

/**
 * The QDict bucket of `key`: qemu's `tdb_hash` over the key's modified UTF-8 bytes (U+0000 is
 * `C0 80`; a lone surrogate is hashed as U+FFFD, as TextEncoder would encode it), modulo 512.
 */
export function qdictBucket(key: string): number {
  return keyInfo(key).bucket;
}

function hashBucket(key: string): number {
  let sum = 0;
  let index = 0;
  for (let i = 0; i < key.length; i++) {
    let cp = key.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdfff) {
      const low = key.charCodeAt(i + 1);
      if (cp <= 0xdbff && low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
        i++;
      } else {
        cp = 0xfffd;
      }
    }
    if (cp !== 0 && cp < 0x80) {
      sum = hashByte(sum, cp, index++);
    } else if (cp < 0x800) {
      sum = hashByte(sum, 0xc0 | (cp >> 6), index++);
      sum = hashByte(sum, 0x80 | (cp & 0x3f), index++);
    } else if (cp < 0x10000) {
      sum = hashByte(sum, 0xe0 | (cp >> 12), index++);
      sum = hashByte(sum, 0x80 | ((cp >> 6) & 0x3f), index++);
      sum = hashByte(sum, 0x80 | (cp & 0x3f), index++);
    } else {
      sum = hashByte(sum, 0xf0 | (cp >> 18), index++);
      sum = hashByte(sum, 0x80 | ((cp >> 12) & 0x3f), index++);
      sum = hashByte(sum, 0x80 | ((cp >> 6) & 0x3f), index++);
      sum = hashByte(sum, 0x80 | (cp & 0x3f), index++);
    }
  }
  // The initial value 0x238F13AF * strlen(key) commutes with the byte sum (all mod 2^32).
  sum = (sum + Math.imul(0x238f13af, index)) | 0;
  return ((Math.imul(1103515243, sum) + 12345) >>> 0) % QDICT_BUCKETS;
}

/**
 * The order in which a QDict built by inserting `keys` (in this order, no duplicates) iterates:
 * buckets 0..511, and within a bucket the most recently inserted key first.
 */
export function qdictKeyOrder(keys: readonly string[]): string[] {
  const infos = keys.map(keyInfo);
  return iterationOrder(infos).map((i) => keys[i]!);
}

/** Below this many members a stable insertion sort beats Array.prototype.sort's setup cost. */
const INSERTION_SORT_MAX = 16;

/** Indices of `infos` (in insertion order) in QDict iteration order. */
function iterationOrder(infos: readonly KeyInfo[]): number[] {
  const n = infos.length;
  const order = new Array<number>(n);
  for (let i = 0; i < n; i++) order[i] = n - 1 - i;
  if (n > INSERTION_SORT_MAX) {
    return order.sort((a, b) => infos[a]!.bucket - infos[b]!.bucket || b - a);
  }
  // Latest insertion first, then a stable sort by bucket.
  for (let i = 1; i < n; i++) {
    const index = order[i]!;
    const bucket = infos[index]!.bucket;
    let j = i - 1;
    while (j >= 0 && infos[order[j]!]!.bucket > bucket) {
      order[j + 1] = order[j]!;
      j--;
    }
    order[j + 1] = index;
  }
  return order;
}

/** Characters qemu's writer does not print as themselves: controls, `"`, `\`, 0x7F and beyond. */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\u007f-\uffff]/;

const SHORT_ESCAPES: Readonly<Record<number, string>> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x08: "\\b",
  0x0c: "\\f",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
};

function hex4(unit: number): string {
  return "\\u" + unit.toString(16).toUpperCase().padStart(4, "0");
}

/** Whether qemu would reject `cp` as a noncharacter (and so print U+FFFD instead). */
function isNoncharacter(cp: number): boolean {
  return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
}

/** A JSON string literal exactly as qemu's `quoted_str()` prints the same text. */
export function quoteJsonString(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return '"' + text + '"';
  let out = '"';
  let runStart = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0x20 && unit < 0x7f && unit !== 0x22 && unit !== 0x5c) continue;
    out += text.slice(runStart, i);
    if (unit < 0x7f) {
      out += SHORT_ESCAPES[unit] ?? hex4(unit);
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      const low = text.charCodeAt(i + 1);
      if (unit <= 0xdbff && low >= 0xdc00 && low <= 0xdfff) {
        const cp = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
        out += isNoncharacter(cp) ? "\\uFFFD" : hex4(unit) + hex4(low);
        i++;
      } else {
        out += "\\uFFFD";
      }
    } else {
      out += isNoncharacter(unit) ? "\\uFFFD" : hex4(unit);
    }
    runStart = i + 1;
  }
  return out + text.slice(runStart) + '"';
}

/** Exact binary value of a finite double: |x| = mantissa * 2^exponent. */
function exactBinary(x: number): { mantissa: bigint; exponent: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const high = view.getUint32(0);
  const low = view.getUint32(4);
  const biased = (high >>> 20) & 0x7ff;
  let mantissa = (BigInt(high & 0xfffff) << 32n) | BigInt(low);
  if (biased !== 0) mantissa |= 1n << 52n;
  return { mantissa, exponent: (biased === 0 ? 1 : biased) - 1075 };
}

/** Whether |x| equals `digits` * 10^`power` exactly. */
function equalsDecimal(x: number, digits: bigint, power: number): boolean {
  const { mantissa, exponent } = exactBinary(x);
  let left = mantissa;
  let right = digits;
  if (exponent >= 0) left <<= BigInt(exponent);
  else right <<= BigInt(-exponent);
  if (power >= 0) right *= 10n ** BigInt(power);
  else left *= 10n ** BigInt(-power);
  return left === right;
}

/**
 * 17 significant digits of |x| and the decimal exponent, rounded as glibc does (to nearest, ties
 * to even). JS rounds exact ties away from zero, so those — which need the exact value to have
 * 18 significant digits ending in 5 — are detected and corrected.
 */
function seventeenDigits(x: number): { digits: string; exponent: number } {
  const abs = Math.abs(x);
  const rounded = abs.toExponential(16);
  const exponent = Number(rounded.slice(rounded.indexOf("e") + 1));
  const digits = rounded[0]! + rounded.slice(2, 18);
  const wider = abs.toExponential(20);
  // A tie shows as "...d5000" (digits 18-21) and rounds up in JS; keep it only if d is odd.
  if (wider.slice(18, 22) === "5000" && (Number(wider[17]) & 1) === 0) {
    const wideExponent = Number(wider.slice(wider.indexOf("e") + 1));
    const eighteen = BigInt(wider[0]! + wider.slice(2, 19));
    if (equalsDecimal(abs, eighteen, wideExponent - 17)) {
      return { digits: wider[0]! + wider.slice(2, 18), exponent: wideExponent };
    }
  }
  return { digits, exponent };
}

/** A double as C's `printf("%.17g")` prints it under glibc. */
export function formatDouble(x: number): string {
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  const sign = x < 0 ? "-" : "";
  const { digits, exponent } = seventeenDigits(x);
  const trimmed = digits.replace(/0+$/, "");
  if (exponent < -4 || exponent >= 17) {
    const fraction = trimmed.length > 1 ? "." + trimmed.slice(1) : "";
    const expSign = exponent < 0 ? "-" : "+";
    const expDigits = String(Math.abs(exponent)).padStart(2, "0");
    return `${sign}${trimmed[0]}${fraction}e${expSign}${expDigits}`;
  }
  if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${trimmed}`;
  const integerPart = digits.slice(0, exponent + 1);
  const fractionPart = trimmed.slice(exponent + 1);
  return fractionPart === "" ? sign + integerPart : `${sign}${integerPart}.${fractionPart}`;
}

/** Writes any value; recursion depth equals nesting depth, which the parser caps at 1024. */
export function writeJson(value: JsonValue): string {
  switch (value.kind) {
    case "null":
      return "null";
    case "bool":
      return value.value ? "true" : "false";
    case "int":
    case "uint":
      return value.value.toString();
    case "double":
      return formatDouble(value.value);
    case "string":
      return quoteJsonString(value.value);
    case "array":
      return writeArray(value.items);
    case "object":
      return writeObject(value.members);
  }
}

function writeArray(items: readonly JsonValue[]): string {
  if (items.length === 0) return "[]";
  let out = "[" + writeJson(items[0]!);
  for (let i = 1; i < items.length; i++) out += ", " + writeJson(items[i]!);
  return out + "]";
}

function writeObject(members: ReadonlyMap<string, JsonValue>): string {
  const n = members.size;
  if (n === 0) return "{}";
  const infos = new Array<KeyInfo>(n);
  const values = new Array<JsonValue>(n);
  let i = 0;
  for (const [key, value] of members) {
    infos[i] = keyInfo(key);
    values[i++] = value;
  }
  if (n === 1) return "{" + infos[0]!.quoted + ": " + writeJson(values[0]!) + "}";
  const order = iterationOrder(infos);
  let out = "{";
  for (let k = 0; k < n; k++) {
    const index = order[k]!;
    out += (k === 0 ? "" : ", ") + infos[index]!.quoted + ": " + writeJson(values[index]!);
  }
  return out + "}";
}
