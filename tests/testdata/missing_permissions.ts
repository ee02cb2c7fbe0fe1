/**
 * Child of tests/permission_check_test.ts: run with a permission set, prints what
 * `missingPermissions()` finds missing for the agent arguments given as JSON in its first argument.
 *
 * @module
 */

import { parseConfig } from "../../src/config/mod.ts";
import { missingPermissions } from "../../src/permission_check.ts";

const parsed = parseConfig(JSON.parse(Deno.args[0] ?? "[]"), {}, () => undefined);
if (parsed.action !== "run") throw new Error("not an agent command line");
Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(missingPermissions(parsed.config))));
