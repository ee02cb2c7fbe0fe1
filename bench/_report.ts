/**
 * Turns the bench's samples into the summary (medians over runs, ratios ours/qemu-ga, targets)
 * and renders it as a plain-text table. No measuring here.
 *
 * @module
 */

import type { AgentAccount, CycleTimes, FreezeSample } from "./_freeze.ts";
import type { AgentKind, ServeKind } from "./_procs.ts";
import type { FloorSample, ServeSample } from "./_serve.ts";
import { type BurstName, BURSTS, type MemoryOptions, type MemorySample } from "./_memory.ts";
import { median, ratio, round } from "./_stats.ts";

/** A row of the table. */
export interface Row {
  metric: string;
  ours: number;
  qemuGa: number;
  /** ours / qemu-ga. */
  ratio: number;
  /** How the target is expressed, e.g. "≤ 1.0×". */
  target?: string;
  met?: boolean;
}

/** A section heading followed by rows. */
export interface Section {
  title: string;
  rows: Row[];
  /** Extra lines below the rows (our agent's own account, the floor). */
  notes: string[];
}

/** The serve part of the samples. */
export interface ServeRuns {
  agents: Record<ServeKind, ServeSample[]>;
  floor: FloorSample[];
}

/** The freeze part: per hook variant and mount count. */
export interface FreezeRuns {
  hook: "none" | "trivial";
  count: number;
  /** Measured while the bench's busy loops kept every CPU busy. */
  busy: boolean;
  agents: Record<AgentKind, FreezeSample[]>;
  /** syncfs of the same dirty data on as many fresh filesystems, all at once (quiet, no hook). */
  syncfsFloorMs: number[];
}

const MIB = 1024;

/** Start-up, memory and ping rows. */
export function serveSection(runs: ServeRuns, requests: number): Section {
  const of = (kind: ServeKind, pick: (s: ServeSample) => number): number =>
    median(runs.agents[kind].map(pick));
  const floorRun = median(runs.floor.map((f) => f.runMs));
  const floorRss = median(runs.floor.map((f) => f.idleRssKiB)) / MIB;
  const row = (metric: string, pick: (s: ServeSample) => number): Row => {
    const ours = of("ours", pick);
    const qemuGa = of("qemu-ga", pick);
    return { metric, ours, qemuGa, ratio: ratio(ours, qemuGa) };
  };
  const startup = row("start to first guest-ping reply (ms)", (s) => s.startupMs);
  const floorServer = of("deno-floor", (s) => s.startupMs);
  startup.target = `≤ floor server + 10 = ${fmt(floorServer + 10)}`;
  startup.met = startup.ours <= floorServer + 10;
  const idle = row("idle RSS (MiB)", (s) => s.idleRssKiB / MIB);
  idle.target = `≤ 1.15 × floor = ${fmt(floorRss * 1.15)}`;
  idle.met = idle.ours <= floorRss * 1.15;
  const after = row(`RSS after ${requests} requests (MiB)`, (s) => s.rssAfterRequestsKiB / MIB);
  const growth = row("  growth over idle (×)", (s) => s.rssAfterRequestsKiB / s.idleRssKiB);
  growth.target = "flat: ≤ 1.05";
  growth.met = growth.ours <= 1.05;
  const anonIdle = row("  private part (RssAnon), idle (MiB)", (s) => s.idleAnonKiB / MIB);
  const anonAfter = row(
    `  private part after ${requests} requests (MiB)`,
    (s) => s.anonAfterRequestsKiB / MIB,
  );
  const server = (pick: (s: ServeSample) => number): string => fmt(of("deno-floor", pick));
  const p50 = row("guest-ping round trip p50 (µs)", (s) => s.pingP50Us);
  p50.target = "≤ 1.0×";
  p50.met = p50.ratio <= 1.0;
  return {
    title: "Start-up, memory, guest-ping",
    rows: [
      startup,
      idle,
      after,
      growth,
      anonIdle,
      anonAfter,
      p50,
      row("guest-ping round trip p99 (µs)", (s) => s.pingP99Us),
      row("pipelined guest-ping (requests/s)", (s) => s.requestsPerSecond),
      row("threads after the requests", (s) => s.threads),
    ],
    notes: [
      `Deno floor (deno run of an empty script): ${fmt(floorRun)} ms spawn to exit, ` +
      `${fmt(floorRss)} MiB idle RSS`,
      `Deno floor server (a minimal Deno unix-socket ping server): start to first reply ` +
      `${server((s) => s.startupMs)} ms, idle RSS ${server((s) => s.idleRssKiB / MIB)} MiB ` +
      `(private ${server((s) => s.idleAnonKiB / MIB)}), after ${requests} requests ` +
      `${server((s) => s.rssAfterRequestsKiB / MIB)} MiB (private ` +
      `${server((s) => s.anonAfterRequestsKiB / MIB)}), ping p50 ${server((s) => s.pingP50Us)} µs`,
    ],
  };
}

