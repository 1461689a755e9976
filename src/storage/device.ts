/**
 * The chunk path, as one facade for the filesystems above: a read names chunk ranges; cached
 * chunks are copied straight from the cache into the caller's buffers; missing ones are fetched
 * (adjacent chunks merged into one backend read, concurrent requests for a chunk sharing one
 * fetch), decompressed, verified against their digest, stored, then copied. Wrong bytes never
 * reach a reader: a chunk that fails verification from the backend fails the read (EIO above).
 */
import { setMaxListeners } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { BufferPool, type Collection, DamselflyError, ErrorCode, IntegrityError, LogLimiter, type Logger, type Metrics, QuietTimer, allSettledOrThrow, collectGarbageSoon, errorMessage, scatter, sliceViews, untilAborted } from '../base/index.js';

export { sliceViews };
import { type ChunkInfo, chunkKey as key, extendsRun, sharedUnit } from '../format/chunk-info.js';
import type { Codecs } from '../format/compression.js';
import { BlobFeature } from '../format/constants.js';
import type { BlobInfo } from '../format/image.js';
import { native } from '../native/index.js';
import type { BlobBackend } from './backend/types.js';
import { type BlobCache, ChunkState, FileBlobCache, MemoryBlobCache, MemoryChunks } from './cache/blob-cache.js';
import type { CacheCipher } from './cache/cache-cipher.js';
import { type BatchDecodes, decodeChunkAsync, describeChunk, verifyChunk } from './chunk/decode.js';

/**
 * The memory cache, for all the blobs a device serves without a cache file (no cache directory, or
 * a blob whose cache could not be opened). The kernel's page cache already keeps what files read;
 * this keeps the decoded chunks it does not (a chunk several files share, one read again after the
 * kernel dropped its pages) within a bound: each byte of it is memory that stays taken. It starts
 * at `MEMORY_CACHE_START_BYTES` and grows to `MEMORY_CACHE_BYTES` only while chunks it evicted are
 * decoded again (`MemoryChunks`). A cold sequential read of 336 MB from a local blob directory
 * (`fuse.sh`'s seq line, 6 interleaved runs): 0.59-0.75 s (median 0.69) starting at 8 MiB against
 * 0.69-1.10 s (median 0.72) with 64 MiB from the start, 0.85 against 0.94 s of CPU, 9,700 page
 * faults against 24,000 (the buffers the cache fills, first touched, and V8's full collections as
 * their external memory grows). Earlier, 256 MiB took 0.43 s against 0.32-0.37 s with 32 or 64.
 */
export const MEMORY_CACHE_BYTES = 64 << 20;
export const MEMORY_CACHE_START_BYTES = 8 << 20;

