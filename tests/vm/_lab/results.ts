/**
 * What the VM suite measured and observed, per agent: wall times (never asserted: TCG makes
 * every number ~100x a native one, and the host is shared), and what each agent did in the
 * scenarios where only one behaviour is asserted (the baseline's is recorded). Written as JSON
 * and as a markdown table to tests/vm/results/, and printed at the end of the run.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AgentKind } from "./agents.ts";
import { note } from "./proc.ts";

const RESULTS_DIR = fileURLToPath(new URL("../results/", import.meta.url));
const AGENTS: AgentKind[] = ["fsfreeze-agent", "qemu-ga"];

/** The wall times the table shows, in this order, with their labels. */
export const METRICS = {
  firstPing: "first guest-ping answer after `virsh start`",
  unitStartToPing: "unit start (guest clock) to first answer",
  agentCpuAtStart: "agent CPU time when it first answered",
  domfsfreeze: "`virsh domfsfreeze`",
  domfsthaw: "`virsh domfsthaw`",
  quiescedSnapshot: "`snapshot-create-as --disk-only --atomic --quiesce` (MariaDB load)",
  plainSnapshot: "`snapshot-create-as --disk-only --atomic` (no quiesce)",
  restartToPing: "`systemctl restart` to first answer",
  libvirtdRestart: "libvirtd restart (stop, start, answering `virsh version`)",
  libvirtdBackToPing: "then to the agent's first answer",
  rebootToPing: "`virsh reboot --mode agent` to first answer",
  shutdown: "`virsh shutdown --mode agent` to domain shut off",
} as const;

/** A metric's key. */
export type Metric = keyof typeof METRICS;

/** Collected measurements and observations. */
export class Results {
  readonly timings: Record<string, Partial<Record<Metric, number[]>>> = {};
  readonly observations: Record<string, Record<string, string>> = {};
  readonly suite: Record<string, number | string | boolean> = {};

  /** Adds one measurement (seconds). */
  record(agent: AgentKind, metric: Metric, seconds: number): void {
    const perAgent = this.timings[agent] ??= {};
    (perAgent[metric] ??= []).push(seconds);
    note(`${agent}: ${METRICS[metric]}: ${seconds} s`);
  }

  /** Records what an agent did in a scenario (one line of text). */
  observe(agent: AgentKind, key: string, text: string): void {
    (this.observations[agent] ??= {})[key] = text;
    note(`${agent}: ${key}: ${text}`);
  }

  /** The side-by-side table of wall times: median, and min-max over n samples. */
  timingTable(): string {
    const lines = [
      `| Wall time (TCG guest, seconds) | ${AGENTS.join(" | ")} |`,
      `| --- | ${AGENTS.map(() => "---").join(" | ")} |`,
    ];
    for (const [metric, label] of Object.entries(METRICS) as [Metric, string][]) {
      const cells = AGENTS.map((agent) => summarize(this.timings[agent]?.[metric]));
      if (cells.every((cell) => cell === "-")) continue;
      lines.push(`| ${label} | ${cells.join(" | ")} |`);
    }
    return lines.join("\n");
  }

  /** The observations, one table per scenario key. */
  observationTable(): string {
    const keys = [
      ...new Set(AGENTS.flatMap((agent) => Object.keys(this.observations[agent] ?? {}))),
    ];
    const lines = [
      `| Scenario | ${AGENTS.join(" | ")} |`,
      `| --- | ${AGENTS.map(() => "---").join(" | ")} |`,
    ];
    for (const key of keys.sort()) {
      const cells = AGENTS.map((agent) =>
        (this.observations[agent]?.[key] ?? "-").replaceAll("|", "\\|")
      );
      lines.push(`| ${key} | ${cells.join(" | ")} |`);
    }
    return lines.join("\n");
  }

  /** Writes latest.json and latest.md to tests/vm/results/ and prints the tables. */
  async write(): Promise<void> {
    await Deno.mkdir(RESULTS_DIR, { recursive: true });
    const json = {
      at: new Date().toISOString(),
      suite: this.suite,
      timings: this.timings,
      observations: this.observations,
    };
    await Deno.writeTextFile(
      join(RESULTS_DIR, "latest.json"),
      JSON.stringify(json, null, 2) + "\n",
    );
    const markdown =
      `# VM lab results (${json.at})\n\n${this.timingTable()}\n\n${this.observationTable()}\n`;
    await Deno.writeTextFile(join(RESULTS_DIR, "latest.md"), markdown);
    note(`results in ${RESULTS_DIR}latest.{json,md}:\n${markdown}`);
  }
}

function summarize(values: number[] | undefined): string {
  if (values === undefined || values.length === 0) return "-";
  const sorted = values.toSorted((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as number;
  if (sorted.length === 1) return `${median}`;
  return `${median} (${sorted[0]}–${sorted.at(-1)}, n=${sorted.length})`;
}
