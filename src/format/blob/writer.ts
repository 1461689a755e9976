/**
 * Data blob assembly (spec §5.1–5.10): chunk data, then the `image.blob` tar header, the blob
 * meta (CI array + 4096-byte header) with its tar header, the inlined chunk digest array, an
 * optional inlined bootstrap, and the ToC. The assembler produces every byte of the blob in order
 * (the caller only writes them out) and computes the blob id: SHA-256 of all bytes except the
 * digest array payload.
 */
import { createHash, type Hash } from 'node:crypto';
import { ByteWriter, alignUp } from '../../base/index.js';
import { type Codecs, Compressor, storeCompressed } from '../compression.js';
import { BlobFeature, type Digester, Limits } from '../constants.js';
import { type CipherContext, encryptUnit } from '../cipher.js';
import { sha256 } from '../digest.js';
import type { BlobInfo } from '../image.js';
import { BATCH_CONTEXT_SIZE, type BatchContext, CI_V1_SIZE, CI_V2_SIZE, CiFlag, encodeBatchContext, encodeBlobMetaHeader, encodeCiV1, encodeCiV2 } from './meta.js';
import { TAR_HEADER_SIZE, encodeTarHeader } from './tar-header.js';
import { TOC_ENTRY_SIZE, TOC_NAME, type TocEntry, TocEntryName, encodeTocEntry } from './toc.js';

export const INLINE_BLOB_ID_PLACEHOLDER = 'x'.repeat(64);

export interface ChunkPlacement {
  index: number;
  compressedOffset: number;
  uncompressedOffset: number;
}

interface CiRecord {
  uncompressedOffset: number;
  uncompressedSize: number;
  compressedOffset: number;
  compressedSize: number;
  digest: Uint8Array;
  /** Chunk info v2 flags and `data` word (batch blobs). */
  flags: number;
  data: bigint;
}

export class BlobAssembler {
  readonly compressor: Compressor;
  readonly digester: Digester;
  readonly chunkSize: number;
  private readonly cipher: CipherContext | undefined;
  private readonly records: CiRecord[] = [];
  private readonly idHash: Hash = createHash('sha256');
  private readonly dataHash: Hash = createHash('sha256');
  private readonly toc: TocEntry[] = [];
  private pos = 0;
  private uncompressedSize = 0;
  private meta = { compressor: Compressor.None, offset: 0, compressedSize: 0, uncompressedSize: 0 };
  private sizeBeforeBootstrap = 0;
  private tocSize = 0;
  private tocDigest: Uint8Array = new Uint8Array(32);
  private features = BlobFeature.ALIGNED | BlobFeature.INLINED_CHUNK_DIGEST | BlobFeature.HAS_TAR_HEADER | BlobFeature.HAS_TOC | BlobFeature.CAP_TAR_TOC;
  private phase: 'data' | 'meta' | 'done' = 'data';
  /** Batches written (spec §5.6), and the bytes of the one being filled. */
  private readonly batches: BatchContext[] = [];
  private batchFill = 0;
  /** The record of the batch being filled's first member. */
  private batchStart = 0;

  /**
   * `batch`: small chunks are stored in batches (`--batch-size`), which needs chunk info v2;
   * `cipher`: the blob is encrypted (`--encrypt`, spec §5.12): its chunks and batches (as they
   * are added), CI data and CI header, which also needs chunk info v2.
   */
  constructor(opts: { compressor: Compressor; digester: Digester; chunkSize: number; batch?: boolean; cipher?: CipherContext }) {
    this.compressor = opts.compressor;
    this.digester = opts.digester;
    this.chunkSize = opts.chunkSize;
    this.cipher = opts.cipher;
    if (opts.batch === true) this.features |= BlobFeature.BATCH | BlobFeature.CHUNK_INFO_V2;
    if (opts.cipher !== undefined) this.features |= BlobFeature.ENCRYPTED | BlobFeature.CHUNK_INFO_V2;
  }

  /** A stored unit as the blob holds it: encrypted in an encrypted blob, but where it cannot be (see `encryptUnit`). */
  private seal(stored: Uint8Array): { bytes: Uint8Array; encrypted: boolean } {
    const sealed = this.cipher === undefined ? undefined : encryptUnit(this.cipher, stored);
    return sealed !== undefined ? { bytes: sealed, encrypted: true } : { bytes: stored, encrypted: false };
  }

  get chunkCount(): number {
    return this.records.length;
  }

  /** Bytes of chunk data so far. */
  get dataSize(): number {
    return this.pos;
  }

  private emit(bytes: Uint8Array, hashed = true): Uint8Array {
    if (hashed) this.idHash.update(bytes);
    this.pos += bytes.length;
    return bytes;
  }

