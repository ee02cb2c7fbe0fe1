/**
 * The agent where it lives (issue 14): real Debian 12 guests under QEMU/TCG, driven by a real
 * libvirt through `virsh`, with the agent installed by packaging/install.sh and started by udev
 * and systemd on the virtio-serial port. Every scenario runs against Debian's qemu-guest-agent
 * (the baseline) and against fsfreeze-agent in the same image, one guest per agent booted once;
 * where the two are expected to differ, each is held to its own behaviour, and the test name says
 * so. Wall times are measured and written to tests/vm/results/, never asserted.
 *
 * Safety: nothing is frozen on the host. Freezes happen inside the guests, through their agents;
 * the host only talks to the sockets of the domains this file starts, and only mounts copies of
 * the lab's own images.
 *
 * Run with `deno task test:vm` (as root, after .ci/setup). Without QEMU or libvirt the first test
 * fails saying the suite did not run; it never skips.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { assertClean } from "../_util/snapshot.ts";
import {
  type AgentKind,
  type AgentSetup,
  buildAgent,
  FSFREEZE_AGENT,
  QEMU_GA,
} from "./_lab/agents.ts";
import {
  actions,
  ensureThawed,
  hookCalls,
  journaldState,
  probeCompletes,
  processStates,
  rescueThaw,
  rootFrozen,
  settledProbeState,
  startProbe,
  unitNiceness,
  unitNicenessBecomes,
  unitState,
  unitWakeups,
} from "./_lab/checks.ts";
import type { Guest } from "./_lab/guest.ts";
import {
  collectInfo,
  compareGuestInfo,
  guestInfo,
  guestVcpus,
  type InfoSnapshot,
} from "./_lab/info.ts";
import { Lab } from "./_lab/lab.ts";
import { acks, loadErrors, prepareTable, startLoad, stopLoad, waitForAcks } from "./_lab/load.ts";
import { note, poll, secondsSince, sleep } from "./_lab/proc.ts";
import { Results } from "./_lab/results.ts";
import {
  commitSnapshot,
  inspectSnapshot,
  type SnapshotContent,
  takeSnapshot,
} from "./_lab/snapshots.ts";

/**
 * fsfreeze-agent's fsfreeze-timeout in scenarios 5 and 6: short, so the deadline comes within the
 * test, but longer than a freeze takes here (the deadline counts from the freeze's start, and a
 * freeze with the MariaDB hook takes 10-30 s under TCG).
 */
const FREEZE_TIMEOUT_S = 60;
/** How long the baseline (no auto-thaw) is left frozen in scenario 5. */
const BASELINE_FROZEN_S = 35;
/** How long after the deadline a late (second) thaw hook still counts. */
const AFTER_DEADLINE_S = 15;
/** Scenario 7a: how long the agent's wakeups are counted while no host is on its port (s). */
const HOST_AWAY_S = 10;
/** Scenario 7a: from libvirtd's stop to the count's start. */
const HOST_AWAY_SETTLE_MS = 3000;
/** Scenario 7a: a bound on our agent's wakeups without a host (a 100 ms retry makes 10+). */
const MAX_AWAY_WAKEUPS_PER_S = 3;
const QUIESCED_CYCLES = 5;
const ROWS_PER_CYCLE = 30;
/** The user whose password scenario 8 sets (created in the guest, deleted after). */
const PASSWORD_USER = "labdelegate";
const PASSWORD = "Lab-Delegate-1";

const suiteStart = performance.now();
const results = new Results();
let lab: Lab | undefined;
let baselineInfo: InfoSnapshot | undefined;

function vmTest(name: string, fn: () => Promise<void>): void {
  // Daemons and domains outlive single tests by design; the lab's teardown and exit cleanups
  // account for them.
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false, sanitizeExit: false });
}

function requireLab(): Lab {
  if (lab === undefined) throw new Error("the VM lab did not start: see the first test's failure");
  return lab;
}

vmTest(
  "VM lab: host, guest image and libvirt are ready (the suite fails, never skips, without QEMU or libvirt)",
  async () => {
    lab = await Lab.open();
    results.suite.imageKey = lab.image.key;
    results.suite.imageBuilt = lab.image.built;
    results.suite.imageBuildSeconds = lab.image.buildSeconds;
    results.suite.labReadySeconds = secondsSince(suiteStart);
  },
);

for (const agent of [QEMU_GA, FSFREEZE_AGENT]) registerScenarios(agent);

vmTest(
  "VM lab: teardown (libvirt stopped, run directory removed); timing table written",
  async () => {
    try {
      await lab?.close();
    } finally {
      lab = undefined;
      results.suite.totalSeconds = secondsSince(suiteStart);
      await results.write();
    }
  },
);

