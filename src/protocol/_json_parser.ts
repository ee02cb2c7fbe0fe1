/**
 * Builds one message's value from its tokens as they arrive, without recursion: an explicit stack
 * of open arrays and objects. It reproduces qemu's recursive-descent `json-parser.c` exactly — the
 * same first error, with the same text — but finds it as soon as the offending token arrives. The
 * error is held until the streamer in `json.ts` decides the message is complete, which is when
 * qemu would have run its parser.
 *
 * @module
 */

import type { JsonValue } from "./json.ts";
import {
  TOKEN_COLON,
  TOKEN_COMMA,
  TOKEN_FLOAT,
  TOKEN_INTEGER,
  TOKEN_KEYWORD,
  TOKEN_LCURLY,
  TOKEN_LSQUARE,
  TOKEN_RCURLY,
  TOKEN_RSQUARE,
  TOKEN_STRING,
  type TokenType,
} from "./_json_lexer.ts";
import { decodeStringToken } from "./_json_utf8.ts";

/** What the innermost open container (or the top level) expects next. */
const EXPECT_TOP = 0;
const EXPECT_NOTHING = 1;
const ARRAY_FIRST = 2;
const ARRAY_ITEM = 3;
const ARRAY_NEXT = 4;
const OBJECT_FIRST = 5;
const OBJECT_KEY = 6;
const OBJECT_COLON = 7;
const OBJECT_VALUE = 8;
const OBJECT_NEXT = 9;

/** One open array or object. */
interface Frame {
  state: number;
  items: JsonValue[] | undefined;
  members: Map<string, JsonValue> | undefined;
  key: string;
}

/** qemu's parse_error() formats into a 1024-byte buffer, so long messages are cut to 1023 bytes. */
const MESSAGE_BYTES = 1023;

const NULL_VALUE: JsonValue = { kind: "null" };
const TRUE_VALUE: JsonValue = { kind: "bool", value: true };
const FALSE_VALUE: JsonValue = { kind: "bool", value: false };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Digits (sign excluded) that always fit int64. */
const SAFE_INT64_DIGITS = 18;

function asciiText(buf: Uint8Array, start: number, end: number): string {
  let text = "";
  for (let i = start; i < end; i++) text += String.fromCharCode(buf[i]!);
  return text;
}

/** Digits that a double holds exactly, so short integers skip string-to-BigInt parsing. */
const EXACT_DIGITS = 15;

/** An integer token as qemu stores it: int64, else uint64 (if not negative), else double. */
function integerValue(buf: Uint8Array, start: number, end: number): JsonValue {
  const negative = buf[start] === 0x2d;
  const digits = end - start - (negative ? 1 : 0);
  if (digits <= EXACT_DIGITS) {
    let magnitude = 0;
    for (let i = negative ? start + 1 : start; i < end; i++) {
      magnitude = magnitude * 10 + buf[i]! - 0x30;
    }
    return { kind: "int", value: BigInt(negative ? -magnitude : magnitude) };
  }
  const text = asciiText(buf, start, end);
  const value = BigInt(text);
  if (digits <= SAFE_INT64_DIGITS || (value >= INT64_MIN && value <= INT64_MAX)) {
    return { kind: "int", value };
  }
  if (value > 0n && value <= UINT64_MAX) return { kind: "uint", value };
  return { kind: "double", value: Number(text) };
}

function keywordValue(buf: Uint8Array, start: number, end: number): JsonValue | undefined {
  const length = end - start;
  if (length === 4) {
    const text = asciiText(buf, start, end);
    if (text === "true") return TRUE_VALUE;
    if (text === "null") return NULL_VALUE;
  } else if (length === 5 && asciiText(buf, start, end) === "false") {
    return FALSE_VALUE;
  }
  return undefined;
}

function invalidKeywordMessage(buf: Uint8Array, start: number, end: number): string {
  const shown = asciiText(buf, start, Math.min(end, start + MESSAGE_BYTES));
  return `invalid keyword '${shown}'`.slice(0, MESSAGE_BYTES);
}

/** Incrementally parses the tokens of one message; see the module doc. */
export class ValueBuilder {
  #frames: Frame[] = [];
  #state = EXPECT_TOP;
  #result: JsonValue | undefined;
  /** The first error's message (without the "JSON parse error, " prefix). */
  #error: string | undefined;

