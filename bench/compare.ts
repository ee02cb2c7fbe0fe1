/**
 * `deno task bench`: our agent and qemu-ga side by side (README "Performance"). It installs
 * nothing (`.ci/setup` installs qemu-guest-agent), must run as root (loop mounts, FIFREEZE), and
 * measures, runs interleaved (ours, qemu-ga, ours, …), medians over runs, ratios ours/qemu-ga:
 * start-to-first-`guest-ping`, idle RSS and RSS after many requests, `guest-ping` round trips,
 * and `guest-fsfreeze-freeze-list` + `guest-fsfreeze-thaw` over fresh loop-mounted ext4
 * filesystems (first cycle dirty, then steady, then 1 s apart), with no hook and with a trivial
 * hook, and again with every CPU kept busy by the bench's own busy loops (no cycles 1 s apart
 * there); also the floors: a minimal Deno server, and syncfs of the same dirty data on as many
 * fresh filesystems. Prints a table and writes JSON to bench/results/.
 *
 * Never freezes anything but its own loop mounts (see _freeze.ts and _procs.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { AGENT_V8_FLAGS } from "../src/permissions.ts";
import {
  type FreezeBenchOptions,
  type FreezeSample,
  measureFreeze,
  measureSyncfsFloor,
} from "./_freeze.ts";
import {
  type AgentKind,
  QEMU_GA,
  type ServeKind,
  startCpuHogs,
  writeFloorScripts,
} from "./_procs.ts";
import {
  busySection,
  type FreezeRuns,
  freezeSection,
  type MemoryRuns,
  memorySection,
  renderTable,
  type Section,
  sectionsJson,
  type ServeRuns,
  serveSection,
} from "./_report.ts";
import { type FloorSample, measureFloor, measureServeRun, type ServeOptions } from "./_serve.ts";
import { measureMemoryRun, type MemoryOptions } from "./_memory.ts";

const USAGE = `usage: deno task bench [options]
  --runs N            runs of start-up, memory and ping per agent (default 5)
  --freeze-runs N     runs of each freeze scenario per agent (default 3)
  --counts LIST       filesystem counts (default 1,8,32)
  --busy-counts LIST  filesystem counts measured again on a busy machine (default 1,32)
  --hooks LIST        none,trivial (default both)
  --dirty-mib N       MiB written to each filesystem before the first freeze (default 16)
  --steady-cycles N   freeze+thaw cycles after the first, back to back (default 50)
  --spaced-cycles N   cycles after those, each 1 s after the previous (default 3)
  --pings N           timed guest-pings per agent and run (default 10000)
  --requests N        requests before the second RSS reading (default 100000)
  --only LIST         serve,memory,freeze (default all)
  --images DIR        where the loop images live (default: a tmpfs of the bench's own)
  --ours-args ARGS    more options for our agent in the freeze runs, space-separated
                      (e.g. --fsfreeze-expedite)
  --quick             fewer runs and requests (a smoke run)
  --out FILE          JSON output (default bench/results/<time>.json)`;

const RESULTS_DIR = new URL("./results/", import.meta.url).pathname;
const TRIVIAL_HOOK = "#!/bin/sh\n# The bench's trivial hook: does nothing.\nexit 0\n";

interface Options {
  runs: number;
  freezeRuns: number;
  counts: number[];
  busyCounts: number[];
  hooks: ("none" | "trivial")[];
  only: Set<string>;
  serve: ServeOptions;
  memory: MemoryOptions;
  freeze: FreezeBenchOptions;
  out: string | undefined;
  /** Where the loop images go; a tmpfs of the bench's own when absent. */
  images: string | undefined;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      runs: { type: "string" },
      "freeze-runs": { type: "string" },
      counts: { type: "string" },
      "busy-counts": { type: "string" },
      hooks: { type: "string" },
      "dirty-mib": { type: "string" },
      "steady-cycles": { type: "string" },
      "spaced-cycles": { type: "string" },
      pings: { type: "string" },
      requests: { type: "string" },
      only: { type: "string" },
      quick: { type: "boolean" },
      out: { type: "string" },
      images: { type: "string" },
      "ours-args": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    print(USAGE);
    Deno.exit(0);
  }
  const quick = values.quick ?? false;
  const int = (value: string | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`not a count: ${value}`);
    return n;
  };
  const hooks = (values.hooks ?? "none,trivial").split(",");
  for (const hook of hooks) {
    if (hook !== "none" && hook !== "trivial") throw new RangeError(`unknown hook ${hook}`);
  }
  const pings = int(values.pings, quick ? 2000 : 10_000);
  return {
    runs: Math.max(1, int(values.runs, quick ? 2 : 5)),
    freezeRuns: Math.max(1, int(values["freeze-runs"], quick ? 1 : 3)),
    counts: (values.counts ?? "1,8,32").split(",").map((c) => int(c, 1)),
    busyCounts: (values["busy-counts"] ?? "1,32").split(",").filter((c) => c !== "").map((c) =>
      int(c, 1)
    ),
    hooks: hooks as ("none" | "trivial")[],
    only: new Set((values.only ?? "serve,memory,freeze").split(",")),
    memory: {
      pings: quick ? 2000 : 10_000,
      fuzzFrames: quick ? 5000 : 30_000,
      bigMiB: 60,
      requests: quick ? 20_000 : 100_000,
      settleMs: 5000,
    },
    serve: {
      pings,
      pingBlocks: 10,
      warmupPings: 200,
      requests: int(values.requests, quick ? 20_000 : 100_000),
      batch: 50,
      settleMs: 500,
    },
    freeze: {
      dirtyMiB: int(values["dirty-mib"], 16),
      steadyCycles: Math.max(1, int(values["steady-cycles"], quick ? 10 : 50)),
      spacedCycles: int(values["spaced-cycles"], quick ? 1 : 3),
      imageMiB: 64,
      watchdogSeconds: 30,
      oursArgs: (values["ours-args"] ?? "").split(" ").filter((arg) => arg !== ""),
    },
    out: values.out,
    images: values.images,
  };
}

