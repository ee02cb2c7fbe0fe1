/**
 * From one parsed message to one reply line: envelope validation with qemu's `qmp_dispatch` texts,
 * command lookup and enable check, argument checking, the handler call, and the response with the
 * request's `id` echoed (docs/protocol.md, "Requests and replies"). A command the registry does
 * not have may be served by a {@link Forwarder} (the delegate, docs/design.md #36, #37): the enable
 * check is still ours, and its reply line is passed on as it came.
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
  /** Serves the commands the registry does not have; none: they are not found. */
  readonly forwarder?: Forwarder | undefined;
}

/** A command another agent serves, as its `guest-info` lists it. */
export interface ForwardedCommand {
  name: string;
  /** Enabled there (our own allow, block and frozen rules come on top). */
  enabled: boolean;
  /** `false`: no reply when it succeeds. */
  successResponse: boolean;
}

/** Another agent that serves the commands this one does not implement. */
export interface Forwarder {
  /**
   * Its commands, in the order its `guest-info` lists them. `ask`: it may be asked when it has not
   * listed them yet; otherwise what it listed last (none before it ever did).
   * @throws {AgentError} when it had to be asked and could not be
   */
  commands(ask: boolean): Promise<readonly ForwardedCommand[]>;
  /**
   * Sends it the whole request; resolves its reply line as it came (with the `\n`), or
   * `undefined` when no reply is due.
   * @throws {AgentError} naming it when it is down, too slow or answers garbage
   */
  forward(request: JsonValue, name: string): Promise<string | undefined>;
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
    if (!spec) return await forwardedReply(message, command, registry, ctx);
    if (!enabledNow(registry, command, ctx)) throw commandDisabled(command);
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

/**
 * Whether `command` is enabled now. The agent is asked whether it is frozen (which may cost it a
 * look at its state file) only when that decides: most commands are enabled, or not, either way.
 */
function enabledNow<Ctx extends DispatchContext>(
  registry: Registry<Ctx>,
  command: string,
  ctx: Ctx,
): boolean {
  const whenFrozen = registry.isEnabled(command, true);
  if (whenFrozen === registry.isEnabled(command, false)) return whenFrozen;
  return ctx.frozen() ? whenFrozen : !whenFrozen;
}

/**
 * A command the registry does not have: looked up in the forwarder's list, then checked against our
 * allow, block and frozen rules, as a registered one is; only an enabled one is sent on. While
 * frozen the forwarder is not asked for its list: what it listed before decides.
 */
async function forwardedReply<Ctx extends DispatchContext>(
  message: JsonValue,
  command: string,
  registry: Registry<Ctx>,
  ctx: Ctx,
): Promise<Reply> {
  const forwarder = ctx.forwarder;
  if (forwarder === undefined) throw commandNotFound(command);
  const frozen = ctx.frozen();
  const enabled = registry.isEnabled(command, frozen);
  let known: readonly ForwardedCommand[];
  try {
    known = await forwarder.commands(!frozen);
  } catch (err) {
    // Its failure is the answer only for a command it would have been sent.
    if (enabled) throw err;
    known = await forwarder.commands(false);
  }
  if (!known.some((entry) => entry.name === command)) throw commandNotFound(command);
  if (!enabled) throw commandDisabled(command);
  return { line: await forwarder.forward(message, command), command, delimited: false };
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
