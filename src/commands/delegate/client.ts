/**
 * The agent's session with its delegate (docs/design.md #38): one connection, kept open between
 * commands, on which each operation runs in turn under its own deadline. A session starts with
 * 0xFF and the delegate's own `guest-sync-delimited` (qemu-ga keeps one parser across its clients,
 * so whatever a dropped connection left in it is flushed), then `guest-info` for its command
 * list. After a request that timed out or got garbage the session is out of step: the next
 * operation synchronises it again, skipping every line until the 0xFF-delimited reply to a fresh
 * sync id; a session that cannot be brought back in step is dropped, and the next operation
 * connects again.
 *
 * How to connect is passed in (a unix socket in production, a fake delegate in tests); what is
 * forwarded, and the error texts a host sees, are mod.ts's.
 *
 * @module
 */

import type { ForwardedCommand } from "../../protocol/dispatch.ts";
import type { JsonValue } from "../../protocol/json.ts";
import type { Connection } from "../../transport/mod.ts";
import { type Line, LineError, LineReader } from "./_lines.ts";
import {
  checkReply,
  excerpt,
  GUEST_INFO_REQUEST,
  isSyncReply,
  listedCommands,
  newSyncId,
  syncRequest,
} from "./_replies.ts";

/** Opens a connection to the delegate. */
export type Connect = () => Promise<Connection>;

/** What went wrong with the delegate. */
export type DelegateFailure = "unreachable" | "timeout" | "closed" | "invalid";

/** The delegate could not serve an operation; the message completes "the delegate …". */
export class DelegateError extends Error {
  override name = "DelegateError";
  readonly failure: DelegateFailure;

  constructor(failure: DelegateFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.failure = failure;
  }
}

/** Options of {@link DelegateClient}. */
export interface DelegateClientOptions {
  connect: Connect;
  /** How long one operation (connecting and synchronising included) may take. */
  timeoutMs: number;
}

interface Session {
  connection: Connection;
  lines: LineReader;
  /** Every line the delegate sent so far has been read: the next one answers the next request. */
  inStep: boolean;
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const RESYNC_BYTE = new Uint8Array([0xff]);

/** One session with the delegate, opened when needed; operations run one at a time. */
export class DelegateClient {
  readonly #connect: Connect;
  readonly #timeoutMs: number;
  #session: Session | undefined;
  #commands: ForwardedCommand[] | undefined;
  #turn: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: DelegateClientOptions) {
    this.#connect = options.connect;
    this.#timeoutMs = options.timeoutMs;
  }

  /** The delegate's commands as it listed them when the session last started; none before. */
  get commands(): readonly ForwardedCommand[] | undefined {
    return this.#commands;
  }