/** nproc, memory, kernel, CPU model, versions. */
async function machine(): Promise<Record<string, string | number>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const qemuGa = await new Deno.Command(QEMU_GA, { args: ["-V"], stdout: "piped", stderr: "null" })
    .output();
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30 * 10) / 10,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    qemuGa: new TextDecoder().decode(qemuGa.stdout).trim(),
  };
}

async function preflight(): Promise<void> {
  if (Deno.uid() !== 0) {
    throw new Error("run as root: the bench makes loop mounts and freezes them");
  }
  try {
    await Deno.stat(QEMU_GA);
  } catch {
    throw new Error(`${QEMU_GA} not found: apt-get install qemu-guest-agent (or run .ci/setup)`);
  }
}

/**
 * Start-up, memory, ping: each run has both agents and the floor server alive, started in the
 * run's order (ours and qemu-ga take turns going first).
 */
async function serveRuns(options: Options, work: string): Promise<ServeRuns> {
  const scripts = await writeFloorScripts(work);
  const agents: ServeRuns["agents"] = { ours: [], "qemu-ga": [], "deno-floor": [] };
  const floor: FloorSample[] = [];
  // One untimed round first: module caches, page cache and binaries are warm for every run.
  const all = options.runs + 1;
  for (let run = 0; run < all; run++) {
    stopIfInterrupted();
    const order: ServeKind[] = run % 2 === 0
      ? ["ours", "qemu-ga", "deno-floor"]
      : ["qemu-ga", "ours", "deno-floor"];
    const dirOf = (kind: ServeKind): string => `${work}/serve-${run}-${kind}`;
    const samples = await measureServeRun(order, dirOf, scripts.server, options.serve);
    const floorSample = await measureFloor(scripts, options.serve.settleMs);
    if (run === 0) continue;
    for (const [kind, sample] of samples) agents[kind].push(sample);
    floor.push(floorSample);
    const ours = samples.get("ours")!;
    const qga = samples.get("qemu-ga")!;
    progress(
      `serve run ${run}/${options.runs}: start ${ours.startupMs.toFixed(1)}/` +
        `${qga.startupMs.toFixed(1)} ms (floor ${floorSample.runMs.toFixed(1)}), ping p50 ` +
        `${ours.pingP50Us.toFixed(0)}/${qga.pingP50Us.toFixed(0)} µs`,
    );
  }
  return { agents, floor };
}

/** Memory after bursts: one run per agent (the readings barely vary), qemu-ga first. */
async function memoryRuns(options: Options, work: string): Promise<MemoryRuns> {
  const runs: MemoryRuns = { ours: [], "qemu-ga": [] };
  for (const kind of ["qemu-ga", "ours"] as const) {
    stopIfInterrupted();
    const sample = await measureMemoryRun(kind, `${work}/memory-${kind}`, options.memory);
    runs[kind].push(sample);
    progress(
      `memory ${kind}: idle ${(sample.idleKiB / 1024).toFixed(1)} MiB, settled after each burst ` +
        Object.values(sample.bursts).map((b) => (b.settledKiB / 1024).toFixed(1)).join("/") +
        " MiB",
    );
  }
  return runs;
}

