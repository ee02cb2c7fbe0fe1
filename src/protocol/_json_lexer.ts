/**
 * The byte-level JSON lexer: qemu's `json-lexer.c` state machine (single-quoted strings, `[a-z]+`
 * keywords, strict numbers, error recovery that skips to a structural or control byte) run over
 * `Uint8Array` chunks without per-byte allocation. Tokens may span chunks; their bytes are carried
 * over in one growable buffer bounded by the token size limit.
 *
 * One deliberate difference from qemu: a 0xFF byte anywhere resets the lexer and asks the sink to
 * drop its partial message, silently (docs/design.md #14). Message assembly, limits and parsing
 * live in `json.ts` and `_json_parser.ts`.
 *
 * @module
 */

/** `{` */
export const TOKEN_LCURLY = 0;
/** `}` */
export const TOKEN_RCURLY = 1;
/** `[` */
export const TOKEN_LSQUARE = 2;
/** `]` */
export const TOKEN_RSQUARE = 3;
/** `:` */
export const TOKEN_COLON = 4;
/** `,` */
export const TOKEN_COMMA = 5;
/** A complete single- or double-quoted string, quotes included. */
export const TOKEN_STRING = 6;
/** `-?(0|[1-9][0-9]*)` */
export const TOKEN_INTEGER = 7;
/** A number with a fraction or an exponent. */
export const TOKEN_FLOAT = 8;
/** `[a-z]+`; the parser decides whether it is `true`, `false` or `null`. */
export const TOKEN_KEYWORD = 9;

/** The kinds of token the lexer hands on. */
export type TokenType = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

/** Receives the lexer's output; the byte ranges are valid only during the call. */
export interface TokenSink {
  /** A complete token at `buf[start, end)`. */
  token(type: TokenType, buf: Uint8Array, start: number, end: number): void;
  /** A lexical error: the partial token including the offending byte. */
  lexError(buf: Uint8Array, start: number, end: number): void;
  /** A token grew past the size limit and was cut off. */
  tokenTooLarge(): void;
  /** A 0xFF byte: the partial message must be dropped without an error. */
  resync(): void;
}

const START = 0;
const RECOVERY = 1;
const DQ_STRING = 2;
const DQ_ESCAPE = 3;
const SQ_STRING = 4;
const SQ_ESCAPE = 5;
const ZERO = 6;
const SIGN = 7;
const DIGITS = 8;
const MANTISSA = 9;
const MANTISSA_DIGITS = 10;
const EXP_E = 11;
const EXP_SIGN = 12;
const EXP_DIGITS = 13;
const KEYWORD = 14;

/** The resync byte; no valid UTF-8 contains it. */
export const RESYNC_BYTE = 0xff;

/** What a byte does in the start state. */
const ACT_SPACE = 0;
const ACT_ERROR = 1;
const ACT_STRUCTURAL = 2;
const ACT_DQ = 3;
const ACT_SQ = 4;
const ACT_ZERO = 5;
const ACT_DIGIT = 6;
const ACT_MINUS = 7;
const ACT_LETTER = 8;
const ACT_RESYNC = 9;

const START_ACTION = new Uint8Array(256).fill(ACT_ERROR);
const STRUCTURAL_TOKEN = new Uint8Array(256);
for (const byte of [0x20, 0x09, 0x0a, 0x0d]) START_ACTION[byte] = ACT_SPACE;
for (
  const [char, type] of [
    ["{", TOKEN_LCURLY],
    ["}", TOKEN_RCURLY],
    ["[", TOKEN_LSQUARE],
    ["]", TOKEN_RSQUARE],
    [":", TOKEN_COLON],
    [",", TOKEN_COMMA],
  ] as const
) {
  START_ACTION[char.charCodeAt(0)] = ACT_STRUCTURAL;
  STRUCTURAL_TOKEN[char.charCodeAt(0)] = type;
}
START_ACTION[0x22] = ACT_DQ;
START_ACTION[0x27] = ACT_SQ;
START_ACTION[0x30] = ACT_ZERO;
for (let byte = 0x31; byte <= 0x39; byte++) START_ACTION[byte] = ACT_DIGIT;
START_ACTION[0x2d] = ACT_MINUS;
for (let byte = 0x61; byte <= 0x7a; byte++) START_ACTION[byte] = ACT_LETTER;
START_ACTION[RESYNC_BYTE] = ACT_RESYNC;

/** Bytes that end error recovery (re-lexed from the start state): structural, control but TAB, 0xFE/0xFF. */
const ENDS_RECOVERY = new Uint8Array(256);
for (let byte = 0; byte < 0x20; byte++) ENDS_RECOVERY[byte] = byte === 0x09 ? 0 : 1;
for (const char of "[]{}:,") ENDS_RECOVERY[char.charCodeAt(0)] = 1;
ENDS_RECOVERY[0xfe] = 1;
ENDS_RECOVERY[0xff] = 1;

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

