/**
 * Tests of `packaging/install.sh` into a temporary DESTDIR: the tree it installs, that a second
 * run changes nothing, the checks against the build record that `tools/compile.ts` writes, the
 * vsock channel, and what it must leave alone (enabled hooks, an admin's files).
 *
 * Each test builds a source tree in a temporary directory: the real `packaging/` and `hooks/`
 * plus a stub binary with a real build record, because install.sh finds its files beside itself.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  binaryName,
  buildRecord,
  type Channel,
  DEFAULT_INSTALL_PATH,
  DELEGATE_ARGS,
  parseCompileArgs,
  planBuild,
  UNIT_ARGS,
} from "../../tools/compile.ts";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const ARCH = Deno.build.arch as "x86_64" | "aarch64";
const DEVICE_UNIT = "dev-virtio\\x2dports-org.qemu.guest_agent.0.device";

interface BuildFor {
  installPath?: string;
  channel?: Channel;
  configText?: string;
  /** Built with `deno task compile --delegate`. */
  delegate?: boolean;
}

interface Fixture extends AsyncDisposable {
  dir: string;
  src: string;
  root: string;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) await copyDir(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}

/** Writes a stub binary and its build record, as `deno task compile` would. */
async function writeBuild(src: string, build: BuildFor = {}): Promise<void> {
  const args = ["--install-path", build.installPath ?? DEFAULT_INSTALL_PATH];
  if (build.delegate) args.push("--delegate");
  const options = parseCompileArgs([...args, "--channel", build.channel ?? "serial"]);
  const plan = planBuild(options, build.configText);
  const sha = build.configText === undefined ? null : await sha256Hex(build.configText);
  const record = buildRecord(plan, ARCH, options, sha);
  await Deno.mkdir(`${src}/dist`, { recursive: true });
  const binary = `${src}/dist/${binaryName(ARCH)}`;
  await Deno.writeTextFile(binary, "#!/bin/sh\necho stub agent\n", { mode: 0o755 });
  await Deno.writeTextFile(`${binary}.build.json`, JSON.stringify(record, null, 2) + "\n");
}

