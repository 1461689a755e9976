/**
 * The chunk path's pure steps: turn a chunk's stored bytes into its data (decompress, with the
 * exact expected size) and verify the data against the chunk's digest or CRC-32C (spec §4.4).
 */
import { FormatError, IntegrityError, UnsupportedError, bytesEqual, toHex } from '../../base/index.js';
import { type ChunkInfo, isCompressed } from '../../format/chunk-info.js';
import type { Codecs } from '../../format/compression.js';
import { ChunkFlag } from '../../format/constants.js';
import { digest } from '../../format/digest.js';
import type { BlobInfo } from '../../format/image.js';
import { crc32c } from './crc32c.js';

export function describeChunk(blob: BlobInfo, c: ChunkInfo): string {
  return `chunk ${c.index} of blob ${blob.id} (stored at ${c.compressedOffset}+${c.compressedSize})`;
}

function checkSupported(blob: BlobInfo, c: ChunkInfo): void {
  if (c.flags & (ChunkFlag.ENCRYPTED | ChunkFlag.BATCH)) {
    throw new UnsupportedError(`${describeChunk(blob, c)}: encrypted and batch chunks are not supported`);
  }
}

/** Decodes stored bytes to exactly `c.uncompressedSize` bytes (into `dst` when given). */
export function decodeChunk(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, stored: Uint8Array, dst?: Uint8Array): Uint8Array {
  checkSupported(blob, c);
  if (!isCompressed(c)) {
    if (stored.length !== c.uncompressedSize) throw new FormatError(`${describeChunk(blob, c)}: raw chunk of the wrong size`);
    if (dst === undefined) return stored;
    dst.set(stored);
    return dst;
  }
  try {
    return codecs.decompress(blob.compressor, stored, c.uncompressedSize, dst);
  } catch (e) {
    throw new IntegrityError(`${describeChunk(blob, c)}: ${(e as Error).message}`, { cause: e });
  }
}

export async function decodeChunkAsync(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, stored: Uint8Array, dst?: Uint8Array): Promise<Uint8Array> {
  checkSupported(blob, c);
  if (!isCompressed(c)) return decodeChunk(codecs, blob, c, stored, dst);
  try {
    return await codecs.decompressAsync(blob.compressor, stored, c.uncompressedSize, dst);
  } catch (e) {
    throw new IntegrityError(`${describeChunk(blob, c)}: ${(e as Error).message}`, { cause: e });
  }
}

/** Throws an IntegrityError unless `data` matches the chunk's CRC-32C or digest. */
export function verifyChunk(blob: BlobInfo, c: ChunkInfo, data: Uint8Array): void {
  if (c.flags & ChunkFlag.HAS_CRC32) {
    const crc = crc32c(data);
    if (crc !== c.crc32) throw new IntegrityError(`${describeChunk(blob, c)}: CRC-32C ${crc.toString(16)} != ${c.crc32.toString(16)}`);
    return;
  }
  const d = digest(blob.digester, data);
  if (!bytesEqual(d, c.digest)) {
    throw new IntegrityError(`${describeChunk(blob, c)}: digest ${toHex(d)} does not match ${toHex(c.digest)}`);
  }
}
