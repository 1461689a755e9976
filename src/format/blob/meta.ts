/**
 * Blob meta (spec §5.3–5.4): the chunk-info ("CI") array stored near the end of every v6 blob and
 * its 4096-byte header `BlobCompressionContextHeader`.
 *
 * Header (spec §5.3), 4096 bytes:
 * | off  | size | type | field                  |
 * |------|------|------|------------------------|
 * | 0    | 4    | u32  | s_magic (0xB10BB10B)   |
 * | 4    | 4    | u32  | s_features             |
 * | 8    | 4    | u32  | s_ci_compressor        |
 * | 12   | 4    | u32  | s_ci_entries           |
 * | 16   | 8    | u64  | s_ci_offset            |
 * | 24   | 8    | u64  | s_ci_compressed_size   |
 * | 32   | 8    | u64  | s_ci_uncompressed_size |
 * | 40   | 8    | u64  | s_ci_zran_offset       |
 * | 48   | 8    | u64  | s_ci_zran_size         |
 * | 56   | 4    | u32  | s_ci_zran_count        |
 * | 60   | 4032 | u8[] | s_reserved             |
 * | 4092 | 4    | u32  | s_magic2 (0xB10BB10B)  |
 *
 * Chunk info v1 (16 bytes) and v2 (24 bytes): bit layouts in spec §5.4, decoded below.
 */
import { ByteReader, ByteWriter, FormatError } from '../../base/index.js';
import { compressorFromNumber, type Compressor, type InflatePoint } from '../compression.js';
import { encryptedSize } from '../cipher.js';
import { BlobFeature } from '../constants.js';

export const BLOB_META_MAGIC = 0xb10bb10b;
export const BLOB_META_HEADER_SIZE = 4096;
export const CI_V1_SIZE = 16;
export const CI_V2_SIZE = 24;

export interface BlobMetaHeader {
  features: number;
  ciCompressor: Compressor;
  ciEntries: number;
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
  zranOffset: number;
  zranSize: number;
  zranCount: number;
}

export function decodeBlobMetaHeader(bytes: Uint8Array, what: string): BlobMetaHeader {
  const r = new ByteReader(bytes, what);
  r.check(0, BLOB_META_HEADER_SIZE, 'blob meta header');
  if (r.u32(0) !== BLOB_META_MAGIC || r.u32(4092) !== BLOB_META_MAGIC) throw new FormatError(`${what}: bad blob meta magic`);
  return {
    features: r.u32(4),
    ciCompressor: compressorFromNumber(r.u32(8), what),
    ciEntries: r.u32(12),
    ciOffset: r.u64(16, 's_ci_offset'),
    ciCompressedSize: r.u64(24, 's_ci_compressed_size'),
    ciUncompressedSize: r.u64(32, 's_ci_uncompressed_size'),
    zranOffset: r.u64(40, 's_ci_zran_offset'),
    zranSize: r.u64(48, 's_ci_zran_size'),
    zranCount: r.u32(56),
  };
}

export function encodeBlobMetaHeader(h: BlobMetaHeader): Buffer {
  const w = new ByteWriter(BLOB_META_HEADER_SIZE);
  w.u32(BLOB_META_MAGIC).u32(h.features).u32(h.ciCompressor).u32(h.ciEntries);
  w.u64(h.ciOffset).u64(h.ciCompressedSize).u64(h.ciUncompressedSize);
  w.u64(h.zranOffset).u64(h.zranSize).u32(h.zranCount);
  w.padTo(4092).u32(BLOB_META_MAGIC);
  return w.finish();
}

/** One decoded chunk-info entry: where chunk `index` is stored and where it goes uncompressed. */
export interface BlobChunkEntry {
  uncompressedOffset: number;
  uncompressedSize: number;
  compressedOffset: number;
  compressedSize: number;
  compressed: boolean;
  /** v2 flags byte (COMPRESSED 0x1, ZRAN 0x2, BATCH 0x4, ENCRYPTED 0x8, HAS_CRC32 0x10); v1: derived. */
  flags: number;
  /** v2 `data` word (zran/batch location or CRC-32C); 0 for v1. */
  data: bigint;
}

export const CiFlag = { COMPRESSED: 0x1, ZRAN: 0x2, BATCH: 0x4, ENCRYPTED: 0x8, HAS_CRC32: 0x10 } as const;