/** The memory-after-bursts part: per agent, one sample per run. */
export type MemoryRuns = Record<AgentKind, MemorySample[]>;

function burstName(burst: BurstName, options: MemoryOptions): string {
  const count = (n: number): string => n.toLocaleString("en");
  switch (burst) {
    case "pings":
      return `${count(options.pings)} sequential guest-pings`;
    case "fuzz":
      return `${count(options.fuzzFrames)} fuzz frames`;
    case "big":
      return `one ${options.bigMiB} MiB request`;
    case "requests":
      return `${count(options.requests)} pipelined guest-pings`;
  }
}

/** RSS at idle, and settled after each burst, as a multiple of idle. */
export function memorySection(runs: MemoryRuns, options: MemoryOptions): Section {
  const settleMs = options.settleMs;
  const of = (kind: AgentKind, pick: (s: MemorySample) => number): number =>
    median(runs[kind].map(pick));
  const row = (metric: string, pick: (s: MemorySample) => number): Row => {
    const ours = of("ours", pick);
    const qemuGa = of("qemu-ga", pick);
    return { metric, ours, qemuGa, ratio: ratio(ours, qemuGa) };
  };
  const rows: Row[] = [row("idle RSS (MiB)", (s) => s.idleKiB / MIB)];
  for (const burst of BURSTS) {
    rows.push(
      row(
        `after ${burstName(burst, options)}: RSS at its end (MiB)`,
        (s) => s.bursts[burst].endKiB / MIB,
      ),
    );
    const back = row(
      `  ${settleMs / 1000} s later, × idle`,
      (s) => s.bursts[burst].settledKiB / s.idleKiB,
    );
    back.target = "≤ 1.10";
    back.met = back.ours <= 1.10;
    rows.push(back);
  }
  return {
    title: "Memory after bursts (one connection, bursts one after another)",
    rows,
    notes: [
      "qemu-ga keeps what a burst made it allocate (glibc arenas); ours hands it back once the " +
      "channel is quiet (src/memory.ts)",
    ],
  };
}

/** What the disk under the loop images can do (for the first cycle's floor). */
export interface DiskProbe {
  /** MB/s of a `dd … conv=fsync` write next to the images. */
  mbPerSecond: number;
  /** MiB written to each filesystem before its first cycle. */
  dirtyMiB: number;
  /** Where the images are: "tmpfs" or a directory. */
  where: string;
}

