/**
 * The two agents the lab runs in the same base image: fsfreeze-agent, installed into the per-run
 * disk by the project's own `packaging/install.sh` from the build output of
 * `deno task compile --launcher`, and Debian's qemu-guest-agent (the baseline, already in the
 * image). Both get the same test hook, and run their hook dispatcher with `-F`.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeRootFile } from "./disk.ts";
import { run } from "./proc.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
/** What `deno task compile --launcher --target x86_64` produces (installed as the binary). */
export const AGENT_BUILD = join(REPO, "dist", "fsfreeze-agent-x86_64");
const COMPILE_TIMEOUT_MS = 600_000;

/** Which agent a guest runs. */
export type AgentKind = "fsfreeze-agent" | "qemu-ga";

/** Where the test hook records its calls in the guest (tmpfs: survives agent restarts). */
export const HOOK_LOG = "/run/lab-hook.log";
/** The sample MariaDB hook, enabled for fsfreeze-agent. */
export const MARIADB_HOOK = "/etc/qemu/fsfreeze-hook.d/50-mariadb-flush.sh";

/**
 * The test hook: one line per call, "<freeze|thaw> <epoch seconds.ns> <pid>". Named to run first
 * on freeze and last on thaw (the dispatchers run the scripts in lexical order, thaw in reverse
 * for ours). Appends to a tmpfs file, so it never blocks on a frozen root.
 */
const RECORD_HOOK = `#!/bin/sh
# VM lab (tests/vm): records each freeze/thaw hook call with a timestamp.
printf '%s %s %s\\n' "$1" "$(date +%s.%N)" "$$" >>${HOOK_LOG}
`;

/** qemu-ga runs Debian's hook dispatcher only with -F; the package's unit does not pass it. */
const QEMU_GA_HOOK_DROPIN = `# VM lab (tests/vm): run /etc/qemu/fsfreeze-hook on freeze and thaw.
[Service]
ExecStart=
ExecStart=-/usr/sbin/qemu-ga -F
`;

/** An agent as the lab installs and drives it. */
export interface AgentSetup {
  kind: AgentKind;
  /** The systemd unit udev starts on the port. */
  unit: string;
  /** Thaws by itself at `fsfreeze-timeout` (qemu-ga has no such timer). */
  autoThaws: boolean;
  /** Has a local `thaw` command for the console. */
  localThaw: string | undefined;
  /** Installs the agent (and the test hooks) into a mounted image root. */
  install(root: string): Promise<void>;
}

async function installRecordHook(root: string): Promise<void> {
  await writeRootFile(root, "etc/qemu/fsfreeze-hook.d/00-lab-record", RECORD_HOOK, 0o755);
}

/** Debian's qemu-guest-agent, as packaged, with the hook switched on. */
export const QEMU_GA: AgentSetup = {
  kind: "qemu-ga",
  unit: "qemu-guest-agent.service",
  autoThaws: false,
  localThaw: undefined,
  async install(root: string): Promise<void> {
    await installRecordHook(root);
    await writeRootFile(
      root,
      "etc/systemd/system/qemu-guest-agent.service.d/lab.conf",
      QEMU_GA_HOOK_DROPIN,
      0o644,
    );
  },
};

/** fsfreeze-agent, installed by packaging/install.sh; the MariaDB sample hook enabled. */
export const FSFREEZE_AGENT: AgentSetup = {
  kind: "fsfreeze-agent",
  unit: "fsfreeze-agent.service",
  autoThaws: true,
  localThaw: "/usr/local/sbin/fsfreeze-agent thaw",
  async install(root: string): Promise<void> {
    await run("sh", [
      join(REPO, "packaging", "install.sh"),
      "--destdir",
      root,
      "--no-reload",
      "--binary",
      AGENT_BUILD,
    ]);
    // README "Install in a guest image": only one agent can hold the port.
    await Deno.symlink("/dev/null", join(root, "etc/systemd/system/qemu-guest-agent.service"));
    const hooks = join(root, "etc/qemu/fsfreeze-hook.d");
    await Deno.copyFile(join(hooks, "mariadb-flush.sh.sample"), join(root, MARIADB_HOOK));
    await Deno.chmod(join(root, MARIADB_HOOK), 0o755);
    await installRecordHook(root);
  },
};

/**
 * Builds the agent for the guest (`deno task compile --launcher --target x86_64`); throws, saying
 * why, when the build output is not there afterwards.
 */
export async function buildAgent(): Promise<void> {
  const result = await run(
    "npx",
    ["deno", "task", "compile", "--launcher", "--target", "x86_64"],
    { timeoutMs: COMPILE_TIMEOUT_MS, allowFailure: true, env: { NO_COLOR: "1" } },
  );
  const built = await Deno.stat(AGENT_BUILD).then(() => true, () => false);
  if (result.code !== 0 || !built) {
    throw new Error(
      `cannot build fsfreeze-agent for the guest (deno task compile --launcher, status ` +
        `${result.code}; ${AGENT_BUILD} ${built ? "exists" : "missing"}):\n` +
        `${(result.stderr + result.stdout).trim().slice(-2000)}`,
    );
  }
}