async function makeFixture(build: BuildFor = {}): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "agent_test_install_" });
  const src = `${dir}/src`;
  await copyDir(`${REPO}/packaging`, `${src}/packaging`);
  await copyDir(`${REPO}/hooks`, `${src}/hooks`);
  // A hook shipped without the .sample suffix is installed as a sample all the same.
  await Deno.writeTextFile(`${src}/hooks/fsfreeze-hook.d/zz-extra.sh`, "#!/bin/sh\nexit 0\n");
  await writeBuild(src, build);
  return {
    dir,
    src,
    root: `${dir}/root`,
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

interface InstallRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function install(fixture: Fixture, args: string[] = []): Promise<InstallRun> {
  const output = await new Deno.Command("sh", {
    args: [`${fixture.src}/packaging/install.sh`, ...args],
    env: { DESTDIR: fixture.root },
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Every path under `root` with its type and permission bits, e.g. `-644 /etc/qemu/x`. */
async function tree(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      const info = await Deno.lstat(path);
      const kind = info.isSymlink ? "l" : info.isDirectory ? "d" : "-";
      const mode = info.isSymlink ? "" : (info.mode! & 0o7777).toString(8);
      found.push(`${kind}${mode} ${path.slice(root.length)}`);
      if (info.isDirectory) await walk(path);
    }
  };
  await walk(root);
  return found.sort((a, b) => a.split(" ")[1]!.localeCompare(b.split(" ")[1]!));
}

/** File contents under `root`, for "a second run changes nothing". */
async function contents(root: string): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  for (const line of await tree(root)) {
    const [kind, path] = line.split(" ") as [string, string];
    if (kind.startsWith("-")) map.set(path, await Deno.readTextFile(`${root}${path}`));
    if (kind === "l") map.set(path, await Deno.readLink(`${root}${path}`));
  }
  return map;
}

function expectedSamples(): string[] {
  return [...Deno.readDirSync(`${REPO}/hooks/fsfreeze-hook.d`)]
    .filter((entry) => entry.isFile)
    .map((entry) => entry.name)
    .concat("zz-extra.sh")
    .map((name) => name.endsWith(".sample") ? name : `${name}.sample`)
    .sort((a, b) => a.localeCompare(b)); // the same order as tree()
}

async function unitExecStart(path: string): Promise<string> {
  const text = await Deno.readTextFile(path);
  return /^ExecStart=(.*)$/m.exec(text)![1]!;
}

Deno.test("install.sh installs the expected tree into DESTDIR, and again without a change", async () => {
  await using fixture = await makeFixture();
  const first = await install(fixture);
  assert.equal(first.code, 0, first.stderr);
  const samples = expectedSamples();
  assert.ok(samples.includes("zz-extra.sh.sample"));
  assert.deepEqual(await tree(fixture.root), [
    "d755 /etc",
    "d755 /etc/qemu",
    "-644 /etc/qemu/fsfreeze-agent.conf.example",
    "-755 /etc/qemu/fsfreeze-hook",
    "d755 /etc/qemu/fsfreeze-hook.d",
    ...samples.map((name) => `-644 /etc/qemu/fsfreeze-hook.d/${name}`),
    "d755 /etc/systemd",
    "d755 /etc/systemd/system",
    "d755 /etc/systemd/system/sockets.target.wants",
    "l /etc/systemd/system/sockets.target.wants/fsfreeze-agent-watchdog.socket",
    "d755 /usr",
    "d755 /usr/local",
    "d755 /usr/local/lib",
    "d755 /usr/local/lib/systemd",
    "d755 /usr/local/lib/systemd/system",
    "-644 /usr/local/lib/systemd/system/fsfreeze-agent-delegate.service",
    "-644 /usr/local/lib/systemd/system/fsfreeze-agent-vsock.service",
    "-644 /usr/local/lib/systemd/system/fsfreeze-agent-watchdog.service",
    "-644 /usr/local/lib/systemd/system/fsfreeze-agent-watchdog.socket",
    "-644 /usr/local/lib/systemd/system/fsfreeze-agent.service",
    "d755 /usr/local/lib/udev",
    "d755 /usr/local/lib/udev/rules.d",
    "-644 /usr/local/lib/udev/rules.d/99-fsfreeze-agent.rules",
    "d755 /usr/local/sbin",
    "-755 /usr/local/sbin/fsfreeze-agent",
  ]);
  assert.equal(
    await Deno.readTextFile(`${fixture.root}/etc/qemu/fsfreeze-hook`),
    await Deno.readTextFile(`${REPO}/hooks/fsfreeze-hook`),
  );
  assert.equal(
    await Deno.readTextFile(`${fixture.root}/usr/local/lib/systemd/system/fsfreeze-agent.service`),
    await Deno.readTextFile(`${REPO}/packaging/fsfreeze-agent.service`),
  );
  const before = await contents(fixture.root);
  const second = await install(fixture);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(second.stderr, "", "a second run has nothing to warn about");
  assert.deepEqual(await contents(fixture.root), before);
});

Deno.test("install.sh --prefix /usr points ExecStart there; the installed units verify", async () => {
  await using fixture = await makeFixture({ installPath: "/usr/sbin/fsfreeze-agent" });
  const result = await install(fixture, ["--prefix", "/usr"]);
  assert.equal(result.code, 0, result.stderr);
  const unitDir = `${fixture.root}/usr/lib/systemd/system`;
  assert.equal(
    await unitExecStart(`${unitDir}/fsfreeze-agent.service`),
    "/usr/sbin/fsfreeze-agent -F -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0",
  );
  assert.ok(await Deno.stat(`${fixture.root}/usr/lib/udev/rules.d/99-fsfreeze-agent.rules`));
  // verify checks that ExecStart's program exists: point it at the DESTDIR copy.
  const check = `${fixture.dir}/verify`;
  await Deno.mkdir(check);
  for (const name of ["fsfreeze-agent.service", "fsfreeze-agent-vsock.service"]) {
    const text = await Deno.readTextFile(`${unitDir}/${name}`);
    const binary = `${fixture.root}/usr/sbin/fsfreeze-agent`;
    await Deno.writeTextFile(
      `${check}/${name}`,
      text.replaceAll("/usr/sbin/fsfreeze-agent", binary),
    );
  }
  const verify = await new Deno.Command("systemd-analyze", {
    args: [
      "verify",
      "--man=no",
      `${check}/fsfreeze-agent.service`,
      `${check}/fsfreeze-agent-vsock.service`,
    ],
  }).output();
  const decoder = new TextDecoder();
  assert.equal(verify.code, 0, decoder.decode(verify.stderr));
  assert.equal(decoder.decode(verify.stderr).trim(), "");
});

Deno.test("install.sh refuses a binary built for another install path, before installing", async () => {
  await using fixture = await makeFixture({ installPath: "/opt/agent/sbin/fsfreeze-agent" });
  const result = await install(fixture);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /built to run as \/opt\/agent\/sbin\/fsfreeze-agent/);
  assert.match(result.stderr, /--install-path \/usr\/local\/sbin\/fsfreeze-agent/);
  assert.match(result.stderr, /--prefix \/opt\/agent/);
  await assert.rejects(Deno.stat(fixture.root), Deno.errors.NotFound);
});

