/**
 * Sockets handed over by systemd (socket activation, src/transport/activated.ts). Deno cannot
 * adopt an inherited descriptor, so the agent inspects it, accepts on it and talks to its clients
 * through these (reads and writes with fd.ts). Values are the generic Linux ones, identical on
 * x86_64 and aarch64 (<asm-generic/socket.h>, <bits/socket.h>).
 *
 * @module
 */

import { cStringAt, errnoError, libc } from "./_libc.ts";
import { O_CLOEXEC, O_NONBLOCK } from "./fd.ts";

/** Address families: `sa_family_t` values. */
export const AddressFamily = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_VSOCK: 40 } as const;
/** Socket types, as getsockopt(SO_TYPE) reports them. */
export const SocketType = { SOCK_STREAM: 1, SOCK_DGRAM: 2, SOCK_SEQPACKET: 5 } as const;
/** accept4(2) flag: the accepted socket is non-blocking (the value of `O_NONBLOCK`). */
export const SOCK_NONBLOCK = O_NONBLOCK;
/** accept4(2) flag: the accepted socket is close-on-exec (the value of `O_CLOEXEC`). */
export const SOCK_CLOEXEC = O_CLOEXEC;
/** getsockopt(2) level of the options below. */
export const SOL_SOCKET = 1;
/** getsockopt(2) options at {@link SOL_SOCKET} that hold an `int`. */
export const SocketOption = { SO_TYPE: 3, SO_ACCEPTCONN: 30, SO_DOMAIN: 39 } as const;

/**
 * getsockopt(2) of an `int` option, e.g. `SO_DOMAIN` (the address family).
 * @throws {SyscallError} ENOTSOCK if `fd` is not a socket, EBADF if it is not open
 */
export function getsockoptInt(fd: number, level: number, option: number): number {
  const value = new Int32Array(1);
  const length = new Uint32Array([value.byteLength]);
  const result = libc().getsockopt(
    fd,
    level,
    option,
    new Uint8Array(value.buffer),
    new Uint8Array(length.buffer),
  );
  if (result === -1) throw errnoError("getsockopt");
  return value[0]!;
}

/** A socket address in Deno's shapes; a family the agent does not decode keeps its number. */
export type SocketAddress = Deno.UnixAddr | Deno.VsockAddr | { transport: "other"; family: number };

/**
 * `sizeof(struct sockaddr_storage)`: room for any address. The two layouts decoded:
 *
 * ```c
 * struct sockaddr_un {          // offset
 *   sa_family_t sun_family;     //   0  u16, AF_UNIX
 *   char sun_path[108];         //   2  NUL-terminated; abstract if it starts with NUL;
 * };                            //      the returned length counts only the bytes used
 * struct sockaddr_vm {          // <linux/vm_sockets.h>
 *   sa_family_t svm_family;     //   0  u16, AF_VSOCK
 *   unsigned short svm_reserved1; // 2
 *   unsigned int svm_port;      //   4
 *   unsigned int svm_cid;       //   8
 *   __u8 svm_flags;             //  12
 *   unsigned char svm_zero[3];  //  13
 * };                            // size 16
 * ```
 */
const SOCKADDR_STORAGE_SIZE = 128;
const SUN_PATH_OFFSET = 2;
const SVM_PORT_OFFSET = 4;
const SVM_CID_OFFSET = 8;

/** Decodes the first `length` bytes of a `struct sockaddr` as getsockname/accept4 filled them. */
export function readSocketAddress(bytes: Uint8Array, length: number): SocketAddress {
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  const family = length >= 2 ? view.getUint16(0, true) : 0;
  if (family === AddressFamily.AF_VSOCK) {
    return {
      transport: "vsock",
      cid: view.getUint32(SVM_CID_OFFSET, true),
      port: view.getUint32(SVM_PORT_OFFSET, true),
    };
  }
  if (family !== AddressFamily.AF_UNIX) return { transport: "other", family };
  const path = bytes.subarray(SUN_PATH_OFFSET, length);
  // An abstract name starts with NUL and may hold any bytes; `ss -x` shows it with a leading "@".
  if (path[0] === 0) {
    return { transport: "unix", path: `@${new TextDecoder().decode(path.subarray(1))}` };
  }
  return { transport: "unix", path: cStringAt(path) };
}

/**
 * getsockname(2): the address a socket is bound to.
 * @throws {SyscallError} ENOTSOCK if `fd` is not a socket
 */
export function getsockname(fd: number): SocketAddress {
  const address = new Uint8Array(SOCKADDR_STORAGE_SIZE);
  const length = new Uint32Array([address.byteLength]);
  if (libc().getsockname(fd, address, new Uint8Array(length.buffer)) === -1) {
    throw errnoError("getsockname");
  }
  return readSocketAddress(address, Math.min(length[0]!, address.byteLength));
}

/**
 * accept4(2): the next queued connection on a listening socket, as a new descriptor (with
 * `flags`: {@link SOCK_NONBLOCK}, {@link SOCK_CLOEXEC}) and the peer's address.
 * @throws {SyscallError} EAGAIN when a non-blocking listener has no connection queued
 */
export function accept4(fd: number, flags: number): { fd: number; peer: SocketAddress } {
  const address = new Uint8Array(SOCKADDR_STORAGE_SIZE);
  const length = new Uint32Array([address.byteLength]);
  const client = libc().accept4(fd, address, new Uint8Array(length.buffer), flags);
  if (client === -1) throw errnoError("accept4");
  return { fd: client, peer: readSocketAddress(address, Math.min(length[0]!, address.byteLength)) };
}