export function ciEntrySize(features: number): number {
  return features & BlobFeature.CHUNK_INFO_V2 ? CI_V2_SIZE : CI_V1_SIZE;
}

/** Decodes entry `i` of an uncompressed CI array. */
export function decodeCiEntry(r: ByteReader, i: number, v2: boolean): BlobChunkEntry {
  const at = i * (v2 ? CI_V2_SIZE : CI_V1_SIZE);
  const u = r.u64n(at, 'uncomp_info');
  const c = r.u64n(at + 8, 'comp_info');
  if (v2) {
    const flags = Number(u >> 56n);
    if (flags & 0xe0) throw new FormatError(`${r.what}: entry ${i} has invalid flags 0x${flags.toString(16)}`);
    return {
      uncompressedOffset: Number(u & 0xffff_ffffn) * 4096,
      uncompressedSize: Number((u >> 32n) & 0xff_ffffn) + 1,
      compressedOffset: Number(c & 0xff_ffff_ffffn),
      compressedSize: Number(c >> 40n),
      compressed: (flags & CiFlag.COMPRESSED) !== 0,
      flags,
      data: r.u64n(at + 16),
    };
  }
  const uncompressedSize = Number(((u & 0xf00n) << 12n) | (u >> 44n)) + 1;
  const compressedSize = Number((c >> 44n) | ((c & 0xf00_0000_0000n) >> 20n)) + 1;
  const compressed = compressedSize !== uncompressedSize;
  return {
    uncompressedOffset: Number(u & 0xfff_ffff_f000n),
    uncompressedSize,
    compressedOffset: Number(c & 0xff_ffff_ffffn),
    compressedSize,
    compressed,
    flags: compressed ? CiFlag.COMPRESSED : 0,
    data: 0n,
  };
}

/** Encodes a v1 entry (the format Nydus 2.2 writes and Damselfly writes). */
export function encodeCiV1(w: ByteWriter, e: { uncompressedOffset: number; uncompressedSize: number; compressedOffset: number; compressedSize: number }): void {
  if (e.uncompressedOffset % 4096 !== 0) throw new RangeError('v1 chunk info needs 4 KiB aligned offsets');
  if (e.uncompressedSize < 1 || e.uncompressedSize > 1 << 24 || e.compressedSize < 1 || e.compressedSize > 1 << 24) {
    throw new RangeError('v1 chunk info sizes must be 1..16 MiB');
  }
  const us = BigInt(e.uncompressedSize - 1);
  const cs = BigInt(e.compressedSize - 1);
  const u = ((us >> 20n) << 8n) | BigInt(e.uncompressedOffset) | ((us & 0xf_ffffn) << 44n);
  const c = BigInt(e.compressedOffset) | ((cs >> 20n) << 40n) | ((cs & 0xf_ffffn) << 44n);
  w.u64(u).u64(c);
}

/** Encodes a v2 entry (spec §5.4): flags and the `data` word (batch location or CRC-32C) included. */
export function encodeCiV2(w: ByteWriter, e: Omit<BlobChunkEntry, 'compressed'>): void {
  if (e.uncompressedOffset % 4096 !== 0) throw new RangeError('chunk info needs 4 KiB aligned offsets');
  if (e.uncompressedSize < 1 || e.uncompressedSize > 1 << 24 || e.compressedSize < 0 || e.compressedSize >= 1 << 24) {
    throw new RangeError('v2 chunk info sizes must be 1..16 MiB (compressed: 0..16 MiB)');
  }
  if (e.flags < 0 || e.flags > 0x1f) throw new RangeError(`invalid chunk info flags 0x${e.flags.toString(16)}`);
  const u = BigInt(e.uncompressedOffset / 4096) | (BigInt(e.uncompressedSize - 1) << 32n) | (BigInt(e.flags) << 56n);
  const c = BigInt(e.compressedOffset) | (BigInt(e.compressedSize) << 40n);
  w.u64(u).u64(c).u64(e.data);
}

/** `BatchInflateContext` (spec §5.6): one stored unit holding the data of several small chunks. */
export interface BatchContext {
  /** Stored size of the whole batch. */
  compressedSize: number;
  /** Sum of its members' sizes (not 4 KiB aligned): what the stored unit decompresses to. */
  uncompressedSize: number;
}

export const BATCH_CONTEXT_SIZE = 40;

