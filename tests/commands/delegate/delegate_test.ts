/**
 * The forwarding policy (src/commands/delegate/, docs/design.md #36) against a fake delegate that
 * speaks qemu-ga's side of the protocol in memory: what is forwarded and what never is, replies
 * passed on unchanged, our allow, block and frozen rules before anything is sent, guest-info's
 * merged list, and every way the delegate can fail (down, slow, garbage, crash) giving one
 * GenericError that names it, with the next command served again.
 *
 * @module
 */

import assert from "node:assert/strict";
import { serveConnection } from "../../../src/agent.ts";
import { type AgentContext, commandNames, createRegistry } from "../../../src/commands/mod.ts";
import { Delegate } from "../../../src/commands/delegate/mod.ts";
import type { FreezeService } from "../../../src/fsfreeze/mod.ts";
import { silentLogger } from "../../../src/log.ts";
import { dispatchMessage } from "../../../src/protocol/dispatch.ts";
import { JsonMessageParser, type JsonValue } from "../../../src/protocol/json.ts";
import type { Registry } from "../../../src/protocol/registry.ts";
import type { Connection, ReadResult } from "../../../src/transport/mod.ts";
import { after, FAKE_COMMANDS, FakeDelegate, parseLine } from "../../_util/fake_delegate.ts";

const SOCKET = "/run/test-delegate/qga.sock";

/** A freeze service that only records calls. */
class RecordingFreezer implements FreezeService {
  frozen = false;
  report = undefined;
  readonly calls: string[];

  constructor(calls: string[]) {
    this.calls = calls;
  }

  status(): "frozen" | "thawed" {
    return this.frozen ? "frozen" : "thawed";
  }

  freeze(): Promise<number> {
    this.calls.push("freeze");
    this.frozen = true;
    return Promise.resolve(1);
  }

  thaw(): Promise<number> {
    this.calls.push("thaw");
    this.frozen = false;
    return Promise.resolve(1);
  }
}

interface Setup extends Disposable {
  fake: FakeDelegate;
  delegate: Delegate;
  registry: Registry<AgentContext>;
  ctx: AgentContext & { freezer: RecordingFreezer };
  /** Dispatches one request (JSON text); the reply line or undefined. */
  send(text: string): Promise<string | undefined>;
}

function setup(
  options: { timeoutMs?: number; allow?: string[]; block?: string[]; calls?: string[] } = {},
): Setup {
  const fake = new FakeDelegate();
  const delegate = new Delegate({
    socketPath: SOCKET,
    timeoutMs: options.timeoutMs ?? 10_000,
    log: silentLogger,
    connect: fake.connect,
  });
  const registry = createRegistry();
  registry.setFilters(options.allow ?? [], options.block ?? []);
  const freezer = new RecordingFreezer(options.calls ?? []);
  const ctx = { log: silentLogger, freezer, forwarder: delegate, frozen: () => freezer.frozen };
  return {
    fake,
    delegate,
    registry,
    ctx,
    send: async (text) => (await dispatchMessage(parse(text), registry, ctx)).line,
    [Symbol.dispose]: () => delegate.close(),
  };
}

function parse(text: string): JsonValue {
  const [event] = new JsonMessageParser().feed(new TextEncoder().encode(text));
  assert.equal(event?.type, "message");
  return (event as { value: JsonValue }).value;
}

function errorOf(line: string | undefined): { class: string; desc: string } {
  return parseLine(line).error as { class: string; desc: string };
}

