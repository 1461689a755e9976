/**
 * The reader-side model shared by RAFS v5 and v6: one `RafsImage` interface over an untrusted
 * bootstrap, used by the image filesystem, `inspect`, `check` and `unpack`. Implementations
 * decode lazily from the bootstrap bytes and check every offset before use.
 */
import type { BlobChunkTable } from './blob/meta.js';
import type { ChunkInfo } from './chunk-info.js';
import type { CipherContext } from './cipher.js';
import type { Compressor } from './compression.js';
import type { Digester, InodeKind } from './constants.js';

/** A data blob as the bootstrap describes it. */
export interface BlobInfo {
  /** Position in the blob table. */
  index: number;
  /** Blob id (normally 64 lower-case hex digits = its SHA-256 per spec §5.10). */
  id: string;
  chunkSize: number;
  chunkCount: number;
  compressor: Compressor;
  digester: Digester;
  /** `BlobFeatures` (§1.3). */
  features: number;
  /** Size of the blob file (§5.10), 0 when unknown (v5 without extended table). */
  compressedSize: number;
  /** Size of the uncompressed view (4 KiB slots when ALIGNED). */
  uncompressedSize: number;
  /**
   * A SEPARATE blob (ZRan, spec §5.5): its blob meta is at `meta.offset` of another blob, the
   * "meta blob", whose id is the hex of `digest` (blob_meta_digest), `size` bytes long.
   */
  separateMeta?: { digest: Uint8Array; size: number };
  /** Blob meta location (v6; in the meta blob for a SEPARATE blob); zero sizes when absent. */
  meta: {
    compressor: Compressor;
    offset: number;
    compressedSize: number;
    uncompressedSize: number;
  };
  /** ToC (v6 ≥ 2.2): size of entries + its tar header, and their SHA-256; 0 / zeros if none. */
  tocSize: number;
  tocDigest: Uint8Array;
  /** Blob prefetch range (v5 readahead), 0 when unused. */
  readahead: { offset: number; size: number };
  /** v6 device slot: blocks and mapped_blkaddr of the flattened view (§3.14). */
  device?: { blocks: number; mappedBlkaddr: number };
  /** An ENCRYPTED blob's AES-128-XTS key and tweak (§5.12). */
  cipher?: CipherContext;
}

/** Attributes of one inode. */
export interface InodeAttr {
  /** The inode number the image reports: v5 `i_ino`, v6 the nid (as nydusd). */
  ino: number;
  kind: InodeKind;
  /** Full `st_mode` (type and permission bits). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Linux-encoded device number of char/block devices (spec §3.7), else 0. */
  rdev: number;
  /** 512-byte blocks as stored (v5) or derived from the size (v6). */
  blocks: number;
  hasXattrs: boolean;
}

export interface DirEntry {
  name: Uint8Array;
  ino: number;
  kind: InodeKind;
}

export interface Xattr {
  name: Uint8Array;
  value: Uint8Array;
}

export interface RafsImage {
  readonly version: 5 | 6;
  /** Superblock flags (§1.2). */
  readonly flags: bigint;
  readonly chunkSize: number;
  /** The filesystem digester (v5 superblock; v6: the superblock flag). */
  readonly digester: Digester;
  /** The filesystem compressor from the superblock flags. */
  readonly compressor: Compressor;
  readonly blobs: readonly BlobInfo[];
  readonly rootIno: number;
  /** Number of inodes counted as the superblock does (v5 `s_inodes_count`, v6 `s_inos`). */
  readonly inodeCount: number;
  /** The prefetch table: inode numbers (v5) or nids (v6), in table order. */
  readonly prefetch: readonly number[];
  /** Size of the bootstrap in bytes. */
  readonly size: number;

  getAttr(ino: number): InodeAttr;
  /** Children of a directory in name order, without `.` and `..`, from position `start`. */
  readdir(dirIno: number, start?: number): Iterable<DirEntry>;
  /** Number of children of a directory (without `.` and `..`). */
  childCount(dirIno: number): number;
  /** Binary search by raw name bytes. */
  lookup(dirIno: number, name: Uint8Array): DirEntry | undefined;
  /** The parent directory's inode number (the root's parent is the root). */
  parent(dirIno: number): number;
  readlink(ino: number): Uint8Array;
  xattrs(ino: number): Xattr[];
  /** The chunks of a regular file in file order, each resolved to its stored location. */
  fileChunks(ino: number): ChunkInfo[];
  /** Every distinct chunk the bootstrap lists (v6 chunk table), when it has such a list. */
  allChunks?(): ChunkInfo[];
  /**
   * Builds now the lookup tables a first read would otherwise build on its way (v6: where each
   * chunk sits in the chunk table), for a server to call while it waits for its first request.
   */
  prepare?(): void;
  /**
   * The blobs whose chunks can be located only through their CI array (v6 blobs with batch or
   * ZRan chunks: the bootstrap's chunk table does not say where a batch member or a ZRan chunk is
   * stored), and that have not been given it yet.
   */
  blobsNeedingMeta(): readonly BlobInfo[];
  /** Hands the image such a blob's decoded CI array; chunks of that blob are located with it. */
  attachBlobMeta(blobIndex: number, table: BlobChunkTable): void;
}

/** Textual name of a path made of raw name components (for messages and listings). */
export function pathToString(components: readonly Uint8Array[]): string {
  if (components.length === 0) return '/';
  return components.map((c) => '/' + Buffer.from(c.buffer, c.byteOffset, c.byteLength).toString('utf8')).join('');
}
