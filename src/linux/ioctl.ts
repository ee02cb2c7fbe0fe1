/**
 * ioctl request numbers, each with the `_IOC` derivation that produces it (asm-generic layout, the
 * same on x86_64 and aarch64).
 *
 * @module
 */

const IOC_WRITE = 1;
const IOC_READ = 2;
const IOC_NRSHIFT = 0;
const IOC_TYPESHIFT = 8;
const IOC_SIZESHIFT = 16;
const IOC_DIRSHIFT = 30;

/** `_IOC(dir, type, nr, size)` from `<asm-generic/ioctl.h>`. */
function ioc(dir: number, type: string, nr: number, size: number): bigint {
  return (BigInt(dir) << BigInt(IOC_DIRSHIFT)) |
    (BigInt(type.charCodeAt(0)) << BigInt(IOC_TYPESHIFT)) |
    (BigInt(nr) << BigInt(IOC_NRSHIFT)) |
    (BigInt(size) << BigInt(IOC_SIZESHIFT));
}

const SIZEOF_INT = 4;

/** `FIFREEZE = _IOWR('X', 119, int)` = 0xC0045877: freeze a filesystem. */
export const FIFREEZE: bigint = ioc(IOC_READ | IOC_WRITE, "X", 119, SIZEOF_INT);

/** `FITHAW = _IOWR('X', 120, int)` = 0xC0045878: thaw a filesystem. */
export const FITHAW: bigint = ioc(IOC_READ | IOC_WRITE, "X", 120, SIZEOF_INT);

/**
 * `FIONREAD` = 0x541B (alias `TIOCINQ`): bytes readable without blocking. A legacy tty request with
 * no `_IOC` encoding; the same number on x86_64 and aarch64 (asm-generic/ioctls.h).
 */
export const FIONREAD: bigint = 0x541bn;
