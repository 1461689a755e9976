/**
 * Shared enumerations, flags and limits of RAFS v5/v6 (spec §1).
 */

/** Digest algorithm numbers (spec §1.1). */
export enum Digester {
  Blake3 = 0,
  Sha256 = 1,
}

/** Cipher numbers (spec §1.1). */
export enum Cipher {
  None = 0,
  Aes128Xts = 1,
}

/** `RafsSuperFlags` (spec §1.2), v5 `s_flags` and the v6 extended superblock `s_flags`. */
export const SuperFlags = {
  COMPRESSION_NONE: 0x1n,
  COMPRESSION_LZ4: 0x2n,
  HASH_BLAKE3: 0x4n,
  HASH_SHA256: 0x8n,
  EXPLICIT_UID_GID: 0x10n,
  HAS_XATTR: 0x20n,
  COMPRESSION_GZIP: 0x40n,
  COMPRESSION_ZSTD: 0x80n,
  INLINED_CHUNK_DIGEST: 0x100n,
  TARTFS_MODE: 0x200n,
  ENCRYPTION_NONE: 0x100_0000n,
  ENCRYPTION_ASE_128_XTS: 0x200_0000n,
  /** PRESERVED_COMPAT_5 … _0: reserved bits a reader accepts. */
  PRESERVED_MASK: 0xfc00_0000n,
} as const;

export const SUPER_FLAGS_KNOWN =
  SuperFlags.COMPRESSION_NONE |
  SuperFlags.COMPRESSION_LZ4 |
  SuperFlags.HASH_BLAKE3 |
  SuperFlags.HASH_SHA256 |
  SuperFlags.EXPLICIT_UID_GID |
  SuperFlags.HAS_XATTR |
  SuperFlags.COMPRESSION_GZIP |
  SuperFlags.COMPRESSION_ZSTD |
  SuperFlags.INLINED_CHUNK_DIGEST |
  SuperFlags.TARTFS_MODE |
  SuperFlags.ENCRYPTION_NONE |
  SuperFlags.ENCRYPTION_ASE_128_XTS |
  SuperFlags.PRESERVED_MASK;

/** `BlobFeatures` (spec §1.3). */
export const BlobFeature = {
  ALIGNED: 0x1,
  INLINED_FS_META: 0x2,
  CHUNK_INFO_V2: 0x4,
  ZRAN: 0x8,
  SEPARATE: 0x10,
  INLINED_CHUNK_DIGEST: 0x20,
  TARFS: 0x40,
  BATCH: 0x80,
  ENCRYPTED: 0x100,
  IS_CHUNKDICT_GENERATED: 0x200,
  IS_SEPARATED_WITH_PREFETCH_FILES: 0x400,
  EXTERNAL: 0x800,
  HAS_TAR_HEADER: 0x1000_0000,
  HAS_TOC: 0x2000_0000,
  CAP_TAR_TOC: 0x4000_0000,
  /** Internal only; never valid on disk. */
  V5_NO_EXT_BLOB_TABLE: 0x8000_0000,
} as const;

/** `BlobChunkFlags` (spec §1.4), the flags of an 80-byte chunk info. */
export const ChunkFlag = {
  COMPRESSED: 0x01,
  HOLECHUNK: 0x02,
  ENCRYPTED: 0x04,
  BATCH: 0x08,
  HAS_CRC32: 0x10,
} as const;

/** Limits and defaults (spec §1.5). */
export const Limits = {
  DEFAULT_CHUNK_SIZE: 0x10_0000,
  MIN_CHUNK_SIZE: 0x1000,
  MAX_CHUNK_SIZE: 0x100_0000,
  MAX_CHUNKS_PER_BLOB: 0xff_ffff,
  MAX_NAME: 255,
  MAX_SYMLINK: 0xffff,
  /** nydus refuses longer v6 symlink targets; so do we, when writing and reading v6. */
  MAX_V6_SYMLINK: 4096,
  /**
   * The longest symlink target Linux makes or reads back (PATH_MAX with its NUL; the kernel's
   * FUSE READLINK takes one page less a byte): the builder's limit, and the longest one served.
   */
  MAX_LINUX_SYMLINK: 4095,
  MAX_XATTR_NAME: 255,
  MAX_XATTR_VALUE: 0xffff,
  MAX_BLOB_ID: 64,
  MAX_V6_BLOBS: 254,
  BLOCK_SIZE: 4096,
} as const;

/** The five xattr name prefixes RAFS accepts (spec §1.5), with their EROFS prefix ids (§3.8). */
export const XATTR_PREFIXES: ReadonlyArray<{ prefix: string; index: number; fullName: boolean }> = [
  { prefix: 'user.', index: 1, fullName: false },
  { prefix: 'system.posix_acl_access', index: 2, fullName: true },
  { prefix: 'system.posix_acl_default', index: 3, fullName: true },
  { prefix: 'trusted.', index: 4, fullName: false },
  { prefix: 'security.', index: 6, fullName: false },
];

/** POSIX file type bits. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export type InodeKind = 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export function kindOfMode(mode: number): InodeKind | undefined {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'dir';
    case S_IFREG:
      return 'file';
    case S_IFLNK:
      return 'symlink';
    case S_IFCHR:
      return 'char';
    case S_IFBLK:
      return 'block';
    case S_IFIFO:
      return 'fifo';
    case S_IFSOCK:
      return 'socket';
    default:
      return undefined;
  }
}

export function modeTypeOfKind(kind: InodeKind): number {
  switch (kind) {
    case 'dir':
      return S_IFDIR;
    case 'file':
      return S_IFREG;
    case 'symlink':
      return S_IFLNK;
    case 'char':
      return S_IFCHR;
    case 'block':
      return S_IFBLK;
    case 'fifo':
      return S_IFIFO;
    case 'socket':
      return S_IFSOCK;
  }
}

/** Linux `new_encode_dev`, the 32-bit rdev RAFS stores (spec §3.7). */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDev(rdev: number): { major: number; minor: number } {
  return { major: (rdev & 0xfff00) >>> 8, minor: ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0 };
}
