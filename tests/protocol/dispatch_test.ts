import assert from "node:assert/strict";
import { delimited, dispatchMessage, parseErrorLine } from "../../src/protocol/dispatch.ts";
import { fromJs, JsonMessageParser, type JsonValue } from "../../src/protocol/json.ts";
import { FREEZE_ALLOWLIST, Registry } from "../../src/protocol/registry.ts";
import { genericError } from "../../src/errors.ts";

interface Ctx {
  frozen(): boolean;
  isFrozen: boolean;
}

function registry(): Registry<Ctx> {
  const r = new Registry<Ctx>(["x-extra"]);
  r.register({ name: "guest-ping", handler: () => ({}) });
  r.register({ name: "guest-sync", args: [{ name: "id", type: "int" }], handler: (a) => a.id });
  r.register({
    name: "guest-sync-delimited",
    args: [{ name: "id", type: "int" }],
    handler: (a) => delimited(a.id),
  });
  r.register({ name: "guest-shutdown", successResponse: false, handler: () => undefined });
  r.register({
    name: "typed",
    args: [
      { name: "s", type: "str" },
      { name: "n", type: "number", optional: true },
      { name: "b", type: "bool", optional: true },
      { name: "mode", type: ["a", "b"], optional: true },
      { name: "list", type: "str-list", optional: true },
    ],
    handler: (a) => fromJs({ ...a }),
  });
  r.register({
    name: "fails",
    handler: () => {
      throw genericError("it failed");
    },
  });
  r.register({ name: "x-extra", handler: () => "extra" });
  return r;
}

function parse(text: string): JsonValue {
  const events = new JsonMessageParser().feed(new TextEncoder().encode(text));
  assert.equal(events.length, 1);
  assert.equal(events[0]!.type, "message");
  return (events[0] as { value: JsonValue }).value;
}

async function reply(text: string, frozen = false): Promise<string | undefined> {
  const ctx: Ctx = { isFrozen: frozen, frozen: () => frozen };
  return (await dispatchMessage(parse(text), registry(), ctx)).line;
}

Deno.test("dispatchMessage() returns one line with the id echoed", async () => {
  assert.equal(await reply('{"execute":"guest-ping","id":"x"}'), '{"return": {}, "id": "x"}\n');
  assert.equal(await reply('{"execute":"guest-sync","arguments":{"id":-5}}'), '{"return": -5}\n');
});

Deno.test("dispatchMessage() marks guest-sync-delimited replies and sends none for no-response commands", async () => {
  const ctx: Ctx = { isFrozen: false, frozen: () => false };
  const sync = await dispatchMessage(
    parse('{"execute":"guest-sync-delimited","arguments":{"id":1}}'),
    registry(),
    ctx,
  );
  assert.equal(sync.delimited, true);
  assert.equal(sync.line, '{"return": 1}\n');
  const shutdown = await dispatchMessage(parse('{"execute":"guest-shutdown"}'), registry(), ctx);
  assert.equal(shutdown.line, undefined);
});

Deno.test("dispatchMessage() checks argument types as qemu's input visitor", async () => {
  const error = async (text: string): Promise<string> =>
    JSON.parse((await reply(text))!).error.desc;
  assert.equal(await error('{"execute":"typed","arguments":{}}'), "Parameter 's' is missing");
  assert.equal(
    await error('{"execute":"typed","arguments":{"s":1}}'),
    "Invalid parameter type for 's', expected: string",
  );
  assert.equal(
    await error('{"execute":"typed","arguments":{"s":"","n":"1"}}'),
    "Invalid parameter type for 'n', expected: number",
  );
  assert.equal(
    await error('{"execute":"typed","arguments":{"s":"","b":1}}'),
    "Invalid parameter type for 'b', expected: boolean",
  );
  assert.equal(
    await error('{"execute":"typed","arguments":{"s":"","mode":"c"}}'),
    "Parameter 'mode' does not accept value 'c'",
  );
  assert.equal(
    await error('{"execute":"typed","arguments":{"s":"","list":["a",2]}}'),
    "Invalid parameter type for 'list[1]', expected: string",
  );
  assert.equal(
    await error('{"execute":"typed","arguments":{"s":"","zz":1}}'),
    "Parameter 'zz' is unexpected",
  );
  assert.equal(
    await error('{"execute":"guest-sync","arguments":{"id":9223372036854775808}}'),
    "Invalid parameter type for 'id', expected: integer",
  );
  const ok = JSON.parse(
    (await reply(
      '{"execute":"typed","arguments":{"s":"v","n":1.5,"b":true,"mode":"a","list":["x"]}}',
    ))!,
  );
  assert.deepEqual(ok.return, { s: "v", n: 1.5, b: true, mode: "a", list: ["x"] });
});

