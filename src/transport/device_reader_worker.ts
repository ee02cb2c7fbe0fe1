/**
 * Worker body of device.ts: runs one device channel's blocking read loop (_device_reader.ts) on
 * this thread, so poll(2) and read(2) run synchronously and errno is exact, while the agent's event
 * loop stays free. It says when it has loaded, takes one start message, and closes itself when the
 * loop ends.
 *
 * @module
 */

import { type ReaderEvent, type ReaderStart, runReader } from "./_device_reader.ts";

// Typed by hand: this file is checked in one program with main-thread code, whose `self` is the
// window's, so the worker globals it uses are declared here.
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<ReaderStart>) => void) | null;
  postMessage(message: ReaderEvent, transfer?: Transferable[]): void;
  close(): void;
};

scope.onmessage = (event) => {
  scope.onmessage = null;
  runReader(event.data, (message, transfer) => scope.postMessage(message, transfer ?? []));
  scope.close(); // not reached after a throw: the error then reaches device.ts's `onerror`
};

scope.postMessage({ type: "ready" });