  /**
   * Makes sure a session is open and in step.
   * @throws {DelegateError}
   */
  open(): Promise<void> {
    return this.#exclusive(async (deadline) => {
      await this.#ready(deadline);
    });
  }

  /**
   * Sends `request` (the JSON text of a whole request whose `id` is `id`) and resolves the reply
   * line, `\n` included. With `replyExpected: false` (a command that sends no reply when it
   * succeeds) resolves `undefined` when it succeeded or did not answer in time.
   * @throws {DelegateError}
   */
  call(
    request: string,
    id: JsonValue | undefined,
    replyExpected: boolean,
  ): Promise<string | undefined> {
    return this.#exclusive(async (deadline) => {
      const session = await this.#ready(deadline);
      if (!replyExpected) return await this.#callWithoutReply(session, request, id, deadline);
      await this.#send(session, [request], deadline);
      return this.#reply(await this.#next(session, deadline), id, session);
    });
  }

  /** Ends the session; later operations fail. */
  close(): void {
    this.#closed = true;
    this.#drop();
  }

  /**
   * Runs `operation` after the ones before it, with a deadline that starts at its turn; then
   * watches the session while it is idle.
   */
  #exclusive<T>(operation: (deadline: number) => Promise<T>): Promise<T> {
    const run = this.#turn.then(() => {
      if (this.#closed) throw new DelegateError("unreachable", "is no longer used");
      return operation(performance.now() + this.#timeoutMs);
    }).finally(() => this.#session?.lines.watch());
    this.#turn = run.catch(() => {});
    return run;
  }

  /** The open session in step: synchronised again, or a new one; one that fails is dropped. */
  async #ready(deadline: number): Promise<Session> {
    // A delegate that restarted closed the connection while it was idle: connect again.
    if (this.#session?.lines.ended) this.#drop();
    const current = this.#session;
    if (current?.inStep) return current;
    try {
      if (current === undefined) return await this.#start(deadline);
      await this.#sync(current, deadline, false);
      return current;
    } catch (err) {
      this.#drop();
      throw err;
    }
  }

  /** Connects, synchronises (after 0xFF) and reads the delegate's command list. */
  async #start(deadline: number): Promise<Session> {
    const connection = await this.#open(deadline);
    const session = { connection, lines: new LineReader(connection), inStep: false };
    this.#session = session;
    await this.#sync(session, deadline, true);
    await this.#send(session, [GUEST_INFO_REQUEST], deadline);
    const line = await this.#next(session, deadline);
    const checked = line.delimited ? undefined : checkReply(line.bytes, undefined);
    try {
      if (!checked?.ok) throw new TypeError("not a reply");
      this.#commands = listedCommands(checked.reply);
    } catch (err) {
      throw new DelegateError(
        "invalid",
        `sent an invalid reply to guest-info: ${(err as Error).message}: ${excerpt(line.bytes)}`,
      );
    }
    session.inStep = true;
    return session;
  }

  async #open(deadline: number): Promise<Connection> {
    const connecting = this.#connect();
    try {
      return await beforeDeadline(connecting, deadline, this.#late("accept the connection"));
    } catch (err) {
      // A connection that comes after the deadline is not used.
      connecting.then((late) => late.close(), () => {});
      if (err instanceof DelegateError) throw err;
      throw new DelegateError("unreachable", `is not reachable: ${reason(err)}`, { cause: err });
    }
  }

  /**
   * Sends a `guest-sync-delimited` with a fresh id (after 0xFF when `reset`) and skips every line
   * until its reply: whatever came before answered requests given up on.
   */
  async #sync(session: Session, deadline: number, reset: boolean): Promise<void> {
    const id = newSyncId();
    const request = syncRequest(id);
    await this.#send(session, reset ? [RESYNC_BYTE, request] : [request], deadline);
    let line: Line;
    do line = await this.#next(session, deadline); while (
      !line.delimited || !isSyncReply(line.bytes, id)
    );
    session.inStep = true;
  }

  /**
   * A command with no reply on success (docs/design.md #39): a `guest-sync-delimited` follows it
   * in the same write. The delegate runs one request after the other, so the sync's reply alone
   * means success; a line before it is the command's own reply (an error). No answer in time is
   * taken as success: a suspended guest answers when it wakes up, and the next operation
   * synchronises first.
   */
  async #callWithoutReply(
    session: Session,
    request: string,
    id: JsonValue | undefined,
    deadline: number,
  ): Promise<string | undefined> {
    const syncId = newSyncId();
    await this.#send(session, [request, syncRequest(syncId)], deadline);
    let line: Line;
    try {
      line = await this.#next(session, deadline);
    } catch (err) {
      if (err instanceof DelegateError && err.failure === "timeout") return undefined;
      throw err;
    }
    if (line.delimited && isSyncReply(line.bytes, syncId)) {
      session.inStep = true;
      return undefined;
    }
    const reply = this.#reply(line, id, session);
    session.inStep = false;
    try {
      const after = await this.#next(session, deadline);
      session.inStep = after.delimited && isSyncReply(after.bytes, syncId);
    } catch {
      // Out of step: the next operation synchronises (or reconnects) first.
    }
    return reply;
  }

  /** The reply line to a request with `id`, checked; garbage leaves the session out of step. */
  #reply(line: Line, id: JsonValue | undefined, session: Session): string {
    const checked = line.delimited
      ? { ok: false as const, why: "an unexpected guest-sync-delimited reply" }
      : checkReply(line.bytes, id);
    let text: string | undefined;
    if (checked.ok) {
      try {
        text = strictDecoder.decode(line.bytes);
      } catch {
        // not UTF-8: garbage too
      }
    }
    if (text === undefined) {
      session.inStep = false;
      const why = checked.ok ? "not UTF-8" : checked.why;
      throw new DelegateError("invalid", `sent an invalid reply (${why}): ${excerpt(line.bytes)}`);
    }
    session.inStep = true;
    return text;
  }

  /** Writes `parts` in one write; a write cut short by the deadline drops the session. */
  async #send(session: Session, parts: (string | Uint8Array)[], deadline: number): Promise<void> {
    session.inStep = false;
    const writing = session.connection.write(concat(parts));
    writing.catch(() => {});
    try {
      await beforeDeadline(writing, deadline, this.#late("take the request"));
    } catch (err) {
      this.#drop();
      if (err instanceof DelegateError) throw err;
      throw new DelegateError("closed", "closed the connection", { cause: err });
    }
  }

  /** The next line; a connection that closed or sent an endless line is dropped. */
  async #next(session: Session, deadline: number): Promise<Line> {
    try {
      return await session.lines.next(deadline);
    } catch (err) {
      if (!(err instanceof LineError)) throw err;
      if (err.failure === "timeout") {
        throw new DelegateError("timeout", this.#late("answer"));
      }
      this.#drop();
      if (err.failure === "closed") throw new DelegateError("closed", "closed the connection");
      throw new DelegateError("invalid", `sent ${err.message}`);
    }
  }

  #drop(): void {
    this.#session?.connection.close();
    this.#session = undefined;
  }

  /** "did not <what> within N s". */
  #late(what: string): string {
    return `did not ${what} within ${Math.round(this.#timeoutMs / 100) / 10} s`;
  }
}

/** `promise`, or a timeout {@link DelegateError} saying `message` once `deadline` has passed. */
async function beforeDeadline<T>(
  promise: Promise<T>,
  deadline: number,
  message: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new DelegateError("timeout", message)),
      Math.max(0, deadline - performance.now()),
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function concat(parts: (string | Uint8Array)[]): Uint8Array {
  const encoded = parts.map((part) => typeof part === "string" ? encoder.encode(part) : part);
  const out = new Uint8Array(encoded.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of encoded) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Why a connect failed, without Deno's "(os error N)". */
function reason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\(os error \d+\)$/, "");
}
