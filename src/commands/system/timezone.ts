/**
 * `guest-get-timezone`: the local time zone's abbreviation and UTC offset now, as qemu-ga reports
 * them through GLib (`g_time_zone_new_local`: `/etc/localtime`, UTC when it is missing).
 *
 * Reads the TZif file (RFC 8536) itself: its transitions, and after the last one the POSIX TZ
 * rule in its footer. Intl cannot give the abbreviation ("CET" is "GMT+1" in ICU's en-US).
 *
 * @module
 */

/** `GuestTimezone` of the QAPI schema. */
export interface GuestTimezone {
  /** The abbreviation in effect, e.g. "UTC", "CEST". */
  zone?: string;
  /** Seconds east of UTC. */
  offset: number;
}

/** The local time zone file GLib reads when `TZ` is unset (it is, under systemd). */
export const LOCALTIME_PATH = "/etc/localtime";

/** One local time type of a zone. */
export interface LocalTimeType {
  /** Seconds east of UTC. */
  utoff: number;
  isDst: boolean;
  abbreviation: string;
}

/** A parsed TZif file: transition times (seconds since the Epoch), their types, the footer rule. */
export interface Tzif {
  transitions: number[];
  transitionTypes: number[];
  types: LocalTimeType[];
  /** The POSIX TZ string for times after the last transition; undefined if absent or empty. */
  footer: PosixTz | undefined;
}

const HEADER_BYTES = 44;

interface Counts {
  isut: number;
  isstd: number;
  leap: number;
  time: number;
  type: number;
  char: number;
}

function readHeader(view: DataView, offset: number): { version: number; counts: Counts } {
  const magic = String.fromCharCode(
    ...[0, 1, 2, 3].map((i) => view.getUint8(offset + i)),
  );
  if (magic !== "TZif") throw new RangeError("not a TZif file");
  const count = (i: number): number => view.getUint32(offset + 20 + 4 * i, false);
  return {
    version: view.getUint8(offset + 4),
    counts: {
      isut: count(0),
      isstd: count(1),
      leap: count(2),
      time: count(3),
      type: count(4),
      char: count(5),
    },
  };
}

function dataBytes(counts: Counts, timeBytes: 4 | 8): number {
  return counts.time * (timeBytes + 1) + counts.type * 6 + counts.char +
    counts.leap * (timeBytes + 4) + counts.isstd + counts.isut;
}

/**
 * Parses a TZif file: version 1 data, or for version 2+ the 64-bit block and the footer.
 * @throws {RangeError} when it is not a TZif file or is truncated
 */
export function parseTzif(bytes: Uint8Array): Tzif {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const first = readHeader(view, 0);
  let offset = HEADER_BYTES;
  let counts = first.counts;
  let timeBytes: 4 | 8 = 4;
  if (first.version !== 0) {
    offset += dataBytes(counts, 4);
    counts = readHeader(view, offset).counts;
    offset += HEADER_BYTES;
    timeBytes = 8;
  }
  const dataStart = offset;
  const transitions: number[] = [];
  for (let i = 0; i < counts.time; i++) {
    const at = offset + i * timeBytes;
    transitions.push(timeBytes === 8 ? Number(view.getBigInt64(at, false)) : view.getInt32(at));
  }
  offset += counts.time * timeBytes;
  const transitionTypes = [...bytes.subarray(offset, offset + counts.time)];
  offset += counts.time;
  const charsAt = offset + counts.type * 6;
  const chars = bytes.subarray(charsAt, charsAt + counts.char);
  const types: LocalTimeType[] = [];
  for (let i = 0; i < counts.type; i++) {
    const at = offset + i * 6;
    const index = view.getUint8(at + 5);
    const end = chars.indexOf(0, index);
    types.push({
      utoff: view.getInt32(at, false),
      isDst: view.getUint8(at + 4) !== 0,
      abbreviation: new TextDecoder().decode(chars.subarray(index, end === -1 ? undefined : end)),
    });
  }
  offset = dataStart + dataBytes(counts, timeBytes);
  if (offset > bytes.byteLength) throw new RangeError("truncated TZif file");
  let footer: PosixTz | undefined;
  if (timeBytes === 8) {
    const text = new TextDecoder().decode(bytes.subarray(offset)).split("\n")[1] ?? "";
    footer = text === "" ? undefined : parsePosixTz(text);
  }
  return { transitions, transitionTypes, types, footer };
}

/** A rule day of a POSIX TZ string: `Jn` (no Feb 29), `n` (zero-based), or `Mm.w.d`. */
export type RuleDate =
  | { kind: "julian"; day: number }
  | { kind: "zero-based"; day: number }
  | { kind: "month"; month: number; week: number; weekday: number };

/** A DST change: a date, and the local time of day (seconds, may be negative or beyond 24 h). */
export interface RuleChange {
  date: RuleDate;
  time: number;
}

/** A POSIX TZ string (`std offset [dst [offset] [,start[/time],end[/time]]]`). */
export interface PosixTz {
  std: LocalTimeType;
  dst?: LocalTimeType & { start: RuleChange; end: RuleChange };
}

/** glibc's rule when a TZ string names a DST zone but no dates: the US rule. */
const DEFAULT_RULE = "M3.2.0,M11.1.0";

/**
 * Parses a POSIX TZ string as found in TZif footers.
 * @throws {RangeError} when it is malformed
 */