Deno.test("Delegate forwards a command it serves whole, id and arguments kept, and returns its reply line unchanged", async () => {
  using s = setup();
  const args: Record<string, unknown>[] = [];
  s.fake.handler = (_name, a) => {
    args.push(a);
    return { return: [{ "logical-id": 0, online: true, "can-offline": false }] };
  };
  const line = await s.send('{"execute":"guest-get-vcpus","arguments":{},"id":{"a":[1,"x"]}}');
  assert.equal(
    line,
    '{"return": [{"online": true, "can-offline": false, "logical-id": 0}], "id": {"a": [1, "x"]}}\n',
  );
  s.fake.handler = (_name, a) => {
    args.push(a);
    return { return: { pid: 7 } };
  };
  const exec = await s.send(
    '{"execute":"guest-exec","arguments":{"path":"/bin/echo","arg":["é\\n"],"capture-output":true}}',
  );
  assert.equal(exec, '{"return": {"pid": 7}}\n');
  assert.deepEqual(args[1], { path: "/bin/echo", arg: ["é\n"], "capture-output": true });
  // The session: 0xFF, then its own sync with a fresh id, then guest-info; then the commands.
  assert.deepEqual(s.fake.received, [
    "guest-sync-delimited",
    "guest-info",
    "guest-get-vcpus",
    "guest-exec",
  ]);
  assert.equal(s.fake.connections, 1, "one session for both");
});

Deno.test("Delegate passes the delegate's own errors on unchanged", async () => {
  using s = setup();
  s.fake.handler = () => ({ error: "Invalid parameter 'count'", class: "GenericError" });
  assert.equal(
    await s.send('{"execute":"guest-get-vcpus","id":3}'),
    '{"id": 3, "error": {"class": "GenericError", "desc": "Invalid parameter \'count\'"}}\n',
  );
});

Deno.test("our own commands never reach the delegate, not even those it lists", async () => {
  using s = setup();
  await s.send('{"execute":"guest-get-vcpus"}'); // opens the session
  const before = [...s.fake.received];
  for (
    const request of [
      '{"execute":"guest-sync","arguments":{"id":5}}',
      '{"execute":"guest-sync-delimited","arguments":{"id":6}}',
      '{"execute":"guest-ping"}',
      '{"execute":"guest-info"}',
      '{"execute":"guest-fsfreeze-status"}',
    ]
  ) {
    assert.ok("return" in parseLine(await s.send(request)), request);
  }
  assert.deepEqual(s.fake.received, before);
});

Deno.test("a name neither agent knows is not found, and is never sent", async () => {
  using s = setup();
  assert.deepEqual(errorOf(await s.send('{"execute":"guest-bogus"}')), {
    class: "CommandNotFound",
    desc: "The command guest-bogus has not been found",
  });
  assert.equal(s.fake.count("guest-bogus"), 0);
});

Deno.test("-b and -a apply to the delegate's commands before anything is sent", async () => {
  {
    using s = setup({ block: ["guest-exec"] });
    assert.deepEqual(errorOf(await s.send('{"execute":"guest-exec","arguments":{"path":"x"}}')), {
      class: "CommandNotFound",
      desc: "Command guest-exec has been disabled: the command is not allowed",
    });
    assert.equal(s.fake.count("guest-exec"), 0);
    assert.ok("return" in parseLine(await s.send('{"execute":"guest-get-vcpus"}')));
  }
  {
    using s = setup({ allow: ["guest-get-vcpus", "guest-info"] });
    assert.ok("return" in parseLine(await s.send('{"execute":"guest-get-vcpus"}')));
    assert.match(errorOf(await s.send('{"execute":"guest-exec"}')).desc, /has been disabled/);
    assert.equal(s.fake.count("guest-exec"), 0);
  }
});

