/**
 * The one error type that reaches the host, and the mapping from anything thrown to the wire shape.
 *
 * Handlers just `throw`; the dispatcher turns the error into `{"class", "desc"}` with
 * {@link toWireError}. Error texts copy qemu-ga's wording where host tools may match on it.
 *
 * @module
 */

/** QMP error classes qemu-ga emits (docs/protocol.md, "Requests and replies"). */
export type QmpErrorClass = "GenericError" | "CommandNotFound";

/** An error meant for the host: carries the QMP error class and the `desc` text. */
export class AgentError extends Error {
  override name = "AgentError";
  /** The QMP error class sent to the host. */
  readonly errorClass: QmpErrorClass;

  constructor(errorClass: QmpErrorClass, message: string, options?: ErrorOptions) {
    super(message, options);
    this.errorClass = errorClass;
  }
}

/** A `GenericError` with the given text. */
export function genericError(message: string, options?: ErrorOptions): AgentError {
  return new AgentError("GenericError", message, options);
}

/** `The command <name> has not been found` (unknown command). */
export function commandNotFound(name: string): AgentError {
  return new AgentError("CommandNotFound", `The command ${name} has not been found`);
}

/** `Command <name> has been disabled: the command is not allowed` (qemu-ga ≥ 9.1 text). */
export function commandDisabled(name: string): AgentError {
  return new AgentError(
    "CommandNotFound",
    `Command ${name} has been disabled: the command is not allowed`,
  );
}

/** The wire form of an error: the value of a response's `error` member. */
export interface WireError {
  class: QmpErrorClass;
  desc: string;
}

/** Turns anything thrown into the wire shape; unknown errors become `GenericError`. */
export function toWireError(err: unknown): WireError {
  if (err instanceof AgentError) return { class: err.errorClass, desc: err.message };
  return { class: "GenericError", desc: errorMessage(err) };
}

/** The text of anything thrown: an Error's message, or the value as a string. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
