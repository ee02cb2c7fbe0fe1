/**
 * Tests of src/commands/system/users.ts. The binary utmp files are written by util-linux's
 * `utmpdump -r` from text, so the record layout is checked against glibc's as another program
 * compiled against it writes it.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  guestUsers,
  hostUtmpLayout,
  parseUtmp,
  usersFromUtmp,
  UTMP_LAYOUTS,
} from "../../../src/commands/system/users.ts";

/** One `utmpdump` text line: type, pid, id, user, line, host, address, time. */
function dumpLine(type: number, user: string, line: string, time: string): string {
  return `[${type}] [01234] [ts/0] [${user}] [${line}] [host.example] [10.0.0.1] [${time}]`;
}

const RECORDS = [
  dumpLine(2, "reboot", "~", "2024-01-02T03:00:00,000000+00:00"), // BOOT_TIME
  dumpLine(7, "alice", "pts/0", "2024-01-02T03:04:05,250000+00:00"),
  dumpLine(7, "bob", "pts/1", "2024-01-02T04:00:00,000000+00:00"),
  dumpLine(7, "alice", "pts/2", "2024-01-02T03:00:01,500000+00:00"), // earlier: wins
  dumpLine(8, "carol", "pts/3", "2024-01-02T05:00:00,000000+00:00"), // DEAD_PROCESS
  dumpLine(7, "a-very-long-user-name-of-32-byte", "tty1", "2024-01-02T06:00:00,000001+00:00"),
];

/** Writes `lines` as a binary utmp file with `utmpdump -r`. */
async function writeUtmp(path: string, lines: string[]): Promise<void> {
  const child = new Deno.Command("utmpdump", {
    args: ["-r", "-o", path],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(lines.join("\n") + "\n"));
  await writer.close();
  const status = await child.output();
  assert.equal(status.code, 0, new TextDecoder().decode(status.stderr));
}

async function withUtmp<T>(lines: string[], fn: (path: string) => T | Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    await writeUtmp(`${dir}/utmp`, lines);
    return await fn(`${dir}/utmp`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const seconds = (iso: string): number => Date.parse(iso) / 1000;

Deno.test("parseUtmp() reads type, user and time of the records utmpdump writes", async () => {
  await withUtmp(RECORDS, async (path) => {
    const bytes = await Deno.readFile(path);
    const layout = hostUtmpLayout();
    assert.equal(bytes.byteLength, RECORDS.length * layout.recordSize);
    assert.deepEqual(parseUtmp(bytes, layout), [
      { type: 2, user: "reboot", time: seconds("2024-01-02T03:00:00Z") },
      { type: 7, user: "alice", time: seconds("2024-01-02T03:04:05Z") + 0.25 },
      { type: 7, user: "bob", time: seconds("2024-01-02T04:00:00Z") },
      { type: 7, user: "alice", time: seconds("2024-01-02T03:00:01Z") + 0.5 },
      { type: 8, user: "carol", time: seconds("2024-01-02T05:00:00Z") },
      {
        type: 7,
        user: "a-very-long-user-name-of-32-byte",
        time: seconds("2024-01-02T06:00:00Z") + 0.000001,
      },
    ]);
  });
});

Deno.test("guestUsers() lists each logged-in user once with the earliest login", async () => {
  await withUtmp(RECORDS, (path) => {
    assert.deepEqual(guestUsers(path), [
      { user: "alice", "login-time": seconds("2024-01-02T03:00:01Z") + 0.5 },
      { user: "bob", "login-time": seconds("2024-01-02T04:00:00Z") },
      {
        user: "a-very-long-user-name-of-32-byte",
        "login-time": seconds("2024-01-02T06:00:00Z") + 0.000001,
      },
    ]);
  });
});

Deno.test("guestUsers() returns an empty list when there is no utmp file", () => {
  assert.deepEqual(guestUsers("/nonexistent/utmp"), []);
});

Deno.test("parseUtmp() ignores a trailing partial record", () => {
  const layout = UTMP_LAYOUTS.aarch64;
  const bytes = new Uint8Array(layout.recordSize + 10);
  const view = new DataView(bytes.buffer);
  view.setInt16(0, 7, true);
  bytes.set(new TextEncoder().encode("root"), layout.userOffset);
  view.setBigInt64(layout.timeOffset, 1_700_000_000n, true);
  view.setBigInt64(layout.timeOffset + 8, 125_000n, true);
  assert.deepEqual(parseUtmp(bytes, layout), [{ type: 7, user: "root", time: 1_700_000_000.125 }]);
});

Deno.test("usersFromUtmp() keeps only USER_PROCESS entries", () => {
  assert.deepEqual(
    usersFromUtmp([
      { type: 6, user: "LOGIN", time: 1 },
      { type: 8, user: "gone", time: 2 },
      { type: 7, user: "here", time: 3 },
    ]),
    [{ user: "here", "login-time": 3 }],
  );
});