/** Freeze rows of one hook variant (all mount counts). */
export function freezeSection(variants: readonly FreezeRuns[], disk?: DiskProbe): Section {
  const hook = variants[0]?.hook ?? "none";
  const rows: Row[] = [];
  const notes: string[] = [];
  for (const variant of variants) {
    const of = (kind: AgentKind, pick: (s: FreezeSample) => number): number =>
      median(variant.agents[kind].map(pick));
    const row = (metric: string, pick: (s: FreezeSample) => number): Row => {
      const ours = of("ours", pick);
      const qemuGa = of("qemu-ga", pick);
      return { metric, ours, qemuGa, ratio: ratio(ours, qemuGa) };
    };
    const n = variant.count;
    const first = row(`${n} fs, 1st cycle (dirty): freeze-list (ms)`, (s) => s.first.freezeMs);
    if (n === 32) {
      first.target = "≤ 0.5×";
      first.met = first.ratio <= 0.5;
    }
    const steady = row(`${n} fs, steady: freeze-list + thaw (ms)`, (s) => s.steady.totalMs);
    const steadyTarget = n === 1 ? 2.0 : n === 32 ? 1.0 : undefined;
    if (steadyTarget !== undefined) {
      steady.target = `≤ ${steadyTarget.toFixed(1)}×`;
      steady.met = steady.ratio <= steadyTarget;
    }
    rows.push(first);
    if (variant.syncfsFloorMs.length > 0) rows.push(floorRow(n, first, variant.syncfsFloorMs));
    rows.push(
      row(`${n} fs, 1st cycle: thaw (ms)`, (s) => s.first.thawMs),
      steady,
      row(`${n} fs, steady: freeze-list (ms)`, (s) => s.steady.freezeMs),
      row(`${n} fs, steady: thaw (ms)`, (s) => s.steady.thawMs),
    );
    if (variant.agents.ours.every((s) => s.spaced !== undefined)) {
      const spaced = (pick: (c: CycleTimes) => number) => (s: FreezeSample) => pick(s.spaced!);
      rows.push(
        row(`${n} fs, 1 s apart: freeze-list + thaw (ms)`, spaced((c) => c.totalMs)),
        row(`${n} fs, 1 s apart: freeze-list (ms)`, spaced((c) => c.freezeMs)),
        row(`${n} fs, 1 s apart: thaw (ms)`, spaced((c) => c.thawMs)),
      );
    }
    const account = (pick: (s: FreezeSample) => AgentAccount | undefined): string => {
      const accounts = variant.agents.ours.map(pick).filter((a) => a !== undefined);
      const m = (key: keyof AgentAccount): string => fmt(median(accounts.map((a) => a[key])));
      return `window ${m("freezeWindowMs")} ms, slowest FIFREEZE ${m("mountFreezeMaxMs")} ms, ` +
        `sum of FIFREEZEs ${m("mountFreezeSumMs")} ms, thaw ${m("thawMs")} ms`;
    };
    notes.push(
      `${n} fs, our report, 1st cycle: ${account((s) => s.firstAccount)}`,
      `${n} fs, our report, steady:    ${account((s) => s.steadyAccount)}`,
    );
    if (variant.agents.ours.every((s) => s.spacedAccount !== undefined)) {
      notes.push(`${n} fs, our report, 1 s apart: ${account((s) => s.spacedAccount)}`);
    }
    if (variant === variants.at(-1)) {
      rows.push(
        row(`${n} fs, agent RSS while frozen (MiB)`, (s) => s.frozenRssKiB / MIB),
        row(`${n} fs, agent RSS after the cycles (MiB)`, (s) => s.afterRssKiB / MIB),
      );
      const watchdog = median(variant.agents.ours.map((s) => s.childrenRssKiB)) / MIB;
      notes.push(`our watchdog process while frozen: ${fmt(watchdog)} MiB RSS (not in the row)`);
      if (disk) {
        const floorMs = (n * disk.dirtyMiB * 1.048576) / disk.mbPerSecond * 1000;
        notes.push(
          `images on ${disk.where}: ${fmt(disk.mbPerSecond)} MB/s (dd conv=fsync); writing ` +
            `${n} × ${disk.dirtyMiB} MiB at that rate takes ${fmt(floorMs)} ms: the floor of a ` +
            `1st cycle`,
        );
      }
    }
  }
  return { title: `guest-fsfreeze-freeze-list + thaw, ${hook} hook`, rows, notes };
}

/**
 * The first cycle against its physical floor: ours and qemu-ga each as a multiple of syncfs of the
 * same dirty data on as many fresh filesystems, all at once.
 */
