/**
 * A pair of connected ptys made by socat, for serial transport and termios tests; plus the
 * polling helper they share.
 *
 * @module
 */

import { delay } from "./agent.ts";

/** A socat-made pair of connected ptys behind two symlinks; socat is killed by PID on dispose. */
export interface PtyPair extends AsyncDisposable {
  /** The agent's side. */
  a: string;
  /** The host's side. */
  b: string;
  socat: Deno.ChildProcess;
}

/** Starts socat; side `a` is raw unless `cookedA` (a tty's default modes, for raw-mode tests). */
export async function ptyPair(options: { cookedA?: boolean } = {}): Promise<PtyPair> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  const a = `${dir}/a`;
  const b = `${dir}/b`;
  const socat = new Deno.Command("socat", {
    args: [
      "-d",
      "-d",
      options.cookedA ? `pty,link=${a}` : `pty,raw,echo=0,link=${a}`,
      `pty,raw,echo=0,link=${b}`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const dispose = async (): Promise<void> => {
    try {
      socat.kill("SIGKILL");
    } catch {
      // already gone
    }
    await socat.status;
    await Deno.remove(dir, { recursive: true });
  };
  try {
    await waitFor(() => exists(a) && exists(b), "socat's pty links");
  } catch (err) {
    await dispose();
    throw err;
  }
  return { a, b, socat, [Symbol.asyncDispose]: dispose };
}

/** Whether `path` exists (following links). */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Polls `condition` every 10 ms until it holds, or throws after `ms`. */
export async function waitFor(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}