/** The per-agent scenarios, in the order they run on one guest. */
function registerScenarios(agent: AgentSetup): void {
  const kind = agent.kind;
  const baseline = kind === "qemu-ga";
  const label = baseline ? "qemu-ga (baseline)" : "fsfreeze-agent";
  let guest: Guest | undefined;
  let bootError: unknown;
  const booted = (): Guest => {
    if (guest === undefined || bootError !== undefined) {
      throw new Error(`the ${kind} guest is not running: ${bootError ?? "it never booted"}`);
    }
    return guest;
  };

  vmTest(
    `${label}: 1. udev and systemd start ${agent.unit} on the port at boot; guest-ping answers`,
    async () => {
      try {
        const lab = requireLab();
        if (!baseline) await buildAgent();
        guest = await lab.createGuest(agent);
        const { seconds, answeredAtMs } = await guest.start();
        results.record(kind, "firstPing", seconds);
        await checkStartedByUdev(guest, agent, answeredAtMs);
      } catch (err) {
        bootError = err;
        throw err;
      }
    },
  );

  vmTest(
    baseline
      ? `${label}: 2. guestinfo, domfsinfo, domifaddr --source agent, domtime, domhostname --source agent answer (recorded for comparison)`
      : `${label}: 2. guestinfo, domfsinfo, domifaddr --source agent, domtime, domhostname --source agent: the same fields as qemu-ga in the same image`,
    async () => {
      const info = await collectInfo(booted());
      if (baseline) {
        baselineInfo = info;
        assert.ok(Object.keys(info.guestinfo).length > 0, "guestinfo returned nothing");
      } else {
        compareWithBaseline(info);
      }
    },
  );

  vmTest(
    `${label}: 3. domfsfreeze freezes the real root: a write blocks until domfsthaw; the agent answers while frozen (journald's state recorded)`,
    async () => {
      await freezeThawScenario(booted(), kind);
    },
  );

  if (!baseline) {
    vmTest(
      `${label}: 3b. fsfreeze-expedite=true: each domfsfreeze returns with /sys/kernel/rcu_expedited back at 0 and the root frozen; FIFREEZE times with and without it recorded`,
      async () => {
        await expediteScenario(booted(), agent);
      },
    );
  }

  vmTest(
    `${label}: 4. snapshot-create-as --disk-only --atomic --quiesce under a MariaDB write load: fsck-clean, MariaDB starts without errors, every acknowledged row is there (${QUIESCED_CYCLES} cycles; one without --quiesce reported)`,
    async () => {
      await snapshotScenario(booted(), kind);
    },
  );

  if (agent.autoThaws) {
    vmTest(
      `${label}: 5. the host never thaws: the guest thaws itself at fsfreeze-timeout=${FREEZE_TIMEOUT_S} and the thaw hook runs once`,
      async () => {
        await autoThawScenario(booted(), agent);
      },
    );
  } else {
    vmTest(
      `${label}: 5. the host never thaws: no auto-thaw, still frozen ${BASELINE_FROZEN_S} s later until domfsthaw`,
      async () => {
        await noAutoThawScenario(booted(), kind);
      },
    );
  }

  const killCases = [
    {
      id: "6a",
      what: "`systemctl kill -s KILL` (whole cgroup)",
      command: `systemctl kill -s KILL ${agent.unit}`,
    },
    {
      id: "6b",
      what: "`systemctl kill -s KILL --kill-whom=main` (main process only)",
      command: `systemctl kill -s KILL --kill-whom=main ${agent.unit}`,
    },
  ];
  for (const kill of killCases) {
    vmTest(
      baseline
        ? `${label}: ${kill.id}. ${kill.what} while frozen: recorded what happens; the guest is thawed afterwards`
        : `${label}: ${kill.id}. ${kill.what} while frozen: the guest ends up thawed (watchdog or restarted agent + domfsthaw), the agent answers again, one thaw hook`,
      async () => {
        await killWhileFrozenScenario(booted(), agent, kill.id, kill.command);
      },
    );
  }

  vmTest(
    baseline
      ? `${label}: 6c. systemctl stop while frozen: recorded whether it thaws; the guest is thawed afterwards`
      : `${label}: 6c. systemctl stop while frozen thaws first; one thaw hook`,
    async () => {
      await stopWhileFrozenScenario(booted(), agent);
    },
  );

  if (agent.localThaw !== undefined) {
    vmTest(
      `${label}: 6d. a local \`fsfreeze-agent thaw\` during a restart races nothing: one thaw hook, the restarted agent says thawed`,
      async () => {
        await localThawDuringRestartScenario(booted(), agent);
      },
    );
  }

  vmTest(
    `${label}: 7a. libvirtd restarted while the agent runs: the agent answers again; while no host is on the port, ours sleeps until its SIGIO (qemu-ga's 100 ms retries recorded)`,
    async () => {
      const guest = booted();
      const start = performance.now();
      let awayWakeups = 0;
      let awayMs = 0;
      await requireLab().libvirt.restartLibvirtd(async () => {
        const away = performance.now();
        await sleep(HOST_AWAY_SETTLE_MS); // the agent has seen the hangup
        const wakeups = await unitWakeups(guest, agent.unit, HOST_AWAY_S);
        awayWakeups = wakeups.total;
        results.observe(
          kind,
          `7a. no host on the port: wakeups/s (by thread in ${HOST_AWAY_S} s)`,
          `${(wakeups.total / HOST_AWAY_S).toFixed(1)} (${wakeups.byThread})`,
        );
        awayMs = performance.now() - away;
      });
      // libvirtd's own start-up varies by seconds (it probes QEMU's capabilities when it finds its
      // cache stale): apart from the agent's part.
      results.record(kind, "libvirtdRestart", secondsSince(start + awayMs));
      const back = performance.now();
      const answered = await guest.waitForPing(180_000);
      results.record(kind, "libvirtdBackToPing", secondsSince(back));
      assert.ok(answered, "no guest-ping answer within 180 s after libvirtd came back");
      assert.equal(await guest.freezeStatus(), "thawed");
      if (kind === "fsfreeze-agent") {
        // qemu-ga reads the port again every 100 ms; ours waits for the port's SIGIO.
        assert.ok(
          awayWakeups <= HOST_AWAY_S * MAX_AWAY_WAKEUPS_PER_S,
          `${awayWakeups} wakeups in ${HOST_AWAY_S} s without a host`,
        );
      }
    },
  );

  let delegateEnabled = false;
  if (agent.enableDelegate !== undefined) {
    vmTest(
      `${label}: 8. the delegate (issue 13): install.sh --delegate on the running guest and an agent restart; virsh set-user-password, guestvcpus and guestinfo (disk section included) answer through our agent as qemu-ga answers them`,
      async () => {
        await delegateScenario(booted(), agent);
        delegateEnabled = true;
      },
    );
  }

  vmTest(
    `${label}: 7b. virsh reboot --mode agent: the guest reboots and the agent${
      agent.enableDelegate === undefined ? "" : " (with its delegate, after 8)"
    } answers again`,
    async () => {
      const guest = booted();
      const bootId = await guest.console.ok("cat /proc/sys/kernel/random/boot_id");
      const start = performance.now();
      const reboot = await guest.virsh(["reboot", guest.name, "--mode", "agent"]);
      assert.equal(reboot.code, 0, `virsh reboot --mode agent: ${reboot.stderr}`);
      const newBoot = await poll(async () => {
        const id = await guest.console.ok("cat /proc/sys/kernel/random/boot_id", {
          timeoutMs: 10_000,
        });
        return id !== bootId ? id : undefined;
      }, { timeoutMs: 600_000, intervalMs: 3000 });
      assert.ok(newBoot !== undefined, `the guest did not reboot: ${await guest.bootLog()}`);
      assert.ok(await guest.waitForPing(600_000), "no guest-ping answer after the reboot");
      results.record(kind, "rebootToPing", secondsSince(start));
      await guest.waitBooted();
      if (delegateEnabled) {
        // The agent's unit wants its delegate at boot: delegated commands answer again.
        assert.equal(await guestVcpus(guest), baselineInfo?.guestvcpus, "guestvcpus after reboot");
      }
    },
  );

  vmTest(`${label}: 7c. virsh shutdown --mode agent: the domain shuts off`, async () => {
    const guest = booted();
    const start = performance.now();
    const shutdown = await guest.virsh(["shutdown", guest.name, "--mode", "agent"]);
    assert.equal(shutdown.code, 0, `virsh shutdown --mode agent: ${shutdown.stderr}`);
    assert.ok(
      await guest.waitShutOff(300_000),
      `not shut off 300 s later: ${await guest.bootLog()}`,
    );
    results.record(kind, "shutdown", secondsSince(start));
  });

  vmTest(`${label}: teardown (domain destroyed and undefined, per-run disk removed)`, async () => {
    if (guest !== undefined) await guest.destroy();
    guest = undefined;
  });
}