/** Carried-over bytes beyond this are released once their token ends. */
const CARRY_KEEP_BYTES = 64 * 1024;

/** qemu's JSON lexer over byte chunks, reporting to a {@linkcode TokenSink}. */
export class JsonLexer {
  readonly #sink: TokenSink;
  readonly #maxTokenBytes: number;
  #state = START;
  /** Bytes of the current token that arrived in earlier chunks. */
  #carry = new Uint8Array(256);
  #carryLength = 0;

  /** Creates a lexer that cuts tokens longer than `maxTokenBytes`. */
  constructor(sink: TokenSink, maxTokenBytes: number) {
    this.#sink = sink;
    this.#maxTokenBytes = maxTokenBytes;
  }

  /** Forgets any partial token and returns to the start state. */
  reset(): void {
    this.#state = START;
    this.#dropCarry();
  }

  /** Lexes one chunk; the sink is called for every token, error and resync it completes. */
  feed(buf: Uint8Array): void {
    const n = buf.length;
    let i = 0;
    // Start of the current token in `buf`; a token continued from an earlier chunk starts at 0.
    let start = 0;
    while (i < n) {
      const state = this.#state;
      if (state === START) {
        const byte = buf[i]!;
        const action = START_ACTION[byte]!;
        start = i++;
        switch (action) {
          case ACT_SPACE:
            continue;
          case ACT_STRUCTURAL:
            this.#sink.token(STRUCTURAL_TOKEN[byte] as TokenType, buf, start, i);
            continue;
          case ACT_DQ:
            this.#state = DQ_STRING;
            break;
          case ACT_SQ:
            this.#state = SQ_STRING;
            break;
          case ACT_ZERO:
            this.#state = ZERO;
            break;
          case ACT_DIGIT:
            this.#state = DIGITS;
            break;
          case ACT_MINUS:
            this.#state = SIGN;
            break;
          case ACT_LETTER:
            this.#state = KEYWORD;
            break;
          case ACT_RESYNC:
            this.#resync();
            continue;
          default:
            this.#error(buf, start, i);
            continue;
        }
        // A one-byte token cannot exceed the limit unless the limit is zero.
        if (i - start > this.#maxTokenBytes) this.#tooLarge();
        continue;
      }
      if (state === RECOVERY) {
        while (i < n && ENDS_RECOVERY[buf[i]!] === 0) i++;
        if (i < n) this.#state = START;
        continue;
      }
      // Inside a token: consume at most up to the byte that would make it one too long.
      const limit = Math.min(n, start + this.#maxTokenBytes + 1 - this.#carryLength);
      i = this.#inToken(state, buf, start, i, limit);
      if (this.#isInToken() && this.#carryLength + i - start > this.#maxTokenBytes) {
        this.#tooLarge();
      }
    }
    if (this.#isInToken()) this.#carryOver(buf, start, n);
  }

  #isInToken(): boolean {
    return this.#state !== START && this.#state !== RECOVERY;
  }

  /** Advances through one token state; returns the index of the next unconsumed byte. */
  #inToken(state: number, buf: Uint8Array, start: number, i: number, limit: number): number {
    switch (state) {
      case DQ_STRING:
      case SQ_STRING:
        return this.#inString(state, buf, start, i, limit);
      case DQ_ESCAPE:
      case SQ_ESCAPE:
        return this.#afterBackslash(state === DQ_ESCAPE ? DQ_STRING : SQ_STRING, buf, start, i);
      case KEYWORD: {
        while (i < limit && buf[i]! >= 0x61 && buf[i]! <= 0x7a) i++;
        return i < limit ? this.#endOrResync(TOKEN_KEYWORD, buf, start, i) : i;
      }
      case DIGITS:
      case MANTISSA_DIGITS:
      case EXP_DIGITS:
        return this.#inDigits(state, buf, start, i, limit);
      default:
        return this.#numberStep(state, buf, start, i);
    }
  }

  #inString(state: number, buf: Uint8Array, start: number, i: number, limit: number): number {
    const quote = state === DQ_STRING ? 0x22 : 0x27;
    while (i < limit) {
      const byte = buf[i]!;
      if (byte === quote || byte === 0x5c || byte < 0x20 || byte > 0xfd) break;
      i++;
    }
    if (i === limit) return i;
    const byte = buf[i++]!;
    if (byte === quote) {
      this.#endToken(TOKEN_STRING, buf, start, i);
    } else if (byte === 0x5c) {
      this.#state = state === DQ_STRING ? DQ_ESCAPE : SQ_ESCAPE;
    } else if (byte === RESYNC_BYTE) {
      this.#resync();
    } else {
      this.#error(buf, start, i);
    }
    return i;
  }

