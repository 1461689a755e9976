/**
 * The `FileSystem` interface the FUSE server calls: the FUSE operations in camelCase, with
 * idiomatic argument types. A method that is absent answers ENOSYS; a read-only filesystem
 * answers EROFS to writes. Pure types and the `FsError` carrying an errno.
 */

/** Linux errno values used across filesystems (positive; replies carry them negated). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENOTTY: 25,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  ESTALE: 116,
} as const;

/**
 * A failure with an errno, the only error a FileSystem method should throw on purpose. It is an
 * answer (ENOENT for a name that is not there), not a bug report: it carries no stack trace, whose
 * capture would cost more than the rest of the request (a negative lookup before every create).
 */
export class FsError extends Error {
  readonly errno: number;

  constructor(errno: number, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message ?? `errno ${errno}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.errno = errno;
  }
}

export interface RequestContext {
  uid: number;
  gid: number;
  pid: number;
  /**
   * Fires when the request is abandoned (its virtqueue stopped with it still in flight): a READ
   * must then stop waiting and write nothing more into its buffers, which the guest may reuse.
   */
  signal?: AbortSignal;
  /**
   * For a creating call under FUSE_SECURITY_CTX, the xattr (e.g. security.selinux) the guest's
   * LSM wants on the new node; absent otherwise.
   */
  securityContext?: { name: Uint8Array; value: Uint8Array };
  /**
   * For a creating call under FUSE_CREATE_SUPP_GROUP, supplementary groups of the caller the
   * kernel vouches for (the parent directory's group, when the caller is a member through it).
   */
  groups?: number[];
}

export interface Timespec {
  sec: number;
  nsec: number;
}

/** `struct fuse_attr` in idiomatic form. */
export interface Attr {
  ino: number;
  size: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Full st_mode. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
  /** FUSE_ATTR_SUBMOUNT and friends. */
  flags: number;
}

export interface AttrReply {
  attr: Attr;
  /** Seconds the kernel may cache the attributes. */
  timeout: number;
}

export interface EntryReply {
  /** 0 for a cached negative entry. */
  nodeid: number;
  generation: number;
  attr: Attr;
  entryTimeout: number;
  attrTimeout: number;
}

export interface OpenReply {
  fh: bigint;
  /** FOPEN_* flags. */
  flags: number;
}

export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** One directory entry for READDIR. `offset` is where the next READDIR resumes. */
export interface DirEntry {
  ino: number;
  offset: number;
  /** DT_* type (file type bits >> 12). */
  type: number;
  name: Uint8Array;
}

export interface DirEntryPlus extends DirEntry {
  entry: EntryReply;
}

/** Adds one entry to the reply; false when it did not fit (the entry is then not returned). */
export type DirSink<T> = (entry: T) => boolean;

/** Capabilities the server negotiated with the kernel, given to `init`. */
export interface FsInit {
  /** FUSE_* flags in effect (both sides agreed). */
  flags: bigint;
}

export interface SetattrIn {
  valid: number;
  fh?: bigint;
  size?: number;
  atime?: Timespec | 'now';
  mtime?: Timespec | 'now';
  ctime?: Timespec;
  mode?: number;
  uid?: number;
  gid?: number;
}

export interface FileSystem {
  /** The flags this filesystem wants on top of the server's defaults. */
  readonly wantedInitFlags?: bigint;
  init?(init: FsInit): void;
  /** The session ends (DESTROY or a new INIT): drop all lookups and open handles. */
  destroy?(): void;

  /**
   * What another daemon taking over the connection needs to serve the node ids and handles the
   * kernel holds (JSON-serialisable); without it, this filesystem cannot be handed over.
   */
  saveState?(): unknown;
  /** Continues from `saveState` in a fresh instance over the same source, after `init`. Throws on a state it cannot use. */
  restoreState?(state: unknown): void;

  lookup?(ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryReply>;
  forget?(nodeid: number, nlookup: number): void;
  getattr?(ctx: RequestContext, nodeid: number, fh?: bigint): Promise<AttrReply>;
  setattr?(ctx: RequestContext, nodeid: number, set: SetattrIn): Promise<AttrReply>;
  readlink?(ctx: RequestContext, nodeid: number): Promise<Uint8Array>;
  symlink?(ctx: RequestContext, parent: number, name: Uint8Array, target: Uint8Array): Promise<EntryReply>;
  mknod?(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<EntryReply>;
  mkdir?(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, umask: number): Promise<EntryReply>;
  unlink?(ctx: RequestContext, parent: number, name: Uint8Array): Promise<void>;
  rmdir?(ctx: RequestContext, parent: number, name: Uint8Array): Promise<void>;
  rename?(ctx: RequestContext, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void>;
  link?(ctx: RequestContext, nodeid: number, newParent: number, newName: Uint8Array): Promise<EntryReply>;
  /**
   * `openFlags` (for OPEN and CREATE) is fuse_open_in.open_flags: FUSE_OPEN_KILL_SUIDGID (bit 0)
   * says, under KILLPRIV_V2, that a truncating opener lacks CAP_FSETID.
   */
  open?(ctx: RequestContext, nodeid: number, flags: number, openFlags?: number): Promise<OpenReply>;
  create?(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, flags: number, umask: number, openFlags?: number): Promise<{ entry: EntryReply; open: OpenReply }>;
  /** copy_file_range(2) between two open files of this filesystem; the bytes copied (maybe fewer than `length`). */
  copyFileRange?(ctx: RequestContext, nodeIn: number, fhIn: bigint, offsetIn: number, nodeOut: number, fhOut: bigint, offsetOut: number, length: number, flags: number): Promise<number>;
  /** An unnamed file in directory `parent` (open(2) with O_TMPFILE), opened. */
  tmpfile?(ctx: RequestContext, parent: number, mode: number, flags: number, umask: number): Promise<{ entry: EntryReply; open: OpenReply }>;
  /** Reads up to `size` bytes into `dst` (a scatter list of at least `size` bytes); returns the count. */
  read?(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, size: number, dst: Uint8Array[]): Promise<number>;
  write?(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, data: Uint8Array[], flags: number): Promise<number>;
  flush?(ctx: RequestContext, nodeid: number, fh: bigint): Promise<void>;
  release?(ctx: RequestContext, nodeid: number, fh: bigint, flags: number): Promise<void>;
  fsync?(ctx: RequestContext, nodeid: number, fh: bigint, datasync: boolean): Promise<void>;
  opendir?(ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply>;
  readdir?(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntry>): Promise<void>;
  readdirplus?(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void>;
  releasedir?(ctx: RequestContext, nodeid: number, fh: bigint): Promise<void>;
  fsyncdir?(ctx: RequestContext, nodeid: number, fh: bigint, datasync: boolean): Promise<void>;
  statfs?(ctx: RequestContext, nodeid: number): Promise<StatFs>;
  /**
   * `flags`: XATTR_CREATE / XATTR_REPLACE as the caller gave them; `setxattrFlags`: FUSE_SETXATTR_*
   * from the kernel (0 unless FUSE_SETXATTR_EXT was agreed).
   */
  setxattr?(ctx: RequestContext, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number, setxattrFlags: number): Promise<void>;
  /** The value of an xattr (the server handles the size negotiation and ERANGE). */
  getxattr?(ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array>;
  /** Every xattr name (the server joins them NUL-terminated and handles ERANGE). */
  listxattr?(ctx: RequestContext, nodeid: number): Promise<Uint8Array[]>;
  removexattr?(ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<void>;
  access?(ctx: RequestContext, nodeid: number, mask: number): Promise<void>;
  fallocate?(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, length: number, mode: number): Promise<void>;
  lseek?(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, whence: number): Promise<number>;
  syncfs?(ctx: RequestContext, nodeid: number): Promise<void>;
  ioctl?(ctx: RequestContext, nodeid: number, fh: bigint, cmd: number, arg: bigint, input: Uint8Array, outSize: number): Promise<{ result: number; output: Uint8Array }>;
}

/** Directory entry type for a st_mode (DT_*). */
export function direntType(mode: number): number {
  return (mode & 0o170000) >> 12;
}
