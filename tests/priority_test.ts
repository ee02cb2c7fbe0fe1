/**
 * Unit tests of the priority policy (src/priority.ts) with a fake mechanism: a table of threads
 * and their niceness. tests/e2e/priority_e2e_test.ts covers the real one.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AgentPriority, type PriorityMechanism, RAISED_NICE } from "../src/priority.ts";
import { Errno, SyscallError } from "../src/linux/errno.ts";
import { atNiceness } from "./_util/agent.ts";

/** Threads by id; thread 1 is the calling one. `refuse` makes raising fail with EPERM. */
class FakeThreads implements PriorityMechanism {
  readonly nice = new Map<number, number>();
  readonly calls: string[] = [];
  refuse = false;
  /** Threads that appear after each listing (a thread started meanwhile). */
  appearing: number[][] = [];
  /** Threads that exit after the listing, before their setpriority. */
  exiting = new Set<number>();

  constructor(tids: number[], nice = 0) {
    for (const tid of tids) this.nice.set(tid, nice);
  }

  threadNice(tid = 0): number {
    return this.nice.get(tid === 0 ? 1 : tid)!;
  }

  setThreadNice(tid: number, nice: number): void {
    const id = tid === 0 ? 1 : tid;
    this.calls.push(`${tid}:${nice}`);
    if (this.exiting.has(id)) throw new SyscallError("setpriority", Errno.ESRCH);
    if (this.refuse && nice < this.nice.get(id)!) {
      throw new SyscallError("setpriority", Errno.EACCES);
    }
    this.nice.set(id, nice);
  }

  threadIds(): number[] {
    const listed = [...this.nice.keys()];
    for (const tid of this.appearing.shift() ?? []) this.nice.set(tid, 0);
    return listed;
  }
}

Deno.test("an agent at niceness 0 raises every thread, including those started meanwhile", () => {
  const threads = new FakeThreads([1, 2, 3]);
  threads.appearing = [[4]];
  const priority = new AgentPriority(threads);
  assert.deepEqual(priority.raise(), { raised: true, nice: RAISED_NICE, threads: 4 });
  assert.deepEqual([...threads.nice.values()], [
    RAISED_NICE,
    RAISED_NICE,
    RAISED_NICE,
    RAISED_NICE,
  ]);
  assert.ok(priority.raised);
  const calls = threads.calls.length;
  priority.raise();
  assert.equal(threads.calls.length, calls, "raised once");
});

Deno.test("an agent started at another niceness keeps it and spawns at it", () => {
  const threads = new FakeThreads([1, 2], 5);
  const priority = new AgentPriority(threads);
  const outcome = priority.raise();
  assert.equal(outcome.raised, false);
  assert.equal(outcome.nice, 5);
  assert.deepEqual(threads.calls, []);
  assert.equal(priority.spawnAtStartPriority(() => threads.threadNice()), 5);
  assert.deepEqual(threads.calls, [], "nothing to lower");
});

Deno.test("a refused raise leaves every thread at its start niceness", () => {
  const threads = new FakeThreads([1, 2, 3]);
  threads.refuse = true;
  const priority = new AgentPriority(threads);
  const outcome = priority.raise();
  assert.equal(outcome.raised, false);
  assert.match(outcome.raised ? "" : outcome.reason, /EACCES/);
  assert.deepEqual([...threads.nice.values()], [0, 0, 0]);
  assert.ok(!priority.raised);
});

Deno.test("a refusal after some threads were raised lowers them again", () => {
  const threads = new FakeThreads([1, 2, 3]);
  const priority = new AgentPriority({
    ...bound(threads),
    setThreadNice(tid, nice) {
      if (tid === 3 && nice < 0) throw new SyscallError("setpriority", Errno.EPERM);
      threads.setThreadNice(tid, nice);
    },
  });
  assert.equal(priority.raise().raised, false);
  assert.deepEqual([...threads.nice.values()], [0, 0, 0]);
});

Deno.test("a thread that exits before it is raised is skipped", () => {
  const threads = new FakeThreads([1, 2, 3]);
  threads.exiting.add(2);
  const priority = new AgentPriority(threads);
  assert.equal(priority.raise().raised, true);
  assert.equal(threads.nice.get(1), RAISED_NICE);
  assert.equal(threads.nice.get(3), RAISED_NICE);
});

Deno.test("a child is started at the start niceness; the calling thread is raised again, even when the start fails", () => {
  const threads = new FakeThreads([1, 2]);
  const priority = new AgentPriority(threads);
  priority.raise();
  assert.equal(priority.spawnAtStartPriority(() => threads.threadNice()), 0);
  assert.equal(threads.threadNice(), RAISED_NICE);
  assert.throws(() =>
    priority.spawnAtStartPriority(() => {
      throw new Error("no such program");
    }), /no such program/);
  assert.equal(threads.threadNice(), RAISED_NICE);
  assert.equal(threads.nice.get(2), RAISED_NICE, "other threads untouched");
});

/** The fake's methods, bound, to override one. */
function bound(threads: FakeThreads): PriorityMechanism {
  return {
    threadNice: (tid) => threads.threadNice(tid),
    setThreadNice: (tid, nice) => threads.setThreadNice(tid, nice),
    threadIds: () => threads.threadIds(),
  };
}

Deno.test("a raised process's helper (runHelper) runs at the start niceness (real threads, own process)", async () => {
  const script = new URL("./testdata/raised_helper.ts", import.meta.url).pathname;
  const [nice, ...niceArgs] = atNiceness(0);
  const { code, stdout, stderr } = await new Deno.Command(nice!, {
    args: [...niceArgs, Deno.execPath(), "run", "--allow-all", script],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  assert.deepEqual(JSON.parse(text), { raised: true, helper: "ran at the start niceness" });
});
