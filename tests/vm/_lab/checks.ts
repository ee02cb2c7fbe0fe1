/**
 * What the scenarios look at inside a guest, through its console: the test hook's record of
 * freeze/thaw calls, a write to the root filesystem that blocks while it is frozen, process
 * states (journald, the agent), and a rescue that thaws the guest whatever an agent left behind,
 * so one scenario's failure does not freeze the next.
 *
 * @module
 */

import { HOOK_LOG } from "./agents.ts";
import type { Guest } from "./guest.ts";
import { note, poll, shellQuote, sleep } from "./proc.ts";

/** One call of the test hook. */
export interface HookCall {
  action: "freeze" | "thaw";
  /** Guest wall clock, epoch seconds. */
  at: number;
  pid: number;
  /** The hook's niceness. */
  nice: number;
}

/** Every hook call recorded since boot, in order. */
export async function hookCalls(guest: Guest): Promise<HookCall[]> {
  const text = await guest.console.ok(`cat ${HOOK_LOG} 2>/dev/null || true`, { readOnly: true });
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => {
    const [action, at, pid, nice] = line.trim().split(/\s+/);
    return {
      action: action as HookCall["action"],
      at: Number(at),
      pid: Number(pid),
      nice: Number(nice),
    };
  });
}

/** The calls after the first `skip` ones, as "freeze,thaw,..." (for messages and asserts). */
export function actions(calls: HookCall[], skip = 0): string {
  return calls.slice(skip).map((call) => call.action).join(",");
}

/** The guest's wall clock, epoch seconds. */
export async function guestNow(guest: Guest): Promise<number> {
  return Number(await guest.console.ok("date +%s.%N"));
}

/** Where a probe keeps its PID and completion time (tmpfs). */
function probeFiles(tag: string): { pid: string; done: string; target: string } {
  return {
    pid: `/run/lab-probe-${tag}.pid`,
    done: `/run/lab-probe-${tag}.done`,
    target: `/var/tmp/lab-probe-${tag}`,
  };
}

/**
 * Starts, in the background, a write of a new file on the root filesystem followed by `sync`
 * (blocks while / is frozen). Its state is read with {@link probeState}.
 */
export async function startProbe(guest: Guest, tag: string): Promise<void> {
  const files = probeFiles(tag);
  await guest.console.ok(
    `rm -f ${files.pid} ${files.done}\n` +
      `setsid sh -c 'echo $$ >${files.pid}; date +%s.%N >${files.target}; sync ${files.target}; ` +
      `date +%s.%N >${files.done}' </dev/null >/dev/null 2>&1 &\n` +
      `for i in $(seq 50); do [ -s ${files.pid} ] && break; sleep 0.1; done; cat ${files.pid}`,
  );
}

/** "done", or the probe's process state letter (`D`: blocked on the frozen filesystem). */
export async function probeState(guest: Guest, tag: string): Promise<string> {
  const files = probeFiles(tag);
  return await guest.console.ok(
    `if [ -e ${files.done} ]; then echo done; else ` +
      `pid=$(cat ${files.pid}); sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f1; fi`,
  );
}

/** Waits until the probe is blocked (`D`) or done; resolves with the state seen last. */
export async function settledProbeState(
  guest: Guest,
  tag: string,
  timeoutMs = 30_000,
): Promise<string> {
  let last = "";
  await poll(async () => {
    last = await probeState(guest, tag);
    return last === "D" || last === "done" ? last : undefined;
  }, { timeoutMs, intervalMs: 1000 });
  return last;
}

/** Waits until the probe's write completed (the root was thawed); resolves false on timeout. */
export async function probeCompletes(
  guest: Guest,
  tag: string,
  timeoutMs = 60_000,
): Promise<boolean> {
  return await poll(async () => (await probeState(guest, tag)) === "done" || undefined, {
    timeoutMs,
    intervalMs: 1000,
  }) ?? false;
}

/**
 * Whether / is frozen right now, seen from inside: a fresh write blocks in state D (frozen), or
 * completes (thawed), within `timeoutMs`.
 */
export async function rootFrozen(guest: Guest, tag: string, timeoutMs = 20_000): Promise<boolean> {
  await startProbe(guest, tag);
  return (await settledProbeState(guest, tag, timeoutMs)) !== "done";
}

/**
 * Processes whose name (`comm`) matches the extended regular expression `pattern`: "pid state
 * wchan comm", and with `stacks` the top of each one's kernel stack. Reads only /proc/PID/comm,
 * stat, wchan and stack, with shell builtins: `ps` and `pgrep -f` read /proc/PID/cmdline, which
 * waits for the process's memory map lock, and a process stuck in a page fault on the frozen
 * root (journald writes its journal files through mmap) holds that lock until the thaw.
 */
export async function processStates(
  guest: Guest,
  pattern: string,
  stacks = false,
): Promise<string> {
  return await guest.console.ok(
    `re=${shellQuote(pattern)}\n` +
      "for d in /proc/[0-9]*; do\n" +
      '  read -r comm 2>/dev/null <"$d/comm" || continue\n' +
      "  [[ $comm =~ $re ]] || continue\n" +
      '  read -r stat 2>/dev/null <"$d/stat"; state=${stat##*) }; state=${state%% *}\n' +
      '  read -r wchan 2>/dev/null <"$d/wchan"\n' +
      '  echo "${d#/proc/} $state ${wchan:-0} $comm"\n' +
      (stacks ? '  [ "$state" = D ] && head -n 6 "$d/stack" | sed "s/^/    /"\n' : "") +
      "done; true",
  );
}