  /** Takes the next token of the message. */
  push(type: TokenType, buf: Uint8Array, start: number, end: number): void {
    if (this.#error !== undefined) return;
    switch (this.#state) {
      case ARRAY_NEXT:
        if (type === TOKEN_RSQUARE) this.#close();
        else if (type === TOKEN_COMMA) this.#expect(ARRAY_ITEM);
        else this.#fail("expected separator in list");
        return;
      case OBJECT_NEXT:
        if (type === TOKEN_RCURLY) this.#close();
        else if (type === TOKEN_COMMA) this.#expect(OBJECT_KEY);
        else this.#fail("expected separator in dict");
        return;
      case OBJECT_COLON:
        if (type === TOKEN_COLON) this.#expect(OBJECT_VALUE);
        else this.#fail("missing : in object pair");
        return;
      case EXPECT_NOTHING:
        // The streamer ends a message with its last token, so this cannot happen.
        this.#fail("expecting value");
        return;
    }
    this.#value(type, buf, start, end);
  }

  /** The message is complete: its value, or the first error's full desc. */
  finish(): { value: JsonValue } | { desc: string } {
    const error = this.#error ?? (this.#result === undefined ? "premature EOI" : undefined);
    const result = this.#result;
    this.reset();
    if (error !== undefined) return { desc: `JSON parse error, ${error}` };
    return { value: result! };
  }

  /** Forgets the partial message. */
  reset(): void {
    this.#frames = [];
    this.#state = EXPECT_TOP;
    this.#result = undefined;
    this.#error = undefined;
  }

  /** A token where a value (or, right after an opening bracket, the closing one) may start. */
  #value(type: TokenType, buf: Uint8Array, start: number, end: number): void {
    const state = this.#state;
    switch (type) {
      case TOKEN_LCURLY:
        this.#open({ state: OBJECT_FIRST, items: undefined, members: new Map(), key: "" });
        return;
      case TOKEN_LSQUARE:
        this.#open({ state: ARRAY_FIRST, items: [], members: undefined, key: "" });
        return;
      case TOKEN_RSQUARE:
        if (state === ARRAY_FIRST) this.#close();
        else this.#fail("expecting value");
        return;
      case TOKEN_RCURLY:
        if (state === OBJECT_FIRST) this.#close();
        else this.#fail("expecting value");
        return;
      case TOKEN_STRING: {
        const text = decodeStringToken(buf, start, end);
        if (typeof text !== "string") this.#fail(text.message);
        else if (state === OBJECT_FIRST || state === OBJECT_KEY) this.#takeKey(text);
        else this.#deliver({ kind: "string", value: text });
        return;
      }
      case TOKEN_INTEGER:
        this.#deliver(integerValue(buf, start, end));
        return;
      case TOKEN_FLOAT:
        this.#deliver({ kind: "double", value: Number(asciiText(buf, start, end)) });
        return;
      case TOKEN_KEYWORD: {
        const value = keywordValue(buf, start, end);
        if (value === undefined) this.#fail(invalidKeywordMessage(buf, start, end));
        else this.#deliver(value);
        return;
      }
      default:
        this.#fail("expecting value");
    }
  }

  #top(): Frame {
    return this.#frames[this.#frames.length - 1]!;
  }

  #open(frame: Frame): void {
    this.#frames.push(frame);
    this.#state = frame.state;
  }

  #close(): void {
    const frame = this.#frames.pop()!;
    this.#state = this.#frames.length === 0 ? EXPECT_TOP : this.#top().state;
    this.#deliver(
      frame.items !== undefined
        ? { kind: "array", items: frame.items }
        : { kind: "object", members: frame.members! },
    );
  }

  /** A complete value goes where the innermost container (or the top level) expects one. */
  #deliver(value: JsonValue): void {
    if (this.#frames.length === 0) {
      this.#result = value;
      this.#state = EXPECT_NOTHING;
      return;
    }
    const frame = this.#top();
    switch (frame.state) {
      case ARRAY_FIRST:
      case ARRAY_ITEM:
        frame.items!.push(value);
        this.#expect(ARRAY_NEXT);
        return;
      case OBJECT_FIRST:
      case OBJECT_KEY:
        // Any value is parsed in key position first; only then is its type checked.
        this.#fail("key is not a string in object");
        return;
      default: {
        const members = frame.members!;
        if (members.has(frame.key)) {
          this.#fail("duplicate key");
          return;
        }
        members.set(frame.key, value);
        this.#expect(OBJECT_NEXT);
      }
    }
  }

  #takeKey(key: string): void {
    this.#top().key = key;
    this.#expect(OBJECT_COLON);
  }

  /** Sets what the innermost container expects next (mirrored in `#state` for speed). */
  #expect(state: number): void {
    this.#top().state = state;
    this.#state = state;
  }

  #fail(message: string): void {
    this.#error = message;
    // The partial value is no longer needed; free it now rather than at the end of the message.
    this.#frames = [];
    this.#result = undefined;
  }
}
