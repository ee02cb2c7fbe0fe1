/**
 * systemd socket activation (docs/protocol.md, "Channels"): the real agent, started by
 * `systemd-socket-activate` (or by a shell that sets up descriptor 3), serves the socket it
 * inherits and ignores -m/-p; and, in this process, the descriptor checks, the accept machinery
 * and the address decoding, on descriptors Deno made (a vsock listener included: one can be bound
 * here but not connected to, there is no vsock loopback).
 *
 * @module
 */

import assert from "node:assert/strict";
import { readSocketAddress } from "../../src/linux/sockets.ts";
import { silentLogger } from "../../src/log.ts";
import {
  type Activation,
  ActivationError,
  inspectListenFd,
  isAllowedPeer,
  listenFdCount,
  methodOfFamily,
  openActivated,
} from "../../src/transport/activated.ts";
import type { Connection } from "../../src/transport/mod.ts";
import { describePeer } from "../../src/transport/socket.ts";
import { AgentProcess, delay, flagsForArgv, type QgaClient, withTimeout } from "../_util/agent.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** -m/-p that fail if the agent uses them: the directory does not exist. */
const UNUSABLE_CHANNEL = ["-m", "unix-listen", "-p", "/nonexistent-agent-test-dir/qga.sock"];

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "agent_test_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

// ---------------------------------------------------------------------------------------------
// The real agent, socket-activated.

/** How the agent's descriptor 3 is made. */
type Launcher =
  /** `systemd-socket-activate` with these options (`-l`, `-d`); it execs on the first client. */
  | { kind: "systemd"; options: string[] }
  /** `sh` runs `setup` (e.g. `exec 3</dev/null`), then execs the agent with LISTEN_FDS=1. */
  | { kind: "shell"; setup: string; listenPid?: string };

interface ActivatedAgentOptions {
  launcher: Launcher;
  /** Working directory (state, config); the caller removes it. */
  dir: string;
  /** The unix socket clients connect to through `AgentProcess.connect`. */
  socketPath: string;
  /** Replaces {@link UNUSABLE_CHANNEL}. */
  channel?: string[];
  /** More agent arguments. */
  args?: string[];
}