/** The state letter of systemd-journald (`D`: waiting on the frozen root). */
export async function journaldState(guest: Guest): Promise<string> {
  return (await processStates(guest, "^systemd-journal")).split(" ")[1] ?? "";
}

/** The unit's state from systemd (no process command lines read). */
export async function unitState(guest: Guest, unit: string): Promise<string> {
  return (await guest.console.ok(
    `systemctl show -p ActiveState -p SubState -p Result -p MainPID -p NRestarts ${unit}`,
  )).replaceAll("\n", " ");
}

/**
 * How many times each thread of the unit's main process went to sleep and woke over `seconds` of
 * the guest's clock (its context switches, voluntary and not), by thread name, and their sum.
 */
export async function unitWakeups(
  guest: Guest,
  unit: string,
  seconds: number,
): Promise<{ total: number; byThread: string }> {
  const out = await guest.console.ok(
    `pid=$(systemctl show -p MainPID --value ${unit})\n` +
      "switches() {\n" +
      '  for t in /proc/"$pid"/task/*; do\n' +
      "    local sum=0 key value comm\n" +
      '    read -r comm <"$t/comm"\n' +
      "    while read -r key value; do\n" +
      "      case $key in *ctxt_switches:) sum=$((sum + value)) ;; esac\n" +
      '    done <"$t/status"\n' +
      '    echo "${t##*/} $sum ${comm// /_}"\n' +
      "  done\n" +
      "}\n" +
      `switches >/run/lab/before; sleep ${seconds}; switches >/run/lab/after\n` +
      "join /run/lab/before /run/lab/after | awk '{ print $4 - $2, $3 }'",
    { timeoutMs: (seconds + 60) * 1000 },
  );
  const byName = new Map<string, number>();
  for (const line of out.split("\n").filter((l) => l.trim() !== "")) {
    const [count, name] = line.trim().split(" ");
    const value = Number(count);
    if (!Number.isInteger(value) || name === undefined) {
      throw new Error(`unexpected output: ${out}`);
    }
    byName.set(name, (byName.get(name) ?? 0) + value);
  }
  const total = [...byName.values()].reduce((sum, value) => sum + value, 0);
  const byThread = [...byName].filter(([, value]) => value > 0)
    .map(([name, value]) => `${name} ${value}`).join(", ");
  return { total, byThread };
}

/** The niceness of each thread of `unit`'s main process, as "N×count" (e.g. "-10×7"). */
export async function unitNiceness(guest: Guest, unit: string): Promise<string> {
  return (await guest.console.ok(
    `pid=$(systemctl show -p MainPID --value ${unit})\n` +
      `for t in /proc/"$pid"/task/*; do sed 's/.*) //' "$t/stat" | cut -d' ' -f17; done | ` +
      'sort -n | uniq -c | awk \'{ printf "%s%s×%s", sep, $2, $1; sep = " " }\'',
    { readOnly: true },
  )).trim();
}

/**
 * Until every thread of `unit`'s main process runs at `nice` (within `timeoutMs`): what
 * {@link unitNiceness} last said.
 */
export async function unitNicenessBecomes(
  guest: Guest,
  unit: string,
  nice: number,
  timeoutMs: number,
): Promise<string> {
  let last = "";
  await poll(async () => {
    last = await unitNiceness(guest, unit);
    return /^-?\d+×\d+$/.test(last) && last.startsWith(`${nice}×`) ? last : undefined;
  }, { timeoutMs, intervalMs: 1000 });
  return last;
}

/**
 * Thaws the guest whatever state the agent is in: `virsh domfsthaw`, then FITHAW on / from the
 * console (for a freeze the agent no longer knows about), then checks that a write goes through.
 * Resolves to what it had to do (empty when the guest was not frozen).
 */
export async function rescueThaw(guest: Guest, tag: string): Promise<string> {
  const steps: string[] = [];
  const thaw = await guest.virsh(["domfsthaw", guest.name], 90_000);
  steps.push(`domfsthaw: ${(thaw.stdout + thaw.stderr).trim() || thaw.code}`);
  // The rescue console: the command console may be stuck behind the frozen root.
  const direct = await guest.rescueConsole.run("fsfreeze -u / 2>&1", { timeoutMs: 30_000 });
  if (direct.code === 0) steps.push("fsfreeze -u / (rescue console) thawed the root");
  if (await rootFrozen(guest, `${tag}-rescue`)) {
    await sleep(2000);
    await guest.rescueConsole.run("fsfreeze -u / 2>&1", { timeoutMs: 30_000 });
    if (await rootFrozen(guest, `${tag}-rescue2`)) {
      throw new Error(`cannot thaw the guest: ${steps.join("; ")}`);
    }
  }
  return steps.join("; ");
}

/**
 * Makes sure a scenario starts on a thawed guest with an answering agent: if the agent says
 * frozen or does not answer, rescues (noting it: the previous scenario left this behind).
 */
export async function ensureThawed(guest: Guest, tag: string): Promise<void> {
  const status = await guest.freezeStatus();
  if (status === "thawed") return;
  note(`${guest.name}: before ${tag}: agent says ${status}; rescuing`);
  note(`${guest.name}: rescue: ${await rescueThaw(guest, tag)}`);
  if ((await guest.waitForPing(180_000)) === undefined) {
    throw new Error(`the agent does not answer after the rescue thaw (before ${tag})`);
  }
}