  /**
   * Places one chunk, `stored` as compressed (or not); the caller writes the returned `bytes` (the
   * encryption of `stored` in an encrypted blob, `encrypted` saying so) at `compressedOffset`.
   */
  addChunk(stored: Uint8Array, compressed: boolean, uncompressedSize: number, digest: Uint8Array): ChunkPlacement & { bytes: Uint8Array; encrypted: boolean } {
    if (this.phase !== 'data') throw new Error('addChunk after the chunk data was closed');
    if (this.records.length >= Limits.MAX_CHUNKS_PER_BLOB) throw new RangeError('too many chunks for one blob');
    if (compressed !== (stored.length !== uncompressedSize)) throw new RangeError('compressed flag disagrees with the sizes');
    if (this.batchFill > 0) throw new Error('addChunk while a batch is being filled: write the batch first');
    const placement = { index: this.records.length, compressedOffset: this.pos, uncompressedOffset: this.uncompressedSize };
    const { bytes, encrypted } = this.seal(stored);
    const flags = (compressed ? CiFlag.COMPRESSED : 0) | (encrypted ? CiFlag.ENCRYPTED : 0);
    this.records.push({ ...placement, uncompressedSize, compressedSize: bytes.length, digest, flags, data: 0n });
    this.dataHash.update(bytes);
    this.emit(bytes);
    this.uncompressedSize += alignUp(uncompressedSize, Limits.BLOCK_SIZE);
    return { ...placement, bytes, encrypted };
  }

  /**
   * Places a chunk in the batch being filled (its data appended to the caller's batch buffer,
   * `batchFill` bytes so far): its own 4 KiB slot in the uncompressed view, and, as its stored
   * location, where the batch will be written (nothing else is written before it).
   */
  addBatchMember(uncompressedSize: number, digest: Uint8Array): ChunkPlacement {
    if (this.phase !== 'data') throw new Error('addBatchMember after the chunk data was closed');
    if (!(this.features & BlobFeature.BATCH)) throw new Error('this blob stores no batches');
    if (this.records.length >= Limits.MAX_CHUNKS_PER_BLOB) throw new RangeError('too many chunks for one blob');
    const placement = { index: this.records.length, compressedOffset: this.pos, uncompressedOffset: this.uncompressedSize };
    if (this.batchFill === 0) this.batchStart = this.records.length;
    const data = (BigInt(this.batches.length) << 32n) | BigInt(this.batchFill);
    this.records.push({ ...placement, uncompressedSize, compressedSize: 0, digest, flags: CiFlag.BATCH | CiFlag.COMPRESSED, data });
    this.batchFill += uncompressedSize;
    this.uncompressedSize += alignUp(uncompressedSize, Limits.BLOCK_SIZE);
    return placement;
  }

  /** Bytes in the batch being filled. */
  get batchBytes(): number {
    return this.batchFill;
  }

  /**
   * Closes the batch being filled: `stored` is its members' data, compressed as one unit (or raw).
   * Returns the bytes the caller writes (encrypted in an encrypted blob).
   */
  addBatch(stored: Uint8Array): Uint8Array {
    if (this.batchFill === 0) throw new Error('no batch is being filled');
    if (stored.length > this.batchFill) throw new RangeError('a stored batch larger than its data');
    const { bytes, encrypted } = this.seal(stored);
    if (encrypted) for (let i = this.batchStart; i < this.records.length; i++) (this.records[i] as CiRecord).flags |= CiFlag.ENCRYPTED;
    this.batches.push({ compressedSize: bytes.length, uncompressedSize: this.batchFill });
    this.batchFill = 0;
    this.dataHash.update(bytes);
    this.emit(bytes);
    return bytes;
  }

