/**
 * Worker body of activated.ts: runs a socket-activated listener's blocking accept loop
 * (_listen_acceptor.ts) on this thread, so poll(2) and accept4(2) run synchronously and errno is
 * exact, while the agent's event loop stays free. It says when it has loaded, takes one start
 * message, and closes itself when the loop ends.
 *
 * @module
 */

import { type AcceptorEvent, type AcceptorStart, runAcceptor } from "./_listen_acceptor.ts";

// Typed by hand: this file is checked in one program with main-thread code, whose `self` is the
// window's, so the worker globals it uses are declared here.
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<AcceptorStart>) => void) | null;
  postMessage(message: AcceptorEvent): void;
  close(): void;
};

scope.onmessage = (event) => {
  scope.onmessage = null;
  runAcceptor(event.data, (message) => scope.postMessage(message));
  scope.close(); // not reached after a throw: the error then reaches activated.ts's `onerror`
};

scope.postMessage({ type: "ready" });
