/**
 * The chunk path's pure steps: turn a chunk's stored bytes into its data (decompress, with the
 * exact expected size) and verify the data against the chunk's digest or CRC-32C (spec §4.4).
 */
import { FormatError, IntegrityError, UnsupportedError, bytesEqual, toHex } from '../../base/index.js';
import { type ChunkInfo, isCompressed, sharedUnit } from '../../format/chunk-info.js';
import { type CipherContext, decryptUnit } from '../../format/cipher.js';
import type { Codecs } from '../../format/compression.js';
import { ChunkFlag } from '../../format/constants.js';
import { digest } from '../../format/digest.js';
import type { BlobInfo } from '../../format/image.js';
import { crc32c } from './crc32c.js';

export function describeChunk(blob: BlobInfo, c: ChunkInfo): string {
  return `chunk ${c.index} of blob ${blob.id} (stored at ${c.compressedOffset}+${c.compressedSize})`;
}

function checkSupported(blob: BlobInfo, c: ChunkInfo): void {
  if (c.flags & ChunkFlag.ENCRYPTED && blob.cipher === undefined) throw new FormatError(`${describeChunk(blob, c)}: encrypted, in a blob without a cipher`);
  if (c.flags & ChunkFlag.BATCH && c.batch === undefined) throw new UnsupportedError(`${describeChunk(blob, c)}: a batch chunk located without its blob meta`);
}

/** Whether `c` is a chunk of a ZRan context: its stored unit is a range of an original gzip layer. */
function inflated(c: ChunkInfo): c is ChunkInfo & { zran: NonNullable<ChunkInfo['zran']> } {
  return c.zran !== undefined;
}

/**
 * What a batch member's or ZRan chunk's stored unit decodes to, shared by the chunks one fetch
 * reads (keyed by stored offset): the unit is decoded once, not once per chunk.
 */
export type BatchDecodes = Map<number, Promise<Uint8Array>>;

/** Decodes stored bytes to exactly `c.uncompressedSize` bytes (into `dst` when given). */
export function decodeChunk(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, stored: Uint8Array, dst?: Uint8Array): Uint8Array {
  checkSupported(blob, c);
  if (inflated(c)) return batchMember(blob, c, zranUnit(blob, c, () => codecs.inflateFrom(stored, c.zran.at, c.zran.size)), dst);
  if (c.batch !== undefined) return batchMember(blob, c, unit(codecs, blob, c, c.batch.size, stored), dst);
  return unit(codecs, blob, c, c.uncompressedSize, stored, dst);
}

export async function decodeChunkAsync(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, stored: Uint8Array, dst?: Uint8Array, batches?: BatchDecodes): Promise<Uint8Array> {
  checkSupported(blob, c);
  if (sharedUnit(c) !== undefined) {
    let whole = batches?.get(c.compressedOffset);
    if (whole === undefined) {
      whole = decodeSharedUnitAsync(codecs, blob, c, stored);
      batches?.set(c.compressedOffset, whole);
    }
    return batchMember(blob, c, await whole, dst);
  }
  return unitAsync(codecs, blob, c, c.uncompressedSize, stored, dst);
}

/** The whole batch or ZRan context output a chunk is in, decoded from the unit's stored bytes. */
export async function decodeSharedUnitAsync(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, stored: Uint8Array): Promise<Uint8Array> {
  checkSupported(blob, c);
  if (inflated(c)) {
    try {
      return await codecs.inflateFromAsync(stored, c.zran.at, c.zran.size);
    } catch (e) {
      throw zranError(blob, c, e);
    }
  }
  if (c.batch === undefined) throw new TypeError('not a batch member');
  return unitAsync(codecs, blob, c, c.batch.size, stored);
}

function zranUnit(blob: BlobInfo, c: ChunkInfo, inflate: () => Uint8Array): Uint8Array {
  try {
    return inflate();
  } catch (e) {
    throw zranError(blob, c, e);
  }
}

/** A context that does not inflate is a changed (or wrong) layer: as a chunk failing its digest. */
function zranError(blob: BlobInfo, c: ChunkInfo, e: unknown): IntegrityError {
  return new IntegrityError(`${describeChunk(blob, c)}: its ZRan context does not inflate: ${(e as Error).message}`, { cause: e });
}

/**
 * An encrypted unit's stored bytes as they were before encryption. Encrypted bytes that were
 * changed decrypt to other bytes (XTS does not authenticate): the decompression or the digest
 * check after it fails, as for any changed chunk.
 */
function decrypted(blob: BlobInfo, c: ChunkInfo, stored: Uint8Array): Uint8Array {
  try {
    return decryptUnit(blob.cipher as CipherContext, stored, describeChunk(blob, c));
  } catch (e) {
    throw new IntegrityError((e as Error).message, { cause: e });
  }
}

/**
 * Whether a unit's bytes (decrypted) are compressed. A batch's stored size is recorded only
 * encrypted, so for an encrypted one: what did not stay `size` bytes.
 */
function compressedUnit(c: ChunkInfo, size: number, bytes: Uint8Array): boolean {
  return c.flags & ChunkFlag.ENCRYPTED && c.batch !== undefined ? bytes.length !== size : isCompressed(c);
}

/** One stored unit (a chunk, or a whole batch) decoded to exactly `size` bytes. */
function unit(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, size: number, stored: Uint8Array, dst?: Uint8Array): Uint8Array {
  const bytes = c.flags & ChunkFlag.ENCRYPTED ? decrypted(blob, c, stored) : stored;
  if (!compressedUnit(c, size, bytes)) return raw(blob, c, size, bytes, dst);
  try {
    return codecs.decompress(blob.compressor, bytes, size, dst);
  } catch (e) {
    throw new IntegrityError(`${describeChunk(blob, c)}: ${(e as Error).message}`, { cause: e });
  }
}

async function unitAsync(codecs: Codecs, blob: BlobInfo, c: ChunkInfo, size: number, stored: Uint8Array, dst?: Uint8Array): Promise<Uint8Array> {
  const bytes = c.flags & ChunkFlag.ENCRYPTED ? decrypted(blob, c, stored) : stored;
  if (!compressedUnit(c, size, bytes)) return raw(blob, c, size, bytes, dst);
  try {
    return await codecs.decompressAsync(blob.compressor, bytes, size, dst);
  } catch (e) {
    throw new IntegrityError(`${describeChunk(blob, c)}: ${(e as Error).message}`, { cause: e });
  }
}

function raw(blob: BlobInfo, c: ChunkInfo, size: number, stored: Uint8Array, dst?: Uint8Array): Uint8Array {
  if (stored.length !== size) throw new FormatError(`${describeChunk(blob, c)}: raw chunk of the wrong size`);
  if (dst === undefined) return stored;
  dst.set(stored);
  return dst;
}

/** A batch member's or ZRan chunk's bytes, copied out of its decoded unit. */
export function batchMember(blob: BlobInfo, c: ChunkInfo, batch: Uint8Array, dst?: Uint8Array): Uint8Array {
  const { offset } = sharedUnit(c) as { offset: number };
  if (offset + c.uncompressedSize > batch.length) throw new FormatError(`${describeChunk(blob, c)}: lies outside its batch or ZRan context`);
  const out = dst ?? new Uint8Array(c.uncompressedSize);
  out.set(batch.subarray(offset, offset + c.uncompressedSize));
  return out;
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
