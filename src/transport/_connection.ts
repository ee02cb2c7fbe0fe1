/**
 * What every transport implements: a source of connections, and a connection that reads and
 * writes bytes. Private to src/transport/; the rest of the agent takes these types from mod.ts.
 *
 * @module
 */

/** The result of one read from a connection. */
export type ReadResult =
  | { type: "data"; bytes: Uint8Array }
  /** The peer went away but the channel stays (virtio-serial host disconnect): drop partial input. */
  | { type: "hangup" }
  /** The connection is over; the transport will hand out the next one. */
  | { type: "closed" };

/** One client (or the device). */
export interface Connection {
  /** Who is on the other end, for logs. */
  readonly peer: string;
  read(): Promise<ReadResult>;
  /** Writes all bytes. */
  write(bytes: Uint8Array): Promise<void>;
  close(): void;
}

/** A source of connections. */
export interface Transport {
  /** What is being served, for logs. */
  readonly description: string;
  /** The next connection, or `null` once the transport is closed. */
  accept(): Promise<Connection | null>;
  /** Stops accepting, closes the device or listener and removes what it created. */
  close(): void;
}