export interface DeviceOptions {
  blobs: readonly BlobInfo[];
  backend: BlobBackend;
  codecs: Codecs;
  /** Cache directory; without it chunks are kept in a bounded memory cache. */
  cacheDir?: string;
  /** Encrypt the cache files (filecache `enable_encryption`). */
  cacheCipher?: CacheCipher;
  /** Verify chunks again on every cache read (nydus `digest_validate`). */
  validate?: boolean;
  /** Largest merged backend read, bytes. */
  mergeLimit?: number;
  /**
   * Bytes the fetches under way may hold at once — their compressed reads and decoded chunks,
   * until stored (default 256 MiB). Past it, a fetch waits for earlier ones to finish: a guest
   * posting hundreds of reads of distinct chunks at once (about 1.5 MB each) cannot grow the
   * process without bound. A single fetch larger than the budget still runs, alone.
   */
  fetchBudgetBytes?: number;
  /** Where chunks' stored and decoded buffers come from (default: a pool of the device's own). */
  bufferPool?: BufferPool;
  /** Memory cache size for all the blobs served without a cache file, bytes at most (default `MEMORY_CACHE_BYTES`). */
  memoryCacheBytes?: number;
  /** Its size at first, bytes; it grows when evicted chunks are decoded again (default `MEMORY_CACHE_START_BYTES`). */
  memoryCacheStartBytes?: number;
  /** Decoded chunks kept in memory after a fetch or cache read, bytes (saves re-reading the cache). */
  recentBytes?: number;
  /**
   * Those chunks are dropped after this long without a read or a fetch, ms (default 10 s), and the
   * buffer pool's idle memory handed back with them: a daemon at rest holds no chunk data.
   */
  recentIdleMs?: number;
  /**
   * Runs once the device went to rest (its chunks dropped, its pool trimmed): by default a full
   * garbage collection, so that the memory a busy spell left as garbage goes back to the system
   * rather than waiting for the next allocation to make V8 collect; one for every device going to
   * rest within a second (`collectGarbageSoon`).
   */
  atRest?: () => Promise<Collection> | void;
  /**
   * Also fetch the chunks stored right after a missing one, up to this many compressed bytes in
   * the same backend read (nydus `amplify_io`); needs `neighbors`. 0 fetches only what is read.
   */
  amplifyBytes?: number;
  /**
   * Without `amplifyBytes`: blob read-ahead. A miss that starts where the previous fetch a reader
   * caused in that blob ended continues a scan of the blob in storage order (tar, a copy, a
   * start-up in prefetch-table order); it also fetches the chunks stored next, in a window that
   * starts at 128 KiB and doubles up to this many compressed bytes. Any other miss fetches only what
   * is read and closes the window, so reading one file fetches that file's chunks. 0 disables.
   */
  sequentialBytes?: number;
  /** The chunks stored after `c` in its blob, contiguous, up to `maxBytes` (for amplification). */
  neighbors?: (c: ChunkInfo, maxBytes: number) => ChunkInfo[];
  /**
   * The other members of a batch chunk's batch. Fetching one member fetches and decodes the
   * whole batch: the absent members are kept too, instead of fetching the batch again for each.
   */
  batchMembers?: (c: ChunkInfo) => ChunkInfo[];
  /**
   * Builds what `neighbors` needs ahead of use (an index over every chunk: 12-16 ms for 8700
   * chunks, 25-50 ms for 6500 in a cold process). The device calls it once: from `prepare()`, while
   * the server waits for its first request, or else a turn after a reader's first miss, while that
   * miss's fetch is under way. Either way the first miss that reads ahead does not wait for it.
   */
  prepareNeighbors?: () => void;
  metrics: Metrics;
  log: Logger;
}

/** Part of one chunk that a read needs: bytes [from, from + length) of its data. */
export interface ChunkSegment {
  chunk: ChunkInfo;
  from: number;
  length: number;
}

/**
 * A pool for chunk buffers: page-aligned memory, so that the localfs backend can read large
 * ranges into them with O_DIRECT.
 */
export function chunkBufferPool(): BufferPool {
  return new BufferPool({ allocate: (size) => native.allocAligned(size), discard: (ab) => native.discardPages(ab) });
}

export class BlobDevice {
  private readonly opts: DeviceOptions;
  private readonly caches = new Map<number, Promise<BlobCache>>();
  /** The caches opened so far: reads find theirs without an await, a batch finds its other members. */
  private readonly opened = new Map<number, BlobCache>();
  private readonly inflight = new Map<number, Promise<Uint8Array>>();
  /** Chunks in flight for the prefetch alone (a background read): a reader's wait expedites them. */
  private readonly background = new Set<number>();
  private readonly recent = new Map<number, Uint8Array>();
  private recentBytes = 0;
  /** Empties `recent`, and then trims the buffer pool, once the device is at rest. */
  private readonly recentQuiet: QuietTimer;
  private readonly storing = new Set<Promise<void>>();
  private readonly logLimiter = new LogLimiter();
  /** Bytes held by fetches under way (`fetchBudgetBytes`), and the fetches waiting for room. */
  private fetchBytes = 0;
  private fetchWaiters: Array<() => void> = [];
  /** Per blob: where the last fetch a reader caused ended, and the read-ahead window then. */
  private readonly scans = new Map<number, { end: number; window: number }>();
  private closed = false;
  /** Fires at close(): the backend reads still under way give up (a stalled peer cannot hold the close). */
  private readonly closing = new AbortController();
  private neighborsPrepared = false;
  /**
   * Chunks' stored and decoded buffers, reused. A buffer goes back when nothing holds it any
   * more: the cache write, the `recent` list and a memory cache each hold it while they use it.
   */
  private readonly pool: BufferPool;
  private readonly holds = new Map<Uint8Array, number>();
  /** The memory cache of the blobs served without a cache file, made at its first use. */
  private memoryChunksStore: MemoryChunks | undefined;

