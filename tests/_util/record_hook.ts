/**
 * A hook for end-to-end tests that records each call (`<phase> <epoch ms>`) in a log file outside
 * the frozen mounts, and can probe a mount (write a file into it: this only completes while the
 * mount is not frozen), fail, or hang.
 *
 * @module
 */

/** What the hook does. */
export interface RecordingHookOptions {
  /** A file on a test mount to write during each call (proves the mount is not frozen then). */
  probe?: string;
  /** Exit status for `freeze` (after printing a message). */
  failFreeze?: number;
  /** Make `freeze` hang: a background `sleep` child plus sleeping itself. */
  hangFreeze?: boolean;
  /** Leave a background child holding stdout after `freeze` succeeds. */
  backgroundChild?: boolean;
  /** Make `thaw` wait (after recording its start) until this file exists, for up to 20 s. */
  thawWaitsFor?: string;
}

/** A recording hook in a test directory. */
export interface RecordingHook {
  path: string;
  logPath: string;
  /** The recorded calls: `["freeze", "thaw", ...]`. */
  calls(): Promise<string[]>;
  /**
   * The recorded calls once there are `count` of them (or after `timeoutMs`): a failed freeze's
   * thaw hook runs after the host got the error.
   */
  callsOnce(count: number, timeoutMs?: number): Promise<string[]>;
  /** The recorded environment line of each call (`FSFREEZE_HOOK_DEADLINE=...`). */
  lines(): Promise<string[]>;
}

/** Writes the hook script (root-owned, mode 0755) into `dir`. */
export async function recordingHook(
  dir: string,
  options: RecordingHookOptions = {},
): Promise<RecordingHook> {
  const path = `${dir}/record-hook.sh`;
  const logPath = `${dir}/record-hook.log`;
  const script = [
    "#!/bin/sh",
    `log='${logPath}'`,
    'echo "$1 $(date +%s%3N) deadline=${FSFREEZE_HOOK_DEADLINE:-} thaw=${FSFREEZE_THAW_DEADLINE:-} pgid=$(ps -o pgid= $$ | tr -d " ")" >> "$log"',
    options.probe ? `echo "$1" >> '${options.probe}'` : "",
    options.probe ? `echo "$1 probe-done $(date +%s%3N)" >> "$log"` : "",
    options.failFreeze !== undefined
      ? `if [ "$1" = freeze ]; then echo "database refused to flush"; exit ${options.failFreeze}; fi`
      : "",
    options.hangFreeze ? `if [ "$1" = freeze ]; then sleep 1000 & sleep 1000; fi` : "",
    options.backgroundChild ? `if [ "$1" = freeze ]; then (sleep 30; echo late) & fi` : "",
    options.thawWaitsFor !== undefined
      ? `if [ "$1" = thaw ]; then i=0; while [ ! -e '${options.thawWaitsFor}' ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done; fi`
      : "",
    'echo "hook $1 ok"',
    "exit 0",
    "",
  ].filter((line) => line !== "").join("\n") + "\n";
  await Deno.writeTextFile(path, script);
  await Deno.chmod(path, 0o755);
  const lines = async (): Promise<string[]> => {
    try {
      return (await Deno.readTextFile(logPath)).trim().split("\n").filter((l) => l !== "");
    } catch {
      return [];
    }
  };
  const calls = async (): Promise<string[]> =>
    (await lines()).filter((l) => !l.includes("probe-done")).map((l) => l.split(" ")[0]!);
  const callsOnce = async (count: number, timeoutMs = 30_000): Promise<string[]> => {
    const until = Date.now() + timeoutMs;
    while ((await calls()).length < count && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return await calls();
  };
  return { path, logPath, lines, calls, callsOnce };
}