Deno.test("install.sh refuses a channel the binary was not built for", async () => {
  await using fixture = await makeFixture({ channel: "serial" });
  const result = await install(fixture, ["--channel", "vsock"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /built for the serial unit.*\n.*--channel vsock/);
  await assert.rejects(Deno.stat(fixture.root), Deno.errors.NotFound);
});

Deno.test("install.sh --config installs only the config the binary was built for", async () => {
  const site = "[general]\nfsfreeze-scope=/,/srv\n";
  await using fixture = await makeFixture({ configText: site });
  await Deno.writeTextFile(`${fixture.dir}/other.conf`, "[general]\nfsfreeze-scope=/srv\n");
  const refused = await install(fixture, ["--config", `${fixture.dir}/other.conf`]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /was not built for .*other\.conf/);

  await Deno.writeTextFile(`${fixture.dir}/site.conf`, site);
  const result = await install(fixture, ["--config", `${fixture.dir}/site.conf`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await Deno.readTextFile(`${fixture.root}/etc/qemu/qemu-ga.conf`), site);
  const again = await install(fixture); // without --config: the installed one matches the record
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stderr, "");
});

Deno.test("install.sh warns when an existing qemu-ga.conf needs more than the default build", async () => {
  await using fixture = await makeFixture();
  await Deno.mkdir(`${fixture.root}/etc/qemu`, { recursive: true });
  await Deno.writeTextFile(
    `${fixture.root}/etc/qemu/qemu-ga.conf`,
    "[general]\nlogfile=/var/log/qemu-ga.log\n",
  );
  const result = await install(fixture);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /sets keys that change the permissions/);
  assert.equal(
    await Deno.readTextFile(`${fixture.root}/etc/qemu/qemu-ga.conf`),
    "[general]\nlogfile=/var/log/qemu-ga.log\n",
    "an existing config is never replaced without --config",
  );
});

