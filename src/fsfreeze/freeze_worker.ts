/**
 * Worker body of freezer.ts's pool: for each wave it is sent, claims mounts from the wave's shared
 * counter and freezes each one synchronously (libc.ts's open + FIFREEZE + close, errno read on this
 * thread), posting one result per mount. A failure stops the wave's counter before it is reported,
 * so no Worker starts another mount after it. It says when it has loaded. Nothing else runs here.
 *
 * @module
 */

import {
  claimNext,
  freezeMount,
  stopClaims,
  type WaveRequest,
  type WaveResult,
  type WorkerReady,
} from "./freezer.ts";

// Typed by hand: this file is checked in one program with main-thread code, whose `self` is the
// window's, so the worker globals it uses are declared here.
const scope = self as unknown as {
  onmessage: (event: MessageEvent<WaveRequest>) => void;
  postMessage(message: WaveResult | WorkerReady): void;
};

scope.onmessage = (event) => {
  const { wave, mountPoints, control: buffer, slot } = event.data;
  const control = new Int32Array(buffer);
  const count = mountPoints.length;
  for (let index = claimNext(control, count); index >= 0; index = claimNext(control, count)) {
    Atomics.store(control, 1 + slot, index + 1); // which mount, should this Worker die
    const outcome = freezeMount(mountPoints[index] as string);
    if (outcome.status === "failed") stopClaims(control);
    Atomics.store(control, 1 + slot, 0);
    const result: WaveResult = { wave, index, outcome };
    scope.postMessage(result);
  }
};

scope.postMessage({ ready: true });