/** Starts the agent under a launcher that hands it descriptor 3, with its generated flags. */
async function spawnActivated(options: ActivatedAgentOptions): Promise<AgentProcess> {
  const { dir, launcher } = options;
  const statedir = `${dir}/state`;
  await Deno.mkdir(statedir, { recursive: true });
  const argv = [
    ...(options.channel ?? UNUSABLE_CHANNEL),
    "-t",
    statedir,
    `--fsfreeze-scope=${dir}/no-mounts-here`,
    "-v",
    ...(options.args ?? []),
  ];
  const qgaConf = `${dir}/qemu-ga.conf`;
  const agent = [
    Deno.execPath(),
    "run",
    ...flagsForArgv(argv, { QGA_CONF: qgaConf }),
    MAIN,
    ...argv,
  ];
  const [program, args] = launcher.kind === "systemd"
    // It passes its child only LISTEN_* and the variables named with -E.
    ? ["systemd-socket-activate", [...launcher.options, "-E", `QGA_CONF=${qgaConf}`, ...agent]]
    : ["sh", [
      "-c",
      `${launcher.setup}; LISTEN_PID=${launcher.listenPid ?? "$$"} LISTEN_FDS=1 exec "$@"`,
      "sh",
      ...agent,
    ]];
  const child = new Deno.Command(program, {
    args,
    env: { QGA_CONF: qgaConf },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  return new AgentProcess(child, dir, options.socketPath, statedir, argv, false);
}

/**
 * Connects once the socket listens (under systemd-socket-activate this starts the agent). The
 * launcher binds before it listens: a connect in between is refused, and is tried again.
 */
async function connectWhenBound(agent: AgentProcess): Promise<QgaClient> {
  const until = Date.now() + 15_000;
  for (;;) {
    if (await Deno.lstat(agent.socketPath).then(() => true, () => false)) {
      try {
        return await agent.connect();
      } catch (err) {
        if (!(err instanceof Deno.errors.ConnectionRefused)) throw err;
      }
    }
    if (agent.exited) throw new Error(`launcher exited early:\n${agent.stderr}`);
    if (Date.now() > until) throw new Error(`socket never listened:\n${agent.stderr}`);
    await delay(20);
  }
}

/** The exit status of an agent expected to stop on its own (a start-up failure). */
function exitStatus(agent: AgentProcess): Promise<Deno.CommandStatus> {
  return withTimeout(agent.status(), 30_000, "agent exit");
}

/** A free TCP port number on 127.0.0.1, for a launcher to bind (UDP and TCP ports are separate). */
function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = probe.addr as Deno.NetAddr;
  probe.close();
  return port;
}

/** Sends one datagram with socat (which is what triggers systemd-socket-activate -d). */
async function sendDatagram(address: string): Promise<void> {
  const socat = new Deno.Command("socat", {
    args: ["-u", "STDIN", address],
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = socat.stdin.getWriter();
  await writer.write(encoder.encode("x"));
  await writer.close();
  await socat.status;
}

Deno.test("activated agent answers on the inherited unix socket and ignores -m/-p", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/activated.sock`;
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    launcher: { kind: "systemd", options: ["-l", socketPath] },
  });
  using client = await connectWhenBound(agent);
  assert.deepEqual(await client.request({ execute: "guest-ping" }), { return: {} });
  const agentLog = agent.stderr.split("\n").filter((line) => line.startsWith("<")).join("\n");
  assert.match(agentLog, /channel opened method=unix-listen fd=3 path=\S*activated\.sock/);
  assert.doesNotMatch(agentLog, /nonexistent-agent-test-dir/);
  // The kernel's view of the inherited socket: made close-on-exec and non-blocking.
  const fdinfo = await Deno.readTextFile(`/proc/${agent.pid}/fdinfo/3`);
  const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(fdinfo)![1]!, 8);
  assert.equal(flags & 0o2000000, 0o2000000, "O_CLOEXEC");
  assert.equal(flags & 0o4000, 0o4000, "O_NONBLOCK");
  client[Symbol.dispose]();
  assert.equal((await agent.stop("SIGTERM")).code, 0);
});

Deno.test("activated agent serves one client at a time and the next after a disconnect", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/activated.sock`;
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    launcher: { kind: "systemd", options: ["-l", socketPath] },
  });
  const first = await connectWhenBound(agent);
  assert.deepEqual(await first.request({ execute: "guest-sync", arguments: { id: 1 } }), {
    return: 1,
  });
  using second = await agent.connect();
  await second.send('{"execute":"guest-sync","arguments":{"id":2}}');
  // Sent after the second client's request, answered first: the agent serves only the first.
  assert.deepEqual(await first.request({ execute: "guest-sync", arguments: { id: 3 } }), {
    return: 3,
  });
  assert.equal((await second.readFor(300)).length, 0, "the second client waits");
  first[Symbol.dispose]();
  assert.equal(await second.readLine(10_000), '{"return": 2}');
  second[Symbol.dispose]();
  using third = await agent.connect();
  assert.deepEqual(await third.request({ execute: "guest-ping" }), { return: {} });
  assert.match(agent.stderr, /client disconnected/);
});

Deno.test("activated agent with --daemonize serves in the foreground and says so", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/activated.sock`;
  const pidfile = `${dir.path}/agent.pid`;
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    args: ["-d", "-f", pidfile],
    launcher: { kind: "systemd", options: ["-l", socketPath] },
  });
  using client = await connectWhenBound(agent);
  assert.deepEqual(await client.request({ execute: "guest-ping" }), { return: {} });
  assert.match(agent.stderr, /socket-activated: --daemonize ignored, serving in the foreground/);
  assert.equal(await Deno.readTextFile(pidfile), `${agent.pid}\n`, "this process is the daemon");
  client[Symbol.dispose]();
  assert.equal((await agent.stop("SIGTERM")).code, 0);
});

Deno.test("activated agent exits 1 with qemu-ga's message when given two sockets", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/a.sock`;
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    launcher: { kind: "systemd", options: ["-l", socketPath, "-l", `${dir.path}/b.sock`] },
  });
  using _trigger = await connectWhenBound(agent);
  assert.equal((await exitStatus(agent)).code, 1);
  assert.match(agent.stderr, /fsfreeze-agent: qemu-ga only supports listening on one socket\n/);
});