/** One freeze scenario: a hook variant, a mount count, a quiet or busy machine. */
interface FreezeScenario {
  hook: "none" | "trivial";
  count: number;
  busy: boolean;
}

function freezeScenarios(options: Options): FreezeScenario[] {
  const quiet = options.hooks.flatMap((hook) =>
    options.counts.map((count) => ({ hook, count, busy: false }))
  );
  const busy = options.busyCounts.map((count) => ({ hook: "none" as const, count, busy: true }));
  return [...quiet, ...busy];
}

/** Every freeze scenario: fresh mounts per run and agent, agents alternating. */
async function freezeRuns(options: Options, work: string): Promise<FreezeRuns[]> {
  const hookPath = `${work}/trivial-hook.sh`;
  await Deno.writeTextFile(hookPath, TRIVIAL_HOOK, { mode: 0o755 });
  await Deno.chmod(hookPath, 0o755);
  const results: FreezeRuns[] = [];
  const serial = { next: 0 };
  for (const scenario of freezeScenarios(options)) {
    const hook = scenario.hook === "trivial" ? hookPath : undefined;
    await using _hogs = scenario.busy ? startCpuHogs() : undefined;
    results.push(await freezeScenario(scenario, hook, options, work, serial));
  }
  return results;
}

async function freezeScenario(
  scenario: FreezeScenario,
  hookPath: string | undefined,
  options: Options,
  work: string,
  serial: { next: number },
): Promise<FreezeRuns> {
  const { hook, count, busy } = scenario;
  const agents: Record<AgentKind, FreezeSample[]> = { ours: [], "qemu-ga": [] };
  const syncfsFloorMs: number[] = [];
  const label = `freeze ${hook} hook, ${count} fs${busy ? ", busy machine" : ""}`;
  for (let run = 0; run < options.freezeRuns; run++) {
    for (const kind of ["ours", "qemu-ga"] as const) {
      const dir = `${work}/freeze-${serial.next++}-${kind}`;
      await Deno.mkdir(dir);
      const sample = await measureFreeze(kind, count, hookPath, dir, {
        ...options.freeze,
        keepVisible: [work, options.freeze.imagesDir ?? work],
        // The busy section reports steady cycles only.
        ...(busy ? { spacedCycles: 0 } : {}),
      });
      agents[kind].push(sample);
      progress(
        `${label}, run ${run + 1}/${options.freezeRuns}, ${kind}: ` +
          `1st ${sample.first.freezeMs.toFixed(1)} ms, steady ` +
          `${sample.steady.totalMs.toFixed(1)} ms` +
          (sample.spaced ? `, 1 s apart ${sample.spaced.totalMs.toFixed(1)} ms` : ""),
      );
      stopIfInterrupted();
    }
    if (hook === "none" && !busy) {
      syncfsFloorMs.push(await measureSyncfsFloor(count, options.freeze));
      progress(`${label}, run ${run + 1}: syncfs floor ${syncfsFloorMs.at(-1)!.toFixed(1)} ms`);
    }
  }
  return { hook, count, busy, agents, syncfsFloorMs };
}

