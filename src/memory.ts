/**
 * Handing memory back after a burst (docs/design.md #21). An agent lives for months; a host may
 * send a 64 MiB request, millions of tokens, or a flood of small commands, and afterwards the
 * agent's memory should be what it was at idle. V8 keeps the pages of a grown heap, and glibc the
 * freed heap of its arenas, unless told otherwise: once the burst is over (the channel has been
 * quiet for a moment), a last-resort major GC (which also releases V8's pooled pages) and
 * malloc_trim(0) hand both back. Ordinary traffic never triggers it: only a burst does.
 *
 * @module
 */

import { mallocTrim } from "./linux/process.ts";

/** Input that makes a burst: this many bytes, or this many messages, since the last reclaim. */
export const BURST_BYTES = 1 << 20;
export const BURST_MESSAGES = 1000;
/** How long the channel must be quiet before memory is reclaimed. */
export const QUIET_MS = 1000;

/** V8's `gc` with options, present when the agent runs with `--expose-gc` (its flags do). */
type Gc = (options?: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

/** Frees what a burst left behind: V8's heap pages, then glibc's free heap. */
export function reclaimMemory(): void {
  const gc = (globalThis as { gc?: Gc }).gc;
  gc?.({ type: "major", execution: "sync", flavor: "last-resort" });
  try {
    mallocTrim();
  } catch {
    // libc without malloc_trim (not glibc): V8's part is done.
  }
}

/**
 * Watches the input and reclaims memory once a burst has ended. During a burst every read only
 * notes the time: the one timer checks, when it fires, whether the channel has been quiet long
 * enough, and waits for the rest if not (a timer per read cost every request of a flood).
 */
export class MemoryReclaimer implements Disposable {
  readonly #reclaim: () => void;
  readonly #quietMs: number;
  readonly #now: () => number;
  #bytes = 0;
  #messages = 0;
  #lastInputAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    reclaim: () => void = reclaimMemory,
    quietMs = QUIET_MS,
    now: () => number = () => performance.now(),
  ) {
    this.#reclaim = reclaim;
    this.#quietMs = quietMs;
    this.#now = now;
  }

  /** One read brought `bytes` bytes and completed `messages` messages (errors included). */
  received(bytes: number, messages: number): void {
    this.#bytes += bytes;
    this.#messages += messages;
    if (this.#timer !== undefined) {
      this.#lastInputAt = this.#now();
    } else if (this.#bytes >= BURST_BYTES || this.#messages >= BURST_MESSAGES) {
      this.#lastInputAt = this.#now();
      this.#wait(this.#quietMs);
    }
  }

  #wait(ms: number): void {
    this.#timer = setTimeout(() => this.#reclaimIfQuiet(), ms);
    Deno.unrefTimer(this.#timer);
  }

  #reclaimIfQuiet(): void {
    const quietFor = this.#now() - this.#lastInputAt;
    if (quietFor < this.#quietMs) return this.#wait(this.#quietMs - quietFor);
    this.#timer = undefined;
    this.#bytes = 0;
    this.#messages = 0;
    this.#reclaim();
  }

  [Symbol.dispose](): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
