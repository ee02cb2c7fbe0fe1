/**
 * Byte-level text helpers shared by the JSON parser and writer: qemu's "modified UTF-8" sequence
 * reader (which rejects noncharacters and surrogates and accepts `C0 80` as U+0000), string-token
 * decoding with qemu's escape rules and error texts, and decoding of raw bytes the way qemu's JSON
 * writer renders them (each invalid sequence becomes one U+FFFD).
 *
 * Nothing here knows about tokens, limits or framing; see `_json_lexer.ts` and `json.ts`.
 *
 * @module
 */

/** Where the last {@linkcode readModUtf8} call stopped (exclusive); avoids a result object. */
let sequenceEnd = 0;

/** Smallest code point each sequence length may encode (index: length - 2); smaller is overlong. */
const MIN_CODE_POINT = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

/** Whether qemu accepts `cp` as a character: in range, not a surrogate, not a noncharacter. */
export function isValidCodePoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return cp < 0xd800 || cp > 0xdfff;
}

/**
 * Reads one modified-UTF-8 sequence at `pos` (bytes before `limit`); returns its code point or -1
 * and leaves the end of what it consumed in `sequenceEnd`, exactly as qemu's `mod_utf8_codepoint`:
 * an impossible or continuation lead byte consumes one byte, a truncated sequence consumes the
 * continuation bytes present, a complete but invalid one consumes all of it.
 */
function readModUtf8(buf: Uint8Array, pos: number, limit: number): number {
  const lead = buf[pos]!;
  if (lead < 0x80) {
    sequenceEnd = pos + 1;
    return lead;
  }
  if (lead >= 0xfe || (lead & 0x40) === 0) {
    sequenceEnd = pos + 1;
    return -1;
  }
  const length = lead >= 0xfc ? 6 : lead >= 0xf8 ? 5 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
  let cp = lead & ((0x80 >> length) - 1);
  for (let i = 1; i < length; i++) {
    const at = pos + i;
    const byte = at < limit ? buf[at]! : 0;
    if ((byte & 0xc0) !== 0x80) {
      sequenceEnd = at;
      return -1;
    }
    cp = cp * 64 + (byte & 0x3f);
  }
  sequenceEnd = pos + length;
  if (!isValidCodePoint(cp)) return -1;
  if (cp < MIN_CODE_POINT[length - 2]! && !(cp === 0 && length === 2)) return -1;
  return cp;
}

const utf8Decoder = new TextDecoder();

/** Below this many bytes a char loop beats TextDecoder's call overhead (measured). */
const SHORT_TEXT = 64;

/** Decodes bytes known to be valid UTF-8 (or plain ASCII). */
function decodeValidUtf8(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= SHORT_TEXT) {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (buf[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      let text = "";
      for (let i = start; i < end; i++) text += String.fromCharCode(buf[i]!);
      return text;
    }
  }
  return utf8Decoder.decode(buf.subarray(start, end));
}

/**
 * Renders raw bytes as qemu's JSON writer would: valid sequences as their characters (`C0 80` as
 * U+0000), each invalid sequence as one U+FFFD. Used for error texts that echo input bytes.
 */
export function decodeLikeQemuWriter(buf: Uint8Array, start: number, end: number): string {
  let pos = start;
  while (pos < end && buf[pos]! < 0x80) pos++;
  if (pos === end) return decodeValidUtf8(buf, start, end);
  const parts: string[] = [decodeValidUtf8(buf, start, pos)];
  while (pos < end) {
    const cp = readModUtf8(buf, pos, end);
    parts.push(cp < 0 ? "\uFFFD" : String.fromCodePoint(cp));
    pos = sequenceEnd;
  }
  return parts.join("");
}

/** A string token the parser rejects, with the text after "JSON parse error, ". */
export class StringTokenError {
  /** Builds the error from its message. */
  constructor(readonly message: string) {}
}

const INVALID_ESCAPE = new StringTokenError("invalid escape sequence in string");
const INVALID_UTF8 = new StringTokenError("invalid UTF-8 sequence in string");

