/**
 * `guest-shutdown`: the program qemu-ga runs to power the guest down, halt it or reboot it, and
 * how its outcome becomes an error text (qemu-ga's `qmp_guest_shutdown` and `ga_run_command`).
 *
 * The argv is a pure function so it can be tested; nothing in the test suite ever runs the real
 * program. {@link runHelper} is the generic runner, tested with harmless programs.
 *
 * @module
 */

import { errorMessage, genericError } from "../../errors.ts";
import { loadLater } from "../../load_later.ts";

/**
 * What qemu-ga (≤ 10.x, Linux) runs; on systemd distributions a symbolic link to `systemctl`,
 * which reads the flags below as `shutdown(8)` does. It is the agent's only `--allow-run` entry
 * besides itself and the freeze hook (src/permissions.ts).
 */
export const SHUTDOWN_PROGRAM = "/sbin/shutdown";

/** The modes the schema documents for `guest-shutdown` (its `mode` is a plain `str`). */
export type ShutdownMode = "powerdown" | "halt" | "reboot";

const SHUTDOWN_FLAGS: Record<ShutdownMode, string> = {
  powerdown: "-P",
  halt: "-H",
  reboot: "-r",
};

/** qemu-ga's text for any other mode (sic: the parenthesis is never closed upstream). */
export const INVALID_MODE_MESSAGE = "mode is invalid (valid values are: halt|powerdown|reboot";

/** Longest wait for the shutdown program: `systemctl` only queues a job and returns. */
export const SHUTDOWN_TIMEOUT_MS = 60_000;

/**
 * Checks a `mode` argument; a missing one means `powerdown`.
 * @throws {AgentError} GenericError with qemu-ga's text for an unknown mode
 */
export function parseShutdownMode(mode: string | undefined): ShutdownMode {
  if (mode === undefined) return "powerdown";
  if (Object.hasOwn(SHUTDOWN_FLAGS, mode)) return mode as ShutdownMode;
  throw genericError(INVALID_MODE_MESSAGE);
}

/** The exact argv qemu-ga runs for `mode`: `/sbin/shutdown -h -P +0 "hypervisor initiated shutdown"`. */
export function shutdownArgv(mode: ShutdownMode): string[] {
  return [SHUTDOWN_PROGRAM, "-h", SHUTDOWN_FLAGS[mode], "+0", "hypervisor initiated shutdown"];
}

/** Options of {@link runHelper}. */
export interface RunHelperOptions {
  /** Kill the program after this long and report it. @default SHUTDOWN_TIMEOUT_MS */
  timeoutMs?: number;
}

/**
 * Runs `argv` as qemu-ga's `ga_run_command` does (stdin from /dev/null, output captured) and turns
 * a failure into its texts: `child process has failed to <action>: <output>` (or
 * `: exit status N` without output), `child process has terminated abnormally[: <output>]`.
 * @throws {AgentError} GenericError when the program cannot start, fails or is killed
 */
export async function runHelper(
  argv: readonly string[],
  action: string,
  options: RunHelperOptions = {},
): Promise<void> {
  const [program, ...args] = argv;
  if (program === undefined) throw new TypeError("runHelper needs a program");
  const { agentPriority } = await loadPriority();
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), options.timeoutMs ?? SHUTDOWN_TIMEOUT_MS);
  let output: Deno.CommandOutput;
  try {
    const command = new Deno.Command(program, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      signal: deadline.signal,
    });
    output = await agentPriority.spawnAtStartPriority(() => command.output());
  } catch (err) {
    // qemu-ga's child reports a failed exec with perror() and exit 1.
    const reason = err instanceof Deno.errors.NotFound
      ? "No such file or directory"
      : errorMessage(err);
    throw genericError(
      `child process has failed to ${action}: failed to exec '${program}': ${reason}`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
  }
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (output.signal !== null) {
    throw genericError(
      text === ""
        ? "child process has terminated abnormally"
        : `child process has terminated abnormally: ${text}`,
    );
  }
  if (output.code !== 0) {
    throw genericError(
      text === ""
        ? `child process has failed to ${action}: exit status ${output.code}`
        : `child process has failed to ${action}: ${text}`,
    );
  }
}

/** Loaded on first use: the start-up of an agent does not need it (docs/design.md #29). */
function loadPriority(): Promise<typeof import("../../priority.ts")> {
  return loadLater(new URL("../../priority.ts", import.meta.url));
}