  constructor(opts: DeviceOptions) {
    this.opts = opts;
    this.pool = opts.bufferPool ?? chunkBufferPool();
    // Every backend read in flight listens on the one signal (a prefetch's threads and the
    // readers: dozens at once), each until it ends: not the leak Node warns of beyond 10.
    setMaxListeners(0, this.closing.signal);
    this.recentQuiet = new QuietTimer(opts.recentIdleMs ?? 10_000, () => {
      this.dropRecent();
      // The buffers just released become idle a turn later (BufferPool.release).
      setImmediate(() => {
        this.pool.trim();
        this.opts.metrics.inc('storage.rests');
        const start = performance.now();
        const collected = (this.opts.atRest ?? collectGarbageSoon)() ?? Promise.resolve({ ms: performance.now() - start, joined: false });
        void collected.then(({ ms, joined }) => {
          // A collection other devices joined is counted once, by the device that asked first.
          if (!joined) {
            this.opts.metrics.inc('storage.collections');
            this.opts.metrics.inc('storage.rest_ms', Math.round(ms));
          }
          this.opts.log.debug({ ms: Number(ms.toFixed(1)), joined }, 'at rest: chunks dropped, pool trimmed, garbage collected');
        });
      }).unref();
    });
  }

  private hold(data: Uint8Array): void {
    this.holds.set(data, (this.holds.get(data) ?? 0) + 1);
  }

  private unhold(data: Uint8Array): void {
    const n = this.holds.get(data);
    if (n === undefined) return;
    if (n > 1) {
      this.holds.set(data, n - 1);
      return;
    }
    this.holds.delete(data);
    this.pool.release(data);
  }

  private memoryChunks(): MemoryChunks {
    // It holds the pooled buffers it keeps, until it evicts them.
    this.memoryChunksStore ??= new MemoryChunks(
      this.opts.memoryCacheBytes ?? MEMORY_CACHE_BYTES,
      { keep: (d) => this.hold(d), release: (d) => this.unhold(d) },
      this.opts.memoryCacheStartBytes ?? MEMORY_CACHE_START_BYTES,
    );
    return this.memoryChunksStore;
  }

  private blob(c: ChunkInfo): BlobInfo {
    const b = this.opts.blobs[c.blobIndex];
    if (b === undefined) throw new IntegrityError(`chunk refers to blob ${c.blobIndex}, which the image does not have`);
    return b;
  }

  private cache(blobIndex: number): Promise<BlobCache> {
    let p = this.caches.get(blobIndex);
    if (p === undefined) {
      // Once closing, a late prefetch step or read must not open the cache again: the new handle
      // would outlive close() (and its lock would wait behind close's own).
      if (this.closed) return Promise.reject(closedError());
      const blob = this.opts.blobs[blobIndex] as BlobInfo;
      const dir = this.opts.cacheDir;
      const memory = (): BlobCache => new MemoryBlobCache(this.memoryChunks(), blobIndex);
      const cipher = this.opts.cacheCipher;
      // An encrypted cache encrypts whole pages: chunks that may share one cannot use it.
      const unaligned = dir !== undefined && cipher !== undefined && !(blob.features & BlobFeature.ALIGNED);
      if (unaligned) this.opts.log.warn({ blob: blob.id }, 'an encrypted cache needs a blob of 4 KiB aligned chunks (v6); this one is served from memory');
      p =
        dir === undefined || unaligned
          ? Promise.resolve(memory())
          : mkdir(dir, { recursive: true })
              .then(() => FileBlobCache.open(dir, blob, cipher))
              .then(
                ({ cache, uncleanShutdown }) => {
                  if (uncleanShutdown) this.opts.log.info({ blob: blob.id }, 'cache was not closed cleanly; cached chunks are verified before use');
                  return cache;
                },
                (e: unknown) => {
                  if (this.closed) throw e;
                  // The cache directory went read-only, full of inodes, or its chunk map stayed
                  // locked by another process: the blob is served without it, from memory.
                  this.opts.metrics.inc('storage.cache_open_failures');
                  this.logLimiter.log(this.opts.log, 'warn', 'cache open', { blob: blob.id, dir, err: errorMessage(e) }, 'cannot open the blob\'s cache; serving it from memory');
                  return memory();
                },
              );
      p.then(
        (cache) => this.opened.set(blobIndex, cache),
        () => this.caches.delete(blobIndex),
      );
      this.caches.set(blobIndex, p);
    }
    return p;
  }

