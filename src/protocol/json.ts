/**
 * The agent's wire JSON, byte-for-byte compatible with qemu-ga's lexer, streamer, parser and
 * writer (docs/protocol.md): {@linkcode JsonMessageParser} turns a byte stream into messages and
 * error descs, {@linkcode encodeJson} prints values as qemu does, {@linkcode fromJs} converts plain
 * JS values. Values keep qemu's number kinds (int64, uint64, double).
 *
 * One deliberate difference from qemu-ga: a 0xFF byte silently drops any partial message (qemu
 * answers it with a "stray" error although 0xFF is the documented resync byte).
 *
 * This file owns message assembly and limits; the byte state machine is `_json_lexer.ts`, value
 * building `_json_parser.ts`, string rules `_json_utf8.ts`, output `_json_writer.ts`. Nothing here
 * dispatches commands.
 *
 * @example
 * ```ts
 * const parser = new JsonMessageParser();
 * const events = parser.feed(new TextEncoder().encode('{"execute":"guest-ping"}'));
 * // events: [{ type: "message", value: { kind: "object", members: Map { "execute" => ... } } }]
 * encodeJson(fromJs({ return: {}, id: "abc" })); // '{"return": {}, "id": "abc"}'
 * ```
 *
 * @module
 */

import {
  JsonLexer,
  TOKEN_LCURLY,
  TOKEN_LSQUARE,
  TOKEN_RCURLY,
  TOKEN_RSQUARE,
  type TokenSink,
  type TokenType,
} from "./_json_lexer.ts";
import { errorMessage } from "../errors.ts";
import { ValueBuilder } from "./_json_parser.ts";
import { decodeLikeQemuWriter } from "./_json_utf8.ts";
import { writeJson } from "./_json_writer.ts";

export { formatDouble, qdictBucket, qdictKeyOrder, quoteJsonString } from "./_json_writer.ts";
export { RESYNC_BYTE } from "./_json_lexer.ts";

/** A QObject-like value: keeps qemu's number kinds so argument checks and id echo are exact. */
export type JsonValue =
  | { kind: "null" }
  | { kind: "bool"; value: boolean }
  | { kind: "int"; value: bigint }
  | { kind: "uint"; value: bigint }
  | { kind: "double"; value: number }
  | { kind: "string"; value: string }
  | { kind: "array"; items: JsonValue[] }
  | { kind: "object"; members: Map<string, JsonValue> };

/** What the parser reports: one complete top-level value, or one error with qemu's full desc. */
export type JsonEvent =
  | { type: "message"; value: JsonValue }
  | { type: "error"; desc: string };

/** Limits on one message, as qemu's json-streamer.c; all default to qemu's values. */
export interface JsonParserLimits {
  /** Bytes of all tokens in one message (a single token must stay one byte below). @default 64 MiB */
  maxTokenBytes?: number;
  /** Tokens in one message. @default 2 Mi */
  maxTokenCount?: number;
  /** Open brackets and braces. @default 1024 */
  maxDepth?: number;
}

/** qemu's `MAX_TOKEN_SIZE`. */
export const MAX_TOKEN_BYTES: number = 64 * 1024 * 1024;
/** qemu's `MAX_TOKEN_COUNT`. */
export const MAX_TOKEN_COUNT: number = 2 * 1024 * 1024;
/** qemu's `MAX_NESTING`. */
export const MAX_DEPTH = 1024;

/** qemu's `json_message_process_token()`: brackets, limits, message boundaries. */
class MessageStreamer implements TokenSink {
  readonly #maxTokenBytes: number;
  readonly #maxTokenCount: number;
  readonly #maxDepth: number;
  readonly #builder = new ValueBuilder();
  #braces = 0;
  #brackets = 0;
  #tokenBytes = 0;
  #tokenCount = 0;
  events: JsonEvent[] = [];

  constructor(maxTokenBytes: number, maxTokenCount: number, maxDepth: number) {
    this.#maxTokenBytes = maxTokenBytes;
    this.#maxTokenCount = maxTokenCount;
    this.#maxDepth = maxDepth;
  }

  token(type: TokenType, buf: Uint8Array, start: number, end: number): void {
    if (type === TOKEN_LCURLY) this.#braces++;
    else if (type === TOKEN_RCURLY) this.#braces--;
    else if (type === TOKEN_LSQUARE) this.#brackets++;
    else if (type === TOKEN_RSQUARE) this.#brackets--;
    const length = end - start;
    if (this.#tokenBytes + length + 1 > this.#maxTokenBytes) {
      return this.#fail("JSON token size limit exceeded");
    }
    if (this.#tokenCount + 1 > this.#maxTokenCount) {
      return this.#fail("JSON token count limit exceeded");
    }
    if (this.#braces + this.#brackets > this.#maxDepth) {
      return this.#fail("JSON nesting depth limit exceeded");
    }
    this.#tokenBytes += length;
    this.#tokenCount++;
    this.#builder.push(type, buf, start, end);
    // qemu parses as soon as nothing is open, or something was closed that was not open.
    if ((this.#braces > 0 || this.#brackets > 0) && this.#braces >= 0 && this.#brackets >= 0) {
      return;
    }
    const outcome = this.#builder.finish();
    this.#resetMessage();
    this.events.push(
      "value" in outcome
        ? { type: "message", value: outcome.value }
        : { type: "error", desc: outcome.desc },
    );
  }

  lexError(buf: Uint8Array, start: number, end: number): void {
    // qemu prints the token with %s, so a NUL (only ever the offending byte) ends it.
    const nul = buf.subarray(start, end).indexOf(0);
    const shown = decodeLikeQemuWriter(buf, start, nul < 0 ? end : start + nul);
    this.#fail(`JSON parse error, stray '${shown}'`);
  }

  tokenTooLarge(): void {
    this.#fail("JSON token size limit exceeded");
  }

  resync(): void {
    this.#resetMessage();
  }

  reset(): void {
    this.#resetMessage();
    this.events = [];
  }

  #fail(desc: string): void {
    this.#resetMessage();
    this.events.push({ type: "error", desc });
  }