// --- 1. start at boot -----------------------------------------------------------------------

/** The unit runs, started because udev's rule wants it for the port; start-up cost noted. */
async function checkStartedByUdev(
  guest: Guest,
  agent: AgentSetup,
  answeredAtMs: number,
): Promise<void> {
  const port = "/dev/virtio-ports/org.qemu.guest_agent.0";
  assert.equal(await guest.console.ok(`systemctl is-active ${agent.unit} || true`), "active");
  const wants = await guest.console.ok(
    `udevadm info -q property ${port} | grep '^SYSTEMD_WANTS=' || true`,
  );
  assert.equal(wants, `SYSTEMD_WANTS=${agent.unit}`, "the port's udev properties");
  const other = agent.kind === "qemu-ga" ? "fsfreeze-agent.service" : "qemu-guest-agent.service";
  assert.notEqual(await guest.console.ok(`systemctl is-active ${other} || true`), "active");
  const show = await guest.console.ok(
    `systemctl show ${agent.unit} --timestamp=unix -p ExecMainStartTimestamp -p CPUUsageNSec -p NRestarts`,
  );
  const fields = Object.fromEntries(show.split("\n").map((line) => line.split("=", 2)));
  const startedAt = Number(String(fields.ExecMainStartTimestamp ?? "").replace("@", ""));
  if (Number.isFinite(startedAt) && startedAt > 0) {
    results.record(
      agent.kind,
      "unitStartToPing",
      Math.round((answeredAtMs / 1000 - startedAt) * 10) / 10,
    );
  }
  const cpu = Number(fields.CPUUsageNSec);
  if (Number.isFinite(cpu)) {
    results.record(agent.kind, "agentCpuAtStart", Math.round(cpu / 1e8) / 10);
  }
  assert.equal(fields.NRestarts, "0", "the unit restarted during boot");
  await checkNiceness(guest, agent.kind, agent.unit, "1. the agent's threads' niceness");
}

/** The raised niceness of our agent's processes (design #50); qemu-ga's is recorded. */
const RAISED_NICE = -10;
/** The watchdog's unit, started through its socket at the first freeze. */
const WATCHDOG_UNIT = "fsfreeze-agent-watchdog.service";

/** Ours: every thread of `unit` reaches the raised niceness; qemu-ga's threads are recorded. */
async function checkNiceness(
  guest: Guest,
  kind: AgentKind,
  unit: string,
  key: string,
): Promise<void> {
  const niceness = kind === "qemu-ga"
    ? await unitNiceness(guest, unit)
    : await unitNicenessBecomes(guest, unit, RAISED_NICE, 60_000);
  results.observe(kind, key, niceness);
  if (kind !== "qemu-ga") {
    assert.match(niceness, new RegExp(`^${RAISED_NICE}×\\d+$`), `${unit}'s threads: ${niceness}`);
  }
}

// --- 2. information commands ------------------------------------------------------------------

function compareWithBaseline(info: InfoSnapshot): void {
  assert.ok(
    baselineInfo !== undefined,
    "no qemu-ga results to compare with (its scenario 2 failed)",
  );
  const { missing, extra, different } = compareGuestInfo(baselineInfo.guestinfo, info.guestinfo);
  results.observe(
    "fsfreeze-agent",
    "2. guestinfo sections qemu-ga has and we do not",
    missing.join(", ") || "none",
  );
  if (extra.length > 0) {
    results.observe("fsfreeze-agent", "2. guestinfo sections only we have", extra.join(", "));
  }
  note(
    `clock offsets (guest - host): qemu-ga ${baselineInfo.clockOffset} s, ours ${info.clockOffset} s`,
  );
  const problems = [
    ...different.map((d) => `guestinfo ${d}`),
    ...(["domfsinfo", "domifaddr", "domhostname"] as const)
      .filter((command) => info[command] !== baselineInfo?.[command])
      .map((command) =>
        `${command}:\nqemu-ga:\n${baselineInfo?.[command]}\nours:\n${info[command]}`
      ),
  ];
  if (typeof info.clockOffset !== "number") problems.push(`domtime: ${info.clockOffset}`);
  assert.deepEqual(problems, [], problems.join("\n"));
}

