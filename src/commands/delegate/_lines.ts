/**
 * The delegate's output as reply lines, each read under a deadline. qemu-ga writes every reply as
 * one line of pure ASCII ending in `\n`, and only a `guest-sync-delimited` reply is preceded by
 * 0xFF (docs/protocol.md), so a line is the exact bytes of one reply.
 *
 * Nothing here knows what a reply means: that is `_replies.ts`.
 *
 * @module
 */

import type { Connection, ReadResult } from "../../transport/mod.ts";

/** One line of the delegate's output. */
export interface Line {
  /** The line with its `\n`, without a leading 0xFF. */
  bytes: Uint8Array;
  /** It was preceded by 0xFF: the reply to a `guest-sync-delimited`. */
  delimited: boolean;
}

/** Why no line came. */
export type LineFailure = "timeout" | "closed" | "too-long";

/** No line: the deadline passed, the delegate closed the connection, or a line grew too long. */
export class LineError extends Error {
  override name = "LineError";
  readonly failure: LineFailure;

  constructor(failure: LineFailure, message: string) {
    super(message);
    this.failure = failure;
  }
}

/**
 * The longest line accepted: qemu-ga's largest reply is a `guest-file-read` of 48 MiB, 64 MiB in
 * base64, plus its envelope.
 */
export const MAX_LINE_BYTES = 65 * 1024 * 1024;

const NEWLINE = 0x0a;
const DELIMITER = 0xff;

/** Splits a connection's bytes into lines; a read still pending at a deadline is kept. */
export class LineReader {
  readonly #connection: Connection;
  readonly #maxBytes: number;
  /** Bytes of an incomplete line, in arrival order (only the last can hold the next newline). */
  #chunks: Uint8Array[] = [];
  #size = 0;
  #pending: Promise<ReadResult> | undefined;
  #ended = false;

  constructor(connection: Connection, maxBytes: number = MAX_LINE_BYTES) {
    this.#connection = connection;
    this.#maxBytes = maxBytes;
  }

  /** Whether the connection has closed (as far as a read has seen). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Keeps a read pending between exchanges, so that a connection the delegate closed while idle
   * (a restart) is seen as {@link ended} before the next request is written to it.
   */
  watch(): void {
    this.#pending ??= this.#startRead();
  }

  /**
   * The next line, waiting until `deadline` (a `performance.now()` time) at most.
   * @throws {LineError}
   */
  async next(deadline: number): Promise<Line> {
    while (true) {
      const line = this.#take();
      if (line !== undefined) return line;
      if (this.#size > this.#maxBytes) {
        throw new LineError("too-long", `a reply longer than ${this.#maxBytes} bytes`);
      }
      const result = await this.#read(deadline);
      if (result.type !== "data") throw new LineError("closed", "closed the connection");
      if (result.bytes.length > 0) {
        this.#chunks.push(result.bytes);
        this.#size += result.bytes.length;
      }
    }
  }

  /** A complete line from the buffered bytes, if there is one. */
  #take(): Line | undefined {
    const last = this.#chunks.at(-1);
    const end = last?.indexOf(NEWLINE) ?? -1;
    if (last === undefined || end === -1) return undefined;
    const before = this.#size - last.length;
    const bytes = joinChunks(this.#chunks, before + end + 1);
    const rest = last.subarray(end + 1);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#size = rest.length;
    const delimited = bytes[0] === DELIMITER;
    return { bytes: delimited ? bytes.subarray(1) : bytes, delimited };
  }

  /** One read, raced against the deadline. */
  async #read(deadline: number): Promise<ReadResult> {
    this.#pending ??= this.#startRead();
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new LineError("timeout", "did not answer in time");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), remaining);
    });
    try {
      const result = await Promise.race([this.#pending, timeout]);
      if (result === "timeout") throw new LineError("timeout", "did not answer in time");
      this.#pending = undefined;
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A read whose end of connection is noted, and whose failure is never unhandled. */
  #startRead(): Promise<ReadResult> {
    const read = this.#connection.read();
    read.then((result) => {
      if (result.type !== "data") this.#ended = true;
    }, () => {
      this.#ended = true;
    });
    return read;
  }
}

/** The first `length` bytes of `chunks`, in one array. */
function joinChunks(chunks: readonly Uint8Array[], length: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!.subarray(0, length);
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, length - offset);
    out.set(part, offset);
    offset += part.length;
    if (offset === length) break;
  }
  return out;
}
