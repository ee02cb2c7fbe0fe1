import assert from "node:assert/strict";
import { getoptLong, type OptionSpec, UsageError } from "../../src/config/getopt.ts";

const SPECS: OptionSpec[] = [
  { name: "verbose", short: "v", long: "verbose", arg: "none" },
  { name: "daemonize", short: "d", long: "daemonize", arg: "none" },
  { name: "dump-conf", short: "D", long: "dump-conf", arg: "none" },
  { name: "debug", long: "debug", arg: "none" },
  { name: "path", short: "p", long: "path", arg: "required" },
  { name: "hook", short: "F", long: "fsfreeze-hook", arg: "optional" },
];

Deno.test("getoptLong() takes attached and separate required arguments", () => {
  const { options } = getoptLong(["-p/a", "-p", "/b", "--path=/c", "--path", "/d"], SPECS);
  assert.deepEqual(options.map((o) => o.value), ["/a", "/b", "/c", "/d"]);
});

Deno.test("getoptLong() gives an optional argument only when attached", () => {
  const { options, positionals } = getoptLong([
    "-F",
    "/ignored",
    "-F/x",
    "--fsfreeze-hook",
    "--fsfreeze-hook=/y",
  ], SPECS);
  assert.deepEqual(options.map((o) => o.value), [undefined, "/x", undefined, "/y"]);
  assert.deepEqual(positionals, ["/ignored"]);
});

Deno.test("getoptLong() expands clusters and unique abbreviations", () => {
  const { options } = getoptLong(["-vd", "-vp/z", "--daem", "--verb"], SPECS);
  assert.deepEqual(options.map((o) => [o.name, o.value]), [
    ["verbose", undefined],
    ["daemonize", undefined],
    ["verbose", undefined],
    ["path", "/z"],
    ["daemonize", undefined],
    ["verbose", undefined],
  ]);
});

Deno.test("getoptLong() rejects unknown, ambiguous and argument-less options like getopt", () => {
  assert.throws(
    () => getoptLong(["--bogus"], SPECS),
    new UsageError("unrecognized option '--bogus'"),
  );
  assert.throws(() => getoptLong(["-x"], SPECS), new UsageError("invalid option -- 'x'"));
  assert.throws(
    () => getoptLong(["-p"], SPECS),
    new UsageError("option requires an argument -- 'p'"),
  );
  assert.throws(() => getoptLong(["--d"], SPECS), UsageError);
  assert.throws(() => getoptLong(["--verbose=1"], SPECS), UsageError);
});

Deno.test("getoptLong() permutes positionals and stops at --", () => {
  const { options, positionals } = getoptLong(["a", "-v", "b", "--", "-d"], SPECS);
  assert.deepEqual(options.map((o) => o.name), ["verbose"]);
  assert.deepEqual(positionals, ["a", "b", "-d"]);
});
