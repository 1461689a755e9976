/**
 * Local caches of chunk data. `FileBlobCache`: one file per blob in the uncompressed layout
 * (`<blob id>.blob.data`, the EROFS device view) plus its chunk map, shared by every image that
 * uses the blob and kept across restarts; reads go straight from the file into the caller's
 * buffers. `MemoryBlobCache`: a bounded in-memory cache for runs without a cache directory.
 */
import { type FileHandle, access, open, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { scatter, sliceViews, writeFully } from '../../base/index.js';
import { type ChunkInfo, blobOfChunkKey, chunkKey } from '../../format/chunk-info.js';
import type { BlobInfo } from '../../format/image.js';
import { type NoWaitFile, native, readNoWait } from '../../native/index.js';
import type { CacheCipher } from './cache-cipher.js';
import { ChunkMap, ChunkState } from './chunk-map.js';

/** A cached blob's files in a cache directory: `<blob id>` and these suffixes. */
export const CACHE_DATA_SUFFIX = '.blob.data';
export const CACHE_MAP_SUFFIX = '.chunk_map.dfly';

export interface BlobCache {
  /** ABSENT, PRESENT (verified) or UNVERIFIED (to be verified before use). */
  state(c: ChunkInfo): number;
  /** Copies `length` bytes from offset `from` of chunk `c` into `dst` (a scatter list). */
  readInto(c: ChunkInfo, from: number, length: number, dst: Uint8Array[]): Promise<void>;
  /** Hints that present chunks will be read soon (a sequential reader is coming). */
  willNeed(chunks: readonly ChunkInfo[]): void;
  /** The whole chunk (for verification). */
  readChunk(c: ChunkInfo): Promise<Uint8Array>;
  /** Stores verified chunk data and marks it present. */
  store(c: ChunkInfo, data: Uint8Array): Promise<void>;
  /** Marks a chunk verified after an UNVERIFIED chunk passed its digest check. */
  markVerified(c: ChunkInfo): Promise<void>;
  /** Drops a chunk whose cached bytes are wrong. */
  drop(c: ChunkInfo): Promise<void>;
  close(): Promise<void>;
}

/** What names a blob's cache: its id, and the meta blob of a SEPARATE blob. */
export type CachedBlob = Pick<BlobInfo, 'id' | 'separateMeta'>;

/**
 * What a blob's cache is named after in a cache directory: its id, and for a blob indexed by a
 * meta blob (ZRan, tar-ref: a SEPARATE blob, whose id is its layer's digest) the meta blob's too.
 * The cache holds chunks by their index and at their uncompressed offset, which the meta blob
 * decides: two indexes of one layer (built with other chunk sizes, say) number its chunks
 * differently, and sharing one cache, the second served the first's marks over its own holes.
 */
export function blobCacheId(blob: CachedBlob): string {
  return blob.separateMeta === undefined ? blob.id : `${blob.id}-${Buffer.from(blob.separateMeta.digest).toString('hex').slice(0, 16)}`;
}

/** What a blob's cache files are named after: its cache id, or an encrypted cache's name for it. */
export function cacheName(blob: CachedBlob, cipher: CacheCipher | undefined): string {
  const id = blobCacheId(blob);
  return cipher?.cacheName(id) ?? id;
}

/** The name of a blob's cache data file in a cache directory (an encrypted cache's with `cipher`). */
export function cacheDataFile(blob: CachedBlob, cipher?: CacheCipher): string {
  return cacheName(blob, cipher) + CACHE_DATA_SUFFIX;
}

export class FileBlobCache implements BlobCache {
  /** The data file for `readNoWait`. */
  private readonly file: NoWaitFile;

  private constructor(
    private readonly data: FileHandle,
    private readonly map: ChunkMap,
    private readonly cipher: CacheCipher | undefined,
  ) {
    this.file = { fd: data.fd };
  }

  /** Whether `dir` holds a cache of the blob (its chunk map), whatever it has in it. */
  static exists(dir: string, blob: CachedBlob, cipher?: CacheCipher): Promise<boolean> {
    return access(join(dir, cacheName(blob, cipher) + CACHE_MAP_SUFFIX)).then(
      () => true,
      () => false,
    );
  }

  /**
   * Opens (creating them if need be) the blob's cache files; with `cipher`, its encrypted ones.
   * The map first, locked, then the data file: `cache gc` removes a blob's files only while it
   * holds the map exclusively, so once the map this process locked is still the one at its path,
   * neither file goes away under it. A map removed before the lock was taken (a gc just then) is
   * opened again: its marks describe a data file that is gone, and a new one would read as holes.
   */
  static async open(dir: string, blob: CachedBlob, cipher?: CacheCipher): Promise<{ cache: FileBlobCache; uncleanShutdown: boolean }> {
    const dataPath = join(dir, cacheDataFile(blob, cipher));
    const mapPath = join(dir, cacheName(blob, cipher) + CACHE_MAP_SUFFIX);
    for (let attempt = 1; ; attempt++) {
      const opened = await ChunkMap.open(mapPath);
      let data: FileHandle | undefined;
      try {
        if (!(await opened.map.isAt(mapPath))) {
          if (attempt < 3) {
            await opened.map.close(false);
            continue;
          }
          throw new Error(`${mapPath} was removed while it was being opened, ${attempt} times`);
        }
        const fh = await open(dataPath, 'a+').then(async (h) => {
          await h.close();
          return open(dataPath, 'r+');
        });
        data = fh;
        const now = new Date();
        await utimes(mapPath, now, now); // "last used", for cache gc's LRU order
        return { cache: new FileBlobCache(fh, opened.map, cipher), uncleanShutdown: opened.uncleanShutdown };
      } catch (e) {
        // Whatever failed (the files removed meanwhile, say), nothing stays open, no lock held.
        try {
          await opened.map.close(false);
        } finally {
          await data?.close();
        }
        throw e;
      }
    }
  }

  state(c: ChunkInfo): number {
    return this.map.state(c.index);
  }

  /**
   * One vectored read per call. What the host page cache holds is copied on the event loop thread
   * (preadv2 RWF_NOWAIT: no thread-pool round trip, which costs more than the copy); the rest, if
   * any, is read on the thread pool.
   */
  async readInto(c: ChunkInfo, from: number, length: number, dst: Uint8Array[]): Promise<void> {
    if (this.cipher !== undefined) return this.readSealed(this.cipher, c, from, length, dst);
    let pos = c.uncompressedOffset + from;
    let left = length;
    let views = sliceViews(dst, 0, left);
    let nowait = true;
    while (left > 0) {
      let n = nowait ? readNoWait(this.file, views, pos) : -1;
      if (n < 0 || (n < left && n > 0)) nowait = false; // not (all) cached: wait for the disk
      if (n < 0) n = (await this.data.readv(views, pos)).bytesRead;
      if (n === 0) await this.cut(c);
      pos += n;
      left -= n;
      views = sliceViews(views, n, left);
    }
  }

  /** An encrypted cache's read: the whole pages, decrypted, then the bytes asked for. */
  private async readSealed(cipher: CacheCipher, c: ChunkInfo, from: number, length: number, dst: Uint8Array[]): Promise<void> {
    const p = cipher.pagesOf(c, from, length);
    const pages = Buffer.allocUnsafe(p.length);
    for (let got = 0; got < p.length; ) {
      const { bytesRead } = await this.data.read(pages, got, p.length - got, p.offset + got);
      if (bytesRead === 0) await this.cut(c);
      got += bytesRead;
    }
    scatter(cipher.open(c, p.offset, pages), p.skip, length, dst);
  }

  /**
   * The data file ends inside a chunk marked present: it was cut. Every present chunk is to be
   * verified from now on, not only this one (the caller drops and fetches it): storing it again
   * extends the file with a hole, which reads as zeros, below it.
   */
  private async cut(c: ChunkInfo): Promise<never> {
    await this.map.markAllUnverified();
    throw new Error(`cache file ends inside chunk ${c.index}: every chunk of the blob is verified before use from now on`);
  }

  willNeed(chunks: readonly ChunkInfo[]): void {
    // Chunks adjacent in the file (4 KiB slots) in one call: the kernel reads the range as one stream.
    let start = -1;
    let end = -1;
    for (const c of chunks) {
      if (start >= 0 && c.uncompressedOffset >= end && c.uncompressedOffset - end < 4096) {
        end = c.uncompressedOffset + c.uncompressedSize;
        continue;
      }
      if (start >= 0) native.fadviseWillNeed(this.data.fd, start, end - start);
      start = c.uncompressedOffset;
      end = start + c.uncompressedSize;
    }
    if (start >= 0) native.fadviseWillNeed(this.data.fd, start, end - start);
  }

  async readChunk(c: ChunkInfo): Promise<Uint8Array> {
    const b = Buffer.allocUnsafe(c.uncompressedSize);
    await this.readInto(c, 0, c.uncompressedSize, [b]);
    return b;
  }

  async store(c: ChunkInfo, data: Uint8Array): Promise<void> {
    await writeFully(this.data, this.cipher !== undefined ? this.cipher.seal(c, data) : data, c.uncompressedOffset);
    await this.map.markPresent(c.index);
  }

  async markVerified(c: ChunkInfo): Promise<void> {
    await this.map.markPresent(c.index);
  }

  async drop(c: ChunkInfo): Promise<void> {
    await this.map.markAbsent(c.index);
  }

  async close(): Promise<void> {
    // Both files are closed whatever fails; a failed sync leaves the map marked in use, so that
    // the next user verifies what it marks present.
    let synced = false;
    try {
      await this.data.datasync();
      synced = true;
    } finally {
      try {
        await this.data.close();
      } finally {
        await this.map.close(synced);
      }
    }
  }
}

/**
 * What a memory cache tells the owner of the buffers it keeps: `keep` when it starts holding one,
 * `release` when it lets go (eviction, drop, close), so that a pooled buffer is not reused while
 * the cache still serves it.
 */
export interface KeptBuffers {
  keep(data: Uint8Array): void;
  release(data: Uint8Array): void;
}

/**
 * Decoded chunks in memory for every blob of a device (one bound for them all), the least recently
 * used evicted beyond the cache's capacity. Each blob sees its own part through a `MemoryBlobCache`.
 *
 * The capacity starts at `initial` bytes and grows towards `limit` only when that would have saved
 * work: a chunk stored again while its key is still among the recently evicted ones (the "ghosts",
 * as in ARC) was decoded twice for want of room, and the capacity grows by its size. A stream of
 * chunks each read once (a sequential read) never comes back for an evicted one, so the cache
 * stays small: every buffer it would add costs first-touch page faults and counts towards V8's
 * external memory, which schedules full collections, and the kernel's page cache already holds
 * what was read. A working set read again and again grows it to what it needs, up to `limit`.
 */
export class MemoryChunks {
  /** By `chunkKey`, least recently used first. */
  private readonly chunks = new Map<number, Uint8Array>();
  private bytes = 0;
  private capacityBytes: number;
  /** Keys evicted while below `limit`, with their sizes, oldest first; within `limit - capacity` bytes. */
  private readonly ghosts = new Map<number, number>();
  private ghostBytes = 0;

  constructor(
    private readonly limit: number,
    private readonly buffers?: KeptBuffers,
    initial = limit,
  ) {
    this.capacityBytes = Math.min(limit, Math.max(0, initial));
  }

  /** Bytes the cache holds at most now (it grows towards `limit`). */
  get capacity(): number {
    return this.capacityBytes;
  }

  has(k: number): boolean {
    return this.chunks.has(k);
  }

  get(k: number): Uint8Array | undefined {
    const data = this.chunks.get(k);
    if (data !== undefined) {
      // Refresh its place in the LRU order.
      this.chunks.delete(k);
      this.chunks.set(k, data);
    }
    return data;
  }

  put(k: number, data: Uint8Array): void {
    if (this.chunks.has(k)) return;
    const ghost = this.ghosts.get(k);
    if (ghost !== undefined) {
      this.forget(k, ghost);
      this.grow(data.length);
    }
    // Room for the chunk itself at least (a 16 MiB chunk in a cache that starts at 8).
    if (data.length > this.capacityBytes) this.grow(data.length - this.capacityBytes);
    this.chunks.set(k, data);
    this.buffers?.keep(data);
    this.bytes += data.length;
    for (const [old, v] of this.chunks) {
      if (this.bytes <= this.capacityBytes) break;
      this.remove(old, v);
      this.haunt(old, v.length);
    }
  }

  delete(k: number): void {
    const d = this.chunks.get(k);
    if (d !== undefined) this.remove(k, d);
  }

  /** Drops every chunk of one blob. */
  deleteBlob(blobIndex: number): void {
    for (const [k, v] of this.chunks) if (blobOfChunkKey(k) === blobIndex) this.remove(k, v);
    for (const [k, n] of this.ghosts) if (blobOfChunkKey(k) === blobIndex) this.forget(k, n);
  }

  private remove(k: number, d: Uint8Array): void {
    this.chunks.delete(k);
    this.bytes -= d.length;
    this.buffers?.release(d);
  }

  private grow(n: number): void {
    this.capacityBytes = Math.min(this.limit, this.capacityBytes + n);
    this.trimGhosts();
  }

  /** Remembers an evicted key, while a larger cache could still have kept it. */
  private haunt(k: number, n: number): void {
    if (this.capacityBytes >= this.limit) return;
    this.ghosts.set(k, n);
    this.ghostBytes += n;
    this.trimGhosts();
  }

  private forget(k: number, n: number): void {
    this.ghosts.delete(k);
    this.ghostBytes -= n;
  }

  private trimGhosts(): void {
    for (const [k, n] of this.ghosts) {
      if (this.ghostBytes <= this.limit - this.capacityBytes) break;
      this.forget(k, n);
    }
  }
}

/** A blob's part of a device's `MemoryChunks`. */
export class MemoryBlobCache implements BlobCache {
  constructor(
    private readonly memory: MemoryChunks,
    private readonly blobIndex: number,
  ) {}

  state(c: ChunkInfo): number {
    return this.memory.has(chunkKey(c)) ? ChunkState.PRESENT : ChunkState.ABSENT;
  }

  willNeed(): void {} // already in memory

  private get(c: ChunkInfo): Uint8Array {
    const data = this.memory.get(chunkKey(c));
    if (data === undefined) throw new Error(`chunk ${c.index} left the memory cache`);
    return data;
  }

  async readInto(c: ChunkInfo, from: number, length: number, dst: Uint8Array[]): Promise<void> {
    scatter(this.get(c), from, length, dst);
  }

  async readChunk(c: ChunkInfo): Promise<Uint8Array> {
    return this.get(c);
  }

  async store(c: ChunkInfo, data: Uint8Array): Promise<void> {
    this.memory.put(chunkKey(c), data);
  }

  async markVerified(): Promise<void> {}

  async drop(c: ChunkInfo): Promise<void> {
    this.memory.delete(chunkKey(c));
  }

  async close(): Promise<void> {
    this.memory.deleteBlob(this.blobIndex);
  }
}

export { ChunkState };
