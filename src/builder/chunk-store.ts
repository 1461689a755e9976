/**
 * Chunk storage for a build: hashes each chunk, deduplicates it by digest across files, layers and
 * an optional chunk dictionary, compresses new chunks on the thread pool and appends them to the
 * current layer's blob file in submission order, so that builds are reproducible byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { UnsupportedError, namingFile, writeFully } from '../base/index.js';
import { newCipherContext } from '../format/cipher.js';
import { type Codecs, Compressor, type Stored, ZSTD_DEFAULT_LEVEL, storeCompressedAsync } from '../format/compression.js';
import { ChunkFlag, type Digester } from '../format/constants.js';
import { digest, zerosDigest } from '../format/digest.js';
import type { BlobInfo } from '../format/image.js';
import { BlobAssembler, INLINE_BLOB_ID_PLACEHOLDER } from '../format/blob/writer.js';
import type { ChunkDict } from './chunk-dict.js';
import type { ChunkInfo } from '../format/chunk-info.js';

/** A stored chunk; `blob` is resolved to a blob table index when the bootstrap is written. */
export interface ChunkRef extends Omit<ChunkInfo, 'blobIndex' | 'fileOffset'> {
  blob: BlobHandle;
}

/** A blob written by this build. */
export class NewBlob {
  readonly assembler: BlobAssembler;
  readonly tempPath: string;
  private fh: FileHandle | undefined;
  private writes: Promise<void> = Promise.resolve();
  /** Final id and path, once `finalize` ran. */
  id: string | undefined;
  path: string | undefined;
  size = 0;

  constructor(assembler: BlobAssembler, tempPath: string, fh: FileHandle) {
    this.assembler = assembler;
    this.tempPath = tempPath;
    this.fh = fh;
  }

  /** Queues bytes for writing in order; returns when they are written. */
  write(parts: Uint8Array[]): Promise<void> {
    const fh = this.fh;
    if (fh === undefined) throw new Error('blob already finalized');
    this.writes = this.writes.then(async () => {
      try {
        for (const p of parts) {
          await writeFully(fh, p);
          this.size += p.length;
        }
      } catch (e) {
        throw namingFile(e, this.tempPath);
      }
    });
    return this.writes;
  }

  /** The blob table entry; inside an inlined bootstrap the id is the placeholder (spec §5.9). */
  info(index: number): BlobInfo {
    return this.assembler.blobInfo(index, this.id ?? INLINE_BLOB_ID_PLACEHOLDER);
  }

  /** Writes the ToC, closes the file and renames it to its blob id. */
  async finalize(blobDir: string): Promise<void> {
    const { bytes, id } = this.assembler.finishToc();
    await this.write(bytes);
    await (this.fh as FileHandle).sync();
    await (this.fh as FileHandle).close();
    this.fh = undefined;
    this.id = id;
    this.path = join(blobDir, id);
    await rename(this.tempPath, this.path);
  }

  async discard(): Promise<void> {
    await this.writes.catch(() => undefined);
    await this.fh?.close();
    this.fh = undefined;
    await unlink(this.tempPath).catch(() => undefined);
  }
}

/** A blob of an existing image referenced through the chunk dictionary. */
export class DictBlob {
  constructor(readonly info: BlobInfo) {}
}

/** The original layer a ref build's chunks are in (`ref-build.ts`: ZRan or tar-ref): written by nobody. */
export class RefBlob {}

export type BlobHandle = NewBlob | DictBlob | RefBlob;

export interface ChunkStoreOptions {
  codecs: Codecs;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  blobDir: string;
  dict?: ChunkDict;
  /** Chunks compressed at once (bounds memory at about this many chunk buffers). */
  concurrency?: number;
  /** zstd's level for chunk data (default 3, as nydus-image). */
  compressionLevel?: number;
  /**
   * zstd's level for the chunks stored while `prefetchPhase(true)` (the prefetch files' data: the
   * bytes every cold start waits for), up to `PREFETCH_LEVEL_BYTES` of them in a build; default
   * `DEFAULT_PREFETCH_LEVEL` or `compressionLevel` if higher. Other compressors have no level.
   */
  prefetchCompressionLevel?: number;
  /** Bytes compressed at that level at most (default `PREFETCH_LEVEL_BYTES`). */
  prefetchLevelBytes?: number;
  /**
   * Batch chunks (nydus `--batch-size`, spec §5.6; 0 or absent: none): a file of one chunk smaller
   * than half of this is not compressed alone but with the next such chunks, as one stored unit of
   * less than this many bytes.
   */
  batchSize?: number;
  /**
   * Encrypt every new blob (`--encrypt`, spec §5.12) with a key and tweak of its own, recorded in
   * the blob table (so in the bootstrap).
   */
  encrypt?: boolean;
}

