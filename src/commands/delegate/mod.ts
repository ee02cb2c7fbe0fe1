/**
 * The delegate (docs/design.md #36): a private qemu-ga on a unix socket that serves every command
 * this agent does not implement. {@link Delegate} is the dispatcher's {@link Forwarder}: it knows
 * the delegate's commands from its `guest-info`, sends a request on whole (the host's `id` kept)
 * and hands its reply line back unchanged, and turns every way the delegate can fail into one
 * `GenericError` that names it. Which commands may go there (our allow, block and frozen rules)
 * is the dispatcher's check, made before anything is sent.
 *
 * The session itself (connecting, synchronising, deadlines) is client.ts.
 *
 * @module
 */

import type { Config } from "../../config/mod.ts";
import { genericError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { ForwardedCommand, Forwarder } from "../../protocol/dispatch.ts";
import { encodeJson, type JsonValue } from "../../protocol/json.ts";
import { connectUnix } from "../../transport/mod.ts";
import { type Connect, DelegateClient, DelegateError } from "./client.ts";

export { type Connect, DelegateError };

/** Options of {@link Delegate}. */
export interface DelegateOptions {
  /** The delegate's unix socket (every error names it). */
  socketPath: string;
  /** How long the delegate has for one command. */
  timeoutMs: number;
  log: Logger;
  /** How to reach it (tests pass a fake delegate). @default a connection to `socketPath` */
  connect?: Connect;
}

/** The delegate as the dispatcher sees it. */
export class Delegate implements Forwarder {
  readonly #client: DelegateClient;
  readonly #path: string;
  readonly #log: Logger;
  /** Whether the last operation worked (`undefined` before the first): state changes are logged. */
  #working: boolean | undefined;

  constructor(options: DelegateOptions) {
    this.#path = options.socketPath;
    this.#log = options.log;
    this.#client = new DelegateClient({
      connect: options.connect ?? (() => connectUnix(options.socketPath)),
      timeoutMs: options.timeoutMs,
    });
  }

  /** Opens the session in the background, so that the delegate's commands are known early. */
  start(): void {
    this.#run("guest-info", () => this.#client.open()).catch(() => {
      // Logged by #run; the first command that needs the delegate tries again.
    });
  }

  /** {@inheritDoc Forwarder.commands} */
  async commands(ask: boolean): Promise<readonly ForwardedCommand[]> {
    if (ask && this.#client.commands === undefined) {
      await this.#run("guest-info", () => this.#client.open());
    }
    return this.#client.commands ?? [];
  }

  /** {@inheritDoc Forwarder.forward} */
  forward(request: JsonValue, name: string): Promise<string | undefined> {
    const id = request.kind === "object" ? request.members.get("id") : undefined;
    const listed = this.#client.commands?.find((command) => command.name === name);
    const replyExpected = listed?.successResponse !== false;
    return this.#run(name, () => this.#client.call(encodeJson(request), id, replyExpected));
  }

  /** Ends the session (the agent is stopping). */
  close(): void {
    this.#client.close();
  }

  /** Runs one operation for `name`; a failure becomes the host's `GenericError`. */
  async #run<T>(name: string, operation: () => Promise<T>): Promise<T> {
    try {
      const result = await operation();
      this.#changed(true);
      return result;
    } catch (err) {
      if (!(err instanceof DelegateError)) throw err;
      this.#changed(false, err);
      throw genericError(`${name}: the guest agent delegate at ${this.#path} ${err.message}`, {
        cause: err,
      });
    }
  }

  /** Logs when the delegate starts or stops working; single failures are the host's to see. */
  #changed(working: boolean, err?: DelegateError): void {
    const before = this.#working;
    this.#working = working;
    if (working && before !== true) {
      this.#log.info("guest agent delegate ready", {
        path: this.#path,
        commands: this.#client.commands?.length ?? 0,
      });
    } else if (!working && before !== false) {
      this.#log.warn("guest agent delegate failed", { path: this.#path, error: err?.message });
    } else if (!working) {
      this.#log.debug("guest agent delegate failed", { path: this.#path, error: err?.message });
    }
  }
}

/** The delegate of a configuration, or `undefined` when it names none. */
export function configuredDelegate(config: Config, log: Logger): Delegate | undefined {
  if (config.delegateSocket === undefined) return undefined;
  return new Delegate({
    socketPath: config.delegateSocket,
    timeoutMs: config.delegateTimeout * 1000,
    log,
  });
}
