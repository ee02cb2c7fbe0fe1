/**
 * A fake delegate agent for the forwarding policy's unit tests: it speaks qemu-ga's side of the
 * protocol over in-memory connections (requests run one after the other, 0xFF answered with
 * qemu-ga's "stray" error, `guest-sync-delimited` replies preceded by 0xFF, the `id` echoed) and
 * lets a test make it slow, silent, garbled, down or crash.
 *
 * @module
 */

import { fromJs, JsonMessageParser, type JsonValue } from "../../src/protocol/json.ts";
import { encodeJson } from "../../src/protocol/json.ts";
import type { ForwardedCommand } from "../../src/protocol/dispatch.ts";
import type { Connection, ReadResult } from "../../src/transport/mod.ts";

/** What the fake does with one request. */
export type Behaviour =
  | { return: unknown }
  | { error: string; class?: string }
  /** Sends nothing (a command with no reply on success, or a hung delegate). */
  | { silent: true }
  /** Sends these bytes instead of a reply. */
  | { raw: string | Uint8Array }
  /** Closes the connection instead of answering (a crash). */
  | { crash: true };

/** How the fake answers a command: a behaviour, possibly after a delay. */
export type Handler = (
  name: string,
  args: Record<string, unknown>,
) => Behaviour | Promise<Behaviour>;

const encoder = new TextEncoder();

/** qemu-ga 7.2's list, shortened: what the delegate serves, with its success-response flags. */
export const FAKE_COMMANDS: ForwardedCommand[] = [
  { name: "guest-get-vcpus", enabled: true, successResponse: true },
  { name: "guest-exec", enabled: true, successResponse: true },
  { name: "guest-suspend-ram", enabled: true, successResponse: false },
  { name: "guest-get-devices", enabled: false, successResponse: true },
  { name: "guest-fsfreeze-freeze", enabled: false, successResponse: true },
  { name: "guest-info", enabled: true, successResponse: true },
  { name: "guest-ping", enabled: true, successResponse: true },
  { name: "guest-sync-delimited", enabled: true, successResponse: true },
];

/** One end of an in-memory connection. */
class FakeEnd implements Connection {
  readonly peer = "fake-delegate";
  #queue: Uint8Array[] = [];
  #waiting: ((result: ReadResult) => void) | undefined;
  #closed = false;
  other: FakeEnd | undefined;
  onData: ((bytes: Uint8Array) => void) | undefined;

  read(): Promise<ReadResult> {
    const next = this.#queue.shift();
    if (next !== undefined) return Promise.resolve({ type: "data", bytes: next });
    if (this.#closed) return Promise.resolve({ type: "closed" });
    return new Promise((resolve) => this.#waiting = resolve);
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.#closed || this.other === undefined || this.other.#closed) {
      return Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
    }
    this.other.#deliver(bytes.slice());
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake({ type: "closed" });
    this.other?.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #deliver(bytes: Uint8Array): void {
    if (this.onData !== undefined) return this.onData(bytes);
    if (this.#waiting !== undefined) return this.#wake({ type: "data", bytes });
    this.#queue.push(bytes);
  }

  #wake(result: ReadResult): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.(result);
  }
}

/** The fake delegate: connect to it as to the real one. */
export class FakeDelegate {
  /** Connecting fails (the delegate is not running). */
  down = false;
  /** Its command list (its `guest-info`). */
  commands: ForwardedCommand[] = FAKE_COMMANDS;
  /** Commands other than sync and info. */
  handler: Handler = () => ({ return: {} });
  /** Every request it got (names), in order, sync and info included. */
  readonly received: string[] = [];
  /** How many connections were opened. */
  connections = 0;
  /** How many 0xFF bytes it got. */
  resyncBytes = 0;
  #ends: FakeEnd[] = [];

  /** Opens a connection (the `connect` a delegate client takes). */
  connect = (): Promise<Connection> => {
    if (this.down) {
      return Promise.reject(new Deno.errors.ConnectionRefused("Connection refused (os error 111)"));
    }
    this.connections++;
    const ours = new FakeEnd();
    const theirs = new FakeEnd();
    ours.other = theirs;
    theirs.other = ours;
    this.#serve(theirs);
    this.#ends.push(theirs);
    return Promise.resolve(ours);
  };