/**
 * The prefetch files' default zstd level: zstd's highest before its "ultra" levels. On the Debian +
 * python3 image of cold-start.sh, the 46 chunks a python start reads (12.7 MB) store in 4.61 MB at
 * level 19 against 5.53 MB at level 3 (a 17 % shorter download at every cold start), for about
 * 2.6 s more CPU once, at build time; zstd decodes every level at the same speed.
 */
export const DEFAULT_PREFETCH_LEVEL = 19;

/**
 * Chunk bytes of a build compressed at the prefetch level at most: a prefetch list that names `/`
 * (or a large directory) does not make the whole image build at it.
 */
export const PREFETCH_LEVEL_BYTES = 64 << 20;

/**
 * The most chunk references one build makes (its files' chunks, deduplicated or not; a file the
 * first pass of `--prefetch-files` stores counts twice): each costs the builder some 300 bytes
 * while it runs (a 1 TiB sparse file of 1 Mi chunks built in 418 MB of RSS), and the bootstrap 8.
 * 4 Mi is 4 TiB of files at the default 1 MiB chunks. A sparse file's holes count as chunks of
 * zeros, so a layer tar entry that claims petabytes of hole in a few bytes is refused here, not
 * run out of memory on.
 */
export const MAX_CHUNK_REFS = 1 << 22;

function tooManyChunks(what: string, size: number): UnsupportedError {
  return new UnsupportedError(`${what} of ${size} bytes takes the image past ${MAX_CHUNK_REFS} chunk references (use larger chunks, or fewer and smaller files)`);
}

/** A chunk that the chunk level stores in more than this share of its size is not compressed again higher. */
const WORTH_A_HIGHER_LEVEL = 0.9;

export interface ChunkStats {
  chunks: number;
  stored: number;
  dedupHits: number;
  dictHits: number;
  bytesIn: number;
  bytesStored: number;
}

export class ChunkStore {
  readonly opts: ChunkStoreOptions;
  readonly stats: ChunkStats = { chunks: 0, stored: 0, dedupHits: 0, dictHits: 0, bytesIn: 0, bytesStored: 0 };
  /** Every chunk known to this build, by digest and size. */
  private readonly known = new Map<string, Promise<ChunkRef>>();
  private readonly dictBlobs = new Map<string, DictBlob>();
  private blob: NewBlob | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private inflight = 0;
  private waiters: Array<() => void> = [];
  private failure: unknown;
  private readonly zeroChunks = new Map<number, { digest: Buffer; key: string }>();
  /** The data of the batch being filled (see `ChunkStoreOptions.batchSize`). */
  private batch: Buffer[] = [];
  /** The highest level a member of that batch was submitted at, if any was given one. */
  private batchLevel: number | undefined;
  /** zstd's level for prefetch files' chunks; undefined for a compressor without levels. */
  private readonly prefetchLevel: number | undefined;
  private inPrefetch = false;
  /** Bytes compressed at `prefetchLevel` so far (`PREFETCH_LEVEL_BYTES`). */
  private prefetchLevelBytes = 0;

  constructor(opts: ChunkStoreOptions) {
    this.opts = opts;
    this.prefetchLevel = opts.compressor === Compressor.Zstd ? (opts.prefetchCompressionLevel ?? Math.max(DEFAULT_PREFETCH_LEVEL, opts.compressionLevel ?? 0)) : undefined;
  }

  /**
   * Chunks submitted from now on belong to prefetch files (`true`) or not: theirs are compressed at
   * the prefetch level. The level is chosen at submission.
   */
  prefetchPhase(on: boolean): void {
    this.inPrefetch = on;
  }

  /** zstd's level for `size` bytes submitted now. */
  private levelFor(size: number): number | undefined {
    if (this.inPrefetch && this.prefetchLevel !== undefined && this.prefetchLevelBytes < (this.opts.prefetchLevelBytes ?? PREFETCH_LEVEL_BYTES)) {
      this.prefetchLevelBytes += size;
      return this.prefetchLevel;
    }
    return this.opts.compressionLevel;
  }

  /** Blobs of the dictionary that chunks of this build point at, in first-use order. */
  get referencedDictBlobs(): DictBlob[] {
    return [...this.dictBlobs.values()];
  }