export function parsePosixTz(text: string): PosixTz {
  let rest = text;
  const take = (pattern: RegExp): string | undefined => {
    const match = pattern.exec(rest);
    if (!match) return undefined;
    rest = rest.slice(match[0].length);
    return match[1] ?? match[0];
  };
  const name = (): string | undefined => take(/^<([^>]*)>/) ?? take(/^[A-Za-z]{3,}/);
  const stdName = name();
  const stdOffset = take(/^[+-]?\d+(?::\d+){0,2}/);
  if (stdName === undefined || stdOffset === undefined) {
    throw new RangeError(`invalid TZ string: ${text}`);
  }
  // POSIX offsets count west of UTC; utoff counts east.
  const std = { utoff: -parseClock(stdOffset), isDst: false, abbreviation: stdName };
  const dstName = name();
  if (dstName === undefined) {
    if (rest !== "") throw new RangeError(`invalid TZ string: ${text}`);
    return { std };
  }
  const dstOffset = take(/^[+-]?\d+(?::\d+){0,2}/);
  const utoff = dstOffset === undefined ? std.utoff + 3600 : -parseClock(dstOffset);
  const rules = (rest === "" ? `,${DEFAULT_RULE}` : rest).split(",");
  if (rules.length !== 3 || rules[0] !== "") throw new RangeError(`invalid TZ string: ${text}`);
  return {
    std,
    dst: {
      utoff,
      isDst: true,
      abbreviation: dstName,
      start: parseChange(rules[1]!, text),
      end: parseChange(rules[2]!, text),
    },
  };
}

/** `[+-]hh[:mm[:ss]]` in seconds. */
function parseClock(text: string): number {
  const sign = text.startsWith("-") ? -1 : 1;
  const [hours = 0, minutes = 0, seconds = 0] = text.replace(/^[+-]/, "").split(":").map(Number);
  return sign * (hours * 3600 + minutes * 60 + seconds);
}

function parseChange(text: string, whole: string): RuleChange {
  const [date = "", time] = text.split("/");
  const change = (parsed: RuleDate): RuleChange => ({
    date: parsed,
    time: time === undefined ? 7200 : parseClock(time),
  });
  let match = /^J(\d+)$/.exec(date);
  if (match) return change({ kind: "julian", day: Number(match[1]) });
  match = /^(\d+)$/.exec(date);
  if (match) return change({ kind: "zero-based", day: Number(match[1]) });
  match = /^M(\d+)\.(\d)\.(\d)$/.exec(date);
  if (match) {
    return change({
      kind: "month",
      month: Number(match[1]),
      week: Number(match[2]),
      weekday: Number(match[3]),
    });
  }
  throw new RangeError(`invalid TZ string: ${whole}`);
}

const DAY = 86_400;

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

/** Days since the Epoch of the rule date in `year`. */
function ruleDay(date: RuleDate, year: number): number {
  const january1 = Date.UTC(year, 0, 1) / (DAY * 1000);
  switch (date.kind) {
    case "julian":
      return january1 + date.day - 1 + (isLeap(year) && date.day >= 60 ? 1 : 0);
    case "zero-based":
      return january1 + date.day;
    case "month": {
      const first = Date.UTC(year, date.month - 1, 1) / (DAY * 1000);
      const length = new Date(Date.UTC(year, date.month, 0)).getUTCDate();
      const firstWeekday = new Date(first * DAY * 1000).getUTCDay();
      let day = (date.weekday - firstWeekday + 7) % 7 + 7 * (date.week - 1);
      while (day >= length) day -= 7;
      return first + day;
    }
  }
}

/** The local time type a POSIX TZ string gives at `time` (seconds since the Epoch). */
export function posixTzTypeAt(tz: PosixTz, time: number): LocalTimeType {
  const dst = tz.dst;
  if (dst === undefined) return tz.std;
  const year = new Date((time + tz.std.utoff) * 1000).getUTCFullYear();
  // The start is given in standard local time, the end in daylight local time.
  const start = ruleDay(dst.start.date, year) * DAY + dst.start.time - tz.std.utoff;
  const end = ruleDay(dst.end.date, year) * DAY + dst.end.time - dst.utoff;
  const inDst = start < end ? start <= time && time < end : !(end <= time && time < start);
  return inDst ? dst : tz.std;
}

/** The local time type in effect at `time` (seconds since the Epoch). */
export function localTimeTypeAt(tz: Tzif, time: number): LocalTimeType {
  const last = tz.transitions.length - 1;
  if (tz.footer !== undefined && (last < 0 || time > tz.transitions[last]!)) {
    return posixTzTypeAt(tz.footer, time);
  }
  let index = -1;
  for (let low = 0, high = last; low <= high;) {
    const middle = (low + high) >> 1;
    if (tz.transitions[middle]! <= time) {
      index = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  // Before the first transition, RFC 8536 says type 0 applies.
  const type = tz.types[index === -1 ? 0 : tz.transitionTypes[index]!];
  if (type === undefined) throw new RangeError("TZif file has no local time types");
  return type;
}

/**
 * `guest-get-timezone` for the zone in `path` at `now` (milliseconds since the Epoch): UTC when
 * the file does not exist, as GLib.
 * @throws {Error} when the file exists but cannot be read or parsed
 */
export function guestTimezone(
  path: string = LOCALTIME_PATH,
  now: number = Date.now(),
): GuestTimezone {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { zone: "UTC", offset: 0 };
    throw err;
  }
  const type = localTimeTypeAt(parseTzif(bytes), Math.floor(now / 1000));
  return { zone: type.abbreviation, offset: type.utoff };
}
