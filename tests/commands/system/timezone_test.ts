/**
 * Tests of src/commands/system/timezone.ts against glibc's own reading of the same zone files:
 * `TZ=<zone> date` prints the abbreviation and offset for thousands of instants per zone, before
 * the first transition, between transitions, and far past the last one (the footer rule).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  guestTimezone,
  localTimeTypeAt,
  parsePosixTz,
  parseTzif,
  posixTzTypeAt,
} from "../../../src/commands/system/timezone.ts";

const ZONES = [
  "Etc/UTC",
  "Europe/Berlin",
  "Europe/London",
  "Europe/Dublin", // "negative" DST: winter is the daylight type
  "America/New_York",
  "America/St_Johns", // -03:30
  "America/Sao_Paulo", // DST abolished in 2019
  "Australia/Sydney", // southern hemisphere
  "Australia/Lord_Howe", // 30-minute DST
  "Asia/Kolkata",
  "Pacific/Chatham", // +12:45, rule times of 2:45
  "Antarctica/Troll", // 2-hour DST
  "Africa/Casablanca",
];

const HOUR = 3600;
const yearStart = (year: number): number => Date.UTC(year, 0, 1) / 1000;

/** Hourly through 2024 and 2045 (footer rule), daily through a few other years. */
function instants(): number[] {
  const times: number[] = [];
  for (const year of [2024, 2045]) {
    for (let t = yearStart(year); t < yearStart(year + 1); t += HOUR) times.push(t);
  }
  for (const year of [1850, 1970, 2037, 2038, 2100]) {
    for (let t = yearStart(year); t < yearStart(year + 1); t += 24 * HOUR) times.push(t);
  }
  return times;
}

/** `date`'s answer for each instant: "<abbreviation> <±hh:mm:ss>". */
async function glibcAnswers(zone: string, times: number[]): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    await Deno.writeTextFile(`${dir}/times`, times.map((t) => `@${t}`).join("\n") + "\n");
    const output = await new Deno.Command("date", {
      args: ["-f", `${dir}/times`, "+%Z %::z"],
      env: { TZ: zone },
      stdout: "piped",
    }).output();
    assert.equal(output.code, 0);
    return new TextDecoder().decode(output.stdout).trimEnd().split("\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function clock(offset: number): string {
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${sign}${two(Math.floor(abs / 3600))}:${two(Math.floor(abs / 60) % 60)}:${two(abs % 60)}`;
}

for (const zone of ZONES) {
  Deno.test(`localTimeTypeAt() agrees with glibc's date for ${zone}`, async () => {
    const tz = parseTzif(await Deno.readFile(`/usr/share/zoneinfo/${zone}`));
    const times = instants();
    const expected = await glibcAnswers(zone, times);
    const mismatches: string[] = [];
    times.forEach((time, i) => {
      const type = localTimeTypeAt(tz, time);
      const actual = `${type.abbreviation} ${clock(type.utoff)}`;
      // date prints glibc's "-00" (zone unknown, e.g. Antarctic bases before they existed) as -0.
      if (actual !== expected[i]?.replace("-00 -00:00:00", "-00 +00:00:00")) {
        mismatches.push(`${new Date(time * 1000).toISOString()}: ${actual} != ${expected[i]}`);
      }
    });
    assert.deepEqual(mismatches.slice(0, 5), [], `${mismatches.length} mismatches`);
  });
}

Deno.test("guestTimezone() reports the zone in effect at the given instant", async () => {
  const berlin = "/usr/share/zoneinfo/Europe/Berlin";
  assert.deepEqual(guestTimezone(berlin, Date.UTC(2024, 0, 15)), { zone: "CET", offset: 3600 });
  assert.deepEqual(guestTimezone(berlin, Date.UTC(2024, 6, 15)), { zone: "CEST", offset: 7200 });
  // The instant of the change: 2024-03-31 01:00 UTC.
  assert.equal(guestTimezone(berlin, Date.UTC(2024, 2, 31, 0, 59, 59)).zone, "CET");
  assert.equal(guestTimezone(berlin, Date.UTC(2024, 2, 31, 1)).zone, "CEST");
  const local = guestTimezone();
  const output = await new Deno.Command("date", { args: ["+%Z %::z"] }).output();
  assert.equal(
    `${local.zone} ${clock(local.offset)}`,
    new TextDecoder().decode(output.stdout).trim(),
  );
});

Deno.test("guestTimezone() falls back to UTC when the zone file does not exist", () => {
  assert.deepEqual(guestTimezone("/nonexistent/localtime"), { zone: "UTC", offset: 0 });
});

Deno.test("parseTzif() refuses a file that is not TZif", () => {
  assert.throws(
    () => parseTzif(new TextEncoder().encode("#!/bin/sh\n" + " ".repeat(64))),
    RangeError,
  );
});

Deno.test("parsePosixTz() reads names, offsets and the three rule date forms", () => {
  assert.deepEqual(parsePosixTz("<+0530>-5:30"), {
    std: { utoff: 19800, isDst: false, abbreviation: "+0530" },
  });
  const tz = parsePosixTz("EST5EDT,J60/2,300/-1");
  assert.deepEqual(tz.dst?.start, { date: { kind: "julian", day: 60 }, time: 7200 });
  assert.deepEqual(tz.dst?.end, { date: { kind: "zero-based", day: 300 }, time: -3600 });
  assert.equal(tz.dst?.utoff, -4 * 3600);
  // J60 is March 1 even in a leap year; 300 counts February 29.
  assert.equal(posixTzTypeAt(tz, Date.UTC(2024, 1, 29, 12) / 1000).abbreviation, "EST");
  assert.equal(posixTzTypeAt(tz, Date.UTC(2024, 2, 1, 8) / 1000).abbreviation, "EDT");
  // Day 300 of 2024 is October 27; at -1:00 daylight time, i.e. 03:00 UTC.
  assert.equal(posixTzTypeAt(tz, Date.UTC(2024, 9, 27, 2, 59) / 1000).abbreviation, "EDT");
  assert.equal(posixTzTypeAt(tz, Date.UTC(2024, 9, 27, 3) / 1000).abbreviation, "EST");
  // A DST name without rules takes glibc's default (US) rule.
  assert.deepEqual(parsePosixTz("CST6CDT").dst?.start.date, {
    kind: "month",
    month: 3,
    week: 2,
    weekday: 0,
  });
  for (const bad of ["", "5", "AB5", "EST5EDT,M3", "EST5EDT,M3.2.0", "EST5x"]) {
    assert.throws(() => parsePosixTz(bad), RangeError, bad);
  }
});
