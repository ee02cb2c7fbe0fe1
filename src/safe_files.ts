/**
 * How the agent (and its watchdog) create files, so that an entry planted beforehand is never
 * followed or reused (docs/design.md #13):
 * - a file replaced whole (state, report) is written to an exclusively created temp file
 *   (`O_CREAT|O_EXCL`, which never follows a symlink) and renamed into place (a rename replaces
 *   a symlink itself, never its target); a stale entry at the temp name is unlinked first (a
 *   cycle's first state record is created exclusively at its own name: src/fsfreeze/state.ts);
 * - a file kept open (log file, pidfile) is used only when it is absent (then created
 *   exclusively) or a regular file of ours;
 * - the directories they live in must not let another user replace our entries: not writable by
 *   group or others unless sticky, and owned by root or the agent's user.
 * Anything else is refused with an error that names the path and says what is wrong.
 *
 * @module
 */

/** A path the agent will not write through, and why. */
export class UnsafePathError extends Error {
  override name = "UnsafePathError";
}

import { errorMessage } from "./errors.ts";
import { Errno, SyscallError } from "./linux/errno.ts";
import { lstat, stat } from "./linux/files.ts";
import { createFileExclusive, removeFile, renameFile } from "./linux/own_files.ts";
import { type FileType, fileType } from "./linux/structs.ts";

const encoder = new TextEncoder();
const STICKY = 0o1000;

/**
 * The directory holding `path`, as dirname(3) (without `node:path`, whose Node.js layer costs the
 * agent's start-up several milliseconds).
 */
export function parentDirectory(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return path.startsWith("/") ? "/" : ".";
  const slash = trimmed.lastIndexOf("/");
  if (slash === -1) return ".";
  return trimmed.slice(0, slash).replace(/\/+$/, "") || "/";
}

/** Whether `uid` may own what the agent writes through: root or the agent's own user. */
function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === Deno.uid();
}

/**
 * Refuses a directory in which another user could replace or plant the agent's files: it must be
 * a directory owned by root or the agent's user, and not writable by group or others unless it is
 * sticky (as /tmp), where nobody can remove or rename another user's entries.
 * @throws {UnsafePathError}
 */
export function checkDirectory(dir: string, what: string): void {
  let info: Entry | undefined;
  try {
    info = entryAt(dir, true);
  } catch (err) {
    throw new UnsafePathError(`${what} ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  if (info === undefined) throw new UnsafePathError(`${what} ${dir} does not exist`);
  if (info.type !== "directory") throw new UnsafePathError(`${what} ${dir} is not a directory`);
  if (!trustedOwner(info.uid)) {
    throw new UnsafePathError(
      `${what} ${dir} is owned by uid ${info.uid}, not by root or this agent's user: refusing to ` +
        "create files in it",
    );
  }
  const mode = info.mode;
  if ((mode & 0o022) !== 0 && (mode & STICKY) === 0) {
    throw new UnsafePathError(
      `${what} ${dir} is writable by ${(mode & 0o002) !== 0 ? "others" : "its group"} and not ` +
        `sticky (mode ${(mode & 0o7777).toString(8)}): another user could replace the agent's ` +
        "files; use a private directory (such as /run) or set the sticky bit",
    );
  }
}

/** What the checks need to know of a file system entry. */
interface Entry {
  type: FileType;
  uid: number;
  mode: number;
}

/**
 * An entry's metadata (`follow`: stat, else lstat): through Deno where the agent may read the
 * path (the state dir), else through libc — metadata only, of a path the agent may create one file
 * at (pidfile, log file, socket) but has no business reading. `undefined` when there is none.
 */
function entryAt(path: string, follow: boolean): Entry | undefined {
  try {
    if (Deno.permissions.querySync({ name: "read", path }).state === "granted") {
      return denoEntry(follow ? Deno.statSync(path) : Deno.lstatSync(path));
    }
    const info = follow ? stat(path) : lstat(path);
    return { type: fileType(info.mode), uid: info.uid, mode: info.mode };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    if (err instanceof SyscallError && err.code === "ENOENT") return undefined;
    throw err;
  }
}

