/**
 * From one parsed message to one reply line: envelope validation with qemu's `qmp_dispatch` texts,
 * command lookup and enable check, argument checking, the handler call, and the response with the
 * request's `id` echoed (docs/protocol.md, "Requests and replies").
 *
 * @module
 */

import {
  AgentError,
  commandDisabled,
  commandNotFound,
  genericError,
  toWireError,
} from "../errors.ts";
import { encodeJson, fromJs, type JsonValue, qdictKeyOrder } from "./json.ts";
import { type Args, type ArgSpec, checkArgs, type Registry } from "./registry.ts";

/** The outcome of dispatching one message. */
export interface Reply {
  /** The reply line including `\n`, or `undefined` when no reply is due (success-response false). */
  line: string | undefined;
  /** The command name, when the envelope named one (for logging). */
  command: string | undefined;
  /** The reply must be prefixed with 0xFF (guest-sync-delimited succeeded). */
  delimited: boolean;
}

/** What the dispatcher needs from the agent. */
export interface DispatchContext {
  /** Whether the agent is frozen (only the freeze allowlist is enabled then). */
  frozen(): boolean;
}

/** A handler may ask for the 0xFF prefix on its own reply (guest-sync-delimited). */
export const DELIMIT_REPLY: unique symbol = Symbol("delimit-reply");

/** A handler result that asks for the 0xFF prefix. */
export interface DelimitedResult {
  [DELIMIT_REPLY]: true;
  value: unknown;
}

/** Wraps a result so its reply is preceded by 0xFF. */
export function delimited(value: unknown): DelimitedResult {
  return { [DELIMIT_REPLY]: true, value };
}

function isDelimited(result: unknown): result is DelimitedResult {
  return typeof result === "object" && result !== null && DELIMIT_REPLY in result;
}

interface Envelope {
  execute: string;
  args: ReadonlyMap<string, JsonValue>;
}

/** Dispatches one parsed message; never throws. */
export async function dispatchMessage<Ctx extends DispatchContext>(
  message: JsonValue,
  registry: Registry<Ctx>,
  ctx: Ctx,
): Promise<Reply> {
  const id = message.kind === "object" ? message.members.get("id") : undefined;
  let command: string | undefined;
  try {
    const envelope = checkEnvelope(message);
    command = envelope.execute;
    const spec = registry.get(command);
    if (!spec) throw commandNotFound(command);
    if (!registry.isEnabled(command, ctx.frozen())) throw commandDisabled(command);
    const args: Args = checkArgs(spec.args ?? NO_ARG_SPECS, envelope.args, qdictKeyOrder);
    const result = await spec.handler(args, ctx);
    if (spec.successResponse === false) return { line: undefined, command, delimited: false };
    const value = isDelimited(result) ? result.value : result;
    const line = responseLine("return", toReturnValue(value), id);
    return { line, command, delimited: isDelimited(result) };
  } catch (err) {
    const wire = toWireError(err);
    if (!(err instanceof AgentError)) wire.desc ||= "internal error";
    return { line: responseLine("error", fromJs(wire), id), command, delimited: false };
  }
}

/** The reply to a JSON parse error (never carries an `id`). */
export function parseErrorLine(desc: string): string {
  return responseLine("error", fromJs({ class: "GenericError", desc }), undefined);
}

function toReturnValue(value: unknown): JsonValue {
  if (value === undefined) return { kind: "object", members: new Map() };
  if (isJsonValue(value)) return value;
  return fromJs(value);
}

function isJsonValue(value: unknown): value is JsonValue {
  return typeof value === "object" && value !== null && "kind" in value &&
    typeof (value as { kind: unknown }).kind === "string" && !Array.isArray(value);
}

/** Where `id` goes in a reply: QDict iteration order of the two keys (fixed, so computed once). */
const ID_FIRST = {
  return: qdictKeyOrder(["return", "id"])[0] === "id",
  error: qdictKeyOrder(["error", "id"])[0] === "id",
};

/**
 * The reply `{key: value[, "id": id]}` as qemu's writer prints a two-member QDict, put together
 * directly: every reply takes this path, and a Map plus key ordering per reply is measurable.
 */
function responseLine(
  key: "return" | "error",
  value: JsonValue,
  id: JsonValue | undefined,
): string {
  const body = `"${key}": ${encodeJson(value)}`;
  if (id === undefined) return `{${body}}\n`;
  const idMember = `"id": ${encodeJson(id)}`;
  return ID_FIRST[key] ? `{${idMember}, ${body}}\n` : `{${body}, ${idMember}}\n`;
}

/** qemu's `qmp_dispatch_check_obj`: members checked in QDict order, then `execute` required. */
function checkEnvelope(message: JsonValue): Envelope {
  if (message.kind !== "object") throw genericError("QMP input must be a JSON object");
  // A well-formed envelope passes whatever the order; only an error depends on which member is
  // checked first, so the ordered check runs only when something is wrong.
  const execute = message.members.get("execute");
  const args = message.members.get("arguments");
  const wellFormed = execute?.kind === "string" &&
    (args === undefined || args.kind === "object") &&
    message.members.size === 1 + (args === undefined ? 0 : 1) +
        (message.members.has("id") ? 1 : 0);
  if (wellFormed) {
    return { execute: execute.value, args: args?.kind === "object" ? args.members : NO_ARGS };
  }
  return checkEnvelopeInOrder(message);
}

const NO_ARGS: ReadonlyMap<string, JsonValue> = new Map();
const NO_ARG_SPECS: readonly ArgSpec[] = [];

function checkEnvelopeInOrder(message: JsonValue & { kind: "object" }): Envelope {
  let execute: string | undefined;
  let args: ReadonlyMap<string, JsonValue> = new Map();
  for (const key of qdictKeyOrder([...message.members.keys()])) {
    const value = message.members.get(key)!;
    if (key === "execute") {
      if (value.kind !== "string") {
        throw genericError("QMP input member 'execute' must be a string");
      }
      execute = value.value;
    } else if (key === "arguments") {
      if (value.kind !== "object") {
        throw genericError("QMP input member 'arguments' must be an object");
      }
      args = value.members;
    } else if (key !== "id") {
      throw genericError(`QMP input member '${key}' is unexpected`);
    }
  }
  if (execute === undefined) throw genericError("QMP input lacks member 'execute'");
  return { execute, args };
}
