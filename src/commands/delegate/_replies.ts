/**
 * What the agent sends the delegate of its own accord (`guest-sync-delimited`, `guest-info`) and
 * how a line from the delegate is checked: a reply is a JSON object with exactly one of `return`
 * and `error`, carrying the request's `id` when it had one (docs/protocol.md, "Requests and
 * replies"). Anything else is garbage: the session is out of step and is synchronised again.
 *
 * @module
 */

import type { ForwardedCommand } from "../../protocol/dispatch.ts";
import { encodeJson, JsonMessageParser, type JsonValue } from "../../protocol/json.ts";
import { MAX_LINE_BYTES } from "./_lines.ts";

/** A reply line, checked. */
export type CheckedReply =
  | { ok: true; reply: Map<string, JsonValue> }
  | { ok: false; why: string };

const decoder = new TextDecoder();

/** The `guest-info` request the agent sends after each (re)connect. */
export const GUEST_INFO_REQUEST = '{"execute": "guest-info"}';

/** A `guest-sync-delimited` request with `id`. */
export function syncRequest(id: number): string {
  return `{"execute": "guest-sync-delimited", "arguments": {"id": ${id}}}`;
}

/** A random sync id, so that a reply left over from an earlier sync is not taken for this one's. */
export function newSyncId(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]! + 1;
}

/** Parses one line as a single JSON object. */
function parseObject(bytes: Uint8Array): Map<string, JsonValue> | string {
  // The largest reply is one big string: qemu's per-message limit would refuse it.
  const parser = new JsonMessageParser({ maxTokenBytes: MAX_LINE_BYTES + 1 });
  const events = parser.feed(bytes);
  const [event] = events;
  if (events.length !== 1 || event === undefined) return "not one JSON value";
  if (event.type === "error") return event.desc;
  if (event.value.kind !== "object") return "not a JSON object";
  return event.value.members;
}

/** Checks that `bytes` is a reply to a request whose `id` was `id` (absent: `undefined`). */
export function checkReply(bytes: Uint8Array, id: JsonValue | undefined): CheckedReply {
  const reply = parseObject(bytes);
  if (typeof reply === "string") return { ok: false, why: reply };
  const outcome = ["return", "error"].filter((key) => reply.has(key));
  const others = [...reply.keys()].filter((key) => key !== "return" && key !== "error");
  if (outcome.length !== 1 || others.some((key) => key !== "id")) {
    return { ok: false, why: "not a reply" };
  }
  const echoed = reply.get("id");
  const same = echoed === undefined || id === undefined
    ? echoed === id
    : encodeJson(echoed) === encodeJson(id);
  if (!same) return { ok: false, why: "the reply to another request" };
  return { ok: true, reply };
}

/** Whether a line is the delegate's reply to our `guest-sync-delimited` with `id`. */
export function isSyncReply(bytes: Uint8Array, id: number): boolean {
  const checked = checkReply(bytes, undefined);
  const value = checked.ok ? checked.reply.get("return") : undefined;
  return value?.kind === "int" && value.value === BigInt(id);
}

/**
 * The delegate's commands from its `guest-info` reply, in the order it lists them.
 * @throws {TypeError} when the reply is not a `guest-info` result
 */
export function listedCommands(reply: Map<string, JsonValue>): ForwardedCommand[] {
  const value = reply.get("return");
  const list = value?.kind === "object" ? value.members.get("supported_commands") : undefined;
  if (list?.kind !== "array") throw new TypeError("no supported_commands in its guest-info");
  return list.items.map((item) => {
    const members = item.kind === "object" ? item.members : new Map<string, JsonValue>();
    const name = members.get("name");
    const enabled = members.get("enabled");
    const success = members.get("success-response");
    if (name?.kind !== "string" || enabled?.kind !== "bool" || success?.kind !== "bool") {
      throw new TypeError("an entry of its supported_commands is not a command");
    }
    return { name: name.value, enabled: enabled.value, successResponse: success.value };
  });
}

/** The start of a line, for an error text. */
export function excerpt(bytes: Uint8Array, length = 80): string {
  const text = decoder.decode(bytes.subarray(0, length + 1)).replace(/\n$/, "");
  return text.length > length ? `${text.slice(0, length)}...` : text;
}