  /**
   * Gets ready for the first reads while the device is idle, right after the image is served: the
   * chunk neighbour index is built (in a first read's path it held that read's completion back by
   * as long), and the backend gets ready for the image's blobs (a local backend opens their files:
   * a blob that cannot be opened is a warning then, at mount, not first noticed as a failed read;
   * each read of it still fails on its own).
   */
  async prepare(): Promise<void> {
    if (this.closed) return; // nothing to open any more
    if (!this.neighborsPrepared) {
      this.neighborsPrepared = true;
      this.buildNeighbors();
    }
    const failed = (await this.opts.backend.prepare?.(this.opts.blobs.map((b) => b.id))) ?? [];
    for (const f of failed) this.opts.log.warn({ blob: f.id, err: f.err }, 'a blob of the image cannot be read: reads of its chunks will fail');
  }

  /**
   * Reads the segments, in order, into `dst` (which holds at least their total length). Once
   * `signal` fires (the request was abandoned: `dst` may be someone else's by then), it stops
   * waiting and writes nothing more into `dst` (fetches under way go on, for the cache).
   */
  async read(segments: ChunkSegment[], dst: Uint8Array[], signal?: AbortSignal): Promise<void> {
    if (this.closed) throw closedError();
    this.recentQuiet.touch(); // not at rest
    const m = this.opts.metrics;
    // Start fetches for every absent chunk first, so that adjacent ones merge.
    const absent: ChunkInfo[] = [];
    for (const s of segments) {
      // An open cache without an await: each would be a turn of the microtask queue per segment.
      const cache = this.opened.get(s.chunk.blobIndex) ?? (await this.cache(s.chunk.blobIndex));
      if (cache.state(s.chunk) === ChunkState.ABSENT && !this.inflight.has(key(s.chunk))) absent.push(s.chunk);
    }
    if (absent.length > 0) {
      this.fetch(this.withBatchMembers(await this.plan(absent)));
      if (!this.neighborsPrepared) this.prepareNeighbors();
    }
    if (segments.length === 1) {
      // The common read (inside one chunk): no array of promises to wait on.
      const s = segments[0] as ChunkSegment;
      m.inc('storage.read_bytes', s.length);
      await this.readSegment(s, sliceViews(dst, 0, s.length), signal);
      return;
    }
    let pos = 0;
    // Every segment settles before the read does: none may write into `dst` after it failed.
    await allSettledOrThrow(
      segments.map((s) => {
        const views = sliceViews(dst, pos, s.length);
        pos += s.length;
        m.inc('storage.read_bytes', s.length);
        return this.readSegment(s, views, signal);
      }),
    );
  }

  private prepareNeighbors(): void {
    this.neighborsPrepared = true;
    if (this.opts.prepareNeighbors !== undefined) setImmediate(() => this.buildNeighbors());
  }

  private buildNeighbors(): void {
    const prepare = this.opts.prepareNeighbors;
    if (prepare !== undefined) {
      try {
        prepare();
      } catch (e) {
        // A bootstrap that cannot be indexed: the read that needs the index reports it (EIO).
        this.opts.log.debug({ err: errorMessage(e) }, 'building the chunk neighbour index failed');
      }
    }
  }

