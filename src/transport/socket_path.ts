/**
 * Where a unix socket is bound before it is renamed into place — shared by the socket transport
 * and the permission set (which must grant that path), without the socket transport loading the
 * permission module (and libc with it) at start-up.
 *
 * @module
 */

/** Where a unix socket is bound before it is renamed to its configured path. */
export function unixSocketTempPath(path: string): string {
  return `${path}.new`;
}