Deno.test("activated agent exits 1 with unsupported listen fd type for a UDP socket", async () => {
  await using dir = await tempDir();
  const port = freePort();
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath: `${dir.path}/unused`,
    launcher: { kind: "systemd", options: ["-d", "-l", `127.0.0.1:${port}`] },
  });
  await agent.waitForLog("Listening on");
  await sendDatagram(`UDP-SENDTO:127.0.0.1:${port}`);
  assert.equal((await exitStatus(agent)).code, 1);
  assert.match(
    agent.stderr,
    /fsfreeze-agent: unsupported listen fd type: fd 3 is a socket of family 2/,
  );
});

Deno.test("activated agent exits 1 with unsupported listen fd type for a unix datagram socket", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/dgram.sock`;
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    launcher: { kind: "systemd", options: ["-d", "-l", socketPath] },
  });
  await agent.waitForLog("Listening on");
  await sendDatagram(`UNIX-SENDTO:${socketPath}`);
  assert.equal((await exitStatus(agent)).code, 1);
  assert.match(agent.stderr, /unsupported listen fd type: fd 3 is not a stream socket \(type 2\)/);
});

Deno.test("activated agent exits 1 with unsupported listen fd type when fd 3 is not a socket", async () => {
  await using dir = await tempDir();
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath: `${dir.path}/unused`,
    launcher: { kind: "shell", setup: "exec 3</dev/null" },
  });
  assert.equal((await exitStatus(agent)).code, 1);
  assert.match(agent.stderr, /fsfreeze-agent: unsupported listen fd type: fd 3 is not a socket\n/);
});

Deno.test("agent ignores LISTEN_FDS meant for another process (LISTEN_PID) and uses -m/-p", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/qga.sock`;
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    channel: ["-m", "unix-listen", "-p", socketPath],
    launcher: { kind: "shell", setup: "exec 3</dev/null", listenPid: "1" },
  });
  using client = await connectWhenBound(agent);
  assert.deepEqual(await client.request({ execute: "guest-ping" }), { return: {} });
  assert.match(agent.stderr, /channel opened method=unix-listen path=/);
});

Deno.test("activated agent passes neither LISTEN_* nor the listening socket to its hook", async () => {
  await using dir = await tempDir();
  const socketPath = `${dir.path}/activated.sock`;
  const hook = `${dir.path}/env-hook.sh`;
  const record = `${dir.path}/env-hook.log`;
  await Deno.writeTextFile(
    hook,
    [
      "#!/bin/sh",
      `{ echo "phase=$1"; env | grep '^LISTEN_' || true; ls -l /proc/$$/fd/; } >> '${record}'`,
      "",
    ].join("\n"),
  );
  await Deno.chmod(hook, 0o755);
  await using agent = await spawnActivated({
    dir: dir.path,
    socketPath,
    args: [`-F${hook}`],
    launcher: { kind: "systemd", options: ["-l", socketPath] },
  });
  using client = await connectWhenBound(agent);
  // The scope holds no mount: nothing is frozen, the hook still runs (freeze, then thaw).
  assert.deepEqual(await client.request({ execute: "guest-fsfreeze-freeze" }), { return: 0 });
  const seen = await Deno.readTextFile(record);
  assert.match(seen, /^phase=freeze$/m);
  assert.doesNotMatch(seen, /LISTEN_/);
  assert.doesNotMatch(seen, /socket:/, "the hook inherited a socket");
  client[Symbol.dispose]();
  assert.equal((await agent.stop("SIGTERM")).code, 0);
});

