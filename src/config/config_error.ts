/**
 * {@link ConfigError}: a configuration the agent cannot use. Its own module so that what the
 * configuration is checked against (the transport declarations) can throw it without importing
 * the parser.
 *
 * @module
 */

/** A configuration that cannot be used; qemu-ga exits 1 with this text. */
export class ConfigError extends Error {
  override name = "ConfigError";
}