/** Write bandwidth where the loop images live: 256 MiB, fsync'ed. */
async function diskMBps(imagesDir: string | undefined): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "fsfreeze_bench_dd_", dir: imagesDir ?? "/tmp" });
  try {
    const started = performance.now();
    const output = await new Deno.Command("dd", {
      args: ["if=/dev/zero", `of=${dir}/probe`, "bs=1M", "count=256", "conv=fsync"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (!output.success) return NaN;
    return 256 * 1.048576 / ((performance.now() - started) / 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Sockets and state dirs go on a tmpfs of the bench's own, as in production (/run); by default
 * the loop images go on another. On a disk, each loop FIFREEZE flushes its image, and that waits
 * for a journal commit of the disk's filesystem, which carries whatever else wrote there: tens of
 * milliseconds, at random, for either agent. (Deno's narrow permissions refuse /dev/shm.) Returns
 * whether it was mounted.
 */
async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  const args = ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "fsfreeze-bench", dir];
  return (await new Deno.Command("mount", { args, stdout: "null", stderr: "null" }).output())
    .success;
}

/** A tmpfs for the loop images at `<work>/images`: room for 32 images of 64 MiB. */
async function imagesOnTmpfs(work: string): Promise<boolean> {
  await Deno.mkdir(`${work}/images`);
  return await mountTmpfs(`${work}/images`, "3g");
}

async function unmount(dir: string): Promise<void> {
  await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
}

let interrupted = false;

/** Ends the bench (through its cleanup) once a signal asked for it. */
function stopIfInterrupted(): void {
  if (interrupted) throw new Error("interrupted");
}

const encoder = new TextEncoder();

function progress(line: string): void {
  writeLine(Deno.stderr, line);
}

function print(text: string): void {
  writeLine(Deno.stdout, text);
}

function writeLine(stream: { writeSync(bytes: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(`${text}\n`);
  for (let offset = 0; offset < bytes.length;) offset += stream.writeSync(bytes.subarray(offset));
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  await preflight();
  // A ^C or a kill ends the bench after the current run, whose cleanup then still happens.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => interrupted = true);
  }
  const started = new Date();
  const work = await Deno.makeTempDir({ prefix: "fsfreeze_bench_" });
  const tmpfs = await mountTmpfs(work, "64m");
  const imagesTmpfs = options.images === undefined && await imagesOnTmpfs(work);
  const imagesDir = imagesTmpfs ? `${work}/images` : options.images;
  if (imagesDir !== undefined) options.freeze.imagesDir = imagesDir;
  const sections: Section[] = [];
  let serve: ServeRuns | undefined;
  let memory: MemoryRuns | undefined;
  let freeze: FreezeRuns[] | undefined;
  try {
    if (options.only.has("serve")) {
      serve = await serveRuns(options, work);
      sections.push(serveSection(serve, options.serve.requests));
    }
    if (options.only.has("memory")) {
      memory = await memoryRuns(options, work);
      sections.push(memorySection(memory, options.memory));
    }
    if (options.only.has("freeze")) {
      const disk = {
        mbPerSecond: await diskMBps(options.freeze.imagesDir),
        dirtyMiB: options.freeze.dirtyMiB,
        where: imagesTmpfs ? "tmpfs" : options.freeze.imagesDir ?? "/tmp",
      };
      freeze = await freezeRuns(options, work);
      const quiet = freeze.filter((f) => !f.busy);
      for (const hook of options.hooks) {
        sections.push(freezeSection(quiet.filter((f) => f.hook === hook), disk));
      }
      const busy = freeze.filter((f) => f.busy);
      if (busy.length > 0) sections.push(busySection(busy, quiet));
    }
  } finally {
    if (imagesTmpfs) await unmount(`${work}/images`);
    if (tmpfs) await unmount(work);
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  const host = await machine();
  const table = renderTable(sections);
  print(
    `machine: ${host.cpus} CPUs (${host.cpuModel}), ${host.memoryGiB} GiB, Linux ${host.kernel}, ` +
      `deno ${host.deno}, ${host.qemuGa}`,
  );
  print(
    `runs: ${options.runs} (start-up/memory/ping), ${options.freezeRuns} per freeze scenario; ` +
      `medians over runs; ${options.freeze.dirtyMiB} MiB dirty per fs before the 1st cycle` +
      (options.freeze.oursArgs.length > 0
        ? `; ours run with ${options.freeze.oursArgs.join(" ")}\n`
        : "\n"),
  );
  print(table);
  const out = options.out ?? `${RESULTS_DIR}${started.toISOString().replace(/[:.]/g, "-")}.json`;
  await Deno.mkdir(out.replace(/\/[^/]*$/, ""), { recursive: true });
  const json = {
    startedAt: started.toISOString(),
    machine: host,
    options: { ...options, only: [...options.only] },
    summary: sectionsJson(sections),
    samples: { serve, memory, freeze },
  };
  await Deno.writeTextFile(out, JSON.stringify(json, null, 2) + "\n");
  print(`JSON: ${out}`);
}

/**
 * Deno processes share one V8 code cache (in DENO_DIR), and an entry made under other V8 flags is
 * rejected and rewritten. The agent runs with {@link AGENT_V8_FLAGS}; were the bench (and the
 * floor) to run without them, every agent would rewrite hundreds of cache pages — in the middle
 * of its freeze. So the bench runs itself under the agent's flags: returns the exit code of that
 * run, or undefined when this already is it.
 */
async function underAgentFlags(): Promise<number | undefined> {
  if (typeof (globalThis as { gc?: unknown }).gc === "function") return undefined;
  const self = new URL(import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", AGENT_V8_FLAGS, self, ...Deno.args],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // A kill of this process reaches the run, which stops after its current step and cleans up.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => child.kill(signal));
  }
  const { code } = await child.status;
  return code;
}

if (import.meta.main) {
  const code = await underAgentFlags();
  if (code !== undefined) Deno.exit(code);
  await main();
}
