/**
 * One lab guest: a libvirt domain (TCG, `type='qemu'`) that boots the cached image's uncompressed
 * kernel directly, with its root on a per-run disk, the guest agent channel (libvirt's socket), a
 * command console on hvc0, a serial log, and a user-mode NIC. The host only ever talks to this
 * domain's own sockets.
 *
 * @module
 */

import { join } from "node:path";
import type { AgentSetup } from "./agents.ts";
import { GuestConsole } from "./console.ts";
import { makeRunDisk, type RunDisk } from "./disk.ts";
import type { BaseImage } from "./image.ts";
import type { Libvirt } from "./libvirt.ts";
import { note, onExit, poll, run, secondsSince, shellQuote, sleep } from "./proc.ts";

/** Generous: a TCG guest boots in 45-90 s, more on a busy host. */
export const BOOT_TIMEOUT_MS = 600_000;
const AGENT_COMMAND_TIMEOUT_S = 120;
const MEMORY_MIB = 1536;
const VCPUS = 2;
const MAC = "52:54:00:4c:41:42";
const KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 random.trust_cpu=on";

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll("'", "&apos;");
}

function domainXml(name: string, image: BaseImage, disk: RunDisk, dir: string): string {
  const path = (p: string): string => escapeXml(p);
  return `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>${MEMORY_MIB}</memory>
  <vcpu>${VCPUS}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${path(image.vmlinux)}</kernel>
    <initrd>${path(image.initrd)}</initrd>
    <cmdline>${KERNEL_CMDLINE}</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum' migratable='off'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${path(disk.overlay)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='${MAC}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='${path(join(dir, "serial.log"))}'/>
      <target port='0'/>
    </serial>
    <console type='unix'>
      <source mode='bind' path='${path(join(dir, "hvc0.sock"))}'/>
      <target type='virtio' port='0'/>
    </console>
    <console type='unix'>
      <source mode='bind' path='${path(join(dir, "hvc1.sock"))}'/>
      <target type='virtio' port='1'/>
    </console>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
`;
}

/** A reply of `virsh qemu-agent-command`: the parsed JSON, or the error text. */
export type AgentReply = { ok: true; value: unknown } | { ok: false; error: string };

/** A booted lab guest. */
export class Guest {
  readonly name: string;
  readonly dir: string;
  readonly agent: AgentSetup;
  /** The command console (hvc0). */
  readonly console: GuestConsole;
  /**
   * The rescue console (hvc1): only for thawing when the command console is stuck (a command
   * that touched the frozen root blocks it until the thaw).
   */
  readonly rescueConsole: GuestConsole;
  readonly disk: RunDisk;
  readonly lab: Libvirt;
  #unregister: () => void = () => {};

  private constructor(lab: Libvirt, name: string, dir: string, agent: AgentSetup, disk: RunDisk) {
    this.lab = lab;
    this.name = name;
    this.dir = dir;
    this.agent = agent;
    this.disk = disk;
    this.console = new GuestConsole(join(dir, "hvc0.sock"));
    this.rescueConsole = new GuestConsole(join(dir, "hvc1.sock"));
  }