Deno.test("install.sh --channel vsock enables the vsock unit instead of the udev rule, and back", async () => {
  await using fixture = await makeFixture({ channel: "vsock" });
  const link =
    `${fixture.root}/etc/systemd/system/multi-user.target.wants/fsfreeze-agent-vsock.service`;
  const rule = `${fixture.root}/usr/local/lib/udev/rules.d/99-fsfreeze-agent.rules`;
  const vsock = await install(fixture); // the channel comes from the build record
  assert.equal(vsock.code, 0, vsock.stderr);
  assert.equal(
    await Deno.readLink(link),
    "/usr/local/lib/systemd/system/fsfreeze-agent-vsock.service",
  );
  await assert.rejects(Deno.lstat(rule), Deno.errors.NotFound);
  assert.equal((await install(fixture)).code, 0);

  await writeBuild(fixture.src, { channel: "serial" });
  const serial = await install(fixture);
  assert.equal(serial.code, 0, serial.stderr);
  await assert.rejects(Deno.lstat(link), Deno.errors.NotFound);
  assert.ok((await Deno.stat(rule)).isFile);
});

Deno.test("install.sh keeps enabled hooks and saves a differing dispatcher once", async () => {
  await using fixture = await makeFixture();
  const etc = `${fixture.root}/etc/qemu`;
  await Deno.mkdir(`${etc}/fsfreeze-hook.d`, { recursive: true });
  await Deno.writeTextFile(`${etc}/fsfreeze-hook`, "#!/bin/sh\n# the distro's dispatcher\n", {
    mode: 0o755,
  });
  await Deno.writeTextFile(`${etc}/fsfreeze-hook.d/10-app.sh`, "#!/bin/sh\nexit 0\n", {
    mode: 0o750,
  });
  const first = await install(fixture);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /kept the previous .*fsfreeze-hook as .*before-fsfreeze-agent/);
  assert.equal(
    await Deno.readTextFile(`${etc}/fsfreeze-hook.before-fsfreeze-agent`),
    "#!/bin/sh\n# the distro's dispatcher\n",
  );
  assert.equal(
    await Deno.readTextFile(`${etc}/fsfreeze-hook`),
    await Deno.readTextFile(`${REPO}/hooks/fsfreeze-hook`),
  );
  const second = await install(fixture);
  assert.equal(second.code, 0, second.stderr);
  assert.doesNotMatch(second.stderr, /kept the previous/);
  assert.equal(
    await Deno.readTextFile(`${etc}/fsfreeze-hook.before-fsfreeze-agent`),
    "#!/bin/sh\n# the distro's dispatcher\n",
  );
  const app = await Deno.stat(`${etc}/fsfreeze-hook.d/10-app.sh`);
  assert.equal(app.mode! & 0o777, 0o750);
});

Deno.test("install.sh refuses to install without the hook dispatcher the units run", async () => {
  await using fixture = await makeFixture();
  await Deno.remove(`${fixture.src}/hooks/fsfreeze-hook`);
  const result = await install(fixture);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /missing .*hooks\/fsfreeze-hook/);
});

Deno.test("install.sh and the device name in its unit pass their linters", async () => {
  const check = await new Deno.Command("shellcheck", {
    args: ["-s", "sh", `${REPO}/packaging/install.sh`],
  }).output();
  assert.equal(check.code, 0, new TextDecoder().decode(check.stdout));
  const unit = await Deno.readTextFile(`${REPO}/packaging/fsfreeze-agent.service`);
  assert.ok(unit.includes(`BindsTo=${DEVICE_UNIT}`));
});

