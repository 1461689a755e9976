/**
 * Constants, name checks, error conversion and attribute conversion shared by the passthrough
 * filesystem's files. Linux x86-64/arm64 values (asm-generic), as the FUSE protocol carries them.
 */
import type { PtStat } from '../../native/addon.js';
import { type Attr, Errno, FsError } from '../types.js';

export const O_ACCMODE = 0o3;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DSYNC = 0o10000;
export const O_DIRECT = 0o40000;
export const O_LARGEFILE = 0o100000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_NOATIME = 0o1000000;
export const O_SYNC = 0o4010000;
export const O_PATH = 0o10000000;

export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_BENEATH = 0x08;
/** Every single-name resolution: never leave the parent, never jump through /proc magic links. */
export const RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_IXGRP = 0o010;

export const UTIME_NOW = (1 << 30) - 1;

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

/** FUSE_INIT flags this filesystem may ask for (fuse_kernel.h). */
export const InitBits = {
  DONT_MASK: 1n << 6n,
  POSIX_ACL: 1n << 20n,
  SETXATTR_EXT: 1n << 29n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  WRITEBACK_CACHE: 1n << 16n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SECURITY_CTX: 1n << 32n,
  CREATE_SUPP_GROUP: 1n << 34n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
} as const;

export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FUSE_ATTR_SUBMOUNT = 1 << 0;
/** fuse_write_in.write_flags: the write comes from the page cache (writeback, mmap). */
export const FUSE_WRITE_CACHE = 1 << 0;
/** fuse_write_in.write_flags: the writer lacks CAP_FSETID; drop setuid and setgid (KILLPRIV_V2). */
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_setattr_in.valid: the same for a SETATTR (a truncate, a chown) under KILLPRIV_V2. */
export const FATTR_KILL_SUIDGID = 1 << 11;
/** fuse_open_in.open_flags (and fuse_create_in's): the same for an OPEN or CREATE with O_TRUNC under KILLPRIV_V2. */
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
/** fuse_setxattr_in.setxattr_flags: the caller setting an ACL is neither in the group nor has CAP_FSETID. */
export const FUSE_SETXATTR_ACL_KILL_SGID = 1 << 0;

/** Open flags passed to the host; everything else (__FMODE_EXEC 0x20, O_CREAT, O_NOCTTY, ...) is dropped. */
export const OPEN_FLAGS_KEPT = O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DIRECT | O_LARGEFILE | O_NOATIME | O_TRUNC;

export function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR;
}

export function isReg(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG;
}

/** Any error with a numeric errno (a Node system error, an addon SysError) as an FsError. */
export function toFsError(e: unknown): unknown {
  if (e instanceof FsError) return e;
  const n = (e as { errno?: unknown } | undefined)?.errno;
  if (typeof n === 'number' && n !== 0) return new FsError(Math.abs(n), (e as Error).message);
  return e;
}

/** Runs a host call, turning its system error into an FsError with the same errno. */
export function sys<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toFsError(e);
  }
}

export async function sysAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toFsError(e);
  }
}

export function isDot(name: Uint8Array): boolean {
  return name.length === 1 && name[0] === 0x2e;
}

export function isDotDot(name: Uint8Array): boolean {
  return name.length === 2 && name[0] === 0x2e && name[1] === 0x2e;
}

/**
 * A guest-supplied name as one path component: a '/' anywhere is EINVAL, and so are "." and ".."
 * unless `dots` allows them (LOOKUP only), as the C virtiofsd does.
 */
export function component(name: Uint8Array, dots = false): Buffer {
  if (name.includes(0x2f)) throw new FsError(Errno.EINVAL, 'a name must not contain "/"');
  if (!dots && (isDot(name) || isDotDot(name))) throw new FsError(Errno.EINVAL, 'a name must not be "." or ".."');
  return Buffer.from(name.buffer, name.byteOffset, name.byteLength);
}

export function toAttr(st: PtStat, flags = 0): Attr {
  return {
    ino: Number(st.ino),
    size: st.size,
    blocks: st.blocks,
    atime: { sec: st.atimeSec, nsec: st.atimeNsec },
    mtime: { sec: st.mtimeSec, nsec: st.mtimeNsec },
    ctime: { sec: st.ctimeSec, nsec: st.ctimeNsec },
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    rdev: st.rdev,
    blksize: st.blksize,
    flags,
  };
}
