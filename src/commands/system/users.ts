/**
 * `guest-get-users`: the users with a login session in utmp, each once with their earliest login
 * time, as qemu-ga's `qmp_guest_get_users` reads them with getutxent(3).
 *
 * The file is read directly (glibc's getutxent is not reentrant and may lock): `struct utmp` as
 * glibc lays it out on x86_64 and aarch64, checked against `utmpdump` in the tests.
 *
 * @module
 */

/** `GuestUser` of the QAPI schema (`domain` is Windows-only). */
export interface GuestUser {
  user: string;
  /** Seconds since the Epoch, with microseconds as the fraction. */
  "login-time": number;
}

/** glibc's `_PATH_UTMP`, the file getutxent(3) reads. */
export const UTMP_PATH = "/var/run/utmp";

/** `ut_type` of a logged-in user's entry. */
const USER_PROCESS = 7;

/** Where the fields qemu-ga reads sit in one `struct utmp` record. */
export interface UtmpLayout {
  /** `sizeof(struct utmp)`. */
  recordSize: number;
  /** `char ut_user[32]`, NUL-padded (not terminated when all 32 bytes are used). */
  userOffset: number;
  /** `ut_tv.tv_sec`, then `ut_tv.tv_usec`, each of `timeBytes`. */
  timeOffset: number;
  timeBytes: 4 | 8;
}

/**
 * The layouts (<bits/utmp.h>). Both start `short ut_type` at 0, `pid_t ut_pid` at 4,
 * `char ut_line[32]` at 8, `char ut_id[4]` at 40, `char ut_user[32]` at 44, `char ut_host[256]`
 * at 76, `struct exit_status` at 332. x86_64 defines `__WORDSIZE_TIME64_COMPAT32`, so
 * `ut_session` and `ut_tv` are 32-bit (file-compatible with i386): session at 336, tv at 340,
 * `ut_addr_v6` at 348, 20 reserved bytes, 384 in all. aarch64 does not: `long ut_session` at 336,
 * `struct timeval ut_tv` at 344, `ut_addr_v6` at 360, 20 reserved, padded to 400.
 */
export const UTMP_LAYOUTS: Readonly<Record<"x86_64" | "aarch64", UtmpLayout>> = {
  "x86_64": { recordSize: 384, userOffset: 44, timeOffset: 340, timeBytes: 4 },
  aarch64: { recordSize: 400, userOffset: 44, timeOffset: 344, timeBytes: 8 },
};

const USER_BYTES = 32;

/** One utmp record, reduced to what `guest-get-users` needs. */
export interface UtmpRecord {
  type: number;
  user: string;
  /** `ut_tv` as fractional seconds. */
  time: number;
}

/** Decodes the whole records of a utmp file (a trailing partial record is ignored, as glibc). */
export function parseUtmp(bytes: Uint8Array, layout: UtmpLayout): UtmpRecord[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder();
  const records: UtmpRecord[] = [];
  for (let base = 0; base + layout.recordSize <= bytes.byteLength; base += layout.recordSize) {
    const userBytes = bytes.subarray(
      base + layout.userOffset,
      base + layout.userOffset + USER_BYTES,
    );
    const end = userBytes.indexOf(0);
    const seconds = readInt(view, base + layout.timeOffset, layout.timeBytes);
    const micros = readInt(view, base + layout.timeOffset + layout.timeBytes, layout.timeBytes);
    records.push({
      type: view.getInt16(base, true),
      user: decoder.decode(end === -1 ? userBytes : userBytes.subarray(0, end)),
      time: seconds + micros / 1_000_000,
    });
  }
  return records;
}

function readInt(view: DataView, offset: number, bytes: 4 | 8): number {
  return bytes === 4 ? view.getInt32(offset, true) : Number(view.getBigInt64(offset, true));
}

/** qemu-ga's list: `USER_PROCESS` entries, one per user name in first-seen order, earliest time. */
export function usersFromUtmp(records: readonly UtmpRecord[]): GuestUser[] {
  const users = new Map<string, GuestUser>();
  for (const record of records) {
    if (record.type !== USER_PROCESS) continue;
    const seen = users.get(record.user);
    if (seen === undefined) {
      users.set(record.user, { user: record.user, "login-time": record.time });
    } else if (record.time < seen["login-time"]) {
      seen["login-time"] = record.time;
    }
  }
  return [...users.values()];
}

/** The layout of the architecture the agent runs on. */
export function hostUtmpLayout(): UtmpLayout {
  const arch = Deno.build.arch;
  if (arch !== "x86_64" && arch !== "aarch64") throw new Error(`no utmp layout for ${arch}`);
  return UTMP_LAYOUTS[arch];
}

/**
 * `guest-get-users`: an empty list when there is no utmp (systems without utmp support, as
 * getutxent then finds no entries).
 * @throws {Error} when utmp exists but cannot be read
 */
export function guestUsers(path: string = UTMP_PATH): GuestUser[] {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return [];
    throw err;
  }
  return usersFromUtmp(parseUtmp(bytes, hostUtmpLayout()));
}
