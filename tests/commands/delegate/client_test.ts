/**
 * The delegate session's mechanics (src/commands/delegate/client.ts, _lines.ts): how a session
 * starts (0xFF, the delegate's own sync with a fresh id, guest-info), how the delegate's output is
 * split into reply lines under a deadline, and a delegate whose guest-info is unusable.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DelegateClient, DelegateError } from "../../../src/commands/delegate/client.ts";
import { LineError, LineReader } from "../../../src/commands/delegate/_lines.ts";
import type { Connection, ReadResult } from "../../../src/transport/mod.ts";
import { FakeDelegate } from "../../_util/fake_delegate.ts";

/** A connection that hands out the given chunks, then waits (or closes). */
class ChunkConnection implements Connection {
  readonly peer = "chunks";
  #chunks: Uint8Array[];
  #closeAtEnd: boolean;
  reads = 0;

  constructor(chunks: (string | number[])[], closeAtEnd = false) {
    this.#chunks = chunks.map((chunk) =>
      typeof chunk === "string" ? new TextEncoder().encode(chunk) : new Uint8Array(chunk)
    );
    this.#closeAtEnd = closeAtEnd;
  }

  read(): Promise<ReadResult> {
    this.reads++;
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) return Promise.resolve({ type: "data", bytes: chunk });
    if (this.#closeAtEnd) return Promise.resolve({ type: "closed" });
    return new Promise(() => {});
  }

  write(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const soon = (): number => performance.now() + 5_000;

Deno.test("LineReader splits the delegate's output into lines, whatever the chunks, and marks 0xFF", async () => {
  const reader = new LineReader(
    new ChunkConnection(['{"return": 1}\n{"ret', 'urn": 2}', "\n", [0xff, 0x7b, 0x7d, 0x0a]]),
  );
  assert.deepEqual(await reader.next(soon()).then((l) => [text(l.bytes), l.delimited]), [
    '{"return": 1}\n',
    false,
  ]);
  assert.equal(text((await reader.next(soon())).bytes), '{"return": 2}\n');
  const delimited = await reader.next(soon());
  assert.deepEqual([text(delimited.bytes), delimited.delimited], ["{}\n", true]);
});

Deno.test("LineReader keeps a read pending at a deadline for the next call, and reports a close", async () => {
  const connection = new ChunkConnection([]);
  const reader = new LineReader(connection);
  await assert.rejects(reader.next(performance.now() + 20), (err) => {
    return err instanceof LineError && err.failure === "timeout";
  });
  await assert.rejects(reader.next(performance.now() + 20), LineError);
  assert.equal(connection.reads, 1, "one read, still pending, not a second one");
  const closing = new LineReader(new ChunkConnection(['{"return"'], true));
  await assert.rejects(closing.next(soon()), (err) => {
    return err instanceof LineError && err.failure === "closed";
  });
  assert.equal(closing.ended, true);
});

Deno.test("LineReader refuses a line longer than its limit", async () => {
  const reader = new LineReader(new ChunkConnection(["x".repeat(40), "y".repeat(40)]), 64);
  await assert.rejects(reader.next(soon()), (err) => {
    return err instanceof LineError && err.failure === "too-long";
  });
});

Deno.test("DelegateClient starts each session with 0xFF and a sync of its own with a fresh id", async () => {
  const fake = new FakeDelegate();
  const client = new DelegateClient({ connect: fake.connect, timeoutMs: 5000 });
  try {
    await client.open();
    assert.equal(fake.resyncBytes, 1);
    assert.deepEqual(fake.received, ["guest-sync-delimited", "guest-info"]);
    assert.deepEqual(client.commands, fake.commands);
    fake.crash();
    await new Promise((resolve) => setTimeout(resolve, 0));
    await client.open();
    assert.equal(fake.resyncBytes, 2, "a new connection is flushed again");
    assert.equal(fake.connections, 2);
  } finally {
    client.close();
  }
});

Deno.test("DelegateClient refuses a delegate whose guest-info lists no commands", async () => {
  const fake = new FakeDelegate();
  fake.commands = [];
  const client = new DelegateClient({
    connect: () =>
      fake.connect().then((connection) => {
        const write = connection.write.bind(connection);
        connection.write = (bytes) => {
          // Turn guest-info into a command it does not know.
          const request = new TextDecoder().decode(bytes).replace("guest-info", "guest-none");
          return write(new TextEncoder().encode(request));
        };
        return connection;
      }),
    timeoutMs: 5000,
  });
  try {
    await assert.rejects(client.open(), (err) => {
      return err instanceof DelegateError && err.failure === "invalid" &&
        /invalid reply to guest-info/.test(err.message);
    });
  } finally {
    client.close();
  }
});
