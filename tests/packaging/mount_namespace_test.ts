/**
 * The two facts the unit's `ProtectSystem=full` relies on, checked on the kernel here with the
 * same mount-namespace setup systemd makes for a unit (a new namespace whose mounts are slaves of
 * the host's shared ones, and read-only bind mounts of a path onto itself):
 *
 * - FIFREEZE through a read-only bind mount freezes the filesystem itself (the freeze belongs to
 *   the superblock, not to the mount), and it stays frozen after the namespace is gone;
 * - a filesystem mounted on the host after the namespace was made shows up inside it.
 *
 * Freezing only ever touches the loop mount this test creates, with its thaw watchdog armed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createLoopMounts } from "../_util/loopfs.ts";

async function run(command: string, args: string[]): Promise<{ code: number; out: string }> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  const decoder = new TextDecoder();
  return { code: output.code, out: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

async function mustRun(command: string, args: string[]): Promise<void> {
  const result = await run(command, args);
  assert.equal(result.code, 0, `${command} ${args.join(" ")}: ${result.out}`);
}

/** Runs in a new mount namespace: bind `$1` onto itself read-only, as ProtectSystem= does. */
const FREEZE_THROUGH_READONLY_BIND = `set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
if touch "$1/probe" 2>/dev/null; then echo "the bind mount is writable"; exit 3; fi
fsfreeze -f "$1"`;

Deno.test("FIFREEZE through a read-only bind in a unit-like namespace freezes the filesystem", async () => {
  await using loop = await createLoopMounts(1, { watchdogSeconds: 10 });
  const mount = loop.mounts[0]!;
  const inner = await run("unshare", [
    "--mount",
    "--propagation",
    "slave",
    "sh",
    "-c",
    FREEZE_THROUGH_READONLY_BIND,
    "sh",
    mount,
  ]);
  assert.equal(inner.code, 0, inner.out);
  // The namespace and its bind mount are gone. A thaw from the host succeeds only on a frozen
  // filesystem (EINVAL otherwise), so: once yes, then no.
  const firstThaw = await run("fsfreeze", ["-u", mount]);
  assert.equal(firstThaw.code, 0, `the filesystem was not frozen: ${firstThaw.out}`);
  const secondThaw = await run("fsfreeze", ["-u", mount]);
  assert.notEqual(secondThaw.code, 0, "thawing a thawed filesystem should fail");
});

Deno.test("a filesystem mounted on the host later is visible in a unit-like namespace", async () => {
  const base = await Deno.makeTempDir({ prefix: "agent_test_propagation_" });
  const later = `${base}/later`;
  await Deno.mkdir(later);
  let bound = false;
  let mounted = false;
  let child: Deno.ChildProcess | undefined;
  try {
    // systemd makes every host mount shared at boot; this host may not, so our subtree is.
    await mustRun("mount", ["--bind", base, base]);
    bound = true;
    await mustRun("mount", ["--make-shared", base]);
    child = new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation",
        "slave",
        "sh",
        "-c",
        "echo ready; read go; cat /proc/self/mountinfo",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value).trim(), "ready");

    await mustRun("mount", ["-t", "tmpfs", "-o", "size=1m", "agent_test_later", later]);
    mounted = true;
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
    let mountinfo = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      mountinfo += new TextDecoder().decode(chunk.value);
    }
    const status = await child.status;
    child = undefined;
    assert.ok(status.success);
    const points = mountinfo.split("\n").map((line) => line.split(" ")[4]);
    assert.ok(points.includes(later), `${later} not in the namespace:\n${mountinfo}`);
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.status;
    }
    if (mounted) await mustRun("umount", [later]);
    if (bound) await mustRun("umount", [base]);
    await Deno.remove(base, { recursive: true });
  }
});