Deno.test("dispatchMessage() turns handler errors into GenericError replies with the id", async () => {
  assert.equal(
    await reply('{"execute":"fails","id":1}'),
    '{"id": 1, "error": {"class": "GenericError", "desc": "it failed"}}\n',
  );
});

Deno.test("Registry frozen mode enables exactly the allowlist and our extra commands", async () => {
  const r = registry();
  r.setFilters([], ["guest-ping"]);
  assert.equal(r.isEnabled("guest-ping", false), false);
  assert.equal(
    r.isEnabled("guest-ping", true),
    true,
    "frozen overrides the block list, as qemu-ga",
  );
  assert.equal(r.isEnabled("typed", true), false);
  assert.equal(r.isEnabled("x-extra", true), true);
  for (const name of FREEZE_ALLOWLIST) assert.equal(r.isEnabled(name, true), true);
  const disabled = JSON.parse((await reply('{"execute":"typed","arguments":{"s":""}}', true))!);
  assert.deepEqual(disabled.error, {
    class: "CommandNotFound",
    desc: "Command typed has been disabled: the command is not allowed",
  });
});

Deno.test("dispatchMessage() asks whether the agent is frozen only when that decides", async () => {
  const r = registry();
  r.setFilters([], ["guest-ping"]);
  let asked = 0;
  const ctx: Ctx = { isFrozen: true, frozen: () => (asked++, true) };
  const call = async (text: string) => (await dispatchMessage(parse(text), r, ctx)).line;
  assert.equal(await call('{"execute":"guest-sync","arguments":{"id":1}}'), '{"return": 1}\n');
  assert.equal(asked, 0, "guest-sync is enabled frozen or not");
  assert.match((await call('{"execute":"typed","arguments":{"s":""}}'))!, /has been disabled/);
  assert.equal(asked, 1, "typed is enabled only when not frozen");
  assert.equal(await call('{"execute":"guest-ping"}'), '{"return": {}}\n');
  assert.equal(asked, 2, "a blocked guest-ping is enabled only while frozen");
  ctx.frozen = () => (asked++, false);
  assert.match((await call('{"execute":"guest-ping"}'))!, /has been disabled/);
  assert.equal(asked, 3);
});

Deno.test("parseErrorLine() carries no id", () => {
  assert.equal(
    parseErrorLine("JSON parse error, stray '@'"),
    '{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'@\'"}}\n',
  );
});

Deno.test("dispatchMessage() orders id and picks the envelope error as qemu-ga when several members count", async () => {
  // Replies of qemu-ga 7.2 to the same input: `id` follows "return" but precedes "error", and of
  // several bad members the one its QDict iterates first is reported.
  const cases: [string, string][] = [
    [
      '{"execute":1,"bar":1}',
      '{"error": {"class": "GenericError", "desc": "QMP input member \'bar\' is unexpected"}}\n',
    ],
    [
      '{"bar":1,"execute":1}',
      '{"error": {"class": "GenericError", "desc": "QMP input member \'bar\' is unexpected"}}\n',
    ],
    [
      '{"arguments":1,"execute":"guest-ping","zzz":2}',
      '{"error": {"class": "GenericError", "desc": "QMP input member \'zzz\' is unexpected"}}\n',
    ],
    ['{"execute":"guest-ping","id":{"a":1}}', '{"return": {}, "id": {"a": 1}}\n'],
    [
      '{"execute":"nope","id":[1,2]}',
      '{"id": [1, 2], "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}\n',
    ],
  ];
  for (const [input, expected] of cases) assert.equal(await reply(input), expected, input);
});
