/**
 * The command registry: each command's name, argument schema, handler and flags, and the enabled
 * state qemu-ga computes from the allow/block lists and the freeze state (docs/protocol.md,
 * "Enabled commands").
 *
 * Argument checking reproduces qemu's QObject input visitor texts (docs/protocol.md, "Arguments").
 *
 * @module
 */

import { genericError } from "../errors.ts";
import type { JsonValue } from "./json.ts";

/** Argument types of the schema; `string[]` is an enum's accepted values. */
export type ArgType = "int" | "str" | "bool" | "number" | "str-list" | readonly string[];

/** One argument of a command, in schema order. */
export interface ArgSpec {
  name: string;
  type: ArgType;
  optional?: boolean;
}

/** Checked argument values: int → bigint, number → number, str/enum → string, list → string[]. */
export type ArgValue = bigint | number | string | boolean | string[];

/** What a handler receives. */
export type Args = Record<string, ArgValue | undefined>;

/** A registered command. */
export interface CommandSpec<Ctx> {
  name: string;
  args?: readonly ArgSpec[];
  /** `false` for commands that send no reply on success (guest-shutdown). @default true */
  successResponse?: boolean;
  /** Returns plain JS (converted with fromJs) or a JsonValue; `undefined` means `{}`. */
  handler(args: Args, ctx: Ctx): unknown;
}

/** Commands that stay enabled while frozen (qemu-ga's `ga_freeze_allowlist`). */
export const FREEZE_ALLOWLIST: ReadonlySet<string> = new Set([
  "guest-ping",
  "guest-info",
  "guest-sync",
  "guest-sync-delimited",
  "guest-fsfreeze-status",
  "guest-fsfreeze-thaw",
]);

/** The registry with qemu-ga's enable/disable rules. */
export class Registry<Ctx> {
  #commands = new Map<string, CommandSpec<Ctx>>();
  #allow: ReadonlySet<string> = new Set();
  #block: ReadonlySet<string> = new Set();
  #frozenAllow: ReadonlySet<string>;

  /** `extraFrozenAllow`: our own commands that are also safe while frozen. */
  constructor(extraFrozenAllow: Iterable<string> = []) {
    this.#frozenAllow = new Set([...FREEZE_ALLOWLIST, ...extraFrozenAllow]);
  }

  /** Adds a command (registration order is kept for listing). */
  register(spec: CommandSpec<Ctx>): void {
    if (this.#commands.has(spec.name)) throw new Error(`duplicate command ${spec.name}`);
    this.#commands.set(spec.name, spec);
  }

  /** Sets the allow (`-a`) and block (`-b`) lists; unknown names are ignored, as in qemu-ga. */
  setFilters(allow: readonly string[], block: readonly string[]): void {
    this.#allow = new Set(allow);
    this.#block = new Set(block);
  }

  /** Looks a command up. */
  get(name: string): CommandSpec<Ctx> | undefined {
    return this.#commands.get(name);
  }

  /** All commands in registration order. */
  list(): CommandSpec<Ctx>[] {
    return [...this.#commands.values()];
  }

  /** qemu-ga's `ga_command_is_allowed`: allow list, then block list; frozen overrides both. */
  isEnabled(name: string, frozen: boolean): boolean {
    if (frozen) return this.#frozenAllow.has(name);
    if (this.#allow.size > 0 && !this.#allow.has(name)) return false;
    return !this.#block.has(name);
  }
}

const TYPE_NAMES: Record<Exclude<ArgType, readonly string[]>, string> = {
  int: "integer",
  str: "string",
  bool: "boolean",
  number: "number",
  "str-list": "array",
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Checks `arguments` against a schema as qemu's input visitor: members in schema order (missing /
 * wrong type), then the first member left over is unexpected.
 */
export function checkArgs(
  specs: readonly ArgSpec[],
  members: ReadonlyMap<string, JsonValue>,
  memberOrder: (keys: string[]) => string[],
): Args {
  const args: Args = {};
  for (const spec of specs) {
    const value = members.get(spec.name);
    if (value === undefined) {
      if (spec.optional) continue;
      throw genericError(`Parameter '${spec.name}' is missing`);
    }
    args[spec.name] = checkValue(spec.name, spec.type, value);
  }
  if (members.size === 0) return args;
  const known = knownNames(specs);
  let allKnown = true;
  for (const key of members.keys()) allKnown &&= known.has(key);
  if (allKnown) return args;
  // Which unexpected member is named depends on the order: only then is it worked out.
  const extra = memberOrder([...members.keys()]).find((key) => !known.has(key));
  if (extra !== undefined) throw genericError(`Parameter '${extra}' is unexpected`);
  return args;
}

/** The argument names of a schema, kept per schema (it is checked on every call). */
const knownNamesCache = new WeakMap<readonly ArgSpec[], ReadonlySet<string>>();

function knownNames(specs: readonly ArgSpec[]): ReadonlySet<string> {
  let known = knownNamesCache.get(specs);
  if (known === undefined) {
    known = new Set(specs.map((s) => s.name));
    knownNamesCache.set(specs, known);
  }
  return known;
}

function checkValue(name: string, type: ArgType, value: JsonValue): ArgValue {
  if (typeof type !== "string") return checkEnum(name, type, value);
  switch (type) {
    case "int":
      if (value.kind === "int" && value.value >= INT64_MIN && value.value <= INT64_MAX) {
        return value.value;
      }
      break;
    case "number":
      if (value.kind === "int" || value.kind === "uint") return Number(value.value);
      if (value.kind === "double") return value.value;
      break;
    case "str":
      if (value.kind === "string") return value.value;
      break;
    case "bool":
      if (value.kind === "bool") return value.value;
      break;
    case "str-list":
      if (value.kind === "array") {
        return value.items.map((item, i) => checkValue(`${name}[${i}]`, "str", item) as string);
      }
      break;
  }
  throw typeError(name, TYPE_NAMES[type]);
}

function checkEnum(name: string, values: readonly string[], value: JsonValue): string {
  if (value.kind !== "string") throw typeError(name, "string");
  if (!values.includes(value.value)) {
    throw genericError(`Parameter '${name}' does not accept value '${value.value}'`);
  }
  return value.value;
}

function typeError(name: string, expected: string): Error {
  return genericError(`Invalid parameter type for '${name}', expected: ${expected}`);
}