// ---------------------------------------------------------------------------------------------
// In this process: descriptors made by Deno, found through /proc/self/fd.

/** What each open descriptor points at. */
function openFds(): Map<number, string> {
  const fds = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.set(Number(entry.name), Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch {
      // the descriptor readDirSync itself used, closed by now
    }
  }
  return fds;
}

/** A socket's descriptor target (`socket:[inode]`). */
const isSocket = (target: string): boolean => target.startsWith("socket:");

/**
 * Runs `make` and returns what it made with the one descriptor it opened. Only new descriptors
 * that `isMine` accepts count: the runtime opens descriptors of its own at any time.
 */
function withNewFd<T>(
  make: () => T,
  isMine: (target: string) => boolean,
): { value: T; fd: number } {
  const before = openFds();
  const value = make();
  return { value, fd: newDescriptor(before, isMine) };
}

/** The one descriptor opened since `before` whose target `isMine` accepts. */
function newDescriptor(before: Map<number, string>, isMine: (target: string) => boolean): number {
  const opened = [...openFds()].filter(([fd, target]) =>
    before.get(fd) !== target && isMine(target)
  );
  assert.equal(opened.length, 1, `expected one new descriptor, got ${JSON.stringify(opened)}`);
  return opened[0]![0];
}

/** A descriptor number that is not open (above every open one, with room for the runtime's). */
function unusedDescriptor(): number {
  return Math.max(...openFds().keys()) + 1000;
}

function isActivationError(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof ActivationError && pattern.test(err.message);
}

Deno.test("listenFdCount() follows sd_listen_fds: only LISTEN_FDS meant for this pid count", () => {
  assert.equal(listenFdCount({ LISTEN_FDS: "1", LISTEN_PID: "4242" }, 4242), 1);
  assert.equal(listenFdCount({ LISTEN_FDS: "2", LISTEN_PID: "4242" }, 4242), 2);
  assert.equal(listenFdCount({ LISTEN_FDS: "0", LISTEN_PID: "4242" }, 4242), 0);
  assert.equal(listenFdCount({ LISTEN_FDS: "1", LISTEN_PID: "4243" }, 4242), 0);
  assert.equal(listenFdCount({ LISTEN_FDS: "1" }, 4242), 0);
  assert.equal(listenFdCount({ LISTEN_PID: "4242" }, 4242), 0);
  assert.equal(listenFdCount({ LISTEN_FDS: "1", LISTEN_PID: "42x" }, 42), 0);
  assert.throws(
    () => listenFdCount({ LISTEN_FDS: "one", LISTEN_PID: "4242" }, 4242),
    isActivationError(/invalid LISTEN_FDS: "one"/),
  );
});

