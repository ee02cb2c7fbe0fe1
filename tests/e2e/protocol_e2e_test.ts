/**
 * docs/protocol.md checklist items 2–12, 30, 31 against the real agent process over a real unix socket, started
 * with the permission set the compiled binary carries.
 *
 * @module
 */

import assert from "node:assert/strict";
import { delay, spawnAgent } from "../_util/agent.ts";

const decoder = new TextDecoder();

Deno.test('guest-ping replies with exactly {"return": {}} and a newline', async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send('{"execute":"guest-ping"}');
  assert.equal(await client.readLine(), '{"return": {}}');
});

Deno.test("guest-sync echoes int64 ids and refuses doubles, strings and uint64 (item 2)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send('{"execute":"guest-sync","arguments":{"id":123456789012}}');
  assert.equal(await client.readLine(), '{"return": 123456789012}');
  for (const id of ["1.0", '"1"', "18446744073709551615"]) {
    await client.send(`{"execute":"guest-sync","arguments":{"id":${id}}}`);
    assert.deepEqual(JSON.parse(await client.readLine()), {
      error: { class: "GenericError", desc: "Invalid parameter type for 'id', expected: integer" },
    });
  }
  await client.send('{"execute":"guest-sync","arguments":{"id":-9223372036854775808}}');
  assert.equal(await client.readLine(), '{"return": -9223372036854775808}');
});

Deno.test("guest-sync-delimited reply is 0xFF then the line; no other reply has 0xFF (item 3)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send(
    '{"execute":"guest-sync-delimited","arguments":{"id":77}}{"execute":"guest-ping"}',
  );
  const first = await client.readLineBytes();
  assert.equal(first[0], 0xff);
  assert.equal(decoder.decode(first.subarray(1)), '{"return": 77}');
  assert.equal(await client.readLine(), '{"return": {}}');
  // An argument error is not prefixed (the handler never ran).
  await client.send('{"execute":"guest-sync-delimited","arguments":{"id":"x"}}');
  const error = await client.readLineBytes();
  assert.notEqual(error[0], 0xff);
});

Deno.test("request id is echoed into success and error replies, never into parse errors (item 4)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send('{"execute":"guest-ping","id":"abc"}');
  assert.equal(await client.readLine(), '{"return": {}, "id": "abc"}');
  await client.send('{"execute":"nope","id":[1,2.5,{"b":1,"a":null}]}');
  assert.equal(
    await client.readLine(),
    '{"id": [1, 2.5, {"a": null, "b": 1}], "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}',
  );
  await client.send('{"execute":"guest-ping","id":1,}');
  const parseError = JSON.parse(await client.readLine());
  assert.equal(parseError.id, undefined);
  assert.match(parseError.error.desc, /^JSON parse error, /);
});

Deno.test("unknown and disabled commands are CommandNotFound with qemu-ga's texts (items 5, 6)", async () => {
  await using agent = await spawnAgent({ args: ["-b", "guest-info,guest-nothing"] });
  using client = await agent.connect();
  assert.deepEqual(await client.request({ execute: "foo" }), {
    error: { class: "CommandNotFound", desc: "The command foo has not been found" },
  });
  assert.deepEqual(await client.request({ execute: "guest-info" }), {
    error: {
      class: "CommandNotFound",
      desc: "Command guest-info has been disabled: the command is not allowed",
    },
  });
});

Deno.test("an allow list disables everything else", async () => {
  await using agent = await spawnAgent({ args: ["-a", "guest-ping,guest-info"] });
  using client = await agent.connect();
  assert.deepEqual(await client.request({ execute: "guest-ping" }), { return: {} });
  const sync = await client.request({ execute: "guest-sync", arguments: { id: 1 } });
  assert.equal((sync.error as { class: string }).class, "CommandNotFound");
  const info = (await client.request({ execute: "guest-info" })).return as {
    supported_commands: { name: string; enabled: boolean }[];
  };
  const enabled = info.supported_commands.filter((c) => c.enabled).map((c) => c.name).sort();
  assert.deepEqual(enabled, ["guest-info", "guest-ping"]);
});

Deno.test("argument errors use the input visitor's texts (item 7)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const cases: [string, string][] = [
    ['{"execute":"guest-ping","arguments":{"foo":42}}', "Parameter 'foo' is unexpected"],
    ['{"execute":"guest-sync"}', "Parameter 'id' is missing"],
    ['{"execute":"guest-sync","arguments":{}}', "Parameter 'id' is missing"],
    [
      '{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":[1]}}',
      "Invalid parameter type for 'mountpoints[0]', expected: string",
    ],
    [
      '{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":"x"}}',
      "Invalid parameter type for 'mountpoints', expected: array",
    ],
  ];
  for (const [request, desc] of cases) {
    assert.deepEqual(await client.request(request), { error: { class: "GenericError", desc } });
  }
});

Deno.test("envelope errors use qmp_dispatch's texts (item 8)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const cases: [string, string][] = [
    ["[]", "QMP input must be a JSON object"],
    ["1 ", "QMP input must be a JSON object"],
    ['"x"', "QMP input must be a JSON object"],
    ["{}", "QMP input lacks member 'execute'"],
    ['{"execute":1}', "QMP input member 'execute' must be a string"],
    ['{"execute":"guest-ping","arguments":[]}', "QMP input member 'arguments' must be an object"],
    ['{"execute":"guest-ping","bar":1}', "QMP input member 'bar' is unexpected"],
    ['{"execute":"guest-ping","exec-oob":1}', "QMP input member 'exec-oob' is unexpected"],
  ];
  for (const [request, desc] of cases) {
    assert.deepEqual(await client.request(request), { error: { class: "GenericError", desc } });
  }
});

