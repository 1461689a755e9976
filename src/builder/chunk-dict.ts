/**
 * A chunk dictionary (`--chunk-dict`): the chunks of an existing RAFS v6 image, by digest and size,
 * so that a build references them instead of storing them again (spec §5.2).
 */
import { readFile } from 'node:fs/promises';
import { UsageError, toHex } from '../base/index.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import { BlobFeature, type Digester } from '../format/constants.js';
import type { BlobInfo } from '../format/image.js';
import { openBootstrap } from '../format/open.js';
import { RafsV6Image } from '../format/v6/reader.js';

/** The blob id an inlined bootstrap gives its own blob (spec §5.9). */
const INLINED_BLOB_PLACEHOLDER = 'x'.repeat(64);

export interface DictChunk {
  blob: BlobInfo;
  chunk: ChunkInfo;
}

export class ChunkDict {
  private readonly chunks = new Map<string, DictChunk>();
  readonly blobs: readonly BlobInfo[];

  private constructor(image: RafsV6Image) {
    this.blobs = image.blobs;
    const n = image.sb.chunkTableSize / 80;
    for (let i = 0; i < n; i++) {
      // The chunk table lists every distinct chunk of the image (spec §3.12).
      const c = image.chunkTableEntryAt(i);
      const blob = image.blobs[c.blobIndex];
      if (blob === undefined) continue;
      const key = `${toHex(c.digest)}:${c.uncompressedSize}`;
      if (!this.chunks.has(key)) this.chunks.set(key, { blob, chunk: c });
    }
  }

  static async load(path: string, expect: { chunkSize: number; digester: Digester }): Promise<ChunkDict> {
    const image = openBootstrap(await readFile(path));
    if (!(image instanceof RafsV6Image)) throw new UsageError(`chunk dictionary ${path}: only RAFS v6 images can serve as a dictionary`);
    if (image.chunkSize !== expect.chunkSize) {
      throw new UsageError(`chunk dictionary ${path}: chunk size ${image.chunkSize} differs from the build's ${expect.chunkSize}`);
    }
    if (image.digester !== expect.digester) throw new UsageError(`chunk dictionary ${path}: it uses another digester`);
    // An image whose bootstrap is inside its blob names that blob by a placeholder (its id is known
    // only once the blob is written around the bootstrap): an image built on it would name a blob
    // no one can find.
    if (image.blobs.some((b) => (b.features & BlobFeature.INLINED_FS_META) !== 0 || b.id === INLINED_BLOB_PLACEHOLDER)) {
      throw new UsageError(`chunk dictionary ${path}: its blob holds its bootstrap inline (built with --inline-bootstrap), which a dictionary cannot be`);
    }
    return new ChunkDict(image);
  }

  get size(): number {
    return this.chunks.size;
  }

  get(key: string): DictChunk | undefined {
    return this.chunks.get(key);
  }
}
