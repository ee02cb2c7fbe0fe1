/**
 * Version strings.
 *
 * @module
 */

/** fsfreeze-agent's own version, reported by `guest-info` and `-V`. */
export const AGENT_VERSION = "0.1.0";

/** The `-V` line: qemu-ga's format, so tools that parse it keep working. */
export const VERSION_LINE = `QEMU Guest Agent ${AGENT_VERSION} (fsfreeze-agent)`;
