/**
 * Offline chunk reading for tools (check, unpack, export): fetch each chunk's stored bytes from the
 * backend, decode and verify them. (The daemon's cached chunk path lives in `storage`.)
 *
 * These tools read a whole image, mostly in the order its data is stored, and from a registry each
 * backend read is a round trip: blobs are read in aligned windows of `WINDOW_BYTES`, the chunks
 * in a window served from it while it is kept.
 */
import { type ChunkInfo, sharedUnit } from '../format/chunk-info.js';
import type { Codecs } from '../format/compression.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import { FormatError } from '../base/index.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { loadBlobMeta } from '../storage/blob-meta.js';
import { batchMember, decodeSharedUnitAsync, decodeChunkAsync, verifyChunk } from '../storage/chunk/decode.js';

/** A blob is read in windows of this many bytes, aligned (the last one cut at the blob's end). */
export const WINDOW_BYTES = 4 << 20;
/**
 * Windows kept: readers run a few chunks ahead, `check` four at a time, and `unpack` walks the
 * tree in name order while a tar layer stored its files in the order the tar listed them.
 */
const WINDOWS_KEPT = 16;

interface Window {
  blobIndex: number;
  k: number;
  data: Promise<Buffer>;
}

export class ToolChunkReader {
  /** Recently read chunks: files often repeat one chunk (zeros of sparse files, duplicates). */
  private readonly recent = new Map<string, Promise<Uint8Array>>();
  /**
   * Recently decoded batches and ZRan contexts: files are read in the order their data is stored,
   * so a unit's chunks come one after the other, and the unit is read and decoded once for all.
   */
  private readonly batches = new Map<string, Promise<Uint8Array>>();
  /** Blob ranges read lately, newest last. */
  private readonly windows: Window[] = [];

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
    if (sharedUnit(c) !== undefined) {
      const key = `${c.blobIndex}@${c.compressedOffset}`;
      let whole = this.batches.get(key);
      if (whole === undefined) {
        whole = this.stored(blob, c.compressedOffset, c.compressedSize).then((stored) => decodeSharedUnitAsync(this.codecs, blob, c, stored));
        whole.catch(() => this.batches.delete(key));
        if (this.batches.size >= 4) this.batches.delete(this.batches.keys().next().value as string);
        this.batches.set(key, whole);
      }
      const data = batchMember(blob, c, await whole);
      verifyChunk(blob, c, data);
      return data;
    }
    const stored = await this.stored(blob, c.compressedOffset, c.compressedSize);
    const data = await decodeChunkAsync(this.codecs, blob, c, stored);
    verifyChunk(blob, c, data);
    return data;
  }

  /**
   * Bytes [offset, offset + size) of a blob, from the windows they fall in. A window that cannot
   * be read (a blob shorter than its table says), or a blob of unknown size, means reading just
   * these bytes, whose failure is then the chunk's own.
   */
  private stored(blob: BlobInfo, offset: number, size: number): Promise<Uint8Array> {
    const end = offset + size;
    const exact = (): Promise<Buffer> => this.backend.read(blob.id, offset, size);
    // The blob's size is 0 when the bootstrap does not know it (v5): no reading past a chunk then.
    if (size === 0 || end > blob.compressedSize) return exact();
    const first = Math.floor(offset / WINDOW_BYTES);
    const last = Math.floor((end - 1) / WINDOW_BYTES);
    const parts: Array<Promise<Buffer>> = [];
    for (let k = first; k <= last; k++) parts.push(this.window(blob, k));
    return Promise.all(parts).then((ws) => {
      if (ws.length === 1) return (ws[0] as Buffer).subarray(offset - first * WINDOW_BYTES, end - first * WINDOW_BYTES);
      // Across a window boundary: the pieces copied together.
      const out = Buffer.allocUnsafe(size);
      ws.forEach((w, i) => {
        const base = (first + i) * WINDOW_BYTES;
        w.copy(out, Math.max(0, base - offset), Math.max(0, offset - base), Math.min(w.length, end - base));
      });
      return out;
    }, exact);
  }

  /**
   * Window `k` of a blob (bytes [k, k + 1) x WINDOW_BYTES, cut at the blob's end as its table says),
   * kept as the most recently used.
   */
  window(blob: BlobInfo, k: number): Promise<Buffer> {
    const i = this.windows.findIndex((x) => x.blobIndex === blob.index && x.k === k);
    if (i >= 0) {
      const [w] = this.windows.splice(i, 1) as [Window];
      this.windows.push(w);
      return w.data;
    }
    const start = k * WINDOW_BYTES;
    const length = Math.min(WINDOW_BYTES, blob.compressedSize - start);
    const w: Window = {
      blobIndex: blob.index,
      k,
      data: this.backend.read(blob.id, start, length).then((d) => {
        if (d.length !== length) throw new FormatError(`blob ${blob.id}: ${d.length} bytes at ${start}, not ${length}`);
        return d;
      }),
    };
    w.data.catch(() => {
      const j = this.windows.indexOf(w);
      if (j >= 0) this.windows.splice(j, 1);
    });
    this.windows.push(w);
    if (this.windows.length > WINDOWS_KEPT) this.windows.shift();
    return w.data;
  }

  /**
   * Yields a file's content as (offset, bytes) pieces in order; gaps (holes) are zeros. Chunks
   * `skip` names are left out (not read), as gaps.
   */
  async *readFile(ino: number, skip?: (c: ChunkInfo) => boolean): AsyncGenerator<{ offset: number; data: Uint8Array }> {
    const all = this.image.fileChunks(ino);
    const chunks = skip === undefined ? all : all.filter((c) => !skip(c));
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