/** The characters a one-letter escape stands for (qemu accepts `\'` in both quote styles). */
const SIMPLE_ESCAPES: ReadonlyMap<number, string> = new Map([
  [0x22, '"'],
  [0x27, "'"],
  [0x5c, "\\"],
  [0x2f, "/"],
  [0x62, "\b"],
  [0x66, "\f"],
  [0x6e, "\n"],
  [0x72, "\r"],
  [0x74, "\t"],
]);

function hexDigit(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x61 + 10;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x41 + 10;
  return -1;
}

/** Four hex digits at `pos`, or -1 at the first non-hex byte (as qemu's `cvt4hex`). */
function fourHex(buf: Uint8Array, pos: number, limit: number): number {
  let value = 0;
  for (let i = 0; i < 4; i++) {
    const digit = pos + i < limit ? hexDigit(buf[pos + i]!) : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/** Where decoding resumes after the last successful `\u` escape; avoids a result object. */
let escapeEnd = 0;

/** Decodes the `\uXXXX` (or surrogate pair) escape whose backslash is at `pos`. */
function decodeUnicodeEscape(
  buf: Uint8Array,
  pos: number,
  tokenEnd: number,
): string | StringTokenError {
  let cp = fourHex(buf, pos + 2, tokenEnd);
  let next = pos + 6;
  if (cp >= 0xd800 && cp <= 0xdbff && buf[next] === 0x5c && buf[next + 1] === 0x75) {
    const trailing = fourHex(buf, next + 2, tokenEnd);
    if (trailing >= 0xdc00 && trailing <= 0xdfff) {
      cp = 0x10000 + ((cp & 0x3ff) << 10) + (trailing & 0x3ff);
      next += 6;
    } else {
      cp = -1;
    }
  }
  if (!isValidCodePoint(cp)) {
    // qemu quotes the escape as far as it read, cut at the end of the token.
    const quoted = decodeLikeQemuWriter(buf, pos, Math.min(next, tokenEnd));
    return new StringTokenError(`${quoted} is not a valid Unicode character`);
  }
  escapeEnd = next;
  return String.fromCodePoint(cp);
}

/**
 * Decodes a complete string token (quotes included) at `[start, end)` with qemu's rules, or
 * returns the first error in left-to-right order.
 */
export function decodeStringToken(
  buf: Uint8Array,
  start: number,
  end: number,
): string | StringTokenError {
  const contentEnd = end - 1;
  let pos = start + 1;
  while (pos < contentEnd) {
    const byte = buf[pos]!;
    if (byte >= 0x80 || byte === 0x5c) break;
    pos++;
  }
  if (pos === contentEnd) return decodeValidUtf8(buf, start + 1, contentEnd);
  return decodeSlowly(buf, start + 1, pos, end);
}

/** The general case: escapes and non-ASCII bytes, validated as they are met. */
function decodeSlowly(
  buf: Uint8Array,
  runStart: number,
  pos: number,
  end: number,
): string | StringTokenError {
  const contentEnd = end - 1;
  const parts: string[] = [];
  while (pos < contentEnd) {
    const byte = buf[pos]!;
    if (byte < 0x80 && byte !== 0x5c) {
      pos++;
      continue;
    }
    if (byte === 0x5c) {
      parts.push(decodeValidUtf8(buf, runStart, pos));
      const letter = buf[pos + 1]!;
      const simple = SIMPLE_ESCAPES.get(letter);
      if (simple !== undefined) {
        parts.push(simple);
        pos += 2;
      } else if (letter === 0x75) {
        const text = decodeUnicodeEscape(buf, pos, end);
        if (typeof text !== "string") return text;
        parts.push(text);
        pos = escapeEnd;
      } else {
        return INVALID_ESCAPE;
      }
      runStart = pos;
      continue;
    }
    const cp = readModUtf8(buf, pos, contentEnd);
    if (cp < 0) return INVALID_UTF8;
    if (cp === 0) {
      // "\xC0\x80" is modified UTF-8 for U+0000, which TextDecoder would reject.
      parts.push(decodeValidUtf8(buf, runStart, pos), "\0");
      runStart = sequenceEnd;
    }
    pos = sequenceEnd;
  }
  parts.push(decodeValidUtf8(buf, runStart, contentEnd));
  return parts.join("");
}
