/**
 * A deterministic generator of hostile wire input for the JSON parser and the agent: valid
 * requests (double and single quotes, odd whitespace, every kind of `id`), byte-level mutations of
 * them, truncations and splices, random garbage, deep nesting, oversized strings and token floods
 * (a few MiB), invalid UTF-8 and stray 0xFF resync bytes.
 *
 * Safe to send to a live agent: the only commands named are harmless ones (`guest-ping`,
 * `guest-sync`, `guest-sync-delimited`, `guest-info` and unknown names), and any input that
 * happens to contain a dangerous command fragment (`freeze`, `shutdown`, `guest-exec`, ...) is
 * regenerated.
 *
 * @module
 */

/** A small, fast, seedable PRNG (mulberry32); the same seed always gives the same inputs. */
export class Random {
  #state: number;

  /** Creates a generator from a 32-bit seed. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const encoder = new TextEncoder();

/** Command names that do nothing harmful on qemu-ga or on our agent. */
const SAFE_COMMANDS = ["guest-ping", "guest-sync", "guest-sync-delimited", "guest-info", "guest-x"];

/** Byte strings a fuzz input must never contain: names of commands with side effects. */
const FORBIDDEN = [
  "freeze",
  "thaw",
  "shutdown",
  "suspend",
  "guest-exec",
  "guest-file",
  "guest-set",
  "ssh",
  "fstrim",
].map((word) => encoder.encode(word));

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (haystack[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

/** Whether `input` names no command with side effects (checked byte-wise, so also inside noise). */
export function isSafeInput(input: Uint8Array): boolean {
  return !FORBIDDEN.some((word) => contains(input, word));
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
}

const WHITESPACE = [" ", "\t", "\r", "\n"];
const STRING_PIECES = [
  "a",
  "guest",
  " ",
  "é",
  "€",
  "😀",
  "\\n",
  "\\t",
  "\\\\",
  '\\"',
  "\\'",
  "\\/",
  "\\u0041",
  "\\u00e9",
  "\\u0000",
  "\\ud83d\\ude00",
  "\\uD800",
  "\\uDC00x",
  "\\uFFFF",
  "\\u12",
  "\\q",
  "\x7f",
];
const RAW_BYTES = [
  "\xc3\xa9",
  "\xc0\x80",
  "\xc3\x28",
  "\xed\xa0\x80",
  "\xef\xbf\xbf",
  "\xf4\x90\x80\x80",
  "\x80",
  "\xfe",
  "\x01",
  "\n",
];
const NUMBERS = [
  "0",
  "-0",
  "1",
  "-1",
  "42",
  "9223372036854775807",
  "9223372036854775808",
  "18446744073709551615",
  "18446744073709551616",
  "-9223372036854775809",
  "1.0",
  "0.1",
  "1e300",
  "1e400",
  "-1e-400",
  "2.5E-7",
  "1000000000000000.25",
  "01",
  "-",
  "1.",
  "1e",
  "1e+",
];
const KEYWORDS = ["true", "false", "null", "nul", "truex", "t", "TRUE"];

class Generator {
  readonly #rng: Random;

  constructor(rng: Random) {
    this.#rng = rng;
  }

  ws(): string {
    const rng = this.#rng;
    if (rng.chance(0.7)) return "";
    let out = "";
    for (let i = rng.int(4); i >= 0; i--) out += rng.pick(WHITESPACE);
    return out;
  }

  quote(): string {
    return this.#rng.chance(0.85) ? '"' : "'";
  }

  /** A string literal, mostly valid, sometimes with bad escapes or raw invalid bytes. */
  string(): string {
    const rng = this.#rng;
    const q = this.quote();
    let body = "";
    for (let i = rng.int(8); i > 0; i--) {
      body += rng.chance(0.08) ? rng.pick(RAW_BYTES) : utf8Latin1(rng.pick(STRING_PIECES));
    }
    return q + body + q;
  }

  value(depth: number): string {
    const rng = this.#rng;
    const roll = rng.int(depth > 4 ? 6 : 9);
    switch (roll) {
      case 0:
      case 1:
        return this.string();
      case 2:
      case 3:
        return rng.pick(NUMBERS);
      case 4:
        return rng.pick(KEYWORDS);
      case 5:
        return rng.chance(0.5) ? "{}" : "[]";
      case 6:
      case 7: {
        const items: string[] = [];
        for (let i = rng.int(4); i > 0; i--) {
          items.push(this.ws() + this.value(depth + 1) + this.ws());
        }
        return "[" + items.join(",") + "]";
      }
      default: {
        const members: string[] = [];
        for (let i = rng.int(4); i > 0; i--) {
          members.push(
            `${this.ws()}${this.string()}${this.ws()}:${this.ws()}${this.value(depth + 1)}`,
          );
        }
        return "{" + members.join(",") + "}";
      }
    }
  }

  /** A request that a correct agent answers (possibly with an argument error). */
  request(): string {
    const rng = this.#rng;
    const q = this.quote();
    const name = rng.pick(SAFE_COMMANDS);
    const members = [`${q}execute${q}${this.ws()}:${this.ws()}${q}${name}${q}`];
    if (name === "guest-sync" || name === "guest-sync-delimited") {
      const id = rng.chance(0.8) ? String(rng.int(2 ** 31)) : rng.pick(NUMBERS);
      members.push(`${q}arguments${q}:{${q}id${q}:${id}}`);
    } else if (rng.chance(0.1)) {
      members.push(`${q}arguments${q}:${this.value(1)}`);
    }
    if (rng.chance(0.5)) members.push(`${q}id${q}:${this.value(1)}`);
    if (rng.chance(0.05)) members.push(`${q}execute${q}:${q}guest-ping${q}`);
    for (let i = members.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [members[i], members[j]] = [members[j]!, members[i]!];
    }
    return this.ws() + "{" + members.map((m) => this.ws() + m + this.ws()).join(",") + "}";
  }

  /** Flips, inserts, deletes or duplicates a few bytes. */
  mutate(input: Uint8Array): Uint8Array {
    const rng = this.#rng;
    const bytes = Array.from(input);
    for (let n = 1 + rng.int(4); n > 0; n--) {
      const at = rng.int(bytes.length + 1);
      switch (rng.int(5)) {
        case 0:
          if (at < bytes.length) bytes[at] = rng.int(256);
          break;
        case 1:
          bytes.splice(at, 0, rng.pick(INTERESTING_BYTES));
          break;
        case 2:
          bytes.splice(at, 1 + rng.int(3));
          break;
        case 3:
          bytes.splice(at, 0, ...bytes.slice(at, at + 1 + rng.int(8)));
          break;
        default:
          if (at < bytes.length) bytes[at] = bytes[at]! ^ (1 << rng.int(8));
      }
    }
    return Uint8Array.from(bytes);
  }

  garbage(): Uint8Array {
    const rng = this.#rng;
    const length = 1 + rng.int(64);
    const out = new Uint8Array(length);
    const alphabet = rng.int(3);
    for (let i = 0; i < length; i++) {
      if (alphabet === 0) out[i] = rng.int(256);
      else if (alphabet === 1) out[i] = 0x20 + rng.int(0x5f);
      else out[i] = rng.pick(INTERESTING_BYTES);
    }
    return out;
  }

  deep(): Uint8Array {
    const rng = this.#rng;
    const depth = rng.pick([100, 1023, 1024, 1025, 1500, 3000]);
    const open = rng.chance(0.5) ? "[" : '{"a":';
    const close = open === "[" ? "]" : "}";
    const closing = rng.chance(0.8) ? depth : rng.int(depth);
    return latin1(open.repeat(depth) + "1" + close.repeat(closing));
  }

  oversized(): Uint8Array {
    const rng = this.#rng;
    const mib = 1 + rng.int(4);
    if (rng.chance(0.5)) {
      const head = latin1('{"execute":"guest-ping","id":"');
      const body = new Uint8Array(mib << 20).fill(0x61);
      return concat([head, body, latin1('"}')]);
    }
    // Just past qemu's 2 Mi token limit: the tail after the cut-off yields only a few replies.
    return latin1("[" + "1,".repeat((1 << 20) + rng.int(8)) + "1]");
  }

  input(): Uint8Array {
    const rng = this.#rng;
    const roll = rng.int(1000);
    if (roll < 2) return this.oversized();
    if (roll < 30) return this.deep();
    if (roll < 250) return latin1(this.request());
    if (roll < 550) return this.mutate(latin1(this.request()));
    if (roll < 650) {
      const text = latin1(this.request());
      return text.subarray(0, rng.int(text.length));
    }
    if (roll < 750) return concat([this.garbage(), latin1(this.request())]);
    if (roll < 850) return this.garbage();
    if (roll < 900) return latin1(this.value(0));
    const text = latin1(this.request());
    const at = rng.int(text.length + 1);
    return concat([text.subarray(0, at), Uint8Array.of(0xff), text.subarray(at)]);
  }
}

/** The UTF-8 bytes of `text` as a latin1 string (one char per byte). */
function utf8Latin1(text: string): string {
  return String.fromCharCode(...encoder.encode(text));
}

/** Bytes that matter to the lexer: structure, quotes, escapes, controls, UTF-8 and resync. */
const INTERESTING_BYTES = [
  0x00,
  0x01,
  0x09,
  0x0a,
  0x0d,
  0x20,
  0x22,
  0x27,
  0x2c,
  0x3a,
  0x5b,
  0x5c,
  0x5d,
  0x7b,
  0x7d,
  0x7f,
  0x80,
  0xc3,
  0xfe,
  0xff,
];

/**
 * `count` deterministic fuzz inputs for `seed`: valid and mutated requests, garbage, truncations,
 * deep nesting, a few oversized (MiB) messages, invalid UTF-8 and stray 0xFF bytes.
 */
export function fuzzInputs(seed: number, count: number): Uint8Array[] {
  const rng = new Random(seed);
  const generator = new Generator(rng);
  const inputs: Uint8Array[] = [];
  while (inputs.length < count) {
    const input = generator.input();
    if (isSafeInput(input)) inputs.push(input);
  }
  return inputs;
}
