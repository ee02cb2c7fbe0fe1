import assert from "node:assert/strict";
import { SyscallError } from "../../src/linux/errno.ts";
import { close, O_NOCTTY, O_NONBLOCK, O_RDONLY, O_RDWR, open } from "../../src/linux/fd.ts";
import {
  fionread,
  makeRaw,
  readTermiosFlags,
  setRawMode,
  TERMIOS_SIZE,
} from "../../src/linux/termios.ts";
import { ptyPair, waitFor } from "../_util/pty.ts";

async function run(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null" }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  }
  return text;
}

/** The settings `stty -a` prints, as a set of words (`-icrnl`, `cs8`) plus speed, min and time. */
async function sttySettings(path: string): Promise<Set<string>> {
  const text = await run("stty", ["-F", path, "-a"]);
  const words = new Set(text.split(/[\s;]+/).filter((word) => word !== ""));
  const speed = /speed (\d+) baud/.exec(text)?.[1];
  const min = /\bmin = (\d+)/.exec(text)?.[1];
  const time = /\btime = (\d+)/.exec(text)?.[1];
  words.add(`speed=${speed}`).add(`min=${min}`).add(`time=${time}`);
  return words;
}

Deno.test("setRawMode() applies qemu-ga's isa-serial settings as stty reports them", async () => {
  await using pty = await ptyPair();
  // A cooked line with every bit qemu-ga clears set, a slower speed, and bits it must keep.
  await run("stty", [
    "-F",
    pty.a,
    "sane",
    "9600",
    "ignbrk",
    "brkint",
    "ignpar",
    "parmrk",
    "inpck",
    "istrip",
    "inlcr",
    "igncr",
    "ixoff",
    "ixany",
    "iutf8",
    "hupcl",
    "clocal",
    "min",
    "5",
    "time",
    "3",
  ]);
  const before = await sttySettings(pty.a);
  assert.ok(before.has("icanon") && before.has("opost") && before.has("ixoff"));
  assert.ok(before.has("speed=9600"));

  setRawMode(pty.a);

  const after = await sttySettings(pty.a);
  const cleared = [
    "-ignbrk",
    "-brkint",
    "-ignpar",
    "-parmrk",
    "-inpck",
    "-istrip",
    "-inlcr",
    "-igncr",
    "-icrnl",
    "-ixon",
    "-ixoff",
    "-ixany",
    "-imaxbel",
  ];
  const outputOff = ["-opost", "-onlcr", "nl0", "cr0", "tab0", "bs0", "vt0", "ff0"];
  const localOff = ["-isig", "-icanon", "-iexten", "-echo", "-echoe", "-echok", "-echoctl"];
  const localOff2 = ["-echoke", "-noflsh", "-tostop"];
  for (const word of [...cleared, ...outputOff, ...localOff, ...localOff2]) {
    assert.ok(after.has(word), `expected ${word} after setRawMode`);
  }
  // Kept: input bits outside qemu-ga's list, and the rest of c_cflag.
  for (const word of ["iutf8", "hupcl", "clocal", "cs8", "cread"]) {
    assert.ok(after.has(word), `expected ${word} to be kept`);
  }
  assert.ok(after.has("speed=38400"), "B38400 ORed into c_cflag");
  assert.ok(after.has("min=1") && after.has("time=0"));
});

Deno.test("setRawMode() discards input that was waiting on the line", async () => {
  await using pty = await ptyPair();
  const fd = open(pty.a, O_RDWR | O_NOCTTY | O_NONBLOCK);
  try {
    await run("sh", ["-c", 'printf "hello\\n" > "$1"', "sh", pty.b]);
    await waitFor(() => fionread(fd) > 0, "bytes to arrive through socat");
    setRawMode(pty.a);
    assert.equal(fionread(fd), 0);
  } finally {
    close(fd);
  }
});

Deno.test("setRawMode() throws SyscallError ENOTTY when the path is not a terminal", async () => {
  const file = await Deno.makeTempFile({ prefix: "agent_test_" });
  try {
    assert.throws(
      () => setRawMode(file),
      (err) => err instanceof SyscallError && err.syscall === "tcgetattr" && err.code === "ENOTTY",
    );
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("setRawMode() throws SyscallError ENOENT when the device does not exist", () => {
  assert.throws(
    () => setRawMode("/dev/agent_test_no_such_tty"),
    (err) => err instanceof SyscallError && err.syscall === "open" && err.code === "ENOENT",
  );
});

Deno.test("makeRaw() keeps baud bits already set, as qemu-ga ORs B38400 in", () => {
  const termios = new Uint8Array(TERMIOS_SIZE);
  const view = new DataView(termios.buffer);
  const B115200 = 0o10002;
  view.setUint32(8, B115200, true);
  view.setUint32(0, 0xffffffff, true);
  makeRaw(termios);
  const flags = readTermiosFlags(termios);
  assert.equal(flags.cflag, B115200 | 0o17);
  // Only qemu-ga's 13 input bits are cleared: 0o37777 minus IUCLC (0o1000) and IUTF8 stay.
  assert.equal(flags.iflag & 0o1000, 0o1000);
  assert.equal(flags.iflag & 0o40000, 0o40000);
  assert.equal(flags.iflag & 0o37777, 0o1000);
  assert.equal(flags.oflag, 0);
  assert.equal(flags.lflag, 0);
  assert.equal(termios[17 + 6], 1);
  assert.equal(termios[17 + 5], 0);
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