function floorRow(n: number, first: Row, floorsMs: readonly number[]): Row {
  const floor = median(floorsMs);
  const row: Row = {
    metric: `${n} fs, 1st cycle ÷ syncfs floor (${fmt(floor)} ms)`,
    ours: first.ours / floor,
    qemuGa: first.qemuGa / floor,
    ratio: first.ours / first.qemuGa,
  };
  if (n === 32) {
    row.target = "ours ≤ 1.2";
    row.met = row.ours <= 1.2;
  }
  return row;
}

/**
 * The same cycles with every CPU busy (the bench's busy loops), and each agent's busy figure as a
 * multiple of its quiet one: a real guest is rarely idle when its snapshot is taken.
 */
export function busySection(
  busy: readonly FreezeRuns[],
  quiet: readonly FreezeRuns[],
): Section {
  const rows: Row[] = [];
  for (const variant of busy) {
    const calm = quiet.find((q) => q.hook === variant.hook && q.count === variant.count);
    const of = (runs: FreezeRuns, kind: AgentKind, pick: (s: FreezeSample) => number): number =>
      median(runs.agents[kind].map(pick));
    const both = (metric: string, pick: (s: FreezeSample) => number): Row => {
      const ours = of(variant, "ours", pick);
      const qemuGa = of(variant, "qemu-ga", pick);
      return { metric, ours, qemuGa, ratio: ratio(ours, qemuGa) };
    };
    const n = variant.count;
    const total = (s: FreezeSample): number => s.steady.totalMs;
    rows.push(
      both(`${n} fs, 1st cycle (dirty): freeze-list (ms)`, (s) => s.first.freezeMs),
      both(`${n} fs, steady: freeze-list (ms)`, (s) => s.steady.freezeMs),
      both(`${n} fs, steady: thaw (ms)`, (s) => s.steady.thawMs),
      both(`${n} fs, steady: freeze-list + thaw (ms)`, total),
    );
    if (calm) {
      const ours = of(variant, "ours", total) / of(calm, "ours", total);
      const qemuGa = of(variant, "qemu-ga", total) / of(calm, "qemu-ga", total);
      rows.push({
        metric: `${n} fs, steady: busy ÷ quiet (×)`,
        ours,
        qemuGa,
        ratio: ratio(ours, qemuGa),
        target: "ours ≤ 1.5",
        met: ours <= 1.5,
      });
    }
  }
  return {
    title: "guest-fsfreeze-freeze-list + thaw on a busy machine, no hook",
    rows,
    notes: [`every CPU runs a busy loop of the bench's own (${navigator.hardwareConcurrency})`],
  };
}

/** Renders sections as a fixed-width table. */
export function renderTable(sections: readonly Section[]): string {
  const header = ["metric", "ours", "qemu-ga", "ours/qga", "target", ""];
  const lines: string[] = [];
  for (const section of sections) {
    const cells = section.rows.map((r) => [
      r.metric,
      fmt(r.ours),
      fmt(r.qemuGa),
      Number.isFinite(r.ratio) ? `${r.ratio.toFixed(2)}×` : "-",
      r.target ?? "",
      r.met === undefined ? "" : r.met ? "met" : "MISSED",
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
    const render = (c: string[]): string =>
      c.map((cell, i) => i === 0 || i === 4 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))
        .join("  ").trimEnd();
    lines.push(`== ${section.title}`, render(header), ...cells.map(render));
    for (const note of section.notes) lines.push(`   ${note}`);
    lines.push("");
  }
  return lines.join("\n");
}

/** A number with 3 significant digits or more, for the table. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return "-";
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return Math.round(value).toString();
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Sections as JSON-friendly values (rounded; NaN becomes null). */
export function sectionsJson(sections: readonly Section[]): unknown {
  return sections.map((section) => ({
    title: section.title,
    rows: section.rows.map((r) => ({
      ...r,
      ours: round(r.ours),
      qemuGa: round(r.qemuGa),
      ratio: round(r.ratio),
    })),
    notes: section.notes,
  }));
}