  /**
   * What a reader's miss fetches: the absent chunks, and the chunks stored after them within the
   * fixed amplification or else the blob read-ahead window (see `sequentialBytes`). A miss that
   * starts where the blob's last planned fetch ended doubles the window (from 128 KiB); any other
   * closes it.
   */
  private async plan(absent: ChunkInfo[]): Promise<ChunkInfo[]> {
    const fixed = this.opts.amplifyBytes ?? 0;
    if (fixed > 0) return this.amplify(absent, fixed);
    const max = this.opts.sequentialBytes ?? 0;
    if (max <= 0) return absent;
    const blobIndex = (absent[0] as ChunkInfo).blobIndex;
    const inBlob = (cs: ChunkInfo[]): ChunkInfo[] => cs.filter((c) => c.blobIndex === blobIndex);
    const start = Math.min(...inBlob(absent).map((c) => c.compressedOffset));
    const last = this.scans.get(blobIndex);
    const window = last !== undefined && last.end === start ? Math.min(max, last.window > 0 ? last.window * 2 : 128 << 10) : 0;
    const planned = window > 0 ? await this.amplify(absent, window) : absent;
    this.scans.set(blobIndex, { end: Math.max(...inBlob(planned).map((c) => c.compressedOffset + c.compressedSize)), window });
    return planned;
  }

  /**
   * Adds the absent members of the batches (or ZRan contexts) of `chunks` (`batchMembers`): one
   * fetch decodes the whole unit, and all it holds is kept. Their blobs' caches are open (the
   * callers checked the chunks' states).
   */
  private withBatchMembers(chunks: ChunkInfo[]): ChunkInfo[] {
    const members = this.opts.batchMembers;
    if (members === undefined || !chunks.some((c) => sharedUnit(c) !== undefined)) return chunks;
    const out = [...chunks];
    const seen = new Set(chunks.map(key));
    for (const c of chunks) {
      if (sharedUnit(c) === undefined) continue;
      const cache = this.opened.get(c.blobIndex);
      for (const m of members(c)) {
        const k = key(m);
        if (seen.has(k) || this.inflight.has(k) || cache === undefined || cache.state(m) !== ChunkState.ABSENT) continue;
        seen.add(k);
        out.push(m);
      }
    }
    return out;
  }

  /**
   * Adds the chunks stored after each absent one, within the budget, up to the first that is
   * cached, in memory or already being fetched.
   */
  private async amplify(absent: ChunkInfo[], budget: number): Promise<ChunkInfo[]> {
    if (this.opts.neighbors === undefined) return absent;
    const out = [...absent];
    for (const c of absent) {
      const cache = await this.cache(c.blobIndex);
      for (const n of this.opts.neighbors(c, budget)) {
        if (this.inflight.has(key(n)) || this.recent.has(key(n)) || cache.state(n) !== ChunkState.ABSENT) break;
        out.push(n);
      }
    }
    this.opts.metrics.inc('storage.amplified_chunks', out.length - absent.length);
    return out;
  }

  private remember(k: number, data: Uint8Array): void {
    const limit = this.opts.recentBytes ?? 8 << 20;
    if (data.length > limit) return;
    if (this.recent.has(k)) return;
    this.recent.set(k, data);
    this.hold(data);
    this.recentBytes += data.length;
    this.recentQuiet.touch();
    for (const [old, d] of this.recent) {
      if (this.recentBytes <= limit) break;
      this.recent.delete(old);
      this.recentBytes -= d.length;
      this.unhold(d);
    }
  }

  private recall(k: number): Uint8Array | undefined {
    const d = this.recent.get(k);
    if (d !== undefined) {
      this.recent.delete(k);
      this.recent.set(k, d); // most recently used last
    }
    return d;
  }

  private dropRecent(): void {
    for (const d of this.recent.values()) this.unhold(d);
    this.recent.clear();
    this.recentBytes = 0;
  }