function denoEntry(info: Deno.FileInfo): Entry {
  return {
    type: fileType(info.mode ?? 0),
    uid: info.uid ?? -1,
    mode: info.mode ?? 0,
  };
}

/**
 * Refuses an existing entry at `path` that is not a regular file owned by root or the agent's
 * user (a symlink, a FIFO, a directory, another user's file). An absent path is fine.
 * @throws {UnsafePathError}
 */
export function checkOwnFileOrAbsent(path: string, what: string): void {
  const entry = entryAt(path, false);
  if (entry !== undefined) refuseUnlessOwnFile(path, entry, what);
}

function refuseUnlessOwnFile(path: string, entry: Entry, what: string): void {
  if (entry.type !== "file") {
    throw new UnsafePathError(
      `${what} ${path} is ${describeEntry(entry)}, not a file of this agent: remove it`,
    );
  }
  if (!trustedOwner(entry.uid)) {
    throw new UnsafePathError(
      `${what} ${path} is owned by uid ${entry.uid}, not by root or this agent's user: remove it`,
    );
  }
}

const ENTRY_NAMES: Partial<Record<FileType, string>> = {
  symlink: "a symbolic link",
  directory: "a directory",
  fifo: "a FIFO",
  socket: "a socket",
  "block-device": "a device node",
  "char-device": "a device node",
};

function describeEntry(entry: Entry): string {
  return ENTRY_NAMES[entry.type] ?? "not a regular file";
}

/**
 * Replaces `path` with `text` atomically: an exclusively created, owner-only temp file beside it,
 * renamed into place. Whatever was at the temp name (a stale temp file, a planted symlink or FIFO)
 * is unlinked, never opened. Through libc (src/linux/own_files.ts): call it only for paths in a
 * directory that passed {@link checkDirectory}.
 */
export function writeFileAtomic(path: string, text: string): void {
  const temp = `${path}.tmp-${Deno.pid}`;
  writeExclusive(temp, encoder.encode(text));
  try {
    renameFile(temp, path);
  } catch (err) {
    removeQuietly(temp);
    throw err;
  }
}

/** Creates `path` owner-only and writes `bytes` to it, unlinking a stale entry there once. */
function writeExclusive(path: string, bytes: Uint8Array<ArrayBuffer>): void {
  try {
    return createFileExclusive(path, bytes, 0o600);
  } catch (err) {
    if (!(err instanceof SyscallError) || err.errno !== Errno.EEXIST) throw err;
  }
  removeFile(path); // unlink(2) removes a symlink itself, never what it points at
  createFileExclusive(path, bytes, 0o600);
}

/**
 * Opens `path` for writing (appending, or truncated): created exclusively when absent, else only
 * if it is a regular file owned by root or the agent's user. Call it for paths whose directory
 * passed {@link checkDirectory}: there nobody else can replace our file between check and open.
 * @throws {UnsafePathError} when the entry is not a file of ours
 */
export function openOwnFile(
  path: string,
  options: { append: boolean; mode: number; what: string },
): Deno.FsFile {
  const { append, mode, what } = options;
  const entry = entryAt(path, false);
  if (entry === undefined) {
    // O_CREAT|O_EXCL: if something was planted since the check, this fails instead of following.
    return Deno.openSync(path, { write: true, append, createNew: true, mode });
  }
  refuseUnlessOwnFile(path, entry, what);
  return Deno.openSync(path, { write: true, append, truncate: !append });
}

/** Writes every byte of `bytes` to a synchronous sink (a file, stderr), which may take fewer. */
export function writeAllSync(sink: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += sink.writeSync(bytes.subarray(offset));
}

/** Removes `path` if it can; a missing entry (or any failure) is left as it is. */
export function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // already gone
  }
}
