/**
 * The agent's main loop: open the transport, take connections one at a time, turn bytes into
 * messages, dispatch each in order and write one reply line per request.
 *
 * @module
 */

import type { Config } from "./config/mod.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { type DispatchContext, dispatchMessage, parseErrorLine } from "./protocol/dispatch.ts";
import { JsonMessageParser } from "./protocol/json.ts";
import type { Registry } from "./protocol/registry.ts";
import { type Connection, openTransport, type Transport } from "./transport/mod.ts";
import { sleep } from "./sleep.ts";
import { MemoryReclaimer } from "./memory.ts";

/** qemu-ga's `QGA_RETRY_INTERVAL`: seconds between channel re-opens with `--retry-path`. */
export const RETRY_INTERVAL_MS = 5000;

const encoder = new TextEncoder();
/** guest-sync-delimited's reply is preceded by 0xFF, in the same write as the line. */
const SYNC_DELIMITER = 0xff;

/** What {@link runAgent} needs. */
export interface AgentDeps<Ctx extends DispatchContext> {
  config: Config;
  log: Logger;
  registry: Registry<Ctx>;
  ctx: Ctx;
  /** Aborting stops the agent: the transport is closed and `runAgent` returns. */
  signal: AbortSignal;
  /** Opens the transport (tests may pass their own). */
  openTransport?: (config: Config, log: Logger) => Promise<Transport>;
  /** Work handlers leave for after their reply (the freeze service's report save). */
  afterReply?: AfterReply;
}

/**
 * Work a handler leaves for after its reply, so the host's answer never waits for it (a thaw's
 * cycle report): it runs as soon as the reply is written — before the next request is read —
 * or, outside a request (a thaw at SIGTERM or at the deadline), right after the current step.
 */
export class AfterReply {
  #answering = false;
  #pending: (() => void)[] = [];
  #nextReply: (() => void)[] = [];

  /** Runs `work` after the reply in progress (or the current step); resolves once it ran. */
  schedule(work: () => void): Promise<void> {
    if (!this.#answering) return Promise.resolve().then(work);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#pending.push(() => {
      try {
        work();
        resolve();
      } catch (err) {
        reject(err);
      }
    });
    return promise;
  }

  /** Runs `work` once the next reply is written, however long that takes. */
  afterNextReply(work: () => void): void {
    this.#nextReply.push(work);
  }

  /** A request is being answered: work scheduled now waits for {@link replied}. */
  answering(): void {
    this.#answering = true;
  }

  /** Its reply is written (or dropped): the work it left runs now. */
  replied(): void {
    this.#answering = false;
    if (this.#pending.length > 0) { for (const work of this.#pending.splice(0)) work(); }
    if (this.#nextReply.length > 0) { for (const work of this.#nextReply.splice(0)) work(); }
  }
}

/** Serves until `signal` aborts. Throws when the channel fails and `--retry-path` is off. */
export async function runAgent<Ctx extends DispatchContext>(deps: AgentDeps<Ctx>): Promise<void> {
  const open = deps.openTransport ?? openTransport;
  while (!deps.signal.aborted) {
    let transport: Transport;
    try {
      transport = await open(deps.config, deps.log);
    } catch (err) {
      if (!deps.config.retryPath) throw err;
      deps.log.warn("failed to initialize guest agent channel, will retry", {
        error: errorMessage(err),
      });
      await sleep(RETRY_INTERVAL_MS, deps.signal);
      continue;
    }
    try {
      await serveTransport(transport, deps);
      return;
    } catch (err) {
      if (deps.signal.aborted) return; // stopping: a connection torn down mid-reply is expected
      if (!deps.config.retryPath) throw err;
      deps.log.warn("agent stopped unexpectedly, restarting...", { error: errorMessage(err) });
      await sleep(RETRY_INTERVAL_MS, deps.signal);
    } finally {
      transport.close();
    }
  }
}

async function serveTransport<Ctx extends DispatchContext>(
  transport: Transport,
  deps: AgentDeps<Ctx>,
): Promise<void> {
  // Stopping closes the client too: a host may keep its connection open forever. A command in
  // progress (a freeze running its hook) still finishes before serveConnection returns.
  let active: Connection | undefined;
  // Bursts are counted across connections: some hosts connect once per command.
  using memory = new MemoryReclaimer();
  const stop = (): void => {
    transport.close();
    active?.close();
  };
  deps.signal.addEventListener("abort", stop, { once: true });
  try {
    while (!deps.signal.aborted) {
      const connection = await transport.accept();
      if (!connection) return;
      active = connection;
      deps.log.debug("client connected", { peer: connection.peer });
      try {
        await serveConnection(connection, deps, memory);
      } finally {
        active = undefined;
        connection.close();
        deps.log.debug("client disconnected", { peer: connection.peer });
      }
    }
  } finally {
    deps.signal.removeEventListener("abort", stop);
  }
}

/** Reads, parses and answers one connection until it closes. */
export async function serveConnection<Ctx extends DispatchContext>(
  connection: Connection,
  deps: Pick<AgentDeps<Ctx>, "log" | "registry" | "ctx" | "afterReply">,
  memory: MemoryReclaimer = new MemoryReclaimer(),
): Promise<void> {
  const afterReply = deps.afterReply ?? new AfterReply();
  // A fresh parser per connection: a partial message left by a previous client is not ours.
  const parser = new JsonMessageParser();
  while (true) {
    const result = await connection.read();
    if (result.type === "closed") return;
    if (result.type === "hangup") {
      parser.reset();
      deps.log.debug("host disconnected; partial input dropped");
      continue;
    }
    const events = parser.feed(result.bytes);
    memory.received(result.bytes.length, events.length);
    for (const event of events) {
      if (event.type === "error") {
        deps.log.debug("bad input", { error: event.desc });
        if (!await send(connection, encoder.encode(parseErrorLine(event.desc)), deps.log)) return;
        continue;
      }
      afterReply.answering();
      try {
        const started = performance.now();
        const reply = await dispatchMessage(event.value, deps.registry, deps.ctx);
        const ms = Math.round((performance.now() - started) * 1000) / 1000;
        deps.log.debug("command done", { cmd: reply.command ?? "(invalid)", ms });
        if (reply.line === undefined) continue;
        if (!await send(connection, replyBytes(reply.line, reply.delimited), deps.log)) return;
      } finally {
        afterReply.replied();
      }
    }
  }
}

/** Writes a reply; false when the client is gone (the reply is dropped, the agent carries on). */
async function send(connection: Connection, bytes: Uint8Array, log: Logger): Promise<boolean> {
  try {
    await connection.write(bytes);
    return true;
  } catch (err) {
    log.debug("client gone; reply dropped", { peer: connection.peer, error: errorMessage(err) });
    return false;
  }
}

function replyBytes(line: string, delimited: boolean): Uint8Array {
  const encoded = encoder.encode(line);
  if (!delimited) return encoded;
  const bytes = new Uint8Array(encoded.length + 1);
  bytes[0] = SYNC_DELIMITER;
  bytes.set(encoded, 1);
  return bytes;
}