Deno.test("while frozen the delegate's commands are disabled and the delegate is never contacted", async () => {
  {
    using s = setup();
    await s.send('{"execute":"guest-get-vcpus"}');
    const before = [...s.fake.received];
    s.ctx.freezer.frozen = true;
    assert.deepEqual(errorOf(await s.send('{"execute":"guest-get-vcpus"}')), {
      class: "CommandNotFound",
      desc: "Command guest-get-vcpus has been disabled: the command is not allowed",
    });
    assert.equal(
      errorOf(await s.send('{"execute":"guest-bogus"}')).desc,
      "The command guest-bogus has not been found",
    );
    const info = parseLine(await s.send('{"execute":"guest-info"}')).return as {
      supported_commands: { name: string; enabled: boolean }[];
    };
    const vcpus = info.supported_commands.find((entry) => entry.name === "guest-get-vcpus");
    assert.deepEqual(vcpus, { name: "guest-get-vcpus", enabled: false, "success-response": true });
    assert.deepEqual(s.fake.received, before);
  }
  {
    // Frozen before the delegate ever listed its commands: nothing to look up, nothing asked.
    using s = setup();
    s.ctx.freezer.frozen = true;
    assert.equal(errorOf(await s.send('{"execute":"guest-get-vcpus"}')).class, "CommandNotFound");
    await s.send('{"execute":"guest-info"}');
    assert.equal(s.fake.connections, 0);
  }
});

Deno.test("guest-info lists the delegate's commands before ours, ours once, with qemu-ga's members", async () => {
  using s = setup({ block: ["guest-exec"] });
  const reply = parseLine(await s.send('{"execute":"guest-info"}'));
  const list = (reply.return as { supported_commands: Record<string, unknown>[] })
    .supported_commands;
  const theirs = FAKE_COMMANDS.filter((command) => s.registry.get(command.name) === undefined);
  assert.deepEqual(list.slice(0, theirs.length), [
    { enabled: true, name: "guest-get-vcpus", "success-response": true },
    { enabled: false, name: "guest-exec", "success-response": true },
    { enabled: true, name: "guest-suspend-ram", "success-response": false },
    { enabled: false, name: "guest-get-devices", "success-response": true },
  ]);
  const names = list.map((entry) => entry.name as string);
  assert.equal(new Set(names).size, names.length, "no name twice");
  assert.deepEqual(
    names.slice(theirs.length),
    s.registry.list().map((spec) => spec.name).reverse(),
  );
  // The delegate's entry for a command we implement is not shown: ours is, enabled as ours.
  assert.deepEqual(list.find((entry) => entry.name === "guest-fsfreeze-freeze"), {
    enabled: true,
    name: "guest-fsfreeze-freeze",
    "success-response": true,
  });
  assert.deepEqual(Object.keys(list[0]!), ["enabled", "name", "success-response"]);
  // -b help's order: ours, then theirs as registered (the reverse of their guest-info).
  assert.deepEqual(commandNames(s.registry, FAKE_COMMANDS).slice(-4), [
    "guest-get-devices",
    "guest-suspend-ram",
    "guest-exec",
    "guest-get-vcpus",
  ]);
});

Deno.test("guest-info answers with our commands when the delegate is down, and lists it once it is back", async () => {
  using s = setup();
  s.fake.down = true;
  const names = async (): Promise<string[]> =>
    (parseLine(await s.send('{"execute":"guest-info"}')).return as {
      supported_commands: { name: string }[];
    }).supported_commands.map((entry) => entry.name);
  assert.ok(!(await names()).includes("guest-get-vcpus"));
  s.fake.down = false;
  assert.ok((await names()).includes("guest-get-vcpus"));
  s.fake.down = true;
  s.fake.crash();
  assert.ok((await names()).includes("guest-get-vcpus"), "what it listed last");
});

Deno.test("a delegate that is down gives a GenericError naming it; it is used again once it is back", async () => {
  using s = setup();
  s.fake.down = true;
  assert.deepEqual(errorOf(await s.send('{"execute":"guest-get-vcpus","id":1}')), {
    class: "GenericError",
    desc: `guest-info: the guest agent delegate at ${SOCKET} is not reachable: Connection refused`,
  });
  s.fake.down = false;
  assert.ok("return" in parseLine(await s.send('{"execute":"guest-get-vcpus"}')));
  s.fake.down = true;
  s.fake.crash();
  assert.deepEqual(errorOf(await s.send('{"execute":"guest-get-vcpus"}')), {
    class: "GenericError",
    desc: `guest-get-vcpus: the guest agent delegate at ${SOCKET} is not reachable: ` +
      "Connection refused",
  });
  s.fake.down = false;
  assert.ok("return" in parseLine(await s.send('{"execute":"guest-get-vcpus"}')));
});