export function encodeBatchContext(w: ByteWriter, b: BatchContext): void {
  w.u32(b.compressedSize).u32(b.uncompressedSize).zeros(32);
}

/** Where a batch member's data is: batch `index`, bytes [offset, offset + size of the chunk) of it. */
export function batchLocation(e: BlobChunkEntry): { index: number; offset: number } {
  return { index: Number(e.data >> 32n), offset: Number(e.data & 0xffff_ffffn) };
}

/**
 * `ZranInflateContext` (spec §5.5): a range of a ZRan blob's gzip layer that inflates, from its
 * start, to `outLen` bytes that hold whole chunks.
 *
 * | off | size | type | field       |
 * |-----|------|------|-------------|
 * | 0   | 8    | u64  | in_offset   |
 * | 8   | 8    | u64  | out_offset  |
 * | 16  | 8    | u64  | dict_offset (in the dictionary table after the contexts) |
 * | 24  | 4    | u32  | in_len      |
 * | 28  | 4    | u32  | out_len     |
 * | 32  | 4    | u32  | dict_size   |
 * | 36  | 1    | u8   | ctx_byte    |
 * | 37  | 1    | u8   | ctx_bits    |
 */
export interface ZranContext {
  inOffset: number;
  inLen: number;
  /** Offset of the context's output in the layer's whole uncompressed stream (informative). */
  outOffset: number;
  outLen: number;
  at: InflatePoint;
}

export const ZRAN_CONTEXT_SIZE = 40;
/** The window deflate refers back to: no context needs a longer dictionary. */
const MAX_ZRAN_DICT = 32 << 10;

/** The ZRan context table: the contexts, then their dictionaries in the same order. */
export function encodeZranTable(contexts: readonly ZranContext[]): Buffer {
  const dictBytes = contexts.reduce((n, c) => n + c.at.dict.length, 0);
  const w = new ByteWriter(contexts.length * ZRAN_CONTEXT_SIZE + dictBytes);
  let dictOffset = 0;
  for (const c of contexts) {
    w.u64(c.inOffset).u64(c.outOffset).u64(dictOffset).u32(c.inLen).u32(c.outLen).u32(c.at.dict.length);
    w.u8(c.at.byte).u8(c.at.bits).zeros(2);
    dictOffset += c.at.dict.length;
  }
  for (const c of contexts) w.bytes(c.at.dict);
  return w.finish();
}

/** Where a ZRan chunk's data is: context `index`, bytes [offset, offset + size of the chunk) of its output. */
export const zranLocation = batchLocation;

/** A blob's decoded CI data: the chunk-info array, and the batch or ZRan contexts it refers to. */
export interface BlobChunkTable {
  entries: BlobChunkEntry[];
  batches: BatchContext[];
  zran: ZranContext[];
}

/** The largest chunk, and so the largest batch or ZRan context output (nydus `RAFS_MAX_CHUNK_SIZE`). */
const MAX_BATCH_BYTES = 16 << 20;

/**
 * Decodes a blob's uncompressed CI data as its header describes it (spec §5.4-5.6), checking
 * every batch member against its batch and every ZRan chunk against its context.
 */
