/**
 * Raw mode for the `isa-serial` channel, with exactly qemu-ga's settings (docs/protocol.md
 * "Channels"), the one description of glibc's `struct termios`, and the terminal calls
 * (tcgetattr, tcsetattr, tcflush, FIONREAD). The channel itself is read and written elsewhere
 * (src/transport/device.ts); this module only configures the line.
 *
 * @module
 */

import { errnoError, libc } from "./_libc.ts";
import { close, O_NOCTTY, O_NONBLOCK, O_RDWR, open } from "./fd.ts";
import { FIONREAD } from "./ioctl.ts";

/**
 * glibc's `struct termios` (bits/termios-struct.h), the same on x86_64 and aarch64 (both use the
 * generic Linux layout; alpha, mips, powerpc and sparc differ):
 *
 * ```c
 * struct termios {            // offset
 *   tcflag_t c_iflag;         //  0  u32
 *   tcflag_t c_oflag;         //  4  u32
 *   tcflag_t c_cflag;         //  8  u32
 *   tcflag_t c_lflag;         // 12  u32
 *   cc_t     c_line;          // 16  u8
 *   cc_t     c_cc[NCCS];      // 17  u8[32]
 *   speed_t  c_ispeed;        // 52  u32 (after 3 bytes of padding)
 *   speed_t  c_ospeed;        // 56  u32
 * };                          // size 60
 * ```
 */
export const TERMIOS_SIZE = 60;
const OFFSET_IFLAG = 0;
const OFFSET_OFLAG = 4;
const OFFSET_CFLAG = 8;
const OFFSET_LFLAG = 12;
const OFFSET_CC = 17;

/** `c_iflag` bits (octal, as in <bits/termios-c_iflag.h>). */
export const InputFlag = {
  IGNBRK: 0o1,
  BRKINT: 0o2,
  IGNPAR: 0o4,
  PARMRK: 0o10,
  INPCK: 0o20,
  ISTRIP: 0o40,
  INLCR: 0o100,
  IGNCR: 0o200,
  ICRNL: 0o400,
  IXON: 0o2000,
  IXANY: 0o4000,
  IXOFF: 0o10000,
  IMAXBEL: 0o20000,
} as const;

/** `B38400` in `c_cflag` (<bits/termios-baud.h>). */
export const B38400 = 0o17;
/** Index of `VTIME` in `c_cc`. */
export const VTIME = 5;
/** Index of `VMIN` in `c_cc`. */
export const VMIN = 6;
/** `tcsetattr` action: apply now. */
export const TCSANOW = 0;
/** `tcflush` queue: pending input. */
export const TCIFLUSH = 0;

/** The input bits qemu-ga clears; everything else in `c_iflag` is kept (e.g. `IUTF8`). */
const RAW_CLEARED_IFLAG = Object.values(InputFlag).reduce((all, bit) => all | bit, 0);

/** The four flag words of a termios, as numbers. */
export interface TermiosFlags {
  iflag: number;
  oflag: number;
  cflag: number;
  lflag: number;
}

/** Reads the flag words out of a `struct termios` buffer. */
export function readTermiosFlags(termios: Uint8Array<ArrayBuffer>): TermiosFlags {
  const view = new DataView(termios.buffer, termios.byteOffset, TERMIOS_SIZE);
  return {
    iflag: view.getUint32(OFFSET_IFLAG, true),
    oflag: view.getUint32(OFFSET_OFLAG, true),
    cflag: view.getUint32(OFFSET_CFLAG, true),
    lflag: view.getUint32(OFFSET_LFLAG, true),
  };
}

/** Applies qemu-ga's isa-serial raw settings to a `struct termios` buffer in place. */
export function makeRaw(termios: Uint8Array<ArrayBuffer>): void {
  const view = new DataView(termios.buffer, termios.byteOffset, TERMIOS_SIZE);
  const flags = readTermiosFlags(termios);
  // `>>> 0` keeps the words unsigned after JavaScript's 32-bit signed bit operations.
  view.setUint32(OFFSET_IFLAG, (flags.iflag & ~RAW_CLEARED_IFLAG) >>> 0, true);
  view.setUint32(OFFSET_OFLAG, 0, true);
  view.setUint32(OFFSET_LFLAG, 0, true);
  // ORed, not replaced, as qemu-ga does: other baud bits already set stay set.
  view.setUint32(OFFSET_CFLAG, (flags.cflag | B38400) >>> 0, true);
  termios[OFFSET_CC + VMIN] = 1;
  termios[OFFSET_CC + VTIME] = 0;
}

/**
 * Puts the serial device at `path` into qemu-ga's raw mode: opens it `O_RDWR|O_NOCTTY|O_NONBLOCK`,
 * applies {@link makeRaw}, discards pending input, sets the attributes now, and closes it.
 * @throws {SyscallError} ENOTTY when `path` is not a terminal
 */
export function setRawMode(path: string): void {
  const fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
  try {
    setRawModeOnFd(fd);
  } finally {
    close(fd);
  }
}

/**
 * {@link setRawMode} on a terminal the caller has open (the isa-serial channel itself).
 * @throws {SyscallError} ENOTTY when `fd` is not a terminal
 */
export function setRawModeOnFd(fd: number): void {
  const termios = new Uint8Array(TERMIOS_SIZE);
  tcgetattr(fd, termios);
  makeRaw(termios);
  tcflush(fd, TCIFLUSH);
  tcsetattr(fd, TCSANOW, termios);
}

/**
 * tcgetattr(3) into `termios` (a buffer of {@link TERMIOS_SIZE} bytes).
 * @throws {SyscallError}
 */
export function tcgetattr(fd: number, termios: Uint8Array<ArrayBuffer>): void {
  if (libc().tcgetattr(fd, termios) === -1) throw errnoError("tcgetattr");
}

/**
 * tcsetattr(3).
 * @throws {SyscallError}
 */
export function tcsetattr(fd: number, actions: number, termios: Uint8Array<ArrayBuffer>): void {
  if (libc().tcsetattr(fd, actions, termios) === -1) throw errnoError("tcsetattr");
}

/**
 * tcflush(3).
 * @throws {SyscallError}
 */
export function tcflush(fd: number, queue: number): void {
  if (libc().tcflush(fd, queue) === -1) throw errnoError("tcflush");
}

/**
 * ioctl(FIONREAD): bytes waiting in a terminal's (or pipe's) input queue, without reading them.
 * @throws {SyscallError}
 */
export function fionread(fd: number): number {
  const count = new Int32Array(1);
  if (libc().ioctl_ptr(fd, FIONREAD, new Uint8Array(count.buffer)) === -1) {
    throw errnoError("ioctl(FIONREAD)");
  }
  return count[0] ?? 0;
}