  /**
   * Serves real clients on a unix socket at `path` (for tests of the agent process): each
   * connection is bridged to one of its in-memory ones.
   */
  listen(path: string): AsyncDisposable {
    const listener = Deno.listen({ transport: "unix", path });
    const conns = new Set<Deno.Conn>();
    const bridges: Promise<void>[] = [];
    const accepting = (async () => {
      for await (const conn of listener) {
        conns.add(conn);
        bridges.push(this.#bridge(conn).finally(() => conns.delete(conn)));
      }
    })().catch(() => {});
    return {
      [Symbol.asyncDispose]: async () => {
        listener.close();
        for (const conn of conns) conn.close();
        this.crash();
        await accepting;
        await Promise.all(bridges);
      },
    };
  }

  async #bridge(conn: Deno.Conn): Promise<void> {
    const end = await this.connect();
    const inward = (async () => {
      const buffer = new Uint8Array(4096);
      while (true) {
        const count = await conn.read(buffer).catch(() => null);
        if (count === null) break;
        await end.write(buffer.slice(0, count)).catch(() => {});
      }
      end.close();
    })();
    while (true) {
      const result = await end.read();
      if (result.type !== "data") break;
      let offset = 0;
      while (offset < result.bytes.length) {
        offset += await conn.write(result.bytes.subarray(offset)).catch(() => result.bytes.length);
      }
    }
    try {
      conn.close();
    } catch {
      // closed by the other side
    }
    await inward;
  }

  /** Closes every connection (a crash or a restart). */
  crash(): void {
    for (const end of this.#ends) end.close();
    this.#ends = [];
  }

  /** Requests named `name` it got. */
  count(name: string): number {
    return this.received.filter((received) => received === name).length;
  }

  #serve(end: FakeEnd): void {
    const parser = new JsonMessageParser();
    let work = Promise.resolve();
    end.onData = (bytes) => {
      // One request after the other, as qemu-ga runs them.
      work = work.then(() => this.#input(end, parser, bytes));
    };
  }

  async #input(end: FakeEnd, parser: JsonMessageParser, bytes: Uint8Array): Promise<void> {
    let start = 0;
    for (let i = 0; i <= bytes.length; i++) {
      if (i < bytes.length && bytes[i] !== 0xff) continue;
      for (const event of parser.feed(bytes.subarray(start, i))) {
        if (end.closed) return;
        if (event.type === "message") await this.#request(end, event.value);
      }
      if (i < bytes.length) {
        this.resyncBytes++;
        // qemu-ga's lexer takes 0xFF for a stray byte: one error, and the partial input is gone.
        parser.reset();
        await this.#send(end, {
          error: { class: "GenericError", desc: "JSON parse error, stray '\uFFFD'" },
        });
      }
      start = i + 1;
    }
  }

  async #request(end: FakeEnd, request: JsonValue): Promise<void> {
    const members = request.kind === "object" ? request.members : new Map<string, JsonValue>();
    const execute = members.get("execute");
    const name = execute?.kind === "string" ? execute.value : "";
    const id = members.get("id");
    const args = JSON.parse(encodeJson(members.get("arguments") ?? fromJs({})));
    this.received.push(name);
    if (name === "guest-sync-delimited") {
      const line = encoder.encode(encodeJson(fromJs({ return: args.id })) + "\n");
      return await this.#write(end, concat(new Uint8Array([0xff]), line));
    }
    const behaviour = name === "guest-info" ? this.#info() : await this.handler(name, args);
    if ("silent" in behaviour) return;
    if ("crash" in behaviour) return end.close();
    if ("raw" in behaviour) {
      const raw = behaviour.raw;
      return await this.#write(end, typeof raw === "string" ? encoder.encode(raw) : raw);
    }
    const reply = "return" in behaviour
      ? { return: behaviour.return }
      : { error: { class: behaviour.class ?? "GenericError", desc: behaviour.error } };
    await this.#send(end, reply, id);
  }

  #info(): Behaviour {
    const supported = this.commands.map((command) => ({
      enabled: command.enabled,
      name: command.name,
      "success-response": command.successResponse,
    }));
    return { return: { version: "7.2.22", supported_commands: supported } };
  }

  async #send(end: FakeEnd, reply: Record<string, unknown>, id?: JsonValue): Promise<void> {
    const value = fromJs(reply);
    if (id !== undefined && value.kind === "object") value.members.set("id", id);
    await this.#write(end, encoder.encode(encodeJson(value) + "\n"));
  }

  async #write(end: FakeEnd, bytes: Uint8Array): Promise<void> {
    await end.write(bytes).catch(() => {});
  }
}

/** A delay, for handlers that are slow. */
export function after<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Decodes a reply line for assertions. */
export function parseLine(line: string | undefined): Record<string, unknown> {
  if (line === undefined) throw new Error("no reply line");
  return JSON.parse(line);
}