export function decodeBlobChunkTable(ci: Uint8Array, h: BlobMetaHeader, what: string): BlobChunkTable {
  if (ci.length !== h.ciUncompressedSize) throw new FormatError(`${what}: CI data of ${ci.length} bytes, the header says ${h.ciUncompressedSize}`);
  if (h.features & BlobFeature.BATCH && h.features & BlobFeature.ZRAN) throw new FormatError(`${what}: both batch and ZRan chunks`);
  const entries = decodeCiArray(ci, h.ciEntries, h.features, what);
  const batches: BatchContext[] = [];
  if (h.features & BlobFeature.BATCH) {
    if (!(h.features & BlobFeature.CHUNK_INFO_V2)) throw new FormatError(`${what}: batch chunks need chunk info v2`);
    const r = new ByteReader(ci, what);
    const tableEnd = h.zranOffset + h.zranCount * BATCH_CONTEXT_SIZE;
    if (h.zranOffset < h.ciEntries * CI_V2_SIZE || tableEnd > ci.length) throw new FormatError(`${what}: batch context table outside the CI data`);
    for (let i = 0; i < h.zranCount; i++) {
      const at = h.zranOffset + i * BATCH_CONTEXT_SIZE;
      const b = { compressedSize: r.u32(at), uncompressedSize: r.u32(at + 4) };
      // Encrypted, a batch of fewer than 16 bytes is stored in more (spec §5.12).
      const most = h.features & BlobFeature.ENCRYPTED ? encryptedSize(b.uncompressedSize) : b.uncompressedSize;
      if (b.compressedSize === 0 || b.uncompressedSize === 0 || b.uncompressedSize > MAX_BATCH_BYTES || b.compressedSize > most) {
        throw new FormatError(`${what}: batch ${i} of ${b.compressedSize} stored bytes for ${b.uncompressedSize}`);
      }
      batches.push(b);
    }
  }
  const zran = h.features & BlobFeature.ZRAN ? decodeZranTable(ci, h, what) : [];
  entries.forEach((e, i) => {
    if (e.flags & CiFlag.BATCH) {
      const at = batchLocation(e);
      const b = batches[at.index];
      if (b === undefined) throw new FormatError(`${what}: chunk ${i} names batch ${at.index} of ${batches.length}`);
      if (at.offset + e.uncompressedSize > b.uncompressedSize) throw new FormatError(`${what}: chunk ${i} lies outside its batch ${at.index}`);
    } else if (e.flags & CiFlag.ZRAN) {
      const at = zranLocation(e);
      const z = zran[at.index];
      if (z === undefined) throw new FormatError(`${what}: chunk ${i} names ZRan context ${at.index} of ${zran.length}`);
      if (at.offset + e.uncompressedSize > z.outLen) throw new FormatError(`${what}: chunk ${i} lies outside its ZRan context ${at.index}`);
    } else if (h.features & BlobFeature.ZRAN) {
      throw new FormatError(`${what}: chunk ${i} of a ZRan blob is not a ZRan chunk`);
    }
  });
  return { entries, batches, zran };
}

/** The ZRan contexts of a ZRAN blob's CI data (spec §5.5), each checked. */
function decodeZranTable(ci: Uint8Array, h: BlobMetaHeader, what: string): ZranContext[] {
  if (!(h.features & BlobFeature.CHUNK_INFO_V2)) throw new FormatError(`${what}: ZRan chunks need chunk info v2`);
  const r = new ByteReader(ci, what);
  const dictStart = h.zranOffset + h.zranCount * ZRAN_CONTEXT_SIZE;
  const end = h.zranOffset + h.zranSize;
  if (h.zranOffset < h.ciEntries * CI_V2_SIZE || dictStart > end || end > ci.length) throw new FormatError(`${what}: ZRan context table outside the CI data`);
  const out: ZranContext[] = [];
  for (let i = 0; i < h.zranCount; i++) {
    const at = h.zranOffset + i * ZRAN_CONTEXT_SIZE;
    const dictOffset = r.u64(at + 16, 'dict_offset');
    const dictSize = r.u32(at + 32);
    const bits = ci[at + 37] as number;
    const z: ZranContext = {
      inOffset: r.u64(at, 'in_offset'),
      outOffset: r.u64(at + 8, 'out_offset'),
      inLen: r.u32(at + 24),
      outLen: r.u32(at + 28),
      at: { dict: ci.subarray(dictStart + dictOffset, dictStart + dictOffset + dictSize), bits, byte: ci[at + 36] as number },
    };
    if (z.inLen === 0 || z.outLen === 0 || z.outLen > MAX_BATCH_BYTES || bits > 7 || dictSize > MAX_ZRAN_DICT || dictStart + dictOffset + dictSize > end) {
      throw new FormatError(`${what}: ZRan context ${i} is invalid (${z.inLen} bytes in, ${z.outLen} out, ${bits} bits, a ${dictSize}-byte dictionary)`);
    }
    out.push(z);
  }
  return out;
}

/** Decodes and sanity-checks a whole uncompressed CI array. */
export function decodeCiArray(bytes: Uint8Array, entries: number, features: number, what: string): BlobChunkEntry[] {
  const v2 = (features & BlobFeature.CHUNK_INFO_V2) !== 0;
  const r = new ByteReader(bytes, what);
  r.check(0, entries * (v2 ? CI_V2_SIZE : CI_V1_SIZE), 'chunk info array');
  const out: BlobChunkEntry[] = [];
  for (let i = 0; i < entries; i++) out.push(decodeCiEntry(r, i, v2));
  return out;
}