Deno.test("concatenated and split requests are answered in order, one line each (item 9)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send(
    '{"execute":"guest-sync","arguments":{"id":1}}{"execute":"guest-sync","arguments":{"id":2}}\n' +
      '{"execute":"guest-sync","arguments":{"id":3}}',
  );
  for (const id of [1, 2, 3]) assert.equal(await client.readLine(), `{"return": ${id}}`);
  const request = '{"execute":"guest-sync","arguments":{"id":4}}';
  for (const char of request) {
    await client.send(char);
    await delay(1);
  }
  assert.equal(await client.readLine(), '{"return": 4}');
});

Deno.test("garbage yields JSON parse errors, then the next request is answered (item 10)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send('xx@#{"execute":"guest-ping","id":9}');
  const lines: string[] = [];
  while (true) {
    const line = await client.readLine();
    lines.push(line);
    if (line.includes('"return"')) break;
  }
  assert.equal(lines.at(-1), '{"return": {}, "id": 9}');
  assert.ok(lines.length >= 2);
  for (const line of lines.slice(0, -1)) {
    const reply = JSON.parse(line);
    assert.equal(reply.error.class, "GenericError");
    assert.match(reply.error.desc, /^JSON parse error, /);
  }
});

Deno.test("0xFF discards a partial object silently and the next request is answered (item 10)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send('{"execute":"guest-sync","argu');
  await client.send(new Uint8Array([0xff]));
  await client.send('{"execute":"guest-sync","arguments":{"id":5}}');
  assert.equal(await client.readLine(), '{"return": 5}');
});

Deno.test("single-quoted JSON is accepted and duplicate keys refused (item 11)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  await client.send("{'execute':'guest-ping'}");
  assert.equal(await client.readLine(), '{"return": {}}');
  await client.send('{"execute":"guest-ping","execute":"guest-ping"}');
  assert.deepEqual(JSON.parse(await client.readLine()), {
    error: { class: "GenericError", desc: "JSON parse error, duplicate key" },
  });
});

Deno.test("guest-info has version and supported_commands with exactly three keys (item 12)", async () => {
  await using agent = await spawnAgent();
  using client = await agent.connect();
  const info = (await client.request({ execute: "guest-info" })).return as Record<string, unknown>;
  assert.deepEqual(Object.keys(info).sort(), ["supported_commands", "version"]);
  assert.equal(typeof info.version, "string");
  const commands = info.supported_commands as Record<string, unknown>[];
  for (const command of commands) {
    assert.deepEqual(Object.keys(command).sort(), ["enabled", "name", "success-response"]);
  }
  const names = commands.map((c) => c.name);
  for (
    const name of [
      "guest-sync-delimited",
      "guest-sync",
      "guest-ping",
      "guest-info",
      "guest-fsfreeze-status",
      "guest-fsfreeze-freeze",
      "guest-fsfreeze-freeze-list",
      "guest-fsfreeze-thaw",
    ]
  ) {
    assert.ok(names.includes(name), `${name} listed`);
  }
});

Deno.test("Proxmox framing: sync-delimited + command in one write matches its regex (item 30)", async () => {
  await using agent = await spawnAgent();
  // Proxmox opens a fresh connection per call and writes both lines at once.
  for (const seq of [1, 2]) {
    using client = await agent.connect();
    const id = Number(`${Deno.pid}0${seq}`);
    await client.send(
      `{"execute":"guest-sync-delimited","arguments":{"id":${id}}}\n` +
        '{"execute":"guest-fsfreeze-status","arguments":{}}\n',
    );
    const bytes = new Uint8Array([
      ...await client.readLineBytes(),
      0x0a,
      ...await client.readLineBytes(),
      0x0a,
    ]);
    const text = latin1(bytes);
    const match = /^.*\xff([^\n]+}\r?\n[^\n]+})\r?\n(.*)$/s.exec(text);
    assert.ok(match, `reply matches Proxmox's regex: ${JSON.stringify(text)}`);
    const [sync, status] = match[1]!.split(/\r?\n/);
    assert.deepEqual(JSON.parse(sync!), { return: id });
    assert.deepEqual(JSON.parse(status!), { return: "thawed" });
  }
});

Deno.test("libvirt framing: a millisecond guest-sync is answered after a client left a partial line (item 31)", async () => {
  await using agent = await spawnAgent();
  {
    using quitter = await agent.connect();
    await quitter.send('{"execute":"guest-fsfreeze-st');
  }
  using client = await agent.connect();
  const id = Date.now();
  await client.send(`{"execute":"guest-sync", "arguments":{"id":${id}}}\n`);
  const reply = JSON.parse(await client.readLine(30_000));
  assert.deepEqual(reply, { return: id });
  await client.send('{"execute":"guest-fsfreeze-status"}\n');
  assert.deepEqual(JSON.parse(await client.readLine()), { return: "thawed" });
});

function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}
