/**
 * FIFREEZE and FITHAW on an open descriptor of a mount point: the two calls the product exists for.
 * Which mounts, in which order and what a failure means is decided in src/fsfreeze/.
 *
 * @module
 */

import { errnoError, lastErrno, libc } from "./_libc.ts";
import { SyscallError } from "./errno.ts";
import { FIFREEZE, FITHAW } from "./ioctl.ts";

/**
 * ioctl(FIFREEZE) on an open fd of a mount point.
 * @throws {SyscallError} EBUSY if already frozen, EOPNOTSUPP if the fs cannot freeze
 */
export function fifreeze(fd: number, path?: string): void {
  if (libc().ioctl_int(fd, FIFREEZE, 0) === -1) throw errnoError("ioctl(FIFREEZE)", path);
}

/**
 * ioctl(FIFREEZE) on a blocking thread of Deno's pool (many can run at once): resolves `true` once
 * frozen, `false` if the call failed. Why it failed cannot be told (errno stayed on that thread):
 * {@link fifreeze} on the calling thread finds out (EBUSY, EOPNOTSUPP, EPERM fail again at once).
 * The fd must stay open until the promise settles.
 */
export async function fifreezeOffThread(fd: number): Promise<boolean> {
  return await libc().ioctl_int_offthread(fd, FIFREEZE, 0) !== -1;
}

/**
 * ioctl(FITHAW) on an open fd of a mount point.
 * @throws {SyscallError} EINVAL if not frozen
 */
export function fithaw(fd: number, path?: string): void {
  const errno = fithawErrno(fd);
  if (errno !== 0) throw new SyscallError("ioctl(FITHAW)", errno, path);
}

/**
 * ioctl(FITHAW) on an open fd of a mount point: 0 when it thawed, else errno (EINVAL: not frozen).
 * A thaw repeats FITHAW until it fails, so the failure is a value here, not an exception.
 */
export function fithawErrno(fd: number): number {
  return libc().ioctl_int(fd, FITHAW, 0) === -1 ? lastErrno() : 0;
}
