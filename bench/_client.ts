/**
 * The bench's QMP client: one unix-socket connection, requests written whole, replies read as
 * newline-terminated lines. It does as little work per request as it can (no decoding on the
 * timed path), since its own cost is part of every round trip it measures, for both agents alike.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = 0x0a;

/** One connection to an agent. */
export class BenchClient implements Disposable {
  readonly #conn: Deno.UnixConn;
  readonly #chunk = new Uint8Array(1 << 16);
  /** Bytes received after the last line handed out. */
  #pending: Uint8Array = new Uint8Array(0);

  constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  /** Connects to the socket at `path`. */
  static async connect(path: string): Promise<BenchClient> {
    return new BenchClient(await Deno.connect({ transport: "unix", path }));
  }

  /** Writes all of `bytes`. */
  async write(bytes: Uint8Array): Promise<void> {
    for (let offset = 0; offset < bytes.length;) {
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /**
   * Waits until `count` more reply lines have arrived, without decoding them (the timed path);
   * bytes after the last of them are kept for the next read.
   */
  async skipLines(count: number): Promise<void> {
    let remaining = count;
    let data = this.#pending;
    this.#pending = new Uint8Array(0);
    for (;;) {
      let at = 0;
      while (remaining > 0) {
        const newline = data.indexOf(NEWLINE, at);
        if (newline === -1) break;
        remaining--;
        at = newline + 1;
      }
      if (remaining === 0) {
        if (at < data.length) this.#pending = data.slice(at);
        return;
      }
      data = await this.#readMore(new Uint8Array(0));
    }
  }

  /** Reads the next reply line, decoded (without its newline and any leading 0xFF). */
  async readLine(): Promise<string> {
    let data = this.#pending;
    for (;;) {
      const newline = data.indexOf(NEWLINE);
      if (newline !== -1) {
        this.#pending = data.slice(newline + 1);
        return decoder.decode(data.subarray(0, newline));
      }
      data = await this.#readMore(data);
    }
  }

  /** Sends `{"execute": name, "arguments": args}` and returns its `return`; throws on `error`. */
  async call(execute: string, args?: unknown): Promise<unknown> {
    const request = args === undefined ? { execute } : { execute, arguments: args };
    await this.write(encoder.encode(JSON.stringify(request)));
    const reply = JSON.parse(await this.readLine()) as { return?: unknown; error?: unknown };
    if ("error" in reply) throw new Error(`${execute}: ${JSON.stringify(reply.error)}`);
    return reply.return;
  }

  async #readMore(unread: Uint8Array): Promise<Uint8Array> {
    // `unread` may be a view of the chunk buffer the next read overwrites.
    const before = unread.buffer === this.#chunk.buffer ? unread.slice() : unread;
    const count = await this.#conn.read(this.#chunk);
    if (count === null) throw new Error("the agent closed the connection");
    if (before.length === 0) return this.#chunk.subarray(0, count);
    const joined = new Uint8Array(before.length + count);
    joined.set(before);
    joined.set(this.#chunk.subarray(0, count), before.length);
    return joined;
  }

  [Symbol.dispose](): void {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** The bytes of one request without arguments. */
export function requestBytes(execute: string): Uint8Array {
  return encoder.encode(JSON.stringify({ execute }));
}
