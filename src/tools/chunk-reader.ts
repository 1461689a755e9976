/**
 * Offline chunk reading for tools (check, unpack): fetch each chunk's stored bytes from the
 * backend, decode and verify them. (The daemon's cached chunk path lives in `storage`.)
 */
import type { ChunkInfo } from '../format/chunk-info.js';
import type { Codecs } from '../format/compression.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import { FormatError } from '../base/index.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { loadBlobMeta } from '../storage/blob-meta.js';
import { batchMember, decodeBatchAsync, decodeChunkAsync, verifyChunk } from '../storage/chunk/decode.js';

export class ToolChunkReader {
  /** Recently read chunks: files often repeat one chunk (zeros of sparse files, duplicates). */
  private readonly recent = new Map<string, Promise<Uint8Array>>();
  /**
   * Recently decoded batches: files are read in the order their data is stored, so a batch's
   * members come one after the other, and the batch is read and decompressed once for all.
   */
  private readonly batches = new Map<string, Promise<Uint8Array>>();

  constructor(
    private readonly image: RafsImage,
    private readonly backend: BlobBackend,
    private readonly codecs: Codecs,
  ) {}

  /** A reader of the image's chunks, with the blob meta its batch blobs need loaded first. */
  static async open(image: RafsImage, backend: BlobBackend, codecs: Codecs): Promise<ToolChunkReader> {
    await loadBlobMeta(image, backend, codecs);
    return new ToolChunkReader(image, backend, codecs);
  }

  blob(c: ChunkInfo): BlobInfo {
    const b = this.image.blobs[c.blobIndex];
    if (b === undefined) throw new FormatError(`chunk refers to the missing blob ${c.blobIndex}`);
    return b;
  }

  /** The verified uncompressed bytes of one chunk. */
  read(c: ChunkInfo): Promise<Uint8Array> {
    const key = `${c.blobIndex}:${c.index}`;
    let p = this.recent.get(key);
    if (p === undefined) {
      p = this.fetch(c);
      p.catch(() => this.recent.delete(key));
      if (this.recent.size >= 16) this.recent.delete(this.recent.keys().next().value as string);
      this.recent.set(key, p);
    }
    return p;
  }

  private async fetch(c: ChunkInfo): Promise<Uint8Array> {
    const blob = this.blob(c);
    if (c.batch !== undefined) {
      const key = `${c.blobIndex}@${c.compressedOffset}`;
      let whole = this.batches.get(key);
      if (whole === undefined) {
        whole = this.backend.read(blob.id, c.compressedOffset, c.compressedSize).then((stored) => decodeBatchAsync(this.codecs, blob, c, stored));
        whole.catch(() => this.batches.delete(key));
        if (this.batches.size >= 4) this.batches.delete(this.batches.keys().next().value as string);
        this.batches.set(key, whole);
      }
      const data = batchMember(blob, c, await whole);
      verifyChunk(blob, c, data);
      return data;
    }
    const stored = await this.backend.read(blob.id, c.compressedOffset, c.compressedSize);
    const data = await decodeChunkAsync(this.codecs, blob, c, stored);
    verifyChunk(blob, c, data);
    return data;
  }

  /** Yields a file's content as (offset, bytes) pieces in order; gaps (holes) are zeros. */
  async *readFile(ino: number): AsyncGenerator<{ offset: number; data: Uint8Array }> {
    const chunks = this.image.fileChunks(ino);
    // Read ahead a few chunks while the previous ones are written out.
    const ahead: Array<Promise<Uint8Array>> = [];
    let next = 0;
    for (let i = 0; i < chunks.length; i++) {
      while (next < chunks.length && next < i + 4) {
        const p = this.read(chunks[next++] as ChunkInfo);
        p.catch(() => undefined); // observed when awaited; never an unhandled rejection if abandoned
        ahead.push(p);
      }
      const data = await (ahead.shift() as Promise<Uint8Array>);
      yield { offset: (chunks[i] as ChunkInfo).fileOffset, data };
    }
  }
}
