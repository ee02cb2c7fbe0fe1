/**
 * Fuzz tests for the wire JSON parser: 10,000 deterministic hostile inputs (see
 * `tests/_util/fuzz_inputs.ts`) through one long-lived parser, split at random points. The parser
 * must never throw, only ever report qemu's error texts, produce values the writer can print and
 * read back, give the same events however the bytes are chunked, and always come back on 0xFF.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  encodeJson,
  formatDouble,
  type JsonEvent,
  JsonMessageParser,
  type JsonValue,
} from "../../src/protocol/json.ts";
import { fuzzInputs, isSafeInput, Random } from "../_util/fuzz_inputs.ts";

const encoder = new TextEncoder();
const PING = '{"execute":"guest-ping"}';
const RESYNC_AND_PING = new Uint8Array([0xff, ...encoder.encode(PING)]);

/** Every desc qemu's streamer and parser can produce. */
const KNOWN_DESC = new RegExp(
  "^JSON (token size limit exceeded|token count limit exceeded|nesting depth limit exceeded|" +
    "parse error, (stray '.*'|invalid keyword '[a-z]*'?|expecting value|duplicate key|" +
    "missing : in object pair|key is not a string in object|expected separator in (dict|list)|" +
    "invalid escape sequence in string|invalid UTF-8 sequence in string|" +
    ".{2,12} is not a valid Unicode character))$",
  "s",
);

function checkEvent(event: JsonEvent): void {
  if (event.type === "error") {
    assert.match(event.desc, KNOWN_DESC);
    assert.ok(event.desc.isWellFormed(), "desc is a well-formed string");
    return;
  }
  const text = encodeJson(event.value);
  assert.match(text, /^[\x20-\x7e]*$/, "writer output is printable ASCII");
  // qemu prints an overflowed double as inf, which no JSON parser reads back.
  if (hasInfinity(event.value)) return;
  // What the writer prints reads back as the same value, up to what qemu's writer itself loses:
  // member order within a hash bucket, and the kind of integral doubles (1.0 prints as 1).
  assert.equal(canonical(reparse(text)), canonical(event.value), text.slice(0, 200));
}

function reparse(text: string): JsonValue {
  const events = new JsonMessageParser().feed(encoder.encode(text + " "));
  assert.equal(events.length, 1, text.slice(0, 200));
  const [event] = events;
  assert.equal(event!.type, "message", text.slice(0, 200));
  return (event as { value: JsonValue }).value;
}

/** Sorted keys, numbers by their printed form (with -0 as 0). */
function canonical(value: JsonValue): string {
  switch (value.kind) {
    case "double":
      return value.value === 0 ? "0" : formatDouble(value.value);
    case "array":
      return `[${value.items.map(canonical).join(",")}]`;
    case "object": {
      const keys = [...value.members.keys()].sort();
      return `{${
        keys.map((key) => `${JSON.stringify(key)}:${canonical(value.members.get(key)!)}`).join(",")
      }}`;
    }
    default:
      return encodeJson(value);
  }
}

function hasInfinity(value: JsonValue): boolean {
  switch (value.kind) {
    case "double":
      return !Number.isFinite(value.value);
    case "array":
      return value.items.some(hasInfinity);
    case "object":
      return [...value.members.values()].some(hasInfinity);
    default:
      return false;
  }
}

function randomChunks(input: Uint8Array, rng: Random): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < input.length;) {
    const size = 1 + rng.int(rng.chance(0.5) ? 16 : 8192);
    chunks.push(input.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
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

/** A kind-preserving rendering of an event, for comparing two runs. */
function describe(event: JsonEvent): string {
  return event.type === "error" ? `E ${event.desc}` : `M ${encodeJson(event.value)}`;
}

Deno.test("fuzzInputs() is deterministic and names no command with side effects", () => {
  const first = fuzzInputs(7, 500);
  const second = fuzzInputs(7, 500);
  assert.deepEqual(first, second);
  assert.notDeepEqual(fuzzInputs(8, 50), first.slice(0, 50));
  assert.ok(first.every(isSafeInput));
  assert.ok(!isSafeInput(encoder.encode('{"execute":"guest-fsfreeze-freeze"}')));
  assert.ok(first.some((input) => input.includes(0xff)), "has stray 0xFF bytes");
  assert.ok(fuzzInputs(7, 3000).some((input) => input.length > 1 << 20), "has oversized inputs");
});

Deno.test("JsonMessageParser survives 10,000 fuzz inputs and recovers after each batch", () => {
  const inputs = fuzzInputs(0x5eed, 10_000);
  const rng = new Random(42);
  const parser = new JsonMessageParser();
  let messages = 0;
  let errors = 0;
  const BATCH = 25;
  for (let start = 0; start < inputs.length; start += BATCH) {
    for (const input of inputs.slice(start, start + BATCH)) {
      for (const chunk of randomChunks(input, rng)) {
        for (const event of parser.feed(chunk)) {
          checkEvent(event);
          if (event.type === "message") messages++;
          else errors++;
        }
      }
    }
    const recovered = parser.feed(RESYNC_AND_PING);
    assert.deepEqual(recovered.map(describe), ['M {"execute": "guest-ping"}'], `batch at ${start}`);
  }
  // The generator must exercise both paths, or this test proves little.
  assert.ok(messages > 1000, `${messages} messages`);
  assert.ok(errors > 10_000, `${errors} errors`);
});

Deno.test("JsonMessageParser gives the same events for fuzz input however it is chunked", () => {
  const stream = concat(fuzzInputs(0xc0ffee, 2_000));
  const whole = new JsonMessageParser().feed(stream).map(describe);
  const rng = new Random(7);
  for (let round = 0; round < 3; round++) {
    const parser = new JsonMessageParser();
    const chunked = randomChunks(stream, rng).flatMap((chunk) => parser.feed(chunk).map(describe));
    assert.deepEqual(chunked, whole, `round ${round}`);
  }
});
