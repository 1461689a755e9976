/**
 * `RafsV5ChunkInfo` (spec §2.8): the 80-byte chunk record of v5 inodes and of the v6 chunk table.
 *
 * | off | size | type     | field               |
 * |-----|------|----------|---------------------|
 * | 0   | 32   | u8[32]   | block_id            |
 * | 32  | 4    | u32      | blob_index          |
 * | 36  | 4    | u32      | flags               |
 * | 40  | 4    | u32      | compressed_size     |
 * | 44  | 4    | u32      | uncompressed_size   |
 * | 48  | 8    | u64      | compressed_offset   |
 * | 56  | 8    | u64      | uncompressed_offset |
 * | 64  | 8    | u64      | file_offset         |
 * | 72  | 4    | u32      | index               |
 * | 76  | 4    | u32      | crc32               |
 */
import { type ByteReader, ByteWriter } from '../base/index.js';
import type { InflatePoint } from './compression.js';
import { ChunkFlag } from './constants.js';

export const CHUNK_INFO_SIZE = 80;

/** One chunk: where its stored bytes are, what they decode to, and the digest to verify. */
export interface ChunkInfo {
  /** Digest of the uncompressed bytes (blob digester). */
  digest: Uint8Array;
  blobIndex: number;
  /** `BlobChunkFlags` (§1.4). */
  flags: number;
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  /** Offset of this chunk in the file that uses it (meaningless in the v6 chunk table). */
  fileOffset: number;
  /** Index of the chunk inside its blob (position in the blob meta array). */
  index: number;
  /** CRC-32C of the uncompressed bytes when `flags & HAS_CRC32`. */
  crc32: number;
  /**
   * A member of a batch (`flags & BATCH`, spec §5.6): the stored bytes at `compressedOffset`,
   * `compressedSize` long, hold the whole batch; they decode to `size` bytes, of which this chunk
   * is `uncompressedSize` bytes at `offset`. Known only from the blob's CI array.
   */
  batch?: { offset: number; size: number };
  /**
   * A chunk of a ZRan blob (spec §5.5), whose data is an original gzip layer: the stored bytes at
   * `compressedOffset`, `compressedSize` long, are the range of the layer its context covers;
   * inflated from the context's start (`at`), they give `size` bytes, of which this chunk is
   * `uncompressedSize` bytes at `offset`. Known only from the blob's CI array.
   */
  zran?: { offset: number; size: number; at: InflatePoint };
}

/**
 * Whether `b` is another member of `a`'s batch or ZRan context: one stored unit, fetched and
 * decoded once for both (code that walks chunks in storage order treats it as contiguous, adding
 * no bytes).
 */
export function sameStoredUnit(a: ChunkInfo, b: ChunkInfo): boolean {
  const shared = (a.flags & b.flags & ChunkFlag.BATCH) !== 0 || (a.zran !== undefined && b.zran !== undefined);
  return shared && a.blobIndex === b.blobIndex && a.compressedOffset === b.compressedOffset && a.compressedSize === b.compressedSize;
}

/**
 * How many stored bytes `c` adds to a run of its blob's stored bytes [start, end): its size when
 * stored right after, what passes the end when it starts inside (a batch member, an overlapping
 * ZRan context: nothing more, or the rest of it); undefined when it lies apart (a new run).
 */
export function extendsRun(start: number, end: number, c: ChunkInfo): number | undefined {
  if (c.compressedOffset < start || c.compressedOffset > end) return undefined;
  return Math.max(0, c.compressedOffset + c.compressedSize - end);
}

/**
 * The stored unit `c` shares with other chunks (a batch, or a ZRan context), if any: what the unit
 * decodes to, and where `c`'s data is in that.
 */
export function sharedUnit(c: ChunkInfo): { offset: number; size: number } | undefined {
  return c.batch ?? c.zran;
}

export function isCompressed(c: ChunkInfo): boolean {
  return (c.flags & ChunkFlag.COMPRESSED) !== 0;
}

export function decodeChunkInfo(r: ByteReader, off: number): ChunkInfo {
  r.check(off, CHUNK_INFO_SIZE, 'chunk info');
  return {
    digest: r.slice(off, 32),
    blobIndex: r.u32(off + 32),
    flags: r.u32(off + 36),
    compressedSize: r.u32(off + 40),
    uncompressedSize: r.u32(off + 44),
    compressedOffset: r.u64(off + 48, 'chunk compressed_offset'),
    uncompressedOffset: r.u64(off + 56, 'chunk uncompressed_offset'),
    fileOffset: r.u64(off + 64, 'chunk file_offset'),
    index: r.u32(off + 72),
    crc32: r.u32(off + 76),
  };
}

export function encodeChunkInfo(w: ByteWriter, c: ChunkInfo): void {
  if (c.digest.length !== 32) throw new RangeError('chunk digest must be 32 bytes');
  w.bytes(c.digest)
    .u32(c.blobIndex)
    .u32(c.flags)
    .u32(c.compressedSize)
    .u32(c.uncompressedSize)
    .u64(c.compressedOffset)
    .u64(c.uncompressedOffset)
    .u64(c.fileOffset)
    .u32(c.index)
    .u32(c.crc32);
}

/**
 * Whether two records describe the same stored chunk the same way: where it is (compressed and
 * uncompressed), what it holds (digest) and how (flags). Every user of a chunk's key (caches,
 * fetches shared by readers) relies on one key meaning one such description.
 */
export function sameChunk(a: ChunkInfo, b: ChunkInfo): boolean {
  return (
    a.blobIndex === b.blobIndex &&
    a.index === b.index &&
    a.flags === b.flags &&
    a.compressedOffset === b.compressedOffset &&
    a.compressedSize === b.compressedSize &&
    a.uncompressedOffset === b.uncompressedOffset &&
    a.uncompressedSize === b.uncompressedSize &&
    a.digest.length === b.digest.length &&
    a.digest.every((x, i) => x === b.digest[i])
  );
}

/** A number naming a chunk within an image: its blob index * 2^32 + its index in that blob. */
export function chunkKey(c: ChunkInfo): number {
  return c.blobIndex * 0x1_0000_0000 + c.index;
}

/** The blob index of a `chunkKey`. */
export function blobOfChunkKey(k: number): number {
  return Math.floor(k / 0x1_0000_0000);
}