/** A stand-in for the qemu-guest-agent package's program in the image root. */
async function installQemuGaStub(root: string): Promise<void> {
  await Deno.mkdir(`${root}/usr/sbin`, { recursive: true });
  await Deno.writeTextFile(`${root}/usr/sbin/qemu-ga`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
}

const DROPIN_DIR = "/usr/local/lib/systemd/system";

async function dropin(root: string, unit: string): Promise<string> {
  return await Deno.readTextFile(`${root}${DROPIN_DIR}/${unit}.d/delegate.conf`);
}

Deno.test("install.sh --delegate adds a drop-in to each agent unit: compile's arguments plus the delegate's socket", async () => {
  await using fixture = await makeFixture({ delegate: true });
  await installQemuGaStub(fixture.root);
  const result = await install(fixture); // the build record says: with the delegate
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /serial channel, with the delegate/);
  for (
    const [channel, unit] of [["serial", "fsfreeze-agent.service"], [
      "vsock",
      "fsfreeze-agent-vsock.service",
    ]] as const
  ) {
    const text = await dropin(fixture.root, unit);
    assert.deepEqual(text.match(/^Wants=.*$/m)?.[0], "Wants=fsfreeze-agent-delegate.service");
    assert.deepEqual(
      [...text.matchAll(/^ExecStart=(.*)$/gm)].map((match) => match[1]),
      ["", [DEFAULT_INSTALL_PATH, ...UNIT_ARGS[channel], ...DELEGATE_ARGS].join(" ")],
    );
  }
  assert.equal(
    await Deno.readTextFile(`${fixture.root}${DROPIN_DIR}/fsfreeze-agent-delegate.service`),
    await Deno.readTextFile(`${REPO}/packaging/fsfreeze-agent-delegate.service`),
  );
  const before = await contents(fixture.root);
  const again = await install(fixture);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(await contents(fixture.root), before, "a second run changes nothing");

  const off = await install(fixture, ["--no-delegate"]);
  assert.equal(off.code, 0, off.stderr);
  for (const unit of ["fsfreeze-agent.service", "fsfreeze-agent-vsock.service"]) {
    await assert.rejects(
      Deno.lstat(`${fixture.root}${DROPIN_DIR}/${unit}.d`),
      Deno.errors.NotFound,
    );
  }
});

Deno.test("install.sh --delegate refuses a binary built without it, and an image without qemu-ga", async () => {
  {
    await using fixture = await makeFixture();
    await installQemuGaStub(fixture.root);
    const result = await install(fixture, ["--delegate"]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /built without the delegate.*\n.*deno task compile --delegate/);
    await assert.rejects(Deno.lstat(`${fixture.root}/usr/local`), Deno.errors.NotFound);
  }
  {
    await using fixture = await makeFixture({ delegate: true });
    const result = await install(fixture);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /no .*\/usr\/sbin\/qemu-ga: install qemu-guest-agent first.*--no-delegate/,
    );
    const without = await install(fixture, ["--no-delegate"]);
    assert.equal(without.code, 0, without.stderr);
    await assert.rejects(
      Deno.lstat(`${fixture.root}${DROPIN_DIR}/fsfreeze-agent.service.d`),
      Deno.errors.NotFound,
    );
  }
});

Deno.test("systemd-analyze verify accepts the agent's unit with the delegate's drop-in", async () => {
  await using fixture = await makeFixture({ delegate: true });
  await installQemuGaStub(fixture.root);
  assert.equal((await install(fixture)).code, 0);
  // verify checks that ExecStart's programs exist: point them at the DESTDIR copies.
  const check = `${fixture.dir}/verify`;
  const binary = `${fixture.root}${DEFAULT_INSTALL_PATH}`;
  for (
    const path of [
      "fsfreeze-agent.service",
      "fsfreeze-agent.service.d/delegate.conf",
      "fsfreeze-agent-delegate.service",
    ]
  ) {
    const text = await Deno.readTextFile(`${fixture.root}${DROPIN_DIR}/${path}`);
    await Deno.mkdir(`${check}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeTextFile(`${check}/${path}`, text.replaceAll(DEFAULT_INSTALL_PATH, binary));
  }
  const verify = await new Deno.Command("systemd-analyze", {
    args: [
      "verify",
      "--man=no",
      `${check}/fsfreeze-agent.service`,
      `${check}/fsfreeze-agent-delegate.service`,
    ],
  }).output();
  const decoder = new TextDecoder();
  assert.equal(verify.code, 0, decoder.decode(verify.stderr));
  assert.equal(decoder.decode(verify.stderr).trim(), "");
});
