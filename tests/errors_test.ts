/**
 * Tests of src/errors.ts: the wire shape of anything thrown, and the text of anything thrown.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AgentError,
  commandDisabled,
  commandNotFound,
  errorMessage,
  genericError,
  toWireError,
} from "../src/errors.ts";

Deno.test("errorMessage() is an Error's message and any other value as a string", () => {
  assert.equal(errorMessage(new RangeError("too large")), "too large");
  assert.equal(errorMessage(genericError("x")), "x");
  assert.equal(errorMessage("plain"), "plain");
  assert.equal(errorMessage(42), "42");
  assert.equal(errorMessage(undefined), "undefined");
});

Deno.test("toWireError() keeps an AgentError's class; anything else is a GenericError", () => {
  assert.deepEqual(toWireError(commandNotFound("guest-x")), {
    class: "CommandNotFound",
    desc: "The command guest-x has not been found",
  });
  assert.deepEqual(toWireError(commandDisabled("guest-x")), {
    class: "CommandNotFound",
    desc: "Command guest-x has been disabled: the command is not allowed",
  });
  assert.deepEqual(toWireError(new AgentError("GenericError", "boom")), {
    class: "GenericError",
    desc: "boom",
  });
  assert.deepEqual(toWireError(new TypeError("bad")), { class: "GenericError", desc: "bad" });
  assert.deepEqual(toWireError("text"), { class: "GenericError", desc: "text" });
});
