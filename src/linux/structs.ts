/**
 * C structs that the libc wrappers fill, each described once with its size and offsets and read
 * over a little-endian `DataView`: Linux's `struct statx` and glibc's `struct dirent`, plus the
 * file-type bits of a mode. Pure functions over bytes: the FFI calls live in files.ts, and nothing
 * here touches a pointer.
 *
 * @module
 */

/**
 * Linux's `struct statx` (include/uapi/linux/stat.h). files.ts uses statx(2) rather than stat(2)
 * because this layout is the same on every architecture, while `struct stat` differs between
 * x86_64 (144 bytes, `st_nlink` as u64 before `st_mode`) and aarch64 (128 bytes, the generic
 * layout); and because glibc exports `statx` since 2.28 but `stat`/`lstat` only since 2.33, and
 * one missing symbol makes the whole `Deno.dlopen` fail (FIFREEZE included).
 *
 * ```c
 * struct statx {                      // offset
 *   __u32 stx_mask;                   //   0  which fields were filled (STATX_*)
 *   __u32 stx_blksize;                //   4
 *   __u64 stx_attributes;             //   8
 *   __u32 stx_nlink;                  //  16
 *   __u32 stx_uid;                    //  20
 *   __u32 stx_gid;                    //  24
 *   __u16 stx_mode;                   //  28  file type and permission bits
 *   __u16 __spare0;                   //  30
 *   __u64 stx_ino;                    //  32
 *   __u64 stx_size;                   //  40
 *   __u64 stx_blocks;                 //  48
 *   __u64 stx_attributes_mask;        //  56
 *   struct statx_timestamp stx_atime; //  64  (16 bytes each: i64 sec, u32 nsec, i32 pad)
 *   struct statx_timestamp stx_btime; //  80
 *   struct statx_timestamp stx_ctime; //  96
 *   struct statx_timestamp stx_mtime; // 112
 *   __u32 stx_rdev_major;             // 128  the device a device node stands for
 *   __u32 stx_rdev_minor;             // 132
 *   __u32 stx_dev_major;              // 136  the device holding the file
 *   __u32 stx_dev_minor;              // 140
 *   // 144: mount id, direct-I/O alignments, spare space
 * };                                  // size 256
 * ```
 */
export const STATX_SIZE = 256;

/** statx(2)'s `AT_FDCWD`: resolve a relative path from the current directory. */
export const AT_FDCWD = -100;
/** statx(2)'s `AT_SYMLINK_NOFOLLOW`: lstat rather than stat. */
export const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_NLINK = 16;
const STATX_UID = 20;
const STATX_GID = 24;
const STATX_MODE = 28;
const STATX_INO = 32;
const STATX_SIZE_FIELD = 40;
const STATX_RDEV_MAJOR = 128;
const STATX_RDEV_MINOR = 132;
const STATX_DEV_MAJOR = 136;
const STATX_DEV_MINOR = 140;

/** `STATX_BASIC_STATS`: ask statx(2) for everything `struct stat` has. */
export const STATX_BASIC_STATS = 0x7ff;

/** File type bits of a mode (`<sys/stat.h>`, the same on every Linux architecture). */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** The kind of a file, from its mode or a directory entry's `d_type`. */
export type FileType =
  | "file"
  | "directory"
  | "symlink"
  | "block-device"
  | "char-device"
  | "fifo"
  | "socket"
  | "unknown";

const TYPE_BY_FORMAT: ReadonlyMap<number, FileType> = new Map([
  [S_IFREG, "file"],
  [S_IFDIR, "directory"],
  [S_IFLNK, "symlink"],
  [S_IFBLK, "block-device"],
  [S_IFCHR, "char-device"],
  [S_IFIFO, "fifo"],
  [S_IFSOCK, "socket"],
]);

/** The file type a mode's `S_IFMT` bits name. */
export function fileType(mode: number): FileType {
  return TYPE_BY_FORMAT.get(mode & S_IFMT) ?? "unknown";
}

/** `struct stat`'s fields, as files.ts's `stat()` and `lstat()` return them. */
export interface FileStat {
  /** `st_dev`, the device holding the file, encoded as glibc's `dev_t` (see {@link makedev}). */
  dev: number;
  ino: number;
  /** File type (`S_IFMT` bits, see {@link fileType}) and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** `st_rdev`, the device a block or character device node stands for; 0 for other files. */
  rdev: number;
  size: number;
}

/**
 * glibc's `makedev()` (<sys/sysmacros.h>), the inverse of files.ts's `major()`/`minor()`: 12 bits
 * of major and 20 of minor fit below 2^44, so a `number` holds every device the kernel can name.
 */
export function makedev(major: number, minor: number): number {
  const high = BigInt(major);
  const low = BigInt(minor);
  return Number(
    ((high & 0xfffn) << 8n) | ((high & ~0xfffn) << 32n) | (low & 0xffn) | ((low & ~0xffn) << 12n),
  );
}

function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reads a `struct statx` that statx(2) filled (a buffer of {@link STATX_SIZE} bytes). */
export function readStatx(bytes: Uint8Array): FileStat {
  if (bytes.byteLength < STATX_SIZE) throw new RangeError(`struct statx needs ${STATX_SIZE} bytes`);
  const view = dataView(bytes);
  const u32 = (offset: number): number => view.getUint32(offset, true);
  const u64 = (offset: number): number => Number(view.getBigUint64(offset, true));
  return {
    dev: makedev(u32(STATX_DEV_MAJOR), u32(STATX_DEV_MINOR)),
    ino: u64(STATX_INO),
    mode: view.getUint16(STATX_MODE, true),
    nlink: u32(STATX_NLINK),
    uid: u32(STATX_UID),
    gid: u32(STATX_GID),
    rdev: makedev(u32(STATX_RDEV_MAJOR), u32(STATX_RDEV_MINOR)),
    size: u64(STATX_SIZE_FIELD),
  };
}

/**
 * glibc's `struct dirent` (bits/dirent.h), the same on x86_64 and aarch64: `ino_t` and `off_t`
 * are 64-bit on both, so `readdir` and `readdir64` return the same record.
 *
 * ```c
 * struct dirent {               // offset
 *   ino_t d_ino;                //  0  u64
 *   off_t d_off;                //  8  i64
 *   unsigned short d_reclen;    // 16  u16  length of this record (often less than the size)
 *   unsigned char d_type;       // 18  u8   DT_* = S_IF* >> 12; DT_UNKNOWN (0) on some filesystems
 *   char d_name[256];           // 19  NUL-terminated
 * };                            // size 280
 * ```
 */
export const DIRENT_RECLEN_OFFSET = 16;
const DIRENT_INO = 0;
const DIRENT_TYPE = 18;
const DIRENT_NAME = 19;

/** One directory entry, as files.ts's `readDir()` returns it. */
export interface DirEntry {
  name: string;
  ino: number;
  /** From `d_type`: "unknown" where the filesystem does not say (then stat the entry). */
  type: FileType;
}

const decoder = new TextDecoder();

/** Reads one `struct dirent` record (`d_reclen` bytes copied out of readdir's buffer). */
export function readDirent(bytes: Uint8Array): DirEntry {
  if (bytes.byteLength <= DIRENT_NAME) throw new RangeError("struct dirent record too short");
  const view = dataView(bytes);
  const name = bytes.subarray(DIRENT_NAME);
  const end = name.indexOf(0);
  return {
    name: decoder.decode(end < 0 ? name : name.subarray(0, end)),
    ino: Number(view.getBigUint64(DIRENT_INO, true)),
    type: fileType(view.getUint8(DIRENT_TYPE) << 12),
  };
}