  /** Closes the chunk data and returns the blob meta, digest array and their tar headers. */
  finishMeta(codecs: Codecs): Uint8Array[] {
    if (this.phase !== 'data') throw new Error('finishMeta called twice');
    if (this.batchFill > 0) throw new Error('finishMeta with a batch not written');
    this.phase = 'meta';
    const out: Uint8Array[] = [];
    const dataSize = this.pos;
    const blobHeader = encodeTarHeader(TocEntryName.BLOB_DATA, dataSize);
    this.dataHash.update(blobHeader);
    out.push(this.emit(blobHeader));
    this.toc.push({
      name: TocEntryName.BLOB_DATA,
      compressor: Compressor.None,
      digest: this.dataHash.digest(),
      compressedOffset: 0,
      compressedSize: dataSize,
      uncompressedSize: this.uncompressedSize,
    });

    const v2 = (this.features & BlobFeature.CHUNK_INFO_V2) !== 0;
    const ciw = new ByteWriter(this.records.length * (v2 ? CI_V2_SIZE : CI_V1_SIZE) + this.batches.length * BATCH_CONTEXT_SIZE);
    for (const r of this.records) {
      if (v2) encodeCiV2(ciw, r);
      else encodeCiV1(ciw, r);
    }
    const batchTable = this.features & BlobFeature.BATCH ? { offset: ciw.length, size: this.batches.length * BATCH_CONTEXT_SIZE, count: this.batches.length } : { offset: 0, size: 0, count: 0 };
    for (const b of this.batches) encodeBatchContext(ciw, b);
    const ci = ciw.finish();
    let stored = storeCompressed(codecs, this.compressor, ci);
    if (this.cipher !== undefined && ci.length > 0) {
      // Encrypted after compression (no chunk, no CI data: nothing to encrypt); a compressed form that cannot be (see `encryptUnit`) is not used.
      const sealed = encryptUnit(this.cipher, stored.data);
      stored = sealed !== undefined ? { data: sealed, compressed: stored.compressed } : { data: encryptUnit(this.cipher, ci) as Buffer, compressed: false };
    }
    this.meta = {
      compressor: stored.compressed ? this.compressor : Compressor.None,
      offset: this.pos,
      compressedSize: stored.data.length,
      uncompressedSize: ci.length,
    };
    const plainHeader = encodeBlobMetaHeader({
      features: this.features,
      ciCompressor: this.meta.compressor,
      ciEntries: this.records.length,
      ciOffset: this.meta.offset,
      ciCompressedSize: this.meta.compressedSize,
      ciUncompressedSize: this.meta.uncompressedSize,
      zranOffset: batchTable.offset,
      zranSize: batchTable.size,
      zranCount: batchTable.count,
    });
    const header = this.cipher !== undefined ? (encryptUnit(this.cipher, plainHeader) as Buffer) : plainHeader;
    this.toc.push({ name: TocEntryName.BLOB_META, compressor: this.meta.compressor, digest: sha256(ci), compressedOffset: this.pos, compressedSize: stored.data.length, uncompressedSize: ci.length });
    out.push(this.emit(stored.data));
    // The ToC's digests are of the plain CI data and header (nydus-image), its sizes the stored ones.
    this.toc.push({ name: TocEntryName.BLOB_META_HEADER, compressor: Compressor.None, digest: sha256(plainHeader), compressedOffset: this.pos, compressedSize: header.length, uncompressedSize: header.length });
    out.push(this.emit(header));
    out.push(this.emit(encodeTarHeader(TocEntryName.BLOB_META, stored.data.length + header.length)));

    const digests = Buffer.concat(this.records.map((r) => r.digest));
    this.toc.push({ name: TocEntryName.BLOB_DIGEST, compressor: Compressor.None, digest: sha256(digests), compressedOffset: this.pos, compressedSize: digests.length, uncompressedSize: digests.length });
    out.push(this.emit(digests, false)); // the digest array is not part of the blob id (spec §5.10)
    out.push(this.emit(encodeTarHeader(TocEntryName.BLOB_DIGEST, digests.length)));
    this.sizeBeforeBootstrap = this.pos;
    return out;
  }

  /**
   * The blob table entry as it stands: after `finishMeta` it describes the blob without its ToC,
   * which is what an inlined bootstrap records (spec §5.9); after `finishToc`, the whole blob.
   */
  blobInfo(index: number, id: string): BlobInfo {
    return {
      index,
      id,
      chunkSize: this.chunkSize,
      chunkCount: this.records.length,
      compressor: this.compressor,
      digester: this.digester,
      features: this.features,
      compressedSize: this.phase === 'done' && !(this.features & BlobFeature.INLINED_FS_META) ? this.pos : this.sizeBeforeBootstrap,
      uncompressedSize: this.uncompressedSize,
      meta: { ...this.meta },
      tocSize: this.tocSize,
      tocDigest: this.tocDigest,
      readahead: { offset: 0, size: 0 },
      ...(this.cipher !== undefined ? { cipher: this.cipher } : {}),
    };
  }

  /** Marks the blob as carrying its bootstrap; call before building that bootstrap. */
  markInlineBootstrap(): void {
    this.features |= BlobFeature.INLINED_FS_META;
  }

  /** Appends the bootstrap (zstd when that shrinks it) and its tar header (spec §5.9). */
  inlineBootstrap(codecs: Codecs, bootstrap: Uint8Array): Uint8Array[] {
    if (!(this.features & BlobFeature.INLINED_FS_META)) throw new Error('markInlineBootstrap first');
    const stored = storeCompressed(codecs, Compressor.Zstd, bootstrap);
    this.toc.push({
      name: TocEntryName.BOOTSTRAP,
      compressor: stored.compressed ? Compressor.Zstd : Compressor.None,
      digest: sha256(bootstrap),
      compressedOffset: this.pos,
      compressedSize: stored.data.length,
      uncompressedSize: bootstrap.length,
    });
    return [this.emit(stored.data), this.emit(encodeTarHeader(TocEntryName.BOOTSTRAP, stored.data.length))];
  }

  /** Writes the ToC; returns its bytes and the final blob id. */
  finishToc(): { bytes: Uint8Array[]; id: string } {
    if (this.phase !== 'meta') throw new Error('finishToc before finishMeta');
    this.phase = 'done';
    const w = new ByteWriter(this.toc.length * TOC_ENTRY_SIZE);
    for (const e of this.toc) encodeTocEntry(w, e);
    const entries = w.finish();
    const header = encodeTarHeader(TOC_NAME, entries.length);
    this.tocSize = entries.length + TAR_HEADER_SIZE;
    this.tocDigest = sha256(entries, header);
    const bytes = [this.emit(entries), this.emit(header)];
    return { bytes, id: this.idHash.digest('hex') };
  }
}