  /** Any byte 0x20-0xFD may follow a backslash; the parser judges the escape. */
  #afterBackslash(stringState: number, buf: Uint8Array, start: number, i: number): number {
    const byte = buf[i++]!;
    if (byte >= 0x20 && byte <= 0xfd) this.#state = stringState;
    else if (byte === RESYNC_BYTE) this.#resync();
    else this.#error(buf, start, i);
    return i;
  }

  #inDigits(state: number, buf: Uint8Array, start: number, i: number, limit: number): number {
    while (i < limit && isDigit(buf[i]!)) i++;
    if (i === limit) return i;
    const byte = buf[i]!;
    if (state !== EXP_DIGITS && (byte === 0x65 || byte === 0x45)) {
      this.#state = EXP_E;
      return i + 1;
    }
    if (state === DIGITS && byte === 0x2e) {
      this.#state = MANTISSA;
      return i + 1;
    }
    return this.#endOrResync(state === DIGITS ? TOKEN_INTEGER : TOKEN_FLOAT, buf, start, i);
  }

  /**
   * The byte at `end` ends a number or keyword and is lexed again from the start state, except
   * 0xFF, which drops the unfinished token with the rest of the partial message.
   */
  #endOrResync(type: TokenType, buf: Uint8Array, start: number, end: number): number {
    if (buf[end] === RESYNC_BYTE) {
      this.#resync();
      return end + 1;
    }
    this.#endToken(type, buf, start, end);
    return end;
  }

  /** The one-byte number states: after `0`, `-`, `.`, `e` and the exponent sign. */
  #numberStep(state: number, buf: Uint8Array, start: number, i: number): number {
    const byte = buf[i]!;
    let next = -1;
    switch (state) {
      case ZERO:
        if (byte === 0x2e) next = MANTISSA;
        else if (!isDigit(byte)) return this.#endOrResync(TOKEN_INTEGER, buf, start, i);
        // A digit after a leading `0` is an error (no octal, no leading zeros).
        break;
      case SIGN:
        if (byte === 0x30) next = ZERO;
        else if (isDigit(byte)) next = DIGITS;
        break;
      case MANTISSA:
      case EXP_SIGN:
        if (isDigit(byte)) next = state === MANTISSA ? MANTISSA_DIGITS : EXP_DIGITS;
        break;
      case EXP_E:
        if (byte === 0x2b || byte === 0x2d) next = EXP_SIGN;
        else if (isDigit(byte)) next = EXP_DIGITS;
        break;
    }
    if (next >= 0) this.#state = next;
    else if (byte === RESYNC_BYTE) this.#resync();
    else this.#error(buf, start, i + 1);
    return i + 1;
  }

  #endToken(type: TokenType, buf: Uint8Array, start: number, end: number): void {
    this.#state = START;
    if (this.#carryLength === 0) {
      this.#sink.token(type, buf, start, end);
      return;
    }
    this.#carryOver(buf, start, end);
    const length = this.#carryLength;
    this.#carryLength = 0;
    this.#sink.token(type, this.#carry, 0, length);
    this.#shrinkCarry();
  }

  #error(buf: Uint8Array, start: number, end: number): void {
    this.#state = RECOVERY;
    if (this.#carryLength === 0) {
      this.#sink.lexError(buf, start, end);
      return;
    }
    this.#carryOver(buf, start, end);
    const length = this.#carryLength;
    this.#carryLength = 0;
    this.#sink.lexError(this.#carry, 0, length);
    this.#shrinkCarry();
  }

  /** qemu hands an over-long token to the parser, which rejects it; lexing restarts afresh. */
  #tooLarge(): void {
    this.#state = START;
    this.#dropCarry();
    this.#sink.tokenTooLarge();
  }

  #resync(): void {
    this.#state = START;
    this.#dropCarry();
    this.#sink.resync();
  }

  #carryOver(buf: Uint8Array, start: number, end: number): void {
    const needed = this.#carryLength + (end - start);
    if (needed > this.#carry.length) {
      const grown = new Uint8Array(Math.max(needed, this.#carry.length * 2));
      grown.set(this.#carry.subarray(0, this.#carryLength));
      this.#carry = grown;
    }
    this.#carry.set(buf.subarray(start, end), this.#carryLength);
    this.#carryLength = needed;
  }

  #dropCarry(): void {
    this.#carryLength = 0;
    this.#shrinkCarry();
  }

  #shrinkCarry(): void {
    if (this.#carry.length > CARRY_KEEP_BYTES) this.#carry = new Uint8Array(256);
  }
}
