/**
 * The blob table of contents (spec §5.8): 128-byte entries followed by a `rafs.blob.toc` tar
 * header as the last 512 bytes of a v6 blob, and the inlined bootstrap it may describe (§5.9).
 *
 * ToC entry, 128 bytes:
 * | off | size | type   | field               |
 * |-----|------|--------|---------------------|
 * | 0   | 4    | u32    | flags (compression) |
 * | 4   | 4    | u32    | reserved1           |
 * | 8   | 16   | u8[16] | name                |
 * | 24  | 32   | u8[32] | uncompressed_digest |
 * | 56  | 8    | u64    | compressed_offset   |
 * | 64  | 8    | u64    | compressed_size     |
 * | 72  | 8    | u64    | uncompressed_size   |
 * | 80  | 48   | u8[48] | reserved2           |
 */
import { ByteReader, ByteWriter, FormatError, UnsupportedError } from '../../base/index.js';
import { type Codecs, Compressor, maxDecompressedSize } from '../compression.js';
import { sha256 } from '../digest.js';
import { TAR_HEADER_SIZE, decodeTarHeader } from './tar-header.js';

export const TOC_ENTRY_SIZE = 128;
export const TOC_NAME = 'rafs.blob.toc';
export const TocEntryName = {
  BLOB_DATA: 'image.blob',
  BLOB_META: 'blob.meta',
  BLOB_META_HEADER: 'blob.meta.header',
  BLOB_DIGEST: 'blob.digest',
  BOOTSTRAP: 'image.boot',
} as const;

const TocFlag = { NONE: 0x1, ZSTD: 0x2, LZ4: 0x4 } as const;

export interface TocEntry {
  name: string;
  compressor: Compressor;
  digest: Uint8Array;
  compressedOffset: number;
  compressedSize: number;
  uncompressedSize: number;
}

function compressorOfTocFlags(flags: number, what: string): Compressor {
  if (flags === TocFlag.NONE) return Compressor.None;
  if (flags === TocFlag.ZSTD) return Compressor.Zstd;
  if (flags === TocFlag.LZ4) return Compressor.Lz4Block;
  throw new FormatError(`${what}: unknown ToC entry flags 0x${flags.toString(16)}`);
}

function tocFlagsOf(c: Compressor): number {
  if (c === Compressor.None) return TocFlag.NONE;
  if (c === Compressor.Zstd) return TocFlag.ZSTD;
  if (c === Compressor.Lz4Block) return TocFlag.LZ4;
  throw new RangeError('ToC items are stored raw, zstd or lz4');
}

export function encodeTocEntry(w: ByteWriter, e: TocEntry): void {
  const name = Buffer.from(e.name, 'latin1');
  if (name.length > 16) throw new RangeError('ToC entry name too long');
  w.u32(tocFlagsOf(e.compressor)).u32(0).bytes(name).zeros(16 - name.length);
  w.bytes(e.digest).u64(e.compressedOffset).u64(e.compressedSize).u64(e.uncompressedSize).zeros(48);
}

export function decodeTocEntries(bytes: Uint8Array, what: string): TocEntry[] {
  if (bytes.length % TOC_ENTRY_SIZE !== 0) throw new FormatError(`${what}: ToC size ${bytes.length} is not a multiple of 128`);
  const r = new ByteReader(bytes, what);
  const out: TocEntry[] = [];
  for (let at = 0; at < bytes.length; at += TOC_ENTRY_SIZE) {
    const name = r.paddedString(at + 8, 16);
    const e: TocEntry = {
      name,
      compressor: compressorOfTocFlags(r.u32(at), `${what} entry ${name}`),
      digest: r.slice(at + 24, 32),
      compressedOffset: r.u64(at + 56, 'compressed_offset'),
      compressedSize: r.u64(at + 64, 'compressed_size'),
      uncompressedSize: r.u64(at + 72, 'uncompressed_size'),
    };
    // Nydus <= 2.2 recorded the end of the chunk data as the offset of `image.blob` (spec §5.8).
    if (e.name === TocEntryName.BLOB_DATA && e.compressedOffset === e.compressedSize) e.compressedOffset = 0;
    out.push(e);
  }
  return out;
}

export interface ParsedToc {
  entries: TocEntry[];
  /** Offset of the ToC entries in the blob. */
  offset: number;
  /** Entries + tar header, as the blob table's `blob_toc_size`. */
  size: number;
  /** SHA-256 of entries + tar header, as the blob table's `blob_toc_digest`. */
  digest: Buffer;
}

/**
 * Parses the ToC at the end of a blob of `blobSize` bytes given its last `tail.length` bytes
 * (at least 512 + the ToC; 64 KiB + 512 always suffices).
 */
export function parseTocFromTail(tail: Uint8Array, blobSize: number): ParsedToc {
  const what = 'blob ToC';
  if (tail.length < TAR_HEADER_SIZE || tail.length > blobSize) throw new FormatError(`${what}: blob too small`);
  const header = decodeTarHeader(tail.subarray(tail.length - TAR_HEADER_SIZE), `${what} tar header`);
  if (header.name !== TOC_NAME) throw new FormatError(`${what}: the last tar header is ${JSON.stringify(header.name)}, not ${TOC_NAME}`);
  if (header.size < TOC_ENTRY_SIZE || header.size > 0x10000 || header.size % TOC_ENTRY_SIZE !== 0) {
    throw new FormatError(`${what}: invalid ToC size ${header.size}`);
  }
  const size = header.size + TAR_HEADER_SIZE;
  if (size > tail.length) throw new FormatError(`${what}: ToC of ${header.size} bytes exceeds the blob`);
  const region = tail.subarray(tail.length - size);
  const entries = decodeTocEntries(region.subarray(0, header.size), what);
  const offset = blobSize - size;
  for (const e of entries) {
    if (e.compressedOffset + e.compressedSize > offset) throw new FormatError(`${what}: entry ${e.name} lies past the ToC`);
  }
  return { entries, offset, size, digest: sha256(region) };
}

/** Reads one ToC item from the blob bytes and checks its SHA-256 (spec §5.8 digest rules). */
export function extractTocItem(codecs: Codecs, blob: Uint8Array, e: TocEntry): Uint8Array {
  const what = `ToC item ${e.name}`;
  const r = new ByteReader(blob, what);
  if (e.name === TocEntryName.BLOB_DATA) throw new UnsupportedError('the chunk data is not extracted as a whole');
  const stored = r.slice(e.compressedOffset, e.compressedSize, what);
  if (e.compressor === Compressor.Lz4Block) throw new UnsupportedError(`${what}: lz4 ToC items are not supported (as in Nydus)`);
  if (e.uncompressedSize > maxDecompressedSize(e.compressor, e.compressedSize)) {
    throw new FormatError(`${what}: ${e.uncompressedSize} bytes cannot come from ${e.compressedSize} stored bytes`);
  }
  const data = e.compressor === Compressor.None ? stored : codecs.decompress(e.compressor, stored, e.uncompressedSize);
  if (data.length !== e.uncompressedSize) throw new FormatError(`${what}: ${data.length} bytes, expected ${e.uncompressedSize}`);
  if (!sha256(data).equals(e.digest)) throw new FormatError(`${what}: SHA-256 mismatch`);
  return data;
}