  /**
   * One segment into `views`. Each write into them is preceded, in the same synchronous step, by
   * a look at `signal`: an abandoned read writes nothing, even when its chunk came in just then.
   */
  private async readSegment(s: ChunkSegment, views: Uint8Array[], signal: AbortSignal | undefined): Promise<void> {
    const c = s.chunk;
    signal?.throwIfAborted();
    const hot = this.recall(key(c));
    if (hot !== undefined) {
      this.opts.metrics.inc('storage.memory_hits');
      scatter(hot, s.from, s.length, views);
      return;
    }
    const pending = this.inflight.get(key(c));
    if (pending !== undefined) {
      if (this.background.delete(key(c))) this.opts.backend.expedite?.(this.blob(c).id, c.compressedOffset, c.compressedSize);
      const data = await untilAborted(pending, signal);
      signal?.throwIfAborted();
      scatter(data, s.from, s.length, views);
      return;
    }
    const cache = this.opened.get(c.blobIndex) ?? (await untilAborted(this.cache(c.blobIndex), signal));
    const state = cache.state(c);
    if (state === ChunkState.PRESENT && !this.opts.validate) {
      this.opts.metrics.inc('storage.cache_hits');
      try {
        // A read from the cache file straight into `views`: not abortable once started, but local.
        signal?.throwIfAborted();
        await cache.readInto(c, s.from, s.length, views);
        return;
      } catch (e) {
        if (signal?.aborted) throw e;
        // A memory-cache eviction or a short cache file: fall back to the backend.
        this.opts.log.debug({ err: errorMessage(e) }, 'cache read failed; fetching again');
        await cache.drop(c);
      }
    } else if (state !== ChunkState.ABSENT) {
      const data = await cache.readChunk(c).catch(() => undefined);
      if (data !== undefined && this.verifies(c, data)) {
        this.opts.metrics.inc('storage.cache_hits');
        // A memory cache's own buffer: held while this read uses it, in case the cache evicts it
        // meanwhile (it would go back to the pool).
        this.hold(data);
        try {
          await cache.markVerified(c);
          if (!this.opts.validate) this.remember(key(c), data);
          signal?.throwIfAborted();
          scatter(data, s.from, s.length, views);
        } finally {
          this.unhold(data);
        }
        return;
      }
      this.opts.metrics.inc('storage.cache_verify_failures');
      this.opts.log.warn({ chunk: describeChunk(this.blob(c), c) }, 'cached chunk failed verification; fetching it again');
      await cache.drop(c);
    }
    const data = await untilAborted(this.fetchOne(c), signal);
    signal?.throwIfAborted();
    scatter(data, s.from, s.length, views);
  }

  private verifies(c: ChunkInfo, data: Uint8Array): boolean {
    try {
      verifyChunk(this.blob(c), c, data);
      return true;
    } catch {
      return false;
    }
  }

  private fetchOne(c: ChunkInfo): Promise<Uint8Array> {
    const pending = this.inflight.get(key(c));
    if (pending !== undefined) return pending;
    this.fetch([c]);
    return this.inflight.get(key(c)) as Promise<Uint8Array>;
  }

  /**
   * Starts fetches for chunks (absent and not in flight), merging adjacent ones per blob, and
   * overlapping ones (ZRan contexts overlap: one read of their union).
   */
  private fetch(chunks: ChunkInfo[], background = false): void {
    // A caller that checked before an await may get here after close(): the backend is closed.
    if (this.closed) throw closedError();
    const limit = this.opts.mergeLimit ?? 4 << 20;
    const wanted = chunks.filter((c) => !this.inflight.has(key(c)));
    const sorted = [...new Map(wanted.map((c) => [key(c), c])).values()].sort((a, b) => a.blobIndex - b.blobIndex || a.compressedOffset - b.compressedOffset);
    let group: ChunkInfo[] = [];
    let end = 0;
    const flush = (): void => {
      if (group.length > 0) this.fetchGroup(group, background);
      group = [];
    };
    for (const c of sorted) {
      const first = group[0];
      const grows = first !== undefined && first.blobIndex === c.blobIndex ? extendsRun(first.compressedOffset, end, c) : undefined;
      if (grows === undefined || end + grows - (first as ChunkInfo).compressedOffset > limit) {
        flush();
        end = c.compressedOffset + c.compressedSize;
      } else {
        end += grows;
      }
      group.push(c);
    }
    flush();
  }