  /**
   * Makes the per-run disk with `agent` installed and defines the domain (not started). The
   * domain and its files go away with {@link Guest.destroy} (or the exit cleanup).
   */
  static async create(
    lab: Libvirt,
    image: BaseImage,
    agent: AgentSetup,
    parentDir: string,
  ): Promise<Guest> {
    const name = `fsfa-lab-${agent.kind}-${Deno.pid}`;
    const dir = await Deno.makeTempDir({ dir: parentDir, prefix: `${agent.kind}-` });
    // The host's mariadbd (user mysql) reads snapshot copies below this directory.
    await Deno.chmod(dir, 0o711);
    try {
      const disk = await makeRunDisk(image.disk, dir, (root) => agent.install(root));
      const guest = new Guest(lab, name, dir, agent, disk);
      guest.#unregister = onExit(`domain ${name}`, destroyCommand(name, dir));
      const xml = join(dir, "domain.xml");
      await Deno.writeTextFile(xml, domainXml(name, image, disk, dir));
      await lab.virshOk(["define", xml]);
      return guest;
    } catch (err) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /**
   * Starts the domain and waits for the agent's first `guest-ping` answer; resolves with the
   * seconds from `virsh start` to that answer, and the host's clock then. Then waits for the
   * console and the end of boot.
   */
  async start(): Promise<{ seconds: number; answeredAtMs: number }> {
    const started = performance.now();
    await this.lab.virshOk(["start", this.name]);
    const firstPing = await this.waitForPing(BOOT_TIMEOUT_MS);
    if (firstPing === undefined) {
      throw new Error(
        `no guest-ping answer ${BOOT_TIMEOUT_MS / 1000} s after start: ${await this.bootLog()}`,
      );
    }
    const answeredAtMs = Date.now();
    const seconds = secondsSince(started);
    await this.console.waitReady(BOOT_TIMEOUT_MS);
    await this.waitBooted();
    // libvirt waits forever for an agent reply by default (README, "Host-side usage").
    await this.lab.virshOk([
      "guest-agent-timeout",
      this.name,
      "--timeout",
      String(AGENT_COMMAND_TIMEOUT_S),
    ]);
    return { seconds, answeredAtMs };
  }

  /** Polls `guest-ping` every second; resolves true on the first answer, undefined on timeout. */
  async waitForPing(timeoutMs: number): Promise<true | undefined> {
    return await poll(async () => (await this.agentCommand("guest-ping", {}, 10)).ok || undefined, {
      timeoutMs,
      intervalMs: 1000,
    });
  }

  /** Waits until systemd has finished booting (running or degraded); notes failed units. */
  async waitBooted(): Promise<void> {
    const state = await this.console.run("timeout 600 systemctl is-system-running --wait", {
      timeoutMs: 660_000,
    });
    if (state.stdout.trim() !== "running") {
      const failed = await this.console.run("systemctl --failed --no-legend --plain");
      note(
        `${this.name}: boot ended ${state.stdout.trim()}; failed units: ${failed.stdout.trim()}`,
      );
    }
  }

  /** `virsh qemu-agent-command` with `execute` and `args`; errors come back, never throw. */
  async agentCommand(
    execute: string,
    args: Record<string, unknown> = {},
    timeoutS = AGENT_COMMAND_TIMEOUT_S,
  ): Promise<AgentReply> {
    const command = JSON.stringify(
      Object.keys(args).length > 0 ? { execute, arguments: args } : { execute },
    );
    const result = await this.lab.virsh(
      ["qemu-agent-command", this.name, command, "--timeout", String(timeoutS)],
      { timeoutMs: (timeoutS + 30) * 1000 },
    );
    if (result.code !== 0) return { ok: false, error: (result.stderr + result.stdout).trim() };
    try {
      const reply = JSON.parse(result.stdout) as { return?: unknown };
      return { ok: true, value: reply.return };
    } catch {
      return { ok: false, error: `not JSON: ${result.stdout}` };
    }
  }

  /** `guest-fsfreeze-status` ("frozen"/"thawed"), or the error text prefixed with "error: ". */
  async freezeStatus(timeoutS = 30): Promise<string> {
    const reply = await this.agentCommand("guest-fsfreeze-status", {}, timeoutS);
    return reply.ok ? String(reply.value) : `error: ${reply.error}`;
  }

  /** `virsh ARGS` for this domain's commands (the domain name is not added). */
  virsh(args: string[], timeoutMs = 180_000): ReturnType<Libvirt["virsh"]> {
    return this.lab.virsh(args, { timeoutMs });
  }

  /** The domain's state (`virsh domstate`). */
  async state(): Promise<string> {
    return (await this.lab.virsh(["domstate", this.name])).stdout.trim();
  }

  /** The serial console's last lines (kernel and systemd messages), for failure messages. */
  async bootLog(lines = 40): Promise<string> {
    const text = await Deno.readTextFile(join(this.dir, "serial.log")).catch(() => "");
    // deno-lint-ignore no-control-regex
    return text.replace(/\x1b\[[0-9;]*m/g, "").split("\n").slice(-lines).join("\n");
  }

  /** Waits until the domain is shut off; resolves false on timeout. */
  async waitShutOff(timeoutMs: number): Promise<boolean> {
    return await poll(async () => (await this.state()) === "shut off" || undefined, {
      timeoutMs,
      intervalMs: 1000,
    }) ?? false;
  }

  /** Destroys and undefines the domain, removes its libvirt log and the per-run files. */
  async destroy(): Promise<void> {
    if ((await this.state()) !== "shut off") await this.lab.virsh(["destroy", this.name]);
    await this.lab.virsh(["undefine", this.name]);
    await sleep(200);
    await Deno.remove(`/var/log/libvirt/qemu/${this.name}.log`).catch(() => {});
    await Deno.remove(this.dir, { recursive: true });
    this.#unregister();
  }
}

/**
 * The exit cleanup of a domain: destroy and undefine it; if libvirtd is already gone, kill the
 * QEMU process at the PID libvirt recorded (only if it is this domain's); remove its files.
 */
function destroyCommand(name: string, dir: string): string {
  const virsh = "virsh -c qemu:///system";
  const pidFile = shellQuote(`/run/libvirt/qemu/${name}.pid`);
  return `${virsh} destroy ${name}; ${virsh} undefine ${name}; ` +
    `pid=$(cat ${pidFile} 2>/dev/null) && grep -qa ${
      shellQuote(`guest=${name}`)
    } /proc/$pid/cmdline && ` +
    `kill -KILL "$pid"; rm -rf --one-file-system ${shellQuote(dir)}; ` +
    `rm -f ${shellQuote(`/var/log/libvirt/qemu/${name}.log`)}`;
}

/** Runs `qemu-img info --backing-chain` (for messages about the disk chain). */
export async function diskChain(path: string): Promise<string> {
  return (await run("qemu-img", ["info", "-U", "--backing-chain", path], { allowFailure: true }))
    .stdout;
}
