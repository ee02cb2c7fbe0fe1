/**
 * The agent's only logger: stderr (with journald `<N>` level prefixes when not a terminal) and an
 * optional log file.
 *
 * While filesystems are frozen, log file writes are held in memory and written after thaw: a write
 * to a frozen filesystem would block the agent, and then nothing could thaw it (docs/design.md
 * #12). stderr stays live (journald is a socket, not a file on a freezable filesystem).
 *
 * This is the only module allowed to write to the console.
 *
 * @module
 */

import { errorMessage } from "./errors.ts";
import { openOwnFile, writeAllSync } from "./safe_files.ts";

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Extra `key=value` data attached to a log line. */
export type LogFields = Record<string, string | number | boolean | bigint | undefined>;

/** What code that logs needs. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
/** syslog priorities for systemd's `SyslogLevelPrefix=`. */
const JOURNALD_PRIORITY: Record<LogLevel, number> = { debug: 7, info: 6, warn: 4, error: 3 };
/** Bound on lines held while frozen; older ones are dropped and counted. */
const MAX_HELD_LINES = 4096;

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default "info" */
  level?: LogLevel;
  /** Prefix stderr lines with `<N>` for journald. @default true when stderr is not a terminal */
  journald?: boolean;
  /** Append log lines to this file as well. */
  logFile?: string | undefined;
  /** Where stderr lines go (tests pass a collector). @default Deno.stderr */
  stderr?: { writeSync(p: Uint8Array): number };
}

/** Renders `key=value` pairs, quoting values that contain spaces, quotes or `=`. */
export function formatFields(fields: LogFields | undefined): string {
  if (!fields) return "";
  let out = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const text = String(value);
    out += ` ${key}=${/[\s"=]/.test(text) || text === "" ? JSON.stringify(text) : text}`;
  }
  return out;
}

/** The agent's logger: a {@link Logger} whose file output can be held while frozen. */
export class AgentLogger implements Logger {
  #rank: number;
  #journald: boolean;
  #stderr: { writeSync(p: Uint8Array): number };
  #file: Deno.FsFile | undefined;
  #filePath: string | undefined;
  #held: string[] | undefined;
  #dropped = 0;
  #encoder = new TextEncoder();

  constructor(options: LoggerOptions = {}) {
    this.#rank = LEVEL_RANK[options.level ?? "info"];
    this.#stderr = options.stderr ?? Deno.stderr;
    this.#journald = options.journald ?? !Deno.stderr.isTerminal();
    this.#filePath = options.logFile;
  }

  /** Opens the log file (deferred while starting frozen, as qemu-ga does). */
  openFile(): void {
    if (this.#filePath === undefined || this.#file) return;
    this.#file = openOwnFile(this.#filePath, { append: true, mode: 0o640, what: "log file" });
  }

  /** Whether a log file is configured. */
  get writesFile(): boolean {
    return this.#filePath !== undefined;
  }

  /** Whether file output is being held in memory. */
  get holding(): boolean {
    return this.#held !== undefined;
  }

  /** Starts holding file output in memory (call before the first FIFREEZE). */
  holdFileWrites(): void {
    this.#held ??= [];
  }

  /** Writes the held file output and resumes direct writes (call after thaw). */
  releaseFileWrites(): void {
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    if (this.#dropped > 0) {
      this.#writeFile(this.#fileLine("warn", `dropped ${this.#dropped} log lines while frozen`));
      this.#dropped = 0;
    }
    for (const line of held) this.#writeFile(line);
  }

  debug(msg: string, fields?: LogFields): void {
    this.#log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }

  /** Flushes held lines (if any) and closes the log file. */
  close(): void {
    this.releaseFileWrites();
    this.#file?.close();
    this.#file = undefined;
  }

  #log(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    if (LEVEL_RANK[level] < this.#rank) return;
    const text = msg + formatFields(fields);
    const prefix = this.#journald ? `<${JOURNALD_PRIORITY[level]}>` : `${level}: `;
    // While frozen, journald itself may be blocked writing to a frozen journal and would stamp
    // the line with the time it woke up: say when it happened.
    const at = this.#held === undefined ? "" : ` at=${new Date().toISOString()}`;
    this.#writeStderr(`${prefix}${text}${at}\n`);
    if (this.#filePath === undefined) return;
    const line = this.#fileLine(level, text);
    if (this.#held) {
      if (this.#held.length >= MAX_HELD_LINES) {
        this.#held.shift();
        this.#dropped++;
      }
      this.#held.push(line);
    } else {
      this.#writeFile(line);
    }
  }

  #fileLine(level: LogLevel, text: string): string {
    const micros = Math.round(Date.now() * 1000);
    const seconds = Math.floor(micros / 1e6);
    const rest = String(micros % 1e6).padStart(6, "0");
    return `${seconds}.${rest}: ${level}: ${text}\n`;
  }

  #writeStderr(line: string): void {
    try {
      writeAllSync(this.#stderr, this.#encoder.encode(line));
    } catch {
      // stderr gone (closed pipe): logging must never take the agent down.
    }
  }

  #writeFile(line: string): void {
    if (!this.#file) return;
    try {
      writeAllSync(this.#file, this.#encoder.encode(line));
    } catch (err) {
      this.#writeStderr(`<4>cannot write log file: ${errorMessage(err)}\n`);
    }
  }
}

/** Creates the agent logger. */
export function createLogger(options: LoggerOptions = {}): AgentLogger {
  return new AgentLogger(options);
}

/** A logger that writes nothing (for unit tests of modules that log). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