  /** Decodes a chunk's stored bytes and verifies the result (counting and logging a mismatch). */
  private async decodeVerified(blob: BlobInfo, c: ChunkInfo, stored: Uint8Array, batches?: BatchDecodes): Promise<Uint8Array> {
    const dst = this.pool.acquire(c.uncompressedSize);
    try {
      const data = await decodeChunkAsync(this.opts.codecs, blob, c, stored, dst, batches);
      verifyChunk(blob, c, data);
      return data;
    } catch (e) {
      this.pool.release(dst); // the decoder is done with it, and nobody else has it
      if (e instanceof IntegrityError) {
        this.opts.metrics.inc('storage.verify_failures');
        // Each read of a broken chunk fetches it again: one line a minute.
        this.logLimiter.log(this.opts.log, 'error', 'verify', { blob: blob.id, chunk: c.index, err: errorMessage(e) }, 'chunk from the backend failed verification');
      }
      throw e;
    }
  }

  private fetchGroup(group: ChunkInfo[], background: boolean): void {
    const first = group[0] as ChunkInfo;
    const blob = this.blob(first);
    const start = first.compressedOffset;
    const length = group.reduce((end, c) => Math.max(end, c.compressedOffset + c.compressedSize), 0) - start;
    const m = this.opts.metrics;
    const pool = this.pool;
    const signal = this.closing.signal;
    const cost = length + group.reduce((n, c) => n + c.uncompressedSize, 0);
    // Async, so that a backend that throws instead of rejecting still ends in a rejection: the
    // room taken below is given back only when the chunks' promises settle.
    const read = async (): Promise<Buffer> => {
      if (this.closed) throw closedError(); // closed while this fetch waited for room
      return this.opts.backend.read(blob.id, start, length, { signal, allocate: (n: number) => pool.acquire(n), ...(background ? { background } : {}) });
    };
    // Started at once when the budget has room (the usual case), else when it has.
    const room = this.takeRoom(cost);
    const raw = room === undefined ? read() : room.then(read);
    m.inc('storage.backend_requests');
    const decoded: Promise<unknown>[] = [];
    const storedAll: Promise<unknown>[] = [];
    const batches: BatchDecodes = new Map();
    for (const c of group) {
      const k = key(c);
      const p = (async (): Promise<Uint8Array> => {
        const bytes = await raw;
        const stored = bytes.subarray(c.compressedOffset - start, c.compressedOffset - start + c.compressedSize);
        let data: Uint8Array;
        try {
          data = await this.decodeVerified(blob, c, stored, batches);
        } catch (e) {
          const { readOrigin, reportCorrupt } = this.opts.backend;
          if (!(e instanceof IntegrityError) || readOrigin === undefined) throw e;
          // Which route served them is failed over; when that was the origin, reading it again is no help.
          if (reportCorrupt?.(bytes) === false) throw e;
          // A proxy or mirror served wrong bytes: once more from the origin itself.
          this.opts.log.warn({ blob: blob.id, chunk: c.index }, 'reading the chunk again from the origin');
          data = await this.decodeVerified(blob, c, await readOrigin(blob.id, c.compressedOffset, c.compressedSize, { signal }));
        }
        m.inc('storage.chunks_fetched');
        m.inc('storage.chunks_fetched_bytes', data.length);
        this.hold(data); // for the cache write below
        this.remember(k, data);
        return data;
      })();
      // Readers get the data as soon as it is verified; the cache write follows, and the chunk
      // stays "in flight" (served from memory) until it is in the cache.
      const stored = p.then(
        async (data) => {
          try {
            const cache = await this.cache(c.blobIndex);
            await cache.store(c, data);
          } finally {
            this.unhold(data);
          }
        },
        () => undefined, // a failed fetch was reported to its readers
      );
      const tracked = stored.catch((e: unknown) => {
        // The chunk stays readable (from memory now, from the backend later); a full disk fails
        // every store, hence one line a minute.
        m.inc('storage.cache_store_failures');
        this.logLimiter.log(this.opts.log, 'warn', 'cache store', { blob: blob.id, chunk: c.index, err: errorMessage(e) }, 'storing a chunk in the cache failed');
      });
      this.storing.add(tracked);
      storedAll.push(tracked);
      void tracked.finally(() => {
        this.storing.delete(tracked);
        this.inflight.delete(k);
        this.background.delete(k);
      });
      p.catch(() => undefined);
      this.inflight.set(k, p);
      if (background) this.background.add(k);
      decoded.push(p);
    }
    // The room goes back once every chunk is stored (or failed): its memory is released then.
    void Promise.allSettled(storedAll).then(() => this.releaseRoom(cost));
    // The stored bytes go back to the pool once every chunk in them is decoded (or failed).
    void Promise.allSettled([raw, ...decoded]).then(([r]) => r?.status === 'fulfilled' && pool.release(r.value));
    raw.then(
      (b) => m.inc('storage.backend_bytes', b.length),
      () => m.inc('storage.backend_errors'),
    );
  }

