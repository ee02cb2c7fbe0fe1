/**
 * The two agents the lab runs in the same base image: fsfreeze-agent, installed into the per-run
 * disk by the project's own `packaging/install.sh` from the build output of
 * `deno task compile --launcher --delegate`, and Debian's qemu-guest-agent (the baseline, already
 * in the image). Both get the same test hook, and run their hook dispatcher with `-F`.
 *
 * fsfreeze-agent starts without its delegate (`install.sh --no-delegate`); the install sources
 * are staged in the guest, so that a scenario enables the delegate there as an operator would, by
 * running `install.sh --delegate` on the running guest.
 *
 * @module
 */

import { basename, join } from "node:path";
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
/** Where the project's install sources (packaging/, hooks/, dist/) are staged in the guest. */
const GUEST_SOURCES = "/root/fsfreeze-agent-install";
/** The installed launcher's payload (install.sh: <prefix>/lib/fsfreeze-agent). */
const INSTALLED_PAYLOAD = "usr/local/lib/fsfreeze-agent";

/**
 * The test hook: one line per call, "<freeze|thaw> <epoch seconds.ns> <pid> <niceness>". Named to
 * run first on freeze and last on thaw (the dispatchers run the scripts in lexical order, thaw in
 * reverse for ours). Appends to a tmpfs file, so it never blocks on a frozen root.
 */
const RECORD_HOOK = `#!/bin/sh
# VM lab (tests/vm): records each freeze/thaw hook call with a timestamp and its niceness.
nice=$(sed 's/.*) //' /proc/$$/stat | cut -d' ' -f17)
printf '%s %s %s %s\\n' "$1" "$(date +%s.%N)" "$$" "$nice" >>${HOOK_LOG}
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
  /** The guest command that gives the agent its delegate (issue 13), when it has one. */
  enableDelegate: string | undefined;
  /** The delegate's unit. */
  delegateUnit: string | undefined;
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
  enableDelegate: undefined,
  delegateUnit: undefined,
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
  enableDelegate: `sh ${GUEST_SOURCES}/packaging/install.sh --delegate`,
  delegateUnit: "fsfreeze-agent-delegate.service",
  async install(root: string): Promise<void> {
    await run("sh", [
      join(REPO, "packaging", "install.sh"),
      "--destdir",
      root,
      "--no-reload",
      "--binary",
      AGENT_BUILD,
      "--no-delegate",
    ]);
    await stageInstallSources(root);
    // README "Install in a guest image": only one agent can hold the port.
    await Deno.symlink("/dev/null", join(root, "etc/systemd/system/qemu-guest-agent.service"));
    const hooks = join(root, "etc/qemu/fsfreeze-hook.d");
    await Deno.copyFile(join(hooks, "mariadb-flush.sh.sample"), join(root, MARIADB_HOOK));
    await Deno.chmod(join(root, MARIADB_HOOK), 0o755);
    await installRecordHook(root);
  },
};

/**
 * Copies what `install.sh` needs into the guest: packaging/, hooks/ and the build. The build's
 * payload (mostly the Deno runtime) is the one just installed, linked rather than copied.
 */
async function stageInstallSources(root: string): Promise<void> {
  const target = join(root, GUEST_SOURCES);
  const dist = join(target, "dist");
  await Deno.mkdir(dist, { recursive: true });
  await run("cp", ["-R", join(REPO, "packaging"), join(REPO, "hooks"), target]);
  await run("cp", [AGENT_BUILD, `${AGENT_BUILD}.build.json`, dist]);
  const payload = join(dist, `${basename(AGENT_BUILD)}.payload`);
  await run("cp", ["-al", join(root, INSTALLED_PAYLOAD), payload]);
}

/**
 * Builds the agent for the guest (`deno task compile --launcher --target x86_64 --delegate`);
 * throws, saying why, when the build output is not there afterwards.
 */
export async function buildAgent(): Promise<void> {
  const result = await run(
    "npx",
    ["deno", "task", "compile", "--launcher", "--target", "x86_64", "--delegate"],
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
