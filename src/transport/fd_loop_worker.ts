/**
 * Worker body of the descriptor loops (_fd_loop.ts): runs one loop (a channel's reads, or a
 * socket-activated listener's accepts) on this thread, so its system calls block here and errno is
 * exact, while the agent's event loop stays free. It says when it has loaded, takes one start
 * message, and closes itself when the loop ends. _fd_io.ts starts it.
 *
 * @module
 */

import { type LoopEvent, type LoopStart, runLoop } from "./_fd_loop.ts";

// Typed by hand: this file is checked in one program with main-thread code, whose `self` is the
// window's, so the worker globals it uses are declared here.
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<LoopStart>) => void) | null;
  postMessage(message: LoopEvent, transfer?: Transferable[]): void;
  close(): void;
};

scope.onmessage = (event) => {
  scope.onmessage = null;
  runLoop(event.data, (message, transfer) => scope.postMessage(message, transfer ?? []));
  scope.close(); // not reached after a throw: the error then reaches _fd_io.ts's `onerror`
};

scope.postMessage({ type: "ready" });
