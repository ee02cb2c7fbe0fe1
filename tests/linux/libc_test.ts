import assert from "node:assert/strict";
import { SyscallError } from "../../src/linux/errno.ts";
import {
  close,
  fifreeze,
  fionread,
  fithaw,
  getuid,
  kill,
  major,
  minor,
  O_RDONLY,
  open,
} from "../../src/linux/libc.ts";

function isSyscallError(syscall: string, code: string): (err: unknown) => boolean {
  return (err) => err instanceof SyscallError && err.syscall === syscall && err.code === code;
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  if (!output.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout).trim();
}

Deno.test("close() throws SyscallError EBADF for fd -1", () => {
  assert.throws(() => close(-1), isSyscallError("close", "EBADF"));
});

Deno.test("open() throws SyscallError ENOENT naming the path when it does not exist", () => {
  const path = "/agent_test_no_such_dir/x";
  assert.throws(() => open(path, O_RDONLY), (err) => {
    return isSyscallError("open", "ENOENT")(err) && (err as SyscallError).path === path;
  });
});

Deno.test("open() returns a descriptor that close() accepts once", () => {
  const fd = open("/proc/self/mountinfo", O_RDONLY);
  assert.ok(fd >= 0);
  close(fd);
  assert.throws(() => close(fd), isSyscallError("close", "EBADF"));
});

Deno.test("fifreeze() and fithaw() throw SyscallError EBADF for fd -1", () => {
  // fd -1 reaches no filesystem: the only safe way to exercise these outside a test loop mount.
  assert.throws(() => fifreeze(-1, "/x"), isSyscallError("ioctl(FIFREEZE)", "EBADF"));
  assert.throws(() => fithaw(-1, "/x"), isSyscallError("ioctl(FITHAW)", "EBADF"));
});

Deno.test("fionread() reports the bytes left to read in a regular file", async () => {
  const file = await Deno.makeTempFile({ prefix: "agent_test_" });
  try {
    await Deno.writeTextFile(file, "12345");
    const fd = open(file, O_RDONLY);
    try {
      assert.equal(fionread(fd), (await Deno.stat(file)).size);
    } finally {
      close(fd);
    }
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("major() and minor() decode rdev as stat(1) does, including large numbers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_" });
  try {
    for (const [maj, min] of [[7, 3], [259, 300], [8, 65536], [4095, 1048575]] as const) {
      const node = `${dir}/b_${maj}_${min}`;
      await run("mknod", [node, "b", String(maj), String(min)]);
      const [hexMajor, hexMinor] = (await run("stat", ["-c", "%t %T", node])).split(" ");
      const { rdev } = await Deno.stat(node);
      assert.ok(rdev !== null);
      assert.equal(major(rdev), parseInt(hexMajor ?? "", 16), node);
      assert.equal(minor(rdev), parseInt(hexMinor ?? "", 16), node);
      assert.deepEqual([major(rdev), minor(rdev)], [maj, min]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("getuid() matches id -u", async () => {
  assert.equal(getuid(), Number(await run("id", ["-u"])));
});

Deno.test("kill() throws SyscallError ESRCH for a process that has exited", async () => {
  const child = new Deno.Command("true", { stdin: "null", stdout: "null", stderr: "null" }).spawn();
  await child.status;
  kill(Deno.pid, 0); // signal 0 only checks that the target exists
  assert.throws(() => kill(child.pid, 0), isSyscallError("kill", "ESRCH"));
});
