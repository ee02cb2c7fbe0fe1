/**
 * A small `getopt_long` work-alike, because qemu-ga's command line depends on details that
 * `node:util` `parseArgs` does not have: an option with an *optional* attached argument (`-F`,
 * `-F/path`, `--fsfreeze-hook=/path`), unique-prefix abbreviation of long options (`--daemon`),
 * clustered short flags (`-vd`) and GNU argument permutation.
 *
 * Pure: it returns the parsed options and throws {@link UsageError}; it never prints or exits.
 *
 * @module
 */

/** Whether an option takes an argument: none, a required one, or an optional attached one. */
export type ArgKind = "none" | "required" | "optional";

/** One option of the table. */
export interface OptionSpec {
  /** The canonical name, used in the results (usually the long name). */
  name: string;
  /** Single-character form, if any. */
  short?: string;
  /** Long form without the dashes, if any. */
  long?: string;
  arg: ArgKind;
}

/** One parsed option, in command-line order. */
export interface ParsedOption {
  name: string;
  /** The argument; `undefined` for flags and for an absent optional argument. */
  value: string | undefined;
}

/** The result of {@link getoptLong}. */
export interface GetoptResult {
  options: ParsedOption[];
  positionals: string[];
}

/** A malformed command line; the message is getopt's diagnostic. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Parses `argv` (without the program name) against `specs`, as GNU `getopt_long` would. */
export function getoptLong(argv: readonly string[], specs: readonly OptionSpec[]): GetoptResult {
  const options: ParsedOption[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      i = parseLong(argv, i, specs, options);
    } else if (arg.startsWith("-") && arg.length > 1) {
      i = parseShortCluster(argv, i, specs, options);
    } else {
      positionals.push(arg);
    }
  }
  return { options, positionals };
}

function parseLong(
  argv: readonly string[],
  index: number,
  specs: readonly OptionSpec[],
  out: ParsedOption[],
): number {
  const body = argv[index]!.slice(2);
  const eq = body.indexOf("=");
  const name = eq === -1 ? body : body.slice(0, eq);
  const inline = eq === -1 ? undefined : body.slice(eq + 1);
  const spec = findLong(name, specs);
  if (spec.arg === "none") {
    if (inline !== undefined) {
      throw new UsageError(`option '--${spec.long}' doesn't allow an argument`);
    }
    out.push({ name: spec.name, value: undefined });
    return index;
  }
  if (inline !== undefined || spec.arg === "optional") {
    out.push({ name: spec.name, value: inline });
    return index;
  }
  const next = argv[index + 1];
  if (next === undefined) throw new UsageError(`option '--${spec.long}' requires an argument`);
  out.push({ name: spec.name, value: next });
  return index + 1;
}

function findLong(name: string, specs: readonly OptionSpec[]): OptionSpec {
  const exact = specs.find((s) => s.long === name);
  if (exact) return exact;
  const matches = specs.filter((s) => s.long?.startsWith(name));
  const distinct = [...new Set(matches.map((s) => s.name))];
  if (distinct.length === 1 && name.length > 0) return matches[0]!;
  if (distinct.length > 1) {
    const names = matches.map((s) => `'--${s.long}'`).join(" ");
    throw new UsageError(`option '--${name}' is ambiguous; possibilities: ${names}`);
  }
  throw new UsageError(`unrecognized option '--${name}'`);
}

function parseShortCluster(
  argv: readonly string[],
  index: number,
  specs: readonly OptionSpec[],
  out: ParsedOption[],
): number {
  const cluster = argv[index]!;
  for (let j = 1; j < cluster.length; j++) {
    const letter = cluster[j]!;
    const spec = specs.find((s) => s.short === letter);
    if (!spec) throw new UsageError(`invalid option -- '${letter}'`);
    if (spec.arg === "none") {
      out.push({ name: spec.name, value: undefined });
      continue;
    }
    const rest = cluster.slice(j + 1);
    if (rest.length > 0) {
      out.push({ name: spec.name, value: rest });
      return index;
    }
    if (spec.arg === "optional") {
      out.push({ name: spec.name, value: undefined });
      return index;
    }
    const next = argv[index + 1];
    if (next === undefined) throw new UsageError(`option requires an argument -- '${letter}'`);
    out.push({ name: spec.name, value: next });
    return index + 1;
  }
  return index;
}
