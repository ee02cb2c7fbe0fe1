/**
 * Tests of src/commands/system/os_info.ts: os-release values are read as the shell reads them
 * (the shell sourcing the same file is the reference), with qemu-ga's choices where the shell
 * has no answer.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  guestOsInfo,
  osReleaseInfo,
  osReleaseValue,
  parseOsRelease,
  readOsRelease,
} from "../../../src/commands/system/os_info.ts";

const FIXTURE = `# a distribution that quotes in every way os-release(5) allows
NAME="Fancy \\"Linux\\""
PRETTY_NAME='Fancy Linux 1.0 (two words; one semicolon)'
ID=fancy
   VERSION = "1.0 \\$HOME \\\`x\\\` back\\\\slash \\n kept"
VERSION_ID=1.0

VARIANT="Server Edition"
VARIANT_ID=server
VARIANT_ID=server-again
EMPTY=
`;

async function shellValues(path: string, keys: string[]): Promise<Map<string, string>> {
  // Prints KEY=value NUL for each key the file sets (even to "").
  const script = '. "$1"; ' +
    keys.map((key) => `[ -z "\${${key}+set}" ] || printf '%s\\0' "${key}=$${key}"`).join("; ");
  const output = await new Deno.Command("sh", {
    args: ["-c", script, "sh", path],
    stdout: "piped",
  }).output();
  assert.equal(output.code, 0, script);
  const values = new Map<string, string>();
  for (const pair of new TextDecoder().decode(output.stdout).split("\0")) {
    const equals = pair.indexOf("=");
    if (equals > 0) values.set(pair.slice(0, equals), pair.slice(equals + 1));
  }
  return values;
}

Deno.test("parseOsRelease() reads quoted, escaped and repeated values as sh does", async () => {
  await using dir = await tempDir();
  // The shell does not allow blanks around "=": give it the same file without them.
  await Deno.writeTextFile(`${dir.path}/os-release`, FIXTURE.replace("   VERSION = ", "VERSION="));
  const keys = [
    "NAME",
    "PRETTY_NAME",
    "ID",
    "VERSION",
    "VERSION_ID",
    "VARIANT",
    "VARIANT_ID",
    "EMPTY",
  ];
  const expected = await shellValues(`${dir.path}/os-release`, keys);
  assert.equal(expected.get("VERSION"), "1.0 $HOME `x` back\\slash \\n kept");
  assert.deepEqual(parseOsRelease(FIXTURE), expected);
});

Deno.test("osReleaseValue() cuts unquoted text at a space or ';' and keeps qemu-ga's \\' escape", () => {
  assert.equal(osReleaseValue("two words"), "two");
  assert.equal(osReleaseValue("a;b c"), "a");
  assert.equal(osReleaseValue(""), "");
  assert.equal(osReleaseValue(`"it\\'s"`), "it's");
  assert.equal(osReleaseValue(`"unterminated`), "unterminated");
  assert.equal(osReleaseValue(`'single \\n'`), "single \\n");
  assert.equal(osReleaseValue(`"closed" trailing`), "closed");
});

Deno.test("osReleaseInfo() maps the seven os-release keys and leaves absent ones out", () => {
  const info = osReleaseInfo(parseOsRelease(FIXTURE));
  assert.deepEqual(info, {
    id: "fancy",
    name: 'Fancy "Linux"',
    "pretty-name": "Fancy Linux 1.0 (two words; one semicolon)",
    version: "1.0 $HOME `x` back\\slash \\n kept",
    "version-id": "1.0",
    variant: "Server Edition",
    "variant-id": "server-again",
  });
  assert.deepEqual(osReleaseInfo(parseOsRelease("ID=minimal\n")), { id: "minimal" });
});

Deno.test("readOsRelease() takes the first file that exists and is UTF-8", async () => {
  await using dir = await tempDir();
  const latin1 = `${dir.path}/latin1`;
  await Deno.writeFile(latin1, new Uint8Array([...new TextEncoder().encode("NAME=caf"), 0xe9, 10]));
  await Deno.writeTextFile(`${dir.path}/good`, "ID=good\n");
  const missing = `${dir.path}/missing`;
  assert.deepEqual(readOsRelease([missing, latin1, `${dir.path}/good`]), new Map([["ID", "good"]]));
  assert.deepEqual(readOsRelease([missing]), new Map());
});

Deno.test("guestOsInfo() reports uname's release, version and machine", async () => {
  const info = guestOsInfo();
  const uname = async (flag: string): Promise<string> =>
    new TextDecoder().decode((await new Deno.Command("uname", { args: [flag] }).output()).stdout)
      .trim();
  assert.equal(info["kernel-release"], await uname("-r"));
  assert.equal(info["kernel-version"], await uname("-v"));
  assert.equal(info.machine, await uname("-m"));
});

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "agent_test_" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}
