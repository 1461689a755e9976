/**
 * What some blobs need before any of their chunks can be located: the CI array ("blob meta", spec
 * §5.3-5.4) of a v6 blob with batch or ZRan chunks, which the bootstrap's chunk table lists without
 * a stored location (§5.5, §5.6); a ZRan blob's is in a blob of its own, the meta blob. Nydusd loads it when it opens such a blob; so does Damselfly, before
 * the image is served: one backend read per blob (the compressed CI data and the 4 KiB header
 * after it), kept in the cache directory as `<blob id>.blob_meta.dfly` so that a daemon started
 * again with the backend gone still serves what its cache holds.
 *
 * The CI array is not verified by a digest of its own; a wrong one cannot make a reader see wrong
 * bytes, though: every chunk it locates is verified against the bootstrap's digest as always.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, type Logger, UnsupportedError, errorMessage } from '../base/index.js';
import { BLOB_META_HEADER_SIZE, type BlobChunkTable, type BlobMetaHeader, decodeBlobChunkTable, decodeBlobMetaHeader } from '../format/blob/meta.js';
import { decryptUnit } from '../format/cipher.js';
import { type Codecs, Compressor } from '../format/compression.js';
import { BlobFeature } from '../format/constants.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import type { BlobBackend } from './backend/types.js';
import { blobCacheId } from './cache/blob-cache.js';
import { keptTemp } from './cache/kept-bootstrap.js';

export const CACHE_META_SUFFIX = '.blob_meta.dfly';

/** The largest CI data accepted: 2^24 chunks of 24 bytes, plus their batch contexts (or ZRan contexts and dictionaries). */
const MAX_CI_BYTES = (1 << 24) * (24 + 40);

/**
 * A blob's stored CI data and header (as read from `blob.meta.offset`), decrypted (an encrypted
 * blob stores both encrypted, spec §5.12) and the CI data decompressed; not yet checked against
 * the blob table.
 */
export function openStoredBlobMeta(codecs: Codecs, blob: BlobInfo, stored: Uint8Array): { header: BlobMetaHeader; ci: Uint8Array } {
  const what = `blob ${blob.id} meta`;
  const m = blob.meta;
  if (stored.length !== m.compressedSize + BLOB_META_HEADER_SIZE) throw new FormatError(`${what}: ${stored.length} bytes, expected ${m.compressedSize + BLOB_META_HEADER_SIZE}`);
  let packed = stored.subarray(0, m.compressedSize);
  let headerBytes = stored.subarray(m.compressedSize);
  if (blob.features & BlobFeature.ENCRYPTED) {
    if (blob.cipher === undefined) throw new FormatError(`${what}: an encrypted blob without a cipher`);
    headerBytes = decryptUnit(blob.cipher, headerBytes, `${what} header`);
    if (packed.length > 0) packed = decryptUnit(blob.cipher, packed, what);
  }
  const header = decodeBlobMetaHeader(headerBytes, what);
  try {
    return { header, ci: m.compressor === Compressor.None ? packed : codecs.decompress(m.compressor, packed, m.uncompressedSize) };
  } catch (e) {
    throw new FormatError(`${what}: ${errorMessage(e)}`, { cause: e });
  }
}

/** Whether a blob meta header says what the blob table says of the CI data. */
export function metaHeaderAgrees(blob: BlobInfo, h: BlobMetaHeader): boolean {
  const m = blob.meta;
  return h.ciEntries === blob.chunkCount && h.ciCompressor === m.compressor && h.ciOffset === m.offset && h.ciCompressedSize === m.compressedSize && h.ciUncompressedSize === m.uncompressedSize;
}

/** Decodes a blob's stored CI data and header (as read from the blob) and checks them against the blob table. */
export function decodeStoredBlobMeta(codecs: Codecs, blob: BlobInfo, stored: Uint8Array): BlobChunkTable {
  const what = `blob ${blob.id} meta`;
  const { header, ci } = openStoredBlobMeta(codecs, blob, stored);
  if (!metaHeaderAgrees(blob, header)) throw new FormatError(`${what}: the header disagrees with the blob table`);
  return decodeBlobChunkTable(ci, header, what);
}

/**
 * The blob that holds `blob`'s meta: itself, or for a SEPARATE (ZRan) blob, whose data is an
 * original gzip layer, the meta blob its table entry names by digest (spec §5.5).
 */
export function metaBlobId(blob: BlobInfo): string {
  if (!(blob.features & BlobFeature.SEPARATE)) return blob.id;
  const digest = blob.separateMeta?.digest;
  if (digest === undefined || digest.every((b) => b === 0)) {
    // nydus-image's per-layer build with --blob-inline-meta names no meta blob: nydusd takes the
    // bootstrap file's name. Merged images (nydusify --oci-ref) name it.
    throw new UnsupportedError(`blob ${blob.id}: its blob meta is in a blob the image does not name (a per-layer ZRan bootstrap; serve the merged one)`);
  }
  return Buffer.from(digest).toString('hex');
}

function checkServable(blob: BlobInfo): void {
  // A tar-ref blob (SEPARATE alone) is read through the chunk table and never needs its meta; a
  // separate meta with batch chunks would locate compressed batches in an original layer.
  if (blob.features & BlobFeature.SEPARATE && !(blob.features & BlobFeature.ZRAN)) throw new UnsupportedError(`blob ${blob.id}: batch chunks in a separate blob meta without ZRan (no builder writes this) are not supported`);
  const m = blob.meta;
  if (m.compressedSize === 0 || m.uncompressedSize === 0 || m.uncompressedSize > MAX_CI_BYTES || m.compressedSize > m.uncompressedSize) {
    throw new FormatError(`blob ${blob.id}: has batch or ZRan chunks but no usable blob meta (${m.compressedSize}/${m.uncompressedSize} bytes)`);
  }
}

/**
 * Loads and attaches the blob meta of every blob of `image` that needs it (none for most images:
 * then this reads nothing). Rejects with a clear error when one cannot be had.
 */
export async function loadBlobMeta(image: RafsImage, backend: BlobBackend, codecs: Codecs, opts: { cacheDir?: string; log?: Logger } = {}): Promise<void> {
  await Promise.all(
    image.blobsNeedingMeta().map(async (blob) => {
      checkServable(blob);
      const kept = opts.cacheDir !== undefined ? join(opts.cacheDir, blobCacheId(blob) + CACHE_META_SUFFIX) : undefined;
      if (kept !== undefined) {
        const stored = await readFile(kept).catch(() => undefined);
        if (stored !== undefined) {
          try {
            image.attachBlobMeta(blob.index, decodeStoredBlobMeta(codecs, blob, stored));
            return;
          } catch (e) {
            opts.log?.warn({ blob: blob.id, err: errorMessage(e) }, 'the blob meta kept in the cache is unusable; reading it again');
          }
        }
      }
      const stored = await backend.read(metaBlobId(blob), blob.meta.offset, blob.meta.compressedSize + BLOB_META_HEADER_SIZE);
      image.attachBlobMeta(blob.index, decodeStoredBlobMeta(codecs, blob, stored));
      opts.log?.debug({ blob: blob.id, bytes: stored.length }, 'blob meta loaded');
      if (kept !== undefined) {
        // Whole under another name first: a crash leaves no half file under the real one.
        const temp = keptTemp(kept);
        await mkdir(opts.cacheDir as string, { recursive: true })
          .then(() => writeFile(temp, stored))
          .then(() => rename(temp, kept))
          .catch((e: unknown) => opts.log?.warn({ blob: blob.id, err: errorMessage(e) }, 'could not keep the blob meta in the cache directory'));
      }
    }),
  );
}