Deno.test("a delegate that restarted while idle is reconnected to without an error", async () => {
  using s = setup();
  assert.ok("return" in parseLine(await s.send('{"execute":"guest-get-vcpus"}')));
  s.fake.crash();
  await after(0, undefined);
  assert.ok("return" in parseLine(await s.send('{"execute":"guest-get-vcpus"}')));
  assert.equal(s.fake.connections, 2);
});

Deno.test("a delegate that crashes on a command gives an error; the next command reconnects", async () => {
  using s = setup();
  s.fake.handler = (name) => name === "guest-exec" ? { crash: true } : { return: [] };
  assert.deepEqual(errorOf(await s.send('{"execute":"guest-exec","arguments":{"path":"x"}}')), {
    class: "GenericError",
    desc: `guest-exec: the guest agent delegate at ${SOCKET} closed the connection`,
  });
  assert.equal(await s.send('{"execute":"guest-get-vcpus"}'), '{"return": []}\n');
  assert.equal(s.fake.connections, 2);
});

Deno.test("a slow delegate gives an error after the timeout; the late reply is skipped by a re-sync", async () => {
  using s = setup({ timeoutMs: 300 });
  s.fake.handler = (name) =>
    name === "guest-exec" ? after(1500, { return: { pid: 1 } }) : { return: "fast" };
  const started = performance.now();
  assert.deepEqual(errorOf(await s.send('{"execute":"guest-exec","id":1}')), {
    class: "GenericError",
    desc: `guest-exec: the guest agent delegate at ${SOCKET} did not answer within 0.3 s`,
  });
  assert.ok(performance.now() - started < 1400, "the error came before the late reply");
  // The late reply comes while the next request waits for its sync: it is skipped.
  s.fake.handler = (name) => name === "guest-exec" ? { return: { pid: 2 } } : { return: "fast" };
  await after(1500, undefined);
  assert.equal(
    await s.send('{"execute":"guest-exec","id":2}'),
    '{"return": {"pid": 2}, "id": 2}\n',
  );
  assert.equal(s.fake.connections, 1, "re-synchronised, not reconnected");
  assert.equal(s.fake.count("guest-sync-delimited"), 2);
});

Deno.test("a delegate that stays busy beyond a re-sync is dropped and connected to again", async () => {
  using s = setup({ timeoutMs: 200 });
  let hang = true;
  s.fake.handler = () => hang ? new Promise(() => {}) : { return: "ok" };
  assert.match(errorOf(await s.send('{"execute":"guest-exec"}')).desc, /did not answer within/);
  // Its re-sync waits behind the hung command: the session is given up.
  assert.match(errorOf(await s.send('{"execute":"guest-exec"}')).desc, /did not answer within/);
  hang = false;
  s.fake.crash(); // what a restart of the hung delegate does
  assert.equal(await s.send('{"execute":"guest-exec"}'), '{"return": "ok"}\n');
});

Deno.test("garbage from the delegate gives an error naming it; the next command is answered", async () => {
  for (
    const raw of [
      "this is not json\n",
      '{"return": 1, "extra": 2}\n',
      '"just a string"\n',
      '{"return": 1, "id": 99}\n',
      '\xff{"return": 1}\n',
    ]
  ) {
    using s = setup();
    s.fake.handler = (name) => name === "guest-exec" ? { raw } : { return: "ok" };
    const error = errorOf(await s.send('{"execute":"guest-exec","id":1}'));
    assert.equal(error.class, "GenericError");
    assert.ok(
      error.desc.startsWith(
        `guest-exec: the guest agent delegate at ${SOCKET} sent an invalid reply`,
      ),
      `${JSON.stringify(raw)}: ${error.desc}`,
    );
    assert.equal(
      await s.send('{"execute":"guest-get-vcpus","id":2}'),
      '{"return": "ok", "id": 2}\n',
    );
  }
});