  #resetMessage(): void {
    this.#braces = 0;
    this.#brackets = 0;
    this.#tokenBytes = 0;
    this.#tokenCount = 0;
    this.#builder.reset();
  }
}

/**
 * Splits a byte stream into JSON messages exactly as qemu-ga does: a message ends when its
 * top-level brackets balance (not at a newline), lexical errors are reported once and skipped,
 * limits are enforced per message. A 0xFF byte drops any partial message without an error.
 */
export class JsonMessageParser {
  readonly #streamer: MessageStreamer;
  readonly #lexer: JsonLexer;

  /** Creates a parser; `limits` exist for tests, the defaults are qemu's. */
  constructor(limits: JsonParserLimits = {}) {
    const maxTokenBytes = limits.maxTokenBytes ?? MAX_TOKEN_BYTES;
    this.#streamer = new MessageStreamer(
      maxTokenBytes,
      limits.maxTokenCount ?? MAX_TOKEN_COUNT,
      limits.maxDepth ?? MAX_DEPTH,
    );
    this.#lexer = new JsonLexer(this.#streamer, maxTokenBytes);
  }

  /** Feeds bytes; returns the events completed by them, in order. Never throws on any input. */
  feed(chunk: Uint8Array): JsonEvent[] {
    try {
      this.#lexer.feed(chunk);
    } catch (err) {
      // Only a bug (or exhausted memory) gets here; never let one chunk kill the agent's loop.
      const completed = this.#streamer.events;
      this.reset();
      const desc = `JSON parse error, internal error: ${errorMessage(err)}`;
      return [...completed, { type: "error", desc }];
    }
    const events = this.#streamer.events;
    // Hand the array over and start a new one: the caller owns what it was given.
    if (events.length !== 0) this.#streamer.events = [];
    return events.length === 0 ? [] : events;
  }

  /** Drops any partial message and lexer state (used when a client disconnects). */
  reset(): void {
    this.#lexer.reset();
    this.#streamer.reset();
  }
}

/** qemu's json-writer formatting (compact, ": " and ", ", QDict hash member order, escapes). */
export function encodeJson(value: JsonValue): string {
  return writeJson(value);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function fromBigInt(value: bigint): JsonValue {
  if (value >= INT64_MIN && value <= INT64_MAX) return { kind: "int", value };
  if (value > INT64_MAX && value <= UINT64_MAX) return { kind: "uint", value };
  throw new RangeError(`Cannot represent ${value} as int64 or uint64`);
}

function fromNumber(value: number): JsonValue {
  if (!Number.isInteger(value)) return { kind: "double", value };
  const integer = BigInt(value);
  if (integer >= INT64_MIN && integer <= UINT64_MAX) return fromBigInt(integer);
  return { kind: "double", value };
}

/**
 * Converts plain JS (null, boolean, number, bigint, string, arrays, plain objects and Maps) to
 * JsonValue. Integral numbers -> int (or uint above int64, double beyond uint64), other numbers
 * -> double; bigint -> int or uint by range. Object members that are `undefined` are left out.
 *
 * @throws {TypeError} for values JSON cannot hold (undefined, functions, symbols, class instances).
 * @throws {RangeError} for a bigint outside int64..uint64.
 */
export function fromJs(value: unknown): JsonValue {
  switch (typeof value) {
    case "boolean":
      return { kind: "bool", value };
    case "number":
      return fromNumber(value);
    case "bigint":
      return fromBigInt(value);
    case "string":
      return { kind: "string", value };
    case "object":
      if (value === null) return { kind: "null" };
      if (Array.isArray(value)) return { kind: "array", items: value.map(fromJs) };
      if (value instanceof Map) return objectFrom(value.entries());
      if (isPlainObject(value)) return objectFrom(Object.entries(value));
  }
  throw new TypeError(`Cannot convert ${describe(value)} to JSON`);
}

function objectFrom(entries: Iterable<[unknown, unknown]>): JsonValue {
  const members = new Map<string, JsonValue>();
  for (const [key, member] of entries) {
    if (typeof key !== "string") throw new TypeError(`Cannot use ${describe(key)} as a JSON key`);
    if (member !== undefined) members.set(key, fromJs(member));
  }
  return { kind: "object", members };
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (typeof value === "object" && value !== null) return value.constructor?.name ?? "object";
  return typeof value;
}