  async openBlob(): Promise<void> {
    if (this.blob !== undefined) throw new Error('a blob is already open');
    const tempPath = join(this.opts.blobDir, `.damselfly-${randomBytes(6).toString('hex')}.tmp`);
    const fh = await open(tempPath, 'wx', 0o644);
    const { compressor, digester, chunkSize } = this.opts;
    const cipher = this.opts.encrypt === true ? { cipher: newCipherContext() } : {};
    this.blob = new NewBlob(new BlobAssembler({ compressor, digester, chunkSize, batch: (this.opts.batchSize ?? 0) > 0, ...cipher }), tempPath, fh);
  }

  /**
   * Resolves when another chunk may be submitted; undefined (no wait at all) when one may be
   * submitted right away, which keeps tight loops over deduplicated chunks cheap.
   */
  ready(): Promise<void> | undefined {
    if (this.failure !== undefined) throw this.failure;
    if (this.inflight < (this.opts.concurrency ?? 8)) return undefined;
    return this.waitForSlot();
  }

  private async waitForSlot(): Promise<void> {
    while (this.inflight >= (this.opts.concurrency ?? 8)) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Submits one chunk (exactly `chunkSize` bytes, or fewer for a file's last chunk); `wholeFile`:
   * it is all of its file's data (such a chunk may go into a batch).
   */
  submit(data: Buffer, wholeFile = false): Promise<ChunkRef> {
    return this.submitWithDigest(data, digest(this.opts.digester, data), wholeFile);
  }

  /**
   * Refuses a file of `size` bytes whose chunks would take the build past `MAX_CHUNK_REFS`, before
   * any of them is submitted (`submit` and `submitZeros` count them as they come too).
   */
  checkFileSize(size: number, what: string): void {
    if (this.stats.chunks + Math.ceil(size / this.opts.chunkSize) > MAX_CHUNK_REFS) throw tooManyChunks(what, size);
  }

  /** Submits a chunk of zeros without reading or hashing it again (sparse files). */
  submitZeros(size: number, wholeFile = false): Promise<ChunkRef> {
    if (this.stats.chunks >= MAX_CHUNK_REFS) throw tooManyChunks('a file', size);
    let z = this.zeroChunks.get(size);
    if (z === undefined) {
      const d = zerosDigest(this.opts.digester, size);
      z = { digest: d, key: `${d.toString('hex')}:${size}` };
      this.zeroChunks.set(size, z);
    }
    const hit = this.known.get(z.key);
    if (hit !== undefined) {
      this.stats.chunks++;
      this.stats.dedupHits++;
      this.stats.bytesIn += size;
      return hit;
    }
    return this.submitWithDigest(Buffer.alloc(size), z.digest, wholeFile);
  }

  private submitWithDigest(data: Buffer, d: Buffer, wholeFile: boolean): Promise<ChunkRef> {
    const blob = this.blob;
    if (blob === undefined) throw new Error('no blob is open');
    if (this.stats.chunks >= MAX_CHUNK_REFS) throw tooManyChunks('a file', data.length);
    this.stats.chunks++;
    this.stats.bytesIn += data.length;
    const key = `${d.toString('hex')}:${data.length}`;
    const hit = this.known.get(key);
    if (hit !== undefined) {
      this.stats.dedupHits++;
      return hit;
    }
    const fromDict = this.opts.dict?.get(key);
    if (fromDict !== undefined) {
      this.stats.dictHits++;
      let handle = this.dictBlobs.get(fromDict.blob.id);
      if (handle === undefined) {
        handle = new DictBlob(fromDict.blob);
        this.dictBlobs.set(fromDict.blob.id, handle);
      }
      const { blobIndex: _b, fileOffset: _f, ...rest } = fromDict.chunk;
      const ref = Promise.resolve({ ...rest, blob: handle });
      this.known.set(key, ref);
      return ref;
    }
    const batchSize = this.opts.batchSize ?? 0;
    const level = this.levelFor(data.length);
    if (wholeFile && data.length < batchSize / 2) return this.track(key, this.tail.then(() => this.addToBatch(blob, data, d, batchSize, level)));
    const stored = this.compress(data, level);
    return this.track(key, this.tail.then(async (): Promise<ChunkRef> => {
      await this.writeBatch(blob); // a chunk stored alone ends the batch being filled
      const s: Stored = await stored;
      const place = blob.assembler.addChunk(s.data, s.compressed, data.length, d);
      this.stats.stored++;
      this.stats.bytesStored += place.bytes.length;
      await blob.write([place.bytes]);
      return {
        blob,
        digest: d,
        flags: (s.compressed ? ChunkFlag.COMPRESSED : 0) | (place.encrypted ? ChunkFlag.ENCRYPTED : 0),
        index: place.index,
        compressedOffset: place.compressedOffset,
        compressedSize: place.bytes.length,
        uncompressedOffset: place.uncompressedOffset,
        uncompressedSize: data.length,
        crc32: 0,
      };
    }));
  }

  /**
   * Compresses at `level`; above the chunk level (a prefetch file's data), only what the chunk
   * level compresses well: level 19 takes about a hundred times the CPU of level 3, and gains
   * nothing on data that level 3 leaves nearly whole (already compressed media and archives,
   * random bytes: 9 MB/s at level 19).
   */
  private async compress(data: Buffer, level: number | undefined): Promise<Stored> {
    const { codecs, compressor, compressionLevel } = this.opts;
    if (level === undefined || level <= (compressionLevel ?? ZSTD_DEFAULT_LEVEL)) return storeCompressedAsync(codecs, compressor, data, level);
    const quick = await storeCompressedAsync(codecs, compressor, data, compressionLevel);
    if (!quick.compressed || quick.data.length > data.length * WORTH_A_HIGHER_LEVEL) return quick;
    const best = await storeCompressedAsync(codecs, compressor, data, level);
    return best.data.length < quick.data.length ? best : quick;
  }

  /** Counts a chunk in flight until `ref` settles, and makes it the chunk of `key`. */
  private track(key: string, ref: Promise<ChunkRef>): Promise<ChunkRef> {
    this.inflight++;
    ref.then(
      () => this.release(),
      (e: unknown) => {
        this.failure ??= e;
        this.release();
      },
    );
    this.tail = ref.catch(() => undefined);
    this.known.set(key, ref);
    return ref;
  }

  /**
   * Adds a chunk to the batch being filled, writing that batch first when the chunk would make it
   * reach `batchSize` (as nydus-image does). The chunk-table entry of a batch member records no
   * stored location (nydus-image leaves offset, size and flags 0); readers find it in the blob meta.
   */
  private async addToBatch(blob: NewBlob, data: Buffer, d: Buffer, batchSize: number, level: number | undefined): Promise<ChunkRef> {
    if (blob.assembler.batchBytes + data.length >= batchSize) await this.writeBatch(blob);
    const place = blob.assembler.addBatchMember(data.length, d);
    this.batch.push(data);
    // A batch holding a prefetch file's data is compressed at the prefetch level.
    if (level !== undefined && level > (this.batchLevel ?? 0)) this.batchLevel = level;
    this.stats.stored++;
    return {
      blob,
      digest: d,
      flags: 0,
      index: place.index,
      compressedOffset: 0,
      compressedSize: 0,
      uncompressedOffset: place.uncompressedOffset,
      uncompressedSize: data.length,
      crc32: 0,
    };
  }

  /** Compresses and writes the batch being filled, if any (runs in the store's write order). */
  private async writeBatch(blob: NewBlob): Promise<void> {
    if (this.batch.length === 0) return;
    const data = Buffer.concat(this.batch);
    const level = this.batchLevel ?? this.opts.compressionLevel;
    this.batch = [];
    this.batchLevel = undefined;
    const s = await this.compress(data, level);
    const bytes = blob.assembler.addBatch(s.data);
    this.stats.bytesStored += bytes.length;
    await blob.write([bytes]);
  }

  private release(): void {
    this.inflight--;
    const w = this.waiters.shift();
    if (w !== undefined) w();
  }

  /** After a failed build: waits for the chunks in flight, then removes the open blob's temp file. */
  async abort(): Promise<void> {
    const blob = this.blob;
    this.blob = undefined;
    await this.tail;
    await blob?.discard();
  }

  /**
   * Waits for every submitted chunk and closes the chunk data of the current blob: writes its blob
   * meta. Returns the blob, or undefined (and removes the file) when it holds no chunk and
   * `keepEmpty` is false. The caller then calls `finalize` (after inlining a bootstrap, if any).
   */
  async closeBlob(keepEmpty = false): Promise<NewBlob | undefined> {
    const blob = this.blob;
    if (blob === undefined) throw new Error('no blob is open');
    this.blob = undefined;
    await this.tail;
    if (this.failure !== undefined) {
      await blob.discard();
      throw this.failure;
    }
    if (blob.assembler.chunkCount === 0 && !keepEmpty) {
      await blob.discard();
      return undefined;
    }
    try {
      await this.writeBatch(blob);
    } catch (e) {
      await blob.discard();
      throw e;
    }
    await blob.write(blob.assembler.finishMeta(this.opts.codecs));
    return blob;
  }
}