Deno.test("a command without a reply on success sends none when it succeeds, at once; its error is passed on", async () => {
  using s = setup({ timeoutMs: 20_000 });
  let fail = false;
  s.fake.handler = (name) =>
    name === "guest-suspend-ram" && fail ? { error: "suspend not supported" } : { silent: true };
  const started = performance.now();
  assert.equal(await s.send('{"execute":"guest-suspend-ram","id":4}'), undefined);
  assert.ok(performance.now() - started < 10_000, "its sync's reply meant success: no timeout");
  fail = true;
  assert.equal(
    await s.send('{"execute":"guest-suspend-ram","id":5}'),
    '{"id": 5, "error": {"class": "GenericError", "desc": "suspend not supported"}}\n',
  );
  s.fake.handler = () => ({ return: "next" });
  assert.equal(await s.send('{"execute":"guest-get-vcpus"}'), '{"return": "next"}\n');
  assert.equal(s.fake.connections, 1);
});

Deno.test("a command without a reply that does not answer in time (a suspended guest) is taken as done", async () => {
  using s = setup({ timeoutMs: 200 });
  let asleep = true;
  s.fake.handler = (name) =>
    name === "guest-suspend-ram"
      ? new Promise((resolve) => {
        const wake = (): void => asleep ? void setTimeout(wake, 20) : resolve({ silent: true });
        wake();
      })
      : { return: "awake" };
  assert.equal(await s.send('{"execute":"guest-suspend-ram"}'), undefined);
  asleep = false;
  assert.equal(await s.send('{"execute":"guest-get-vcpus"}'), '{"return": "awake"}\n');
});

Deno.test("a freeze waits for the delegated command before it; the delegated ones after it are disabled", async () => {
  const calls: string[] = [];
  using s = setup({ calls });
  s.fake.handler = (name) => {
    calls.push(`delegate ${name}`);
    return after(100, { return: name });
  };
  await s.delegate.commands(true);
  const input = [
    '{"execute":"guest-exec","id":1}',
    '{"execute":"guest-fsfreeze-freeze","id":2}',
    '{"execute":"guest-get-vcpus","id":3}',
    '{"execute":"guest-fsfreeze-thaw","id":4}',
    '{"execute":"guest-get-vcpus","id":5}',
  ].join("");
  const connection = new ScriptedConnection(input);
  await serveConnection(connection, { log: silentLogger, registry: s.registry, ctx: s.ctx });
  assert.deepEqual(connection.lines(), [
    '{"return": "guest-exec", "id": 1}',
    '{"return": 1, "id": 2}',
    '{"id": 3, "error": {"class": "CommandNotFound", "desc": "Command guest-get-vcpus has been disabled: the command is not allowed"}}',
    '{"return": 1, "id": 4}',
    '{"return": "guest-get-vcpus", "id": 5}',
  ]);
  assert.deepEqual(calls, [
    "delegate guest-exec",
    "freeze",
    "thaw",
    "delegate guest-get-vcpus",
  ]);
});

/** A connection that delivers `input` in one read, then closes once every reply is written. */
class ScriptedConnection implements Connection {
  readonly peer = "scripted";
  #input: Uint8Array | undefined;
  #output = "";

  constructor(input: string) {
    this.#input = new TextEncoder().encode(input);
  }

  read(): Promise<ReadResult> {
    const input = this.#input;
    this.#input = undefined;
    return Promise.resolve(input ? { type: "data", bytes: input } : { type: "closed" });
  }

  write(bytes: Uint8Array): Promise<void> {
    this.#output += new TextDecoder().decode(bytes);
    return Promise.resolve();
  }

  close(): void {}

  lines(): string[] {
    return this.#output.split("\n").filter((line) => line !== "");
  }
}
