/**
 * Loading libc: where it is looked for and the start-up load that fails fast. The symbols and
 * errno stay private to src/linux/ (`_libc.ts`); the wrappers live in one module per concern:
 *
 * - fd.ts: descriptors (open, close, read, write, poll, eventfd, fcntl flags);
 * - files.ts: /proc, /sys and /dev reads and metadata (Deno refuses its fs APIs there);
 * - freeze.ts: FIFREEZE and FITHAW;
 * - process.ts: kill(2), getuid(2), and the threads' niceness (getpriority(2), setpriority(2));
 * - termios.ts: the isa-serial line settings and FIONREAD;
 * - system.ts: uname, statvfs, clock_gettime for the guest-information commands;
 * - sockets.ts: a socket systemd passed (getsockopt, getsockname, accept4).
 *
 * @module
 */

import { LIBC_CANDIDATES, LibcLoadError, loadAllSymbols } from "./_libc.ts";

export { LIBC_CANDIDATES, LibcLoadError };

/**
 * Opens libc and every symbol now rather than at their first use (the freeze engine and the local
 * commands, before anything is frozen: a freeze or thaw never opens one). Opening it twice is a
 * no-op.
 * @throws {LibcLoadError} naming the paths tried
 */
export function loadLibc(): void {
  loadAllSymbols();
}