// --- 3. freeze and thaw -----------------------------------------------------------------------

async function timedVirsh(guest: Guest, kind: AgentKind, command: "domfsfreeze" | "domfsthaw") {
  const start = performance.now();
  const result = await guest.virsh([command, guest.name]);
  results.record(kind, command, secondsSince(start));
  return { ...result, text: (result.stdout + result.stderr).trim() };
}

async function freezeThawScenario(guest: Guest, kind: AgentKind): Promise<void> {
  await ensureThawed(guest, "s3");
  const before = (await hookCalls(guest)).length;
  const froze = await timedVirsh(guest, kind, "domfsfreeze");
  let blocked = "";
  let answered: string | undefined;
  let statusWhileFrozen = "";
  let thawText = "";
  try {
    assert.equal(froze.code, 0, froze.text);
    assert.match(froze.text, /Froze 1 filesystem/);
    await startProbe(guest, "s3");
    blocked = await settledProbeState(guest, "s3");
    // journald writes to the frozen root (persistent journal): does it hold anything up?
    await guest.console.ok("logger -t lab 'logged while / is frozen'");
    await sleep(5000);
    results.observe(kind, "3. journald state while frozen", await journaldState(guest));
    const ping = await guest.agentCommand("guest-ping", {}, 30);
    answered = ping.ok ? undefined : ping.error;
    statusWhileFrozen = await guest.freezeStatus();
  } finally {
    thawText = (await timedVirsh(guest, kind, "domfsthaw")).text;
  }
  assert.match(thawText, /Thawed 1 filesystem/);
  assert.equal(blocked, "D", "a write to / started while frozen did not block");
  assert.equal(answered, undefined, `no guest-ping answer while frozen: ${answered}`);
  assert.equal(statusWhileFrozen, "frozen");
  assert.ok(
    await probeCompletes(guest, "s3"),
    "the blocked write did not complete after domfsthaw",
  );
  assert.equal(await guest.freezeStatus(), "thawed");
  const calls = (await hookCalls(guest)).slice(before);
  assert.equal(actions(calls), "freeze,thaw");
  const hookNiceness = calls.map((call) => call.nice).join(", ");
  results.observe(kind, "3. the hooks' niceness (freeze, thaw)", hookNiceness);
  assert.equal(hookNiceness, "0, 0", "hooks run at the niceness the agent started with");
  if (kind !== "qemu-ga") {
    await checkNiceness(guest, kind, WATCHDOG_UNIT, "3. the watchdog's threads' niceness");
  }
}

// --- 4. snapshots under a write load ------------------------------------------------------------

function describeContent(content: SnapshotContent): string {
  const { check, untouched } = content;
  const orphans = untouched.output.split("\n").filter((line) => /orphan/i.test(line)).length;
  const before = `e2fsck -fn of the copy: ${untouched.code}` +
    (orphans > 0 ? ` (orphan-list lines: ${orphans})` : "");
  const journal = check.features.includes("needs_recovery")
    ? "journal needs recovery"
    : "journal clean";
  const after = `after the kernel mounted it: e2fsck -fn ${check.full.code}`;
  const db = content.started
    ? `MariaDB started${
      content.crashRecovery ? " (crash recovery)" : ""
    }, ${content.errors.length} errors`
    : `MariaDB did not start: ${content.errors.slice(-3).join(" ")}`;
  return `state ${check.state}, ${journal}; ${before}; ${after}; ${db}; rows ${content.rows} ` +
    `(ids ${content.minId}-${content.maxId})`;
}

