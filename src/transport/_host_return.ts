/**
 * Waiting for the host to come back to a device that hung up (docs/design.md #49).
 *
 * qemu-ga reads a hung-up port again every 100 ms, for as long as no host is connected: ten
 * wakeups a second in every guest whose host connects only to send a command, and up to 100 ms
 * before a host that came back is heard. A virtio-serial port tells a process that asked for it
 * (O_ASYNC) with SIGIO when its host side connects, and a tty or a FIFO does when input arrives.
 * So while such a device is hung up, the read loop sleeps until that signal; as the safety net for
 * a device that never sends one, it looks whether the hangup is still there (poll(2) without
 * waiting, on the agent's thread: one wakeup) every {@link HOST_AWAY_LOOK_MS}. Anything else (a
 * regular file) keeps the 100 ms retry.
 *
 * The signal is asked for only while the device is hung up, so a connected port's traffic sends
 * none. The first look comes right after asking: a host that came back before is not missed.
 *
 * @module
 */

import { Poll, poll, setSignalWhenReady } from "../linux/fd.ts";
import { fstat } from "../linux/locks.ts";
import { fileType } from "../linux/structs.ts";
import { sleep } from "../sleep.ts";

/** How long a hung-up device that sends SIGIO is left alone before it is read again anyway. */
export const HOST_AWAY_LOOK_MS = 5000;

/** The signal side, as the read loop needs it; the process's SIGIO in production. */
export interface ReadySignal {
  /** Starts calling `listener` on every signal. */
  listen(listener: () => void): void;
  /** Stops calling it. */
  unlisten(listener: () => void): void;
  /** Asks the kernel for the signal when `fd` becomes ready, or no longer. */
  request(fd: number, on: boolean): void;
}

/** SIGIO of this process. */
export const SIGIO: ReadySignal = {
  listen: (listener) => Deno.addSignalListener("SIGIO", listener),
  unlisten: (listener) => Deno.removeSignalListener("SIGIO", listener),
  request: setSignalWhenReady,
};

/** Whether `fd` sends SIGIO when it becomes ready: a character device (tty, virtio port) or FIFO. */
export function signalsWhenReady(fd: number): boolean {
  try {
    const type = fileType(fstat(fd).mode);
    return type === "char-device" || type === "fifo";
  } catch {
    return false;
  }
}

/** The wait for a hung-up device's host, for one read loop. */
export class HostReturn {
  readonly #fd: number;
  readonly #signal: ReadySignal;
  readonly #lookMs: number;
  #armed = false;
  /** Asking failed once: from then on this device gets the caller's fallback pause. */
  #unavailable = false;
  #wake: (() => void) | undefined;
  readonly #listener = (): void => this.#wake?.();

  constructor(fd: number, signal: ReadySignal = SIGIO, lookMs = HOST_AWAY_LOOK_MS) {
    this.#fd = fd;
    this.#signal = signal;
    this.#lookMs = lookMs;
  }

  /** Whether the signal is asked for now (for checks). */
  get armed(): boolean {
    return this.#armed;
  }

  /**
   * Waits until the host may be back: until the signal, `abort`, or a look (poll(2) without
   * waiting, at once and then every {@link HOST_AWAY_LOOK_MS}) that finds no hangup. Without the
   * signal: a pause of `fallbackMs`.
   */
  async wait(fallbackMs: number, abort: AbortSignal): Promise<void> {
    if (!this.#arm()) return await sleep(fallbackMs, abort);
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    const until = AbortSignal.any([abort, woken.signal]);
    try {
      while (!until.aborted && stillHungUp(this.#fd)) await sleep(this.#lookMs, until);
    } finally {
      this.#wake = undefined;
    }
  }

  /** The host is back (data came): no more signals. Quiet on a descriptor already closed. */
  disarm(): void {
    if (!this.#armed) return;
    this.#armed = false;
    try {
      this.#signal.request(this.#fd, false);
    } catch {
      // closed: no signal can come from it any more
    }
    this.#signal.unlisten(this.#listener);
  }

  #arm(): boolean {
    if (this.#armed) return true;
    if (this.#unavailable) return false;
    try {
      this.#signal.listen(this.#listener);
    } catch {
      this.#unavailable = true;
      return false;
    }
    try {
      this.#signal.request(this.#fd, true);
    } catch {
      this.#signal.unlisten(this.#listener);
      this.#unavailable = true;
      return false;
    }
    this.#armed = true;
    return true;
  }
}

/**
 * Whether `fd` still reports a hangup (poll(2) without waiting). POLLIN beside it does not count:
 * a hung-up tty reports both for ever, and the loop has just found nothing to read.
 */
function stillHungUp(fd: number): boolean {
  const fds = [{ fd, events: Poll.POLLIN, revents: 0 }];
  try {
    poll(fds, 0);
  } catch {
    return false; // let the read loop's own wait find out
  }
  return (fds[0]!.revents & Poll.POLLHUP) !== 0;
}
