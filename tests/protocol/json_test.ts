/**
 * Tests for the wire JSON: qemu-ga 7.2.22 transcripts replayed byte for byte, every error text,
 * the limits, error recovery, the 0xFF resync (our one deliberate difference), chunking at every
 * split point, number kinds, and the writer's escapes, member order and `%.17g` doubles.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  encodeJson,
  formatDouble,
  fromJs,
  type JsonEvent,
  JsonMessageParser,
  type JsonValue,
  qdictBucket,
  qdictKeyOrder,
} from "../../src/protocol/json.ts";
import {
  QGA_LARGE_TRANSCRIPTS,
  QGA_RESYNC_TRANSCRIPTS,
  QGA_TRANSCRIPTS,
  RESET_BYTES,
  RESET_LINES,
} from "./_qga_transcripts.ts";

/** One byte per char (latin1), so tests can spell invalid UTF-8 as `\xNN`. */
function bytes(latin1: string): Uint8Array {
  const out = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) out[i] = latin1.charCodeAt(i);
  return out;
}

/** `text` repeated `count` times, as bytes, without building a giant JS string. */
function repeated(segments: readonly (readonly [string, number])[]): Uint8Array {
  const total = segments.reduce((sum, [text, count]) => sum + text.length * count, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const [text, count] of segments) {
    const unit = bytes(text);
    if (count === 0) continue;
    out.set(unit, offset);
    let filled = unit.length;
    const length = unit.length * count;
    while (filled < length) {
      const copy = Math.min(filled, length - filled);
      out.copyWithin(offset + filled, offset, offset + copy);
      filled += copy;
    }
    offset += length;
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function parseAll(input: Uint8Array | string, parser = new JsonMessageParser()): JsonEvent[] {
  return parser.feed(typeof input === "string" ? bytes(input) : input);
}

/** The error descs of a feed, in order (messages shown as their encoding). */
function outcomes(input: Uint8Array | string, parser?: JsonMessageParser): string[] {
  return parseAll(input, parser).map((event) =>
    event.type === "error" ? `error: ${event.desc}` : encodeJson(event.value)
  );
}

/** A kind-preserving rendering, so `1` (int) and `1.0` (double) differ. */
function describe(event: JsonEvent): string {
  return JSON.stringify(event, (_key, value) => {
    if (typeof value === "bigint") return `${value}n`;
    if (value instanceof Map) return [...value.entries()];
    if (typeof value === "number" && !Number.isFinite(value)) return String(value);
    if (Object.is(value, -0)) return "-0";
    return value;
  });
}

function object(entries: [string, JsonValue][]): JsonValue {
  return { kind: "object", members: new Map(entries) };
}

/**
 * Renders events as qemu-ga renders its replies, for the few commands the transcripts use:
 * a parse error, "not an object", a missing `execute`, `guest-ping`, or an unknown command.
 * This stands in for the dispatcher so the transcripts test the parser and the writer only.
 */
function qgaReply(event: JsonEvent): string {
  const genericError = (desc: string): string =>
    encodeJson(fromJs({ error: { class: "GenericError", desc } }));
  if (event.type === "error") return genericError(event.desc);
  const request = event.value;
  if (request.kind !== "object") return genericError("QMP input must be a JSON object");
  const execute = request.members.get("execute");
  if (execute === undefined) return genericError("QMP input lacks member 'execute'");
  assert.equal(execute.kind, "string");
  const reply = new Map<string, JsonValue>();
  if (execute.value === "guest-ping") reply.set("return", object([]));
  else {
    const desc = `The command ${execute.value} has not been found`;
    reply.set("error", fromJs({ class: "CommandNotFound", desc }));
  }
  const id = request.members.get("id");
  if (id !== undefined) reply.set("id", id);
  return encodeJson({ kind: "object", members: reply });
}

/** The reply lines for `input` fed in reads of `chunkSize` bytes (qemu-ga reads 4096). */
function qgaReplies(input: Uint8Array, chunkSize = input.length): string[] {
  const parser = new JsonMessageParser();
  const lines: string[] = [];
  for (let offset = 0; offset < input.length; offset += chunkSize) {
    lines.push(...parser.feed(input.subarray(offset, offset + chunkSize)).map(qgaReply));
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// Transcripts recorded from qemu-ga 7.2.22

Deno.test("JsonMessageParser reproduces every qemu-ga 7.2.22 transcript byte for byte", () => {
  for (const [name, input, expected] of QGA_TRANSCRIPTS) {
    const replies = qgaReplies(bytes(input + RESET_BYTES));
    assert.deepEqual(replies, [...expected, ...RESET_LINES], name);
  }
});

Deno.test("JsonMessageParser reproduces qemu-ga's transcripts when fed in 4096-byte reads", () => {
  for (const [name, input, expected] of QGA_TRANSCRIPTS) {
    const replies = qgaReplies(bytes(input + RESET_BYTES), 4096);
    assert.deepEqual(replies, [...expected, ...RESET_LINES], name);
  }
});

Deno.test("JsonMessageParser reproduces qemu-ga's replies at the 64 MiB and 2 Mi token limits", () => {
  for (const [name, segments, expected] of QGA_LARGE_TRANSCRIPTS) {
    const input = concat(repeated(segments), bytes(RESET_BYTES));
    assert.deepEqual(qgaReplies(input, 4096), expected, name);
  }
});

Deno.test("JsonMessageParser stays silent where qemu-ga answers 0xFF with a stray error", () => {
  for (const [name, input, qemuLines] of QGA_RESYNC_TRANSCRIPTS) {
    let ours = qemuLines.filter((line) => !line.includes("\\uFFFD"));
    // A number still waiting for its terminator is partial input too, so 0xFF drops it.
    if (name === "ff after number") ours = [];
    assert.deepEqual(qgaReplies(bytes(input)), ours, name);
  }
});

// ---------------------------------------------------------------------------------------------
// Error texts

Deno.test("JsonMessageParser reports every qemu parser error text for its trigger", () => {
  // "premature EOI" and "Missing value in dict" exist in qemu's parser but cannot be reached from
  // a stream: qemu parses only balanced input, and every failed value already set an error.
  const cases: [string, string][] = [
    ['{"a" 1}', "missing : in object pair"],
    ["{1:2}", "key is not a string in object"],
    ["{[1]:2}", "key is not a string in object"],
    ["{null:2}", "key is not a string in object"],
    ['{"a":1,"a":2}', "duplicate key"],
    ['{"a":1 "b":2}', "expected separator in dict"],
    ["[1 2]", "expected separator in list"],
    ["[1:2]", "expected separator in list"],
    ["}", "expecting value"],
    ["]", "expecting value"],
    [",", "expecting value"],
    [":", "expecting value"],
    ["[,]", "expecting value"],
    ["{,}", "expecting value"],
    ['{"a":}', "expecting value"],
    ["[1,]", "expecting value"],
    ["{]", "expecting value"],
    ['"\\q"', "invalid escape sequence in string"],
    ['"\\\xc3\xa9"', "invalid escape sequence in string"],
    ['"\\uD800"', "\\uD800 is not a valid Unicode character"],
    ['"\\ud800\\u0041"', "\\ud800 is not a valid Unicode character"],
    ['"\\uDFFF"', "\\uDFFF is not a valid Unicode character"],
    ['"\\uFFFE"', "\\uFFFE is not a valid Unicode character"],
    ['"\\uFDEF"', "\\uFDEF is not a valid Unicode character"],
    ['"\\uDBFF\\uDFFF"', "\\uDBFF\\uDFFF is not a valid Unicode character"],
    ['"\\u12"', '\\u12" is not a valid Unicode character'],
    ["'\\u'", "\\u' is not a valid Unicode character"],
    // qemu quotes 6 bytes from the backslash (cut at the token's end), even mid-character.
    ['"\\u\xe2\x82\xac"', '\\u\u20ac" is not a valid Unicode character'],
    ['"\\u\xe2\x82"', '\\u\ufffd" is not a valid Unicode character'],
    ['"\xc3"', "invalid UTF-8 sequence in string"],
    ['"\x80"', "invalid UTF-8 sequence in string"],
    ['"\xe0\x80\x80"', "invalid UTF-8 sequence in string"],
    ['"\xed\xbf\xbf"', "invalid UTF-8 sequence in string"],
    ['"\xef\xb7\x90"', "invalid UTF-8 sequence in string"],
    ['"\xf0\x9f\xbf\xbe"', "invalid UTF-8 sequence in string"],
    ['"\xf8\x88\x80\x80\x80"', "invalid UTF-8 sequence in string"],
    ["xx ", "invalid keyword 'xx'"],
    ["nul ", "invalid keyword 'nul'"],
    ["[truex]", "invalid keyword 'truex'"],
  ];
  for (const [input, message] of cases) {
    assert.deepEqual(outcomes(input), [`error: JSON parse error, ${message}`], input);
  }
});

Deno.test("JsonMessageParser reports the first error in token order", () => {
  const cases: [string, string][] = [
    ['{"a":1,"a":[1,}]', "expecting value"],
    ['{"a":"\\q","a":1}', "invalid escape sequence in string"],
    ['{"a":1,"a":xx}', "invalid keyword 'xx'"],
    ["{[xx]:1}", "invalid keyword 'xx'"],
    ['["\\q", "\xc3"]', "invalid escape sequence in string"],
    ['["\xc3\\q"]', "invalid UTF-8 sequence in string"],
  ];
  for (const [input, message] of cases) {
    assert.deepEqual(outcomes(input), [`error: JSON parse error, ${message}`], input);
  }
});

Deno.test("JsonMessageParser cuts an invalid keyword message to 1023 bytes as qemu does", () => {
  const long = "q".repeat(5000);
  const [event] = parseAll(long + " ");
  assert.equal(event?.type, "error");
  const desc = (event as { desc: string }).desc;
  assert.equal(desc, `JSON parse error, invalid keyword '${"q".repeat(1006)}`);
  assert.equal(desc.length - "JSON parse error, ".length, 1023);
});

Deno.test("JsonMessageParser reports lexical errors as stray with the partial token", () => {
  const cases: [string, string][] = [
    ["@", "@"],
    ["01", "01"],
    ["-01", "-01"],
    ["-x", "-x"],
    ["1.x", "1.x"],
    ["1e}", "1e}"],
    ["1e+ ", "1e+ "],
    ["-\n", "-\n"],
    ["TRUE", "T"],
    ['"ab\x01', '"ab\x01'],
    ['"a\nb"', '"a\n'],
    ["'a\tb'", "'a\t"],
    ['"ab\x00cd"', '"ab'],
    ["\x00", ""],
    ['"\\\x1f"', '"\\\x1f'],
    ["\x7f", "\x7f"],
    ["\xfe", "\ufffd"],
    ["\x80", "\ufffd"],
    ['"ab\xfe', '"ab\ufffd'],
    ['"\xc3\xa9\x01', '"\u00e9\x01'],
    ['"\xe2\x82\x01', '"\ufffd\x01'],
    ['"\xc1\x81\xe0\x80\x80\xf8\x88\x80\x80\x80\x01', '"\ufffd\ufffd\ufffd\x01'],
    ['"\xef\xbf\xbe\xed\xa0\x80\x01', '"\ufffd\ufffd\x01'],
    ['"\xc0\x80\x01', '"\x00\x01'],
  ];
  for (const [input, token] of cases) {
    const [first] = outcomes(input);
    assert.equal(first, `error: JSON parse error, stray '${token}'`, JSON.stringify(input));
  }
});

// ---------------------------------------------------------------------------------------------
// Recovery

Deno.test("JsonMessageParser skips garbage after a lexical error up to a structural byte", () => {
  assert.deepEqual(outcomes('xx@#{"execute":"guest-ping"}'), [
    "error: JSON parse error, invalid keyword 'xx'",
    "error: JSON parse error, stray '@'",
    '{"execute": "guest-ping"}',
  ]);
  // Space and TAB do not end recovery; newline, other controls and structural bytes do.
  assert.deepEqual(outcomes('@ a\tb 1 "x" {"a":1}'), [
    "error: JSON parse error, stray '@'",
    '{"a": 1}',
  ]);
  assert.deepEqual(outcomes("@abc\n7 "), ["error: JSON parse error, stray '@'", "7"]);
  assert.deepEqual(outcomes("@abc\x02[]"), [
    "error: JSON parse error, stray '@'",
    "error: JSON parse error, stray '\x02'",
    "[]",
  ]);
  assert.deepEqual(outcomes("@abc\xfe[]"), [
    "error: JSON parse error, stray '@'",
    "error: JSON parse error, stray '\ufffd'",
    "[]",
  ]);
  assert.deepEqual(outcomes("@abc:[]"), [
    "error: JSON parse error, stray '@'",
    "error: JSON parse error, expecting value",
    "[]",
  ]);
});

Deno.test("JsonMessageParser drops the partial message on a lexical error inside it", () => {
  assert.deepEqual(outcomes('{"execute":@"guest-ping"}{"a":[1]}'), [
    "error: JSON parse error, stray '@'",
    "error: JSON parse error, expecting value",
    '{"a": [1]}',
  ]);
  assert.deepEqual(outcomes('[1, "a\x01"] [2]'), [
    "error: JSON parse error, stray '\"a\x01'",
    "error: JSON parse error, expecting value",
    "[2]",
  ]);
});

Deno.test("JsonMessageParser waits forever for an unterminated object", () => {
  const parser = new JsonMessageParser();
  assert.deepEqual(outcomes('{"execute":"guest-ping"', parser), []);
  assert.deepEqual(outcomes("\n\n\n", parser), []);
  assert.deepEqual(outcomes("}", parser), ['{"execute": "guest-ping"}']);
});

// ---------------------------------------------------------------------------------------------
// 0xFF resync (deliberately unlike qemu-ga)

Deno.test("JsonMessageParser drops a partial message silently on 0xFF anywhere", () => {
  const ping = '{"execute":"guest-ping"}';
  const cases: [string, string, string[]?][] = [
    ["at the start", "\xff"],
    ["twice", "\xff\xff"],
    ["mid object", '{"execute":\xff'],
    ["mid nested object", '{"a":[{"b":[1,\xff'],
    ["inside a string", '{"execute":"gue\xff'],
    ["inside a single-quoted string", "{'execute':'gue\xff"],
    ["after a backslash", '{"a":"\\\xff'],
    ["inside a number", '{"a":12\xff'],
    ["after a sign", '{"a":-\xff'],
    ["after a leading zero", "0\xff"],
    ["after an exponent", "1e\xff"],
    ["inside a keyword", '{"a":tru\xff'],
    ["a pending top-level number", "123\xff"],
    ["a pending top-level keyword", "true\xff"],
    ["inside an invalid UTF-8 sequence", '{"a":"\xe2\x82\xff'],
    ["in recovery", "@garbage\xff", ["error: JSON parse error, stray '@'"]],
    ["in recovery inside an object", '{"a":@x\xff', ["error: JSON parse error, stray '@'"]],
  ];
  for (const [name, prefix, before = []] of cases) {
    assert.deepEqual(outcomes(prefix + ping), [...before, '{"execute": "guest-ping"}'], name);
  }
});

Deno.test("JsonMessageParser keeps messages completed before a 0xFF", () => {
  assert.deepEqual(outcomes('[1]\xff[2]{"a":\xff[3]'), ["[1]", "[2]", "[3]"]);
  assert.deepEqual(outcomes('@\xff{"a":1}'), [
    "error: JSON parse error, stray '@'",
    '{"a": 1}',
  ]);
});

Deno.test("JsonMessageParser resyncs on 0xFF split from its message across feeds", () => {
  const parser = new JsonMessageParser();
  assert.deepEqual(outcomes('{"execute":"gu', parser), []);
  assert.deepEqual(outcomes("\xff", parser), []);
  assert.deepEqual(outcomes('{"execute":"guest-ping"}', parser), ['{"execute": "guest-ping"}']);
});

// ---------------------------------------------------------------------------------------------
// Streaming

const SAMPLE_STREAM = concat(
  bytes('{"execute":"guest-sync","arguments":{"id":1234567}}'),
  bytes("{'execute': 'guest-ping', 'id': 'it\\'s'}\n"),
  bytes(
    '{"a":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\u00e9\\ud83d\\ude00\\n","b":[1.5e-3,-0,true]}',
  ),
  bytes('xx@# 12 {"c":null} 18446744073709551615 -1e400 "\\q" "tail\xc3\xa9" [[[]]]'),
  bytes('{"d":1} \xff{"e":"partial'),
  bytes('\xff[1,{"f":2}]\t\r\n"x\x01" false '),
);

function eventsAsOneFeed(input: Uint8Array): string[] {
  return new JsonMessageParser().feed(input).map(describe);
}

Deno.test("JsonMessageParser gives the same events at every split point of a stream", () => {
  const expected = eventsAsOneFeed(SAMPLE_STREAM);
  assert.ok(expected.length > 10);
  for (let at = 0; at <= SAMPLE_STREAM.length; at++) {
    const parser = new JsonMessageParser();
    const events = [
      ...parser.feed(SAMPLE_STREAM.subarray(0, at)),
      ...parser.feed(SAMPLE_STREAM.subarray(at)),
    ].map(describe);
    assert.deepEqual(events, expected, `split at ${at}`);
  }
});

Deno.test("JsonMessageParser gives the same events when fed one byte at a time", () => {
  const expected = eventsAsOneFeed(SAMPLE_STREAM);
  const parser = new JsonMessageParser();
  const events: string[] = [];
  for (let i = 0; i < SAMPLE_STREAM.length; i++) {
    events.push(...parser.feed(SAMPLE_STREAM.subarray(i, i + 1)).map(describe));
  }
  assert.deepEqual(events, expected);
});

Deno.test("JsonMessageParser emits each message when its brackets balance, not at newline", () => {
  const parser = new JsonMessageParser();
  assert.deepEqual(outcomes('{"a":\n1\n', parser), []);
  assert.deepEqual(outcomes('}{"b":2}[3', parser), ['{"a": 1}', '{"b": 2}']);
  assert.deepEqual(outcomes("]", parser), ["[3]"]);
});

Deno.test("JsonMessageParser completes a top-level scalar only when its token ends", () => {
  const parser = new JsonMessageParser();
  assert.deepEqual(outcomes("12", parser), []);
  assert.deepEqual(outcomes("3", parser), []);
  assert.deepEqual(outcomes(" tr", parser), ["123"]);
  assert.deepEqual(outcomes("ue,", parser), ["true", "error: JSON parse error, expecting value"]);
  assert.deepEqual(outcomes('"x"', parser), ['"x"']);
});

Deno.test("JsonMessageParser.reset() drops a partial message and lexer state", () => {
  const parser = new JsonMessageParser();
  assert.deepEqual(outcomes('{"a":"unterminated', parser), []);
  parser.reset();
  assert.deepEqual(outcomes('{"b":1}', parser), ['{"b": 1}']);
  assert.deepEqual(outcomes("@", parser), ["error: JSON parse error, stray '@'"]);
  parser.reset();
  assert.deepEqual(outcomes("abc ", parser), ["error: JSON parse error, invalid keyword 'abc'"]);
});

// ---------------------------------------------------------------------------------------------
// Limits

Deno.test("JsonMessageParser enforces the nesting limit and carries on after it", () => {
  assert.deepEqual(outcomes("[[[[]]]]", new JsonMessageParser({ maxDepth: 4 })), ["[[[[]]]]"]);
  // The 4th opening bracket is dropped with the message; each closer left over is a message.
  const parser = new JsonMessageParser({ maxDepth: 3 });
  assert.deepEqual(outcomes('[[{"a":[]}]]', parser), [
    "error: JSON nesting depth limit exceeded",
    ...Array(4).fill("error: JSON parse error, expecting value"),
  ]);
  assert.deepEqual(outcomes("[[[1]]]", parser), ["[[[1]]]"]);
});

Deno.test("JsonMessageParser enforces the token count limit per message", () => {
  const parser = new JsonMessageParser({ maxTokenCount: 5 });
  assert.deepEqual(outcomes("[1,2]", parser), ["[1, 2]"]);
  // The 6th token overflows and is dropped with the message; the leftover "]" is a message.
  assert.deepEqual(outcomes("[1,2,3]", parser), [
    "error: JSON token count limit exceeded",
    "error: JSON parse error, expecting value",
  ]);
  assert.deepEqual(outcomes("[1,2]", parser), ["[1, 2]"]);
});

Deno.test("JsonMessageParser enforces the token size limit per message and per token", () => {
  // Limit 10: a message's tokens may total 9 bytes; one token may be at most 9 bytes too.
  // Limit 10: qemu checks "bytes so far + token + 1 > limit", so a message's tokens may total 9.
  const parser = new JsonMessageParser({ maxTokenBytes: 10 });
  assert.deepEqual(outcomes('["abcde"]', parser), ['["abcde"]']);
  // The closing bracket is the token that overflows; it is dropped with the message.
  assert.deepEqual(outcomes('["abcdef"]', parser), ["error: JSON token size limit exceeded"]);
  assert.deepEqual(outcomes('"abcdefg"', parser), ['"abcdefg"']);
  assert.deepEqual(outcomes('"abcdefgh"', parser), ["error: JSON token size limit exceeded"]);
  // An 11-byte token is cut off by the lexer, which restarts lexing in the middle of it.
  assert.deepEqual(outcomes('"abcdefghijkl" [1]', parser), [
    "error: JSON token size limit exceeded",
    "error: JSON parse error, invalid keyword 'kl'",
  ]);
  assert.deepEqual(outcomes('"', parser), ['" [1]"']);
});

Deno.test("JsonMessageParser cuts an over-long token split across many feeds", () => {
  const parser = new JsonMessageParser({ maxTokenBytes: 10 });
  const events: string[] = [];
  for (const byte of '"abcdefghijkl" {"a":1}') events.push(...outcomes(byte, parser));
  assert.deepEqual(events, [
    "error: JSON token size limit exceeded",
    "error: JSON parse error, invalid keyword 'kl'",
    '" {"',
    "error: JSON parse error, invalid keyword 'a'",
  ]);
  assert.deepEqual(outcomes('"', parser), ['":1}"']);
});

Deno.test("JsonMessageParser survives 100,000 open brackets without recursion", () => {
  const parser = new JsonMessageParser();
  const events = parser.feed(repeated([["[", 100_000]]));
  // Every 1025th bracket overflows the 1024 limit and starts a new message.
  assert.equal(events.length, Math.floor(100_000 / 1025));
  assert.ok(events.every((e) => e.type === "error" && e.desc.includes("nesting depth")));
  assert.deepEqual(outcomes('\xff{"execute":"guest-ping"}', parser), [
    '{"execute": "guest-ping"}',
  ]);
});

Deno.test("JsonMessageParser parses 1024 levels of nesting and writes them back", () => {
  const deep = "[".repeat(1024) + "]".repeat(1024);
  assert.deepEqual(outcomes(deep), [deep]);
  const objects = '{"a":'.repeat(1024) + "1" + "}".repeat(1024);
  assert.deepEqual(outcomes(objects), ['{"a": '.repeat(1024) + "1" + "}".repeat(1024)]);
});

// ---------------------------------------------------------------------------------------------
// Values

function onlyValue(input: string): JsonValue {
  const events = parseAll(input);
  assert.equal(events.length, 1, input);
  const [event] = events;
  assert.equal(event!.type, "message", input);
  return (event as { value: JsonValue }).value;
}

Deno.test("JsonMessageParser keeps qemu's number kinds at the int64/uint64 edges", () => {
  const cases: [string, JsonValue][] = [
    ["0 ", { kind: "int", value: 0n }],
    ["-0 ", { kind: "int", value: 0n }],
    ["9223372036854775807 ", { kind: "int", value: 9223372036854775807n }],
    ["-9223372036854775808 ", { kind: "int", value: -9223372036854775808n }],
    ["9223372036854775808 ", { kind: "uint", value: 9223372036854775808n }],
    ["18446744073709551615 ", { kind: "uint", value: 18446744073709551615n }],
    ["18446744073709551616 ", { kind: "double", value: 18446744073709551616 }],
    ["-9223372036854775809 ", { kind: "double", value: -9223372036854775809 }],
    ["1.0 ", { kind: "double", value: 1 }],
    ["1e2 ", { kind: "double", value: 100 }],
    ["-0.0 ", { kind: "double", value: -0 }],
    ["1e400 ", { kind: "double", value: Infinity }],
    ["1e-400 ", { kind: "double", value: 0 }],
  ];
  for (const [input, expected] of cases) assert.deepEqual(onlyValue(input), expected, input);
});

Deno.test("JsonMessageParser decodes strings with qemu's escapes and modified UTF-8", () => {
  const cases: [string, string][] = [
    [`"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t"`, 'a"b\\c/d\b\f\n\r\t'],
    [`'it\\'s "q"'`, `it's "q"`],
    [`"\\'"`, "'"],
    [`"\\u0041\\u00e9\\u20AC\\ud83d\\ude00"`, "A\u00e9\u20ac\u{1f600}"],
    [`"\\u0000"`, "\0"],
    ['"\xc0\x80"', "\0"],
    ['"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"', "\u00e9\u20ac\u{1f600}"],
    ['"\x7f~ "', "\x7f~ "],
    ['""', ""],
    ["''", ""],
    [`"${"x".repeat(100)}\xc3\xa9"`, "x".repeat(100) + "\u00e9"],
  ];
  for (const [input, text] of cases) {
    assert.deepEqual(onlyValue(input), { kind: "string", value: text }, input);
  }
});

Deno.test("JsonMessageParser builds objects in insertion order and arrays in order", () => {
  const value = onlyValue('{"b":[1,"x",null],"a":{"c":false}}');
  assert.deepEqual(
    value,
    object([
      ["b", {
        kind: "array",
        items: [{ kind: "int", value: 1n }, { kind: "string", value: "x" }, { kind: "null" }],
      }],
      ["a", object([["c", { kind: "bool", value: false }]])],
    ]),
  );
});

// ---------------------------------------------------------------------------------------------
// Writer

Deno.test("encodeJson() formats compactly with qemu's separators", () => {
  assert.equal(encodeJson(fromJs({ return: {}, id: "abc" })), '{"return": {}, "id": "abc"}');
  assert.equal(encodeJson(fromJs([1, [2, []], {}])), "[1, [2, []], {}]");
  assert.equal(encodeJson(fromJs(null)), "null");
  assert.equal(encodeJson(fromJs(true)), "true");
});

Deno.test("encodeJson() orders members as qemu's QDict iterates them", () => {
  // Orders recorded from qemu-ga 7.2.22 (replies and echoed ids).
  assert.equal(
    encodeJson(fromJs({ error: { class: "CommandNotFound", desc: "x" }, id: 1 })),
    '{"id": 1, "error": {"class": "CommandNotFound", "desc": "x"}}',
  );
  assert.equal(encodeJson(fromJs({ return: {}, id: "abc" })), '{"return": {}, "id": "abc"}');
  assert.equal(encodeJson(fromJs({ a: null, b: 1 })), '{"a": null, "b": 1}');
  assert.equal(
    encodeJson(fromJs({ name: "guest-ping", enabled: true, "success-response": true })),
    '{"enabled": true, "name": "guest-ping", "success-response": true}',
  );
  assert.deepEqual(
    qdictKeyOrder(["b", "a", "s", "d", "e", "f", "g", "h", "i", "j", "k", "l"]),
    ["d", "i", "s", "e", "j", "a", "f", "k", "b", "g", "l", "h"],
  );
  assert.deepEqual(qdictKeyOrder(["\u00e9", "\0", "z", "", "ab", "ba"]), [
    "",
    "\u00e9",
    "\0",
    "ba",
    "z",
    "ab",
  ]);
});

Deno.test("qdictKeyOrder() puts the later of two keys in one bucket first", () => {
  const pair = twoKeysInOneBucket();
  assert.deepEqual(qdictKeyOrder(pair), [pair[1], pair[0]]);
  assert.deepEqual(qdictKeyOrder([pair[1], pair[0]]), pair);
});

function twoKeysInOneBucket(): [string, string] {
  const byBucket = new Map<number, string>();
  for (let i = 0;; i++) {
    const key = `key${i}`;
    const other = byBucket.get(qdictBucket(key));
    if (other !== undefined) return [other, key];
    byBucket.set(qdictBucket(key), key);
  }
}

Deno.test("encodeJson() escapes strings exactly as qemu's writer", () => {
  const cases: [string, string][] = [
    ["plain /slash", '"plain /slash"'],
    ['"\\', '"\\"\\\\"'],
    ["\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'],
    ["\0\x01\x1f", '"\\u0000\\u0001\\u001F"'],
    ["\x7f\x80\u00e9\u20ac", '"\\u007F\\u0080\\u00E9\\u20AC"'],
    ["\u{1f600}", '"\\uD83D\\uDE00"'],
    ["\u{10fffd}", '"\\uDBFF\\uDFFD"'],
    // Lone surrogates and noncharacters cannot come from qemu's parser; its writer would print
    // the UTF-8 TextEncoder makes of them (or the noncharacter itself) as U+FFFD.
    ["\ud800x\udc00", '"\\uFFFDx\\uFFFD"'],
    ["\ufffe\uffff\ufdd0\u{1fffe}", '"\\uFFFD\\uFFFD\\uFFFD\\uFFFD"'],
    ["\ufffd\ufdcf\ufdf0", '"\\uFFFD\\uFDCF\\uFDF0"'],
  ];
  for (const [text, expected] of cases) {
    assert.equal(encodeJson({ kind: "string", value: text }), expected, JSON.stringify(text));
  }
});

Deno.test("formatDouble() prints doubles as glibc's %.17g", () => {
  // From qemu-ga 7.2.22 transcripts and glibc snprintf("%.17g").
  const cases: [number, string][] = [
    [1, "1"],
    [0.1, "0.10000000000000001"],
    [1e300, "1.0000000000000001e+300"],
    [Infinity, "inf"],
    [-Infinity, "-inf"],
    [NaN, "nan"],
    [0, "0"],
    [-0, "-0"],
    [5e-324, "4.9406564584124654e-324"],
    [1.7976931348623157e308, "1.7976931348623157e+308"],
    [123456789.123456789, "123456789.12345679"],
    [1e16, "10000000000000000"],
    [1e17, "1e+17"],
    [1e-4, "0.0001"],
    [1e-5, "1.0000000000000001e-05"],
    [2.5e-7, "2.4999999999999999e-07"],
    [0.3, "0.29999999999999999"],
    [1e21, "1e+21"],
    [1e-7, "9.9999999999999995e-08"],
    [2 ** 63, "9.2233720368547758e+18"],
    [-1.5e-300, "-1.5000000000000001e-300"],
    [1 / 3, "0.33333333333333331"],
    [9.5e-5, "9.5000000000000005e-05"],
    [1.5e16, "15000000000000000"],
    [2.2250738585072014e-308, "2.2250738585072014e-308"],
    // Exact ties at the 17th digit round to even in glibc (JS would round them up).
    [1000000000000000.25, "1000000000000000.2"],
    [1100000000000000.25, "1100000000000000.2"],
    [2000000000000000.25, "2000000000000000.2"],
    [1000000000000000.75, "1000000000000000.8"],
  ];
  for (const [value, expected] of cases) assert.equal(formatDouble(value), expected, expected);
});

Deno.test("encodeJson() prints ints and uints exactly from bigint", () => {
  assert.equal(
    encodeJson({
      kind: "array",
      items: [
        { kind: "int", value: -9223372036854775808n },
        { kind: "uint", value: 18446744073709551615n },
        { kind: "double", value: 18446744073709551616 },
      ],
    }),
    "[-9223372036854775808, 18446744073709551615, 1.8446744073709552e+19]",
  );
});

Deno.test("encodeJson() output parses back to the same value", () => {
  // Not for integral doubles: qemu prints 1.0 as "1" (and -0.0 as "-0"), which parse as ints.
  const input =
    '{"b":[1,1.5,-2.5e-300,18446744073709551615,"\\u00e9\\ud83d\\ude00\\u0000"],"a":{}}';
  const value = onlyValue(input);
  assert.deepEqual(onlyValue(encodeJson(value)), value);
});

// ---------------------------------------------------------------------------------------------
// fromJs

Deno.test("fromJs() maps JS values to qemu's kinds", () => {
  assert.deepEqual(fromJs(null), { kind: "null" });
  assert.deepEqual(fromJs(3), { kind: "int", value: 3n });
  assert.deepEqual(fromJs(-0), { kind: "int", value: 0n });
  assert.deepEqual(fromJs(1.5), { kind: "double", value: 1.5 });
  assert.deepEqual(fromJs(2 ** 63), { kind: "uint", value: 2n ** 63n });
  assert.deepEqual(fromJs(2 ** 64), { kind: "double", value: 2 ** 64 });
  assert.deepEqual(fromJs(NaN), { kind: "double", value: NaN });
  assert.deepEqual(fromJs(-(2n ** 63n)), { kind: "int", value: -(2n ** 63n) });
  assert.deepEqual(fromJs(2n ** 64n - 1n), { kind: "uint", value: 2n ** 64n - 1n });
  assert.deepEqual(fromJs("s"), { kind: "string", value: "s" });
  assert.deepEqual(
    fromJs({ a: [true], skipped: undefined, m: new Map([["k", 1]]) }),
    object([
      ["a", { kind: "array", items: [{ kind: "bool", value: true }] }],
      ["m", object([["k", { kind: "int", value: 1n }]])],
    ]),
  );
});

Deno.test("fromJs() throws for values JSON cannot hold", () => {
  assert.throws(() => fromJs(undefined), TypeError);
  assert.throws(() => fromJs(() => 1), TypeError);
  assert.throws(() => fromJs(Symbol("x")), TypeError);
  assert.throws(() => fromJs(new Date()), TypeError);
  assert.throws(() => fromJs(2n ** 64n), RangeError);
  assert.throws(() => fromJs(-(2n ** 63n) - 1n), RangeError);
});