  /**
   * Takes `cost` bytes of the fetch budget: undefined when taken now (there is room, or nothing
   * is under way), else a promise that resolves once they are taken.
   */
  private takeRoom(cost: number): Promise<void> | undefined {
    const budget = this.opts.fetchBudgetBytes ?? 256 << 20;
    const fits = (): boolean => this.fetchBytes === 0 || this.fetchBytes + cost <= budget;
    if (fits()) {
      this.fetchBytes += cost;
      return undefined;
    }
    this.opts.metrics.inc('storage.fetch_budget_waits');
    return (async () => {
      while (!fits()) await new Promise<void>((resolve) => this.fetchWaiters.push(resolve));
      this.fetchBytes += cost;
    })();
  }

  private releaseRoom(cost: number): void {
    this.fetchBytes -= cost;
    const waiters = this.fetchWaiters;
    this.fetchWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Fetches the absent chunks among `chunks` into the cache without reading them (prefetch, a
   * sequential reader's read-ahead). Resolves when all settled; rejects with the first failure after
   * every chunk was tried. With `hintCached` (read-ahead), the cached ones are read ahead from the
   * cache file too. `background` (the prefetch): the backend may serve these reads after those of
   * readers (`ReadOptions.background`) until a reader waits for one of the chunks.
   */
  async prefetch(chunks: ChunkInfo[], opts: { hintCached?: boolean; background?: boolean } = {}): Promise<void> {
    // The caches first: from the state checks to the fetch nothing may yield, or a reader could
    // start fetching a chunk in between and it would be fetched twice.
    const caches = new Map<number, BlobCache>();
    for (const i of new Set(chunks.map((c) => c.blobIndex))) caches.set(i, await this.cache(i));
    const absent: ChunkInfo[] = [];
    const present = new Map<BlobCache, ChunkInfo[]>();
    for (const c of chunks) {
      const cache = caches.get(c.blobIndex) as BlobCache;
      const state = cache.state(c);
      if (state === ChunkState.ABSENT) {
        if (!this.inflight.has(key(c))) absent.push(c);
      } else if (opts.hintCached && !this.recent.has(key(c))) {
        let list = present.get(cache);
        if (list === undefined) present.set(cache, (list = []));
        list.push(c);
      }
    }
    // Cached chunks: have the kernel read them from the cache file while the reader catches up.
    for (const [cache, list] of present) cache.willNeed(list);
    this.fetch(this.withBatchMembers(absent), opts.background === true);
    const results = await Promise.allSettled(chunks.map((c) => this.inflight.get(key(c))));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }

  /**
   * Stops: backend reads under way are aborted (their readers get E_ABORTED; chunks already
   * fetched are still stored), then the caches are flushed and closed.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(closedError());
    await Promise.allSettled([...this.inflight.values(), ...this.storing]);
    this.recentQuiet.cancel();
    this.dropRecent();
    const caches = await Promise.allSettled([...this.caches.values()]);
    this.caches.clear();
    this.opened.clear();
    for (const c of caches) if (c.status === 'fulfilled') await c.value.close();
  }
}

function closedError(): DamselflyError {
  return new DamselflyError(ErrorCode.Aborted, 'the device is closed');
}

/** A chunk's key in the maps above: a number, not a string made on every read. */