async function snapshotScenario(guest: Guest, kind: AgentKind): Promise<void> {
  await ensureThawed(guest, "s4");
  await prepareTable(guest);
  await startLoad(guest);
  const workDir = join(guest.dir, "snapshot-check");
  await Deno.mkdir(workDir, { mode: 0o711 });
  const failures: string[] = [];
  try {
    for (let cycle = 1; cycle <= QUIESCED_CYCLES + 1; cycle++) {
      const quiesce = cycle <= QUIESCED_CYCLES;
      await waitForAcks(guest, cycle * ROWS_PER_CYCLE);
      const hooksBefore = (await hookCalls(guest)).length;
      const ackedBefore = await acks(guest);
      const snapshot = await takeSnapshot(guest, `lab-snap-${cycle}`, quiesce);
      results.record(kind, quiesce ? "quiescedSnapshot" : "plainSnapshot", snapshot.seconds);
      const calls = (await hookCalls(guest)).slice(hooksBefore);
      const acked = await acks(guest);
      let content: SnapshotContent;
      try {
        content = await inspectSnapshot(snapshot, workDir);
      } finally {
        await commitSnapshot(guest, snapshot);
      }
      if (quiesce) {
        failures.push(...checkQuiescedCycle(kind, cycle, calls, acked, content));
      } else {
        const lastAcked = ackedBefore.at(-1)?.id ?? 0;
        results.observe(
          kind,
          "4. control snapshot without --quiesce (not asserted)",
          `acked before the snapshot: ${lastAcked}; ${describeContent(content)}`,
        );
      }
    }
    const errors = await loadErrors(guest);
    assert.equal(errors, "", "the write load reported errors");
  } finally {
    await stopLoad(guest);
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
  assert.deepEqual(failures, [], failures.join("\n"));
}

/** What is wrong with one quiesced cycle (nothing: []), after recording what it found. */
function checkQuiescedCycle(
  kind: AgentKind,
  cycle: number,
  calls: { action: string; at: number }[],
  acked: { id: number; at: number }[],
  content: SnapshotContent,
): string[] {
  const problems: string[] = [];
  const freezeAt = calls.find((call) => call.action === "freeze")?.at;
  const thawAt = calls.find((call) => call.action === "thaw")?.at;
  if (calls.map((call) => call.action).join(",") !== "freeze,thaw") {
    problems.push(
      `cycle ${cycle}: hook calls ${calls.map((call) => call.action).join(",") || "none"}`,
    );
  }
  // Rows acknowledged before the freeze hook started must be in the snapshot; none can be
  // acknowledged while frozen (every commit writes the redo log), so before the thaw is reported.
  const beforeFreeze = acked.filter((ack) => freezeAt !== undefined && ack.at < freezeAt);
  const beforeThaw = acked.filter((ack) => thawAt !== undefined && ack.at < thawAt);
  const lastBeforeFreeze = beforeFreeze.at(-1)?.id ?? 0;
  results.observe(
    kind,
    `4. quiesced snapshot ${cycle}`,
    `acked before freeze: ${lastBeforeFreeze}, before thaw: ${beforeThaw.at(-1)?.id ?? 0}; ${
      describeContent(content)
    }`,
  );
  try {
    assertClean(content.check);
  } catch (err) {
    problems.push(`cycle ${cycle}: filesystem: ${err instanceof Error ? err.message : err}`);
  }
  if (!content.started) {
    problems.push(`cycle ${cycle}: MariaDB did not start: ${content.errors.join("\n")}`);
  }
  if (content.errors.length > 0 && content.started) {
    problems.push(`cycle ${cycle}: MariaDB errors: ${content.errors.join("\n")}`);
  }
  if (content.rows !== content.maxId || (content.rows > 0 && content.minId !== 1)) {
    problems.push(
      `cycle ${cycle}: ids not contiguous: ${content.rows} rows, ids ${content.minId}-${content.maxId}`,
    );
  }
  if (content.maxId < lastBeforeFreeze) {
    problems.push(
      `cycle ${cycle}: rows up to ${lastBeforeFreeze} were acknowledged before the freeze, the snapshot ends at ${content.maxId}`,
    );
  }
  return problems;
}

// --- 3b. fsfreeze-expedite ------------------------------------------------------------------------

const RCU_EXPEDITED = "/sys/kernel/rcu_expedited";
/** Cycles per setting; each freeze comes a few seconds after the last thaw (a cold FIFREEZE). */
const EXPEDITE_CYCLES = 3;
const EXPEDITE_PAUSE_MS = 3000;

/**
 * The same cold freeze/thaw cycles without and with `fsfreeze-expedite=true`: with it, the cycle
 * is recorded as expediting, the kernel setting is back at 0 by the time each freeze has answered,
 * and the root is frozen; the FIFREEZE times are recorded beside the ones without it (never
 * asserted: TCG). The config file is put back as it was.
 */
async function expediteScenario(guest: Guest, agent: AgentSetup): Promise<void> {
  await ensureThawed(guest, "s3b");
  assert.equal(await rcuExpedited(guest), "0", "the guest starts with normal grace periods");
  const previous = await guest.console.ok("cat /etc/qemu/qemu-ga.conf 2>/dev/null || true");
  const normal = await fifreezeTimes(guest, agent.kind, false);
  try {
    await useConf(guest, agent, "[general]\nfsfreeze-expedite=true\n");
    const expedited = await fifreezeTimes(guest, agent.kind, true);
    results.observe(
      agent.kind,
      "3b. FIFREEZE of / (ms), cold freezes: normal | fsfreeze-expedite",
      `${normal.join(", ")} | ${expedited.join(", ")}`,
    );
  } finally {
    await useConf(guest, agent, previous === "" ? "" : `${previous}\n`);
  }
}

/**
 * Cold freeze/thaw cycles; after each freeze, rcu_expedited is 0, the root frozen and the state
 * file says whether the cycle expedited. Returns the FIFREEZE times of / from the report.
 */
async function fifreezeTimes(
  guest: Guest,
  kind: AgentKind,
  expedite: boolean,
): Promise<string[]> {
  const times: string[] = [];
  for (let cycle = 1; cycle <= EXPEDITE_CYCLES; cycle++) {
    const tag = `s3b-${expedite ? "expedited" : "normal"}-${cycle}`;
    await sleep(EXPEDITE_PAUSE_MS);
    const froze = await timedVirsh(guest, kind, "domfsfreeze");
    try {
      assert.equal(froze.code, 0, froze.text);
      assert.match(froze.text, /Froze 1 filesystem/);
      assert.equal(await rcuExpedited(guest), "0", `cycle ${cycle}: answered with it still set`);
      const state = JSON.parse(await guest.console.ok("cat /run/qga.state.isfrozen"));
      assert.equal(state.expeditedGracePeriods, expedite ? true : undefined, `cycle ${cycle}`);
      assert.equal(await rootFrozen(guest, tag), true, `cycle ${cycle}: the root is not frozen`);
    } finally {
      const thawed = await timedVirsh(guest, kind, "domfsthaw");
      assert.equal(thawed.code, 0, thawed.text);
    }
    assert.equal(await probeCompletes(guest, tag), true, `cycle ${cycle}: a write still blocks`);
    assert.equal(await rcuExpedited(guest), "0", `cycle ${cycle}: set after the thaw`);
    const report = JSON.parse(await guest.console.ok("cat /run/fsfreeze-agent.report.json"));
    const root = (report.mounts as { mountPoint: string; freezeUs?: number }[])
      .find((m) => m.mountPoint === "/");
    times.push(((root?.freezeUs ?? NaN) / 1000).toFixed(1));
  }
  return times;
}

async function rcuExpedited(guest: Guest): Promise<string> {
  return (await guest.console.ok(`cat ${RCU_EXPEDITED}`)).trim();
}

// --- 5. auto-thaw -------------------------------------------------------------------------------

/** Writes qemu-ga.conf with the short fsfreeze-timeout and restarts the agent on it. */
async function useShortFreezeTimeout(guest: Guest, agent: AgentSetup): Promise<void> {
  await useConf(guest, agent, `[general]\nfsfreeze-timeout=${FREEZE_TIMEOUT_S}\n`);
}

/** Writes qemu-ga.conf (removes it for "") and restarts the agent on it, unless it is so already. */
async function useConf(guest: Guest, agent: AgentSetup, conf: string): Promise<void> {
  const current = await guest.console.ok("cat /etc/qemu/qemu-ga.conf 2>/dev/null || true");
  if (current === conf.trim()) return;
  await guest.console.ok(
    conf === ""
      ? "rm -f /etc/qemu/qemu-ga.conf"
      : `printf '${conf.replaceAll("\n", "\\n")}' >/etc/qemu/qemu-ga.conf`,
  );
  const start = performance.now();
  await guest.console.ok(`systemctl restart ${agent.unit}`, { timeoutMs: 180_000 });
  assert.ok(
    await guest.waitForPing(180_000),
    "no answer after restarting the agent on the new config",
  );
  results.record(agent.kind, "restartToPing", secondsSince(start));
}

/** A freeze by `virsh domfsfreeze`, checked from inside (a write blocks). */
interface Freeze {
  /** Hook calls before it. */
  hooksBefore: number;
  /** `performance.now()` when domfsfreeze was sent: the agent's deadline counts from here. */
  startedAt: number;
}

async function freezeOnce(guest: Guest, kind: AgentKind, tag: string): Promise<Freeze> {
  const hooksBefore = (await hookCalls(guest)).length;
  const startedAt = performance.now();
  const froze = await timedVirsh(guest, kind, "domfsfreeze");
  assert.equal(froze.code, 0, froze.text);
  assert.match(froze.text, /Froze 1 filesystem/);
  await startProbe(guest, tag);
  assert.equal(
    await settledProbeState(guest, tag),
    "D",
    "a write to / did not block after domfsfreeze",
  );
  return { hooksBefore, startedAt };
}

/** Milliseconds until the agent's auto-thaw deadline plus `extraS` (negative: past). */
function untilDeadline(freeze: Freeze, extraS: number): number {
  return freeze.startedAt + (FREEZE_TIMEOUT_S + extraS) * 1000 - performance.now();
}

async function autoThawScenario(guest: Guest, agent: AgentSetup): Promise<void> {
  await ensureThawed(guest, "s5");
  await useShortFreezeTimeout(guest, agent);
  const freeze = await freezeOnce(guest, agent.kind, "s5");
  const thawed = await poll(
    async () => (await guest.freezeStatus(10)) === "thawed" || undefined,
    { timeoutMs: untilDeadline(freeze, 120), intervalMs: 2000 },
  );
  const seconds = secondsSince(freeze.startedAt);
  if (thawed === undefined) {
    note(`rescue after a missed auto-thaw: ${await rescueThaw(guest, "s5")}`);
  }
  assert.ok(
    thawed,
    `still frozen ${seconds} s after a freeze with fsfreeze-timeout=${FREEZE_TIMEOUT_S}`,
  );
  results.observe(
    agent.kind,
    "5. auto-thaw seen by the host, after domfsfreeze was sent",
    `${seconds} s`,
  );
  assert.ok(
    await probeCompletes(guest, "s5"),
    "the blocked write did not complete after the auto-thaw",
  );
  await sleep(AFTER_DEADLINE_S * 1000);
  assert.equal(actions(await hookCalls(guest), freeze.hooksBefore), "freeze,thaw");
}

async function noAutoThawScenario(guest: Guest, kind: AgentKind): Promise<void> {
  await ensureThawed(guest, "s5");
  const freeze = await freezeOnce(guest, kind, "s5");
  await sleep(BASELINE_FROZEN_S * 1000);
  const status = await guest.freezeStatus();
  const write = await settledProbeState(guest, "s5", 5000);
  const thawed = await timedVirsh(guest, kind, "domfsthaw");
  results.observe(
    kind,
    "5. host never thaws",
    `after ${BASELINE_FROZEN_S} s: ${status}, write ${write}`,
  );
  assert.equal(status, "frozen");
  assert.equal(write, "D");
  assert.match(thawed.text, /Thawed 1 filesystem/);
  assert.ok(
    await probeCompletes(guest, "s5"),
    "the blocked write did not complete after domfsthaw",
  );
  assert.equal(actions(await hookCalls(guest), freeze.hooksBefore), "freeze,thaw");
}

// --- 6. the agent dies or stops while frozen -----------------------------------------------------

/** What happened after the agent was killed while frozen. */
interface Aftermath {
  /** Seconds from the kill until the agent answered again, or undefined. */
  backAfter: number | undefined;
  /** What it said first: "frozen" or "thawed". */
  firstStatus: string | undefined;
  /** Whether it answered before the auto-thaw deadline (i.e. it started while / was frozen). */
  beforeDeadline: boolean;
  /** `virsh domfsthaw` output, when the agent came back frozen. */
  hostThaw: string | undefined;
  /** Whether / was still frozen once the deadline had passed. */
  frozenAfterDeadline: boolean;
  /** Hook calls since the freeze. */
  hooks: string;
  /** Processes and unit state when the agent did not come back. */
  evidence: string;
}

/**
 * After a kill while frozen: waits for the agent to answer (ours: until a minute past its
 * auto-thaw deadline; the baseline: two minutes) and thaws through it if it says frozen; for ours,
 * then waits until the deadline has passed by a margin, so a late second thaw shows in the hook
 * log; then checks from inside whether / is still frozen, and rescues the guest if so.
 */
async function watchAftermath(
  guest: Guest,
  agent: AgentSetup,
  tag: string,
  freeze: Freeze,
): Promise<Aftermath> {
  const killedAt = performance.now();
  const waitMs = agent.autoThaws ? untilDeadline(freeze, 60) : 120_000;
  const firstStatus = await poll(async () => {
    const status = await guest.freezeStatus(10);
    return status === "frozen" || status === "thawed" ? status : undefined;
  }, { timeoutMs: Math.max(waitMs, 30_000), intervalMs: 2000 });
  const backAfter = firstStatus === undefined ? undefined : secondsSince(killedAt);
  const beforeDeadline = firstStatus !== undefined && untilDeadline(freeze, 0) > 0;
  let hostThaw: string | undefined;
  let evidence = "";
  if (firstStatus === "frozen") {
    hostThaw = (await timedVirsh(guest, agent.kind, "domfsthaw")).text;
  } else if (firstStatus === undefined) {
    evidence = await processStates(guest, "fsfreeze|deno|qemu-ga|ze-agent|journal", true) +
      "\n" + await unitState(guest, agent.unit);
  }
  if (agent.autoThaws) {
    const wait = untilDeadline(freeze, AFTER_DEADLINE_S);
    if (wait > 0) await sleep(wait);
  }
  const frozenAfterDeadline = await rootFrozen(guest, `${tag}-after`);
  const hooks = actions(await hookCalls(guest), freeze.hooksBefore);
  if (frozenAfterDeadline || firstStatus === undefined) {
    note(`${guest.name} ${tag}: rescue: ${await rescueThaw(guest, tag)}`);
    if ((await guest.waitForPing(180_000)) === undefined) {
      await guest.console.run(`systemctl start ${agent.unit}`, { timeoutMs: 120_000 });
      await guest.waitForPing(180_000);
    }
  }
  return { backAfter, firstStatus, beforeDeadline, hostThaw, frozenAfterDeadline, hooks, evidence };
}

function describeAftermath(result: Aftermath): string {
  const back = result.backAfter === undefined
    ? "agent did not answer"
    : `agent answered ${result.backAfter} s after the kill command returned, saying ${result.firstStatus}`;
  const thaw = result.hostThaw === undefined ? "" : `; domfsthaw: ${result.hostThaw}`;
  const frozen = result.frozenAfterDeadline ? "yes" : "no";
  return `${back}${thaw}; root frozen afterwards: ${frozen}; hooks: ${result.hooks}`;
}

/** Our agent's correct behaviour after a kill while frozen. */
function problemsWithAftermath(result: Aftermath): string[] {
  const problems: string[] = [];
  if (result.backAfter === undefined) {
    problems.push(`the agent did not answer again (processes and unit:\n${result.evidence})`);
  }
  if (result.backAfter !== undefined && !result.beforeDeadline) {
    problems.push(
      `the restarted agent answered only after the auto-thaw deadline (${result.backAfter} s after ` +
        "the kill): it could not start while / was frozen, so the host could not thaw until then",
    );
  }
  if (result.frozenAfterDeadline) problems.push("the guest was still frozen after the deadline");
  if (result.hostThaw !== undefined && !/Thawed 1 filesystem/.test(result.hostThaw)) {
    problems.push(`the restarted agent said frozen, but domfsthaw: ${result.hostThaw}`);
  }
  if (result.hooks !== "freeze,thaw") {
    problems.push(`hook calls ${result.hooks || "none"}, expected freeze,thaw`);
  }
  return problems;
}

async function killWhileFrozenScenario(
  guest: Guest,
  agent: AgentSetup,
  id: string,
  command: string,
): Promise<void> {
  await ensureThawed(guest, `s${id}`);
  if (agent.autoThaws) await useShortFreezeTimeout(guest, agent);
  const freeze = await freezeOnce(guest, agent.kind, `s${id}`);
  await guest.console.ok(command);
  const result = await watchAftermath(guest, agent, `s${id}`, freeze);
  results.observe(
    agent.kind,
    `${id}. ${command.replace(agent.unit, "UNIT")} while frozen`,
    describeAftermath(result),
  );
  if (agent.kind === "qemu-ga") return; // the baseline's behaviour is recorded, not asserted
  const problems = problemsWithAftermath(result);
  assert.deepEqual(problems, [], problems.join("\n"));
}

/** Polls until the unit is no longer active or deactivating; resolves its state then. */
async function waitUnitStopped(guest: Guest, unit: string, timeoutMs: number): Promise<string> {
  let state = "";
  await poll(async () => {
    state = await guest.console.ok(`systemctl is-active ${unit} || true`);
    return state === "active" || state === "deactivating" ? undefined : state;
  }, { timeoutMs, intervalMs: 2000 });
  return state;
}

/** Where the unit's main process waits: state, wait channel and the top of its kernel stack. */
async function mainProcessWait(guest: Guest, unit: string): Promise<string> {
  return (await guest.console.ok(
    `pid=$(systemctl show -p MainPID --value ${unit}); ` +
      `echo "pid $pid $(ps -o stat=,wchan:30= -p $pid) $(head -n 2 /proc/$pid/stack | tr '\\n' ' ')"`,
  )).replace(/\s+/g, " ");
}

async function stopWhileFrozenScenario(guest: Guest, agent: AgentSetup): Promise<void> {
  await ensureThawed(guest, "s6c");
  const freeze = await freezeOnce(guest, agent.kind, "s6c");
  // --no-block: the baseline may take systemd's whole stop timeout; it is watched, not waited for.
  const stopStart = performance.now();
  await guest.console.ok(`systemctl stop --no-block ${agent.unit}`);
  const state = await waitUnitStopped(guest, agent.unit, agent.autoThaws ? 150_000 : 30_000);
  const stopSeconds = secondsSince(stopStart);
  const stuck = state === "deactivating"
    ? ` (main process: ${await mainProcessWait(guest, agent.unit)})`
    : "";
  const thawedByStop = await probeCompletes(guest, "s6c", 10_000);
  const hooks = actions(await hookCalls(guest), freeze.hooksBefore);
  results.observe(
    agent.kind,
    "6c. systemctl stop while frozen",
    `unit ${state}${stuck} after ${stopSeconds} s; root ${
      thawedByStop ? "thawed" : "left frozen"
    }; ` +
      `hooks: ${hooks}`,
  );
  if (!thawedByStop) {
    note(`${guest.name} 6c: rescue: ${await rescueThaw(guest, "s6c")}`);
    const after = await waitUnitStopped(guest, agent.unit, 15_000);
    // Recorded above; not waiting out systemd's stop timeout (90 s) as well.
    if (after === "active" || after === "deactivating") {
      await guest.console.ok(`systemctl kill -s KILL ${agent.unit}`);
      await waitUnitStopped(guest, agent.unit, 60_000);
    }
  }
  await guest.console.ok(`systemctl start ${agent.unit}`, { timeoutMs: 120_000 });
  assert.ok(await guest.waitForPing(180_000), "no answer after systemctl start");
  if (agent.kind === "qemu-ga") return;
  assert.ok(thawedByStop, `systemctl stop while frozen left the guest frozen (unit ${state})`);
  assert.notEqual(state, "active", "the unit did not stop");
  assert.equal(hooks, "freeze,thaw");
}

async function localThawDuringRestartScenario(guest: Guest, agent: AgentSetup): Promise<void> {
  await ensureThawed(guest, "s6d");
  await useShortFreezeTimeout(guest, agent);
  const freeze = await freezeOnce(guest, agent.kind, "s6d");
  // The main process dies (systemd restarts it 1 s later) and the console thaws at once.
  const thaw = await guest.console.run(
    `systemctl kill -s KILL --kill-whom=main ${agent.unit}; ${agent.localThaw} 2>&1`,
    { timeoutMs: 180_000 },
  );
  const result = await watchAftermath(guest, agent, "s6d", freeze);
  results.observe(
    agent.kind,
    "6d. local thaw during a restart",
    `thaw exited ${thaw.code}; ${describeAftermath(result)}`,
  );
  const problems = problemsWithAftermath(result);
  if (thaw.code !== 0) problems.push(`${agent.localThaw}: ${thaw.code}: ${thaw.stdout}`);
  if (result.firstStatus === "frozen") {
    problems.push("the restarted agent said frozen after the local thaw");
  }
  assert.deepEqual(problems, [], problems.join("\n"));
}

// --- 8. the delegate ------------------------------------------------------------------------------

/** Whether `password` is the guest user's password now (its shadow hash, checked by libcrypt). */
async function passwordWorks(guest: Guest, user: string, password: string): Promise<boolean> {
  const check = await guest.console.ok(
    `perl -e 'print crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? "yes" : "no"' ${password} ` +
      `"$(getent shadow ${user} | cut -d: -f2)"`,
  );
  return check === "yes";
}

async function delegateScenario(guest: Guest, agent: AgentSetup): Promise<void> {
  await ensureThawed(guest, "s8");
  const installStart = performance.now();
  const install = await guest.console.run(`${agent.enableDelegate} 2>&1`, { timeoutMs: 900_000 });
  const installSeconds = secondsSince(installStart);
  assert.equal(install.code, 0, `${agent.enableDelegate}:\n${install.stdout}`);
  const restartStart = performance.now();
  await guest.console.ok(`systemctl restart ${agent.unit}`, { timeoutMs: 180_000 });
  assert.ok(await guest.waitForPing(180_000), "no answer after restarting the agent");
  results.observe(
    agent.kind,
    "8. delegate enabled",
    `install.sh --delegate ${installSeconds} s, agent restart to first answer ${
      secondsSince(restartStart)
    } s`,
  );
  assert.equal(
    await guest.console.ok(`systemctl is-active ${agent.delegateUnit} || true`),
    "active",
    "the agent's unit did not start its delegate",
  );
  assert.ok(baselineInfo !== undefined, "no qemu-ga results to compare with (its scenario 2)");

  await guest.console.ok(
    `id ${PASSWORD_USER} >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin ${PASSWORD_USER}`,
  );
  try {
    const set = await guest.virsh(["set-user-password", guest.name, PASSWORD_USER, PASSWORD]);
    assert.equal(set.code, 0, `virsh set-user-password: ${set.stderr}`);
    assert.ok(await passwordWorks(guest, PASSWORD_USER, PASSWORD), "the password did not change");
  } finally {
    await guest.console.ok(`userdel ${PASSWORD_USER} || true`);
  }

  const vcpus = await guestVcpus(guest);
  assert.equal(vcpus, baselineInfo.guestvcpus, "virsh guestvcpus");
  const info = await guestInfo(guest);
  const { missing, extra, different } = compareGuestInfo(baselineInfo.guestinfo, info);
  results.observe(
    agent.kind,
    "8. guestinfo sections qemu-ga has and we do not, with the delegate",
    missing.join(", ") || "none",
  );
  if (extra.length > 0) {
    results.observe(agent.kind, "8. guestinfo sections only we have", extra.join(", "));
  }
  assert.ok("disk" in info, "no disk section in virsh guestinfo");
  const problems = [
    ...missing.map((section) => `section ${section} missing`),
    ...different.map((d) => `guestinfo ${d}`),
  ];
  assert.deepEqual(problems, [], problems.join("\n"));
}