Deno.test("inspectListenFd() takes a listening unix socket as unix-listen, with its path", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/listen.sock`;
  const { value: listener, fd } = withNewFd(
    () => Deno.listen({ transport: "unix", path }),
    isSocket,
  );
  try {
    assert.deepEqual(inspectListenFd(fd), {
      fd,
      method: "unix-listen",
      address: { transport: "unix", path },
    });
  } finally {
    listener.close();
  }
});

Deno.test("inspectListenFd() takes a listening vsock socket as vsock-listen, with its CID and port", () => {
  const port = 40000 + Math.floor(Math.random() * 20000);
  const { value: listener, fd } = withNewFd(
    () => Deno.listen({ transport: "vsock", cid: -1, port }),
    isSocket,
  );
  try {
    // Deno bound it: the port decoded from struct sockaddr_vm must be the one asked for.
    assert.deepEqual(inspectListenFd(fd), {
      fd,
      method: "vsock-listen",
      address: { transport: "vsock", cid: 0xffffffff, port },
    });
  } finally {
    listener.close();
  }
});

Deno.test("inspectListenFd() refuses TCP, a connected stream, a file and a closed descriptor", async () => {
  await using dir = await tempDir();
  const tcp = withNewFd(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }), isSocket);
  const path = `${dir.path}/listen.sock`;
  const unix = Deno.listen({ transport: "unix", path });
  const file = withNewFd(
    () => Deno.openSync(`${dir.path}/file`, { create: true, write: true }),
    (target) => target === `${Deno.realPathSync(dir.path)}/file`,
  );
  try {
    assert.throws(
      () => inspectListenFd(tcp.fd),
      isActivationError(/^unsupported listen fd type: fd \d+ is a socket of family 2$/),
    );
    assert.throws(
      () => inspectListenFd(file.fd),
      isActivationError(/^unsupported listen fd type: fd \d+ is not a socket$/),
    );
    const connected = await connectedFd(path, unix);
    try {
      assert.throws(
        () => inspectListenFd(connected.fd),
        isActivationError(/^unsupported listen fd type: fd \d+ is not listening/),
      );
    } finally {
      connected.value.close();
    }
    file.value.close();
    assert.throws(
      () => inspectListenFd(unusedDescriptor()),
      isActivationError(/^cannot use the socket passed by systemd \(fd \d+\): .*EBADF/),
    );
  } finally {
    tcp.value.close();
    unix.close();
  }
});

/** A connected unix stream socket (the client end) and its descriptor. */
async function connectedFd(
  path: string,
  listener: Deno.Listener,
): Promise<{ value: Deno.Conn; fd: number }> {
  const before = openFds();
  const [conn, accepted] = await Promise.all([
    Deno.connect({ transport: "unix", path }),
    listener.accept(),
  ]);
  accepted.close();
  return { value: conn, fd: newDescriptor(before, isSocket) };
}

/** A Deno-made unix listener served by the activated transport (which never closes it). */
function activatedUnixTransport(
  dir: string,
): { path: string; transport: ReturnType<typeof openActivated> } & AsyncDisposable {
  const path = `${dir}/listen.sock`;
  const { value: listener, fd } = withNewFd(
    () => Deno.listen({ transport: "unix", path }),
    isSocket,
  );
  const activation: Activation = inspectListenFd(fd);
  const transport = openActivated(activation, [2], silentLogger);
  return {
    path,
    transport,
    [Symbol.asyncDispose]: async () => {
      await withTimeout(transport[Symbol.asyncDispose](), 30_000, "transport close");
      listener.close();
    },
  };
}

async function readText(connection: Connection): Promise<string> {
  const result = await withTimeout(connection.read(), 30_000, "read");
  if (result.type !== "data") throw new Error(`expected data, got ${result.type}`);
  return decoder.decode(result.bytes);
}

async function clientRead(conn: Deno.Conn): Promise<string | null> {
  const buffer = new Uint8Array(256);
  const count = await withTimeout(conn.read(buffer), 30_000, "client read");
  return count === null ? null : decoder.decode(buffer.subarray(0, count));
}

Deno.test("openActivated() hands out clients in turn; a client's end of file reads as closed", async () => {
  await using dir = await tempDir();
  await using served = activatedUnixTransport(dir.path);
  for (const word of ["first", "second"]) {
    using client = await Deno.connect({ transport: "unix", path: served.path });
    const connection = await withTimeout(served.transport.accept(), 30_000, "accept");
    assert.ok(connection);
    assert.equal(connection.peer, "unix");
    await client.write(encoder.encode(word));
    assert.equal(await readText(connection), word);
    await connection.write(encoder.encode(`${word} back`));
    assert.equal(await clientRead(client), `${word} back`);
    client.close();
    assert.deepEqual(await withTimeout(connection.read(), 30_000, "read"), { type: "closed" });
    assert.deepEqual(await connection.read(), { type: "closed" }, "and stays closed");
    connection.close();
  }
});

Deno.test("close() ends a pending accept() with null and closes the client being served", async () => {
  await using dir = await tempDir();
  await using served = activatedUnixTransport(dir.path);
  using client = await Deno.connect({ transport: "unix", path: served.path });
  const connection = await withTimeout(served.transport.accept(), 30_000, "accept");
  assert.ok(connection);
  const pendingRead = connection.read();
  served.transport.close();
  assert.deepEqual(await withTimeout(pendingRead, 30_000, "read after close"), { type: "closed" });
  assert.equal(await clientRead(client), null, "the client sees end of file");
  assert.equal(await served.transport.accept(), null);

  await using dir2 = await tempDir();
  await using idle = activatedUnixTransport(dir2.path);
  const waiting = idle.transport.accept();
  await delay(50); // let the accept loop wait in poll(2)
  idle.transport.close();
  assert.equal(await withTimeout(waiting, 30_000, "accept after close"), null);
});

Deno.test("write() to a client that has left drops the reply without failing", async () => {
  await using dir = await tempDir();
  await using served = activatedUnixTransport(dir.path);
  const client = await Deno.connect({ transport: "unix", path: served.path });
  const connection = await withTimeout(served.transport.accept(), 30_000, "accept");
  assert.ok(connection);
  client.close();
  // Larger than a socket buffer: the kernel reports EPIPE or ECONNRESET, not a partial success.
  await withTimeout(connection.write(new Uint8Array(1 << 20)), 30_000, "write");
  assert.deepEqual(await withTimeout(connection.read(), 30_000, "read"), { type: "closed" });
  connection.close();
});

// ---------------------------------------------------------------------------------------------
// Pure parts.

Deno.test("methodOfFamily() maps AF_UNIX and AF_VSOCK to their listen methods only", () => {
  assert.equal(methodOfFamily(1), "unix-listen");
  assert.equal(methodOfFamily(40), "vsock-listen");
  assert.equal(methodOfFamily(2), undefined);
  assert.equal(methodOfFamily(10), undefined);
});

Deno.test("isAllowedPeer() admits any unix client and only the configured vsock CIDs", () => {
  assert.equal(isAllowedPeer({ transport: "unix", path: "" }, [2]), true);
  assert.equal(isAllowedPeer({ transport: "vsock", cid: 2, port: 1024 }, [2]), true);
  assert.equal(isAllowedPeer({ transport: "vsock", cid: 3, port: 1024 }, [2]), false);
  assert.equal(isAllowedPeer({ transport: "vsock", cid: 1, port: 1024 }, [2]), false);
  assert.equal(isAllowedPeer({ transport: "vsock", cid: 3, port: 1024 }, [2, 3]), true);
  assert.equal(isAllowedPeer({ transport: "other", family: 2 }, [2]), false);
});

Deno.test("readSocketAddress() decodes sockaddr_vm and named, abstract and unnamed sockaddr_un", () => {
  const vsock = new Uint8Array(16);
  const view = new DataView(vsock.buffer);
  view.setUint16(0, 40, true);
  view.setUint32(4, 1234, true);
  view.setUint32(8, 2, true);
  const peer = readSocketAddress(vsock, 16);
  assert.deepEqual(peer, { transport: "vsock", cid: 2, port: 1234 });
  assert.equal(describePeer(peer), "vsock:2:1234");
  const unix = (path: Uint8Array): Uint8Array => new Uint8Array([1, 0, ...path]);
  const named = encoder.encode("/run/qga.sock\0");
  assert.deepEqual(readSocketAddress(unix(named), 2 + named.length), {
    transport: "unix",
    path: "/run/qga.sock",
  });
  const abstract = new Uint8Array([0, ...encoder.encode("qga")]);
  assert.deepEqual(readSocketAddress(unix(abstract), 2 + abstract.length), {
    transport: "unix",
    path: "@qga",
  });
  assert.deepEqual(readSocketAddress(unix(new Uint8Array()), 2), { transport: "unix", path: "" });
  assert.equal(describePeer({ transport: "unix", path: "" }), "unix");
  assert.deepEqual(readSocketAddress(new Uint8Array([2, 0, 0, 0]), 4), {
    transport: "other",
    family: 2,
  });
});
