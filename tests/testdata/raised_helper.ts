/**
 * Run by tests/priority_test.ts in a process of its own (raising changes the whole process): raises
 * the process as the agent does, then runs a helper through `runHelper` that fails unless its own
 * niceness is the one this process started with. Prints the outcome of both.
 *
 * @module
 */

import { agentPriority } from "../../src/priority.ts";
import { runHelper } from "../../src/commands/system/shutdown.ts";

const raised = agentPriority.raise();
let helper = "ran at the start niceness";
try {
  await runHelper(["sh", "-c", `test "$(cut -d' ' -f19 /proc/self/stat)" = 0`], "check");
} catch (err) {
  helper = String(err);
}
await Deno.stdout.write(
  new TextEncoder().encode(JSON.stringify({ raised: raised.raised, helper })),
);
