/**
 * The chunk device's fetch bookkeeping: however reads and prefetches interleave, each chunk is
 * fetched from the backend once (concurrent askers share the fetch), and readers get the right
 * bytes. A prefetch used to check the chunks' states, yield, and then fetch them: a reader that
 * started a fetch in between had the same chunk fetched a second time. And the image filesystem's
 * read-ahead hands each chunk ahead of a sequential reader to the device once per pass. Read
 * amplification (nydus `amplify_io`) stops at the first neighbour already cached: it used to check
 * only fetches in flight and chunks in memory, so cached chunks were fetched again. A background
 * prefetch marks its backend reads, and a reader that waits for one of them says so (`expedite`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { BufferPool, DamselflyError, ErrorCode, Metrics, silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import type { ChunkInfo } from '../../../src/format/chunk-info.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import type { RafsImage } from '../../../src/format/image.js';
import { openBootstrap } from '../../../src/format/open.js';
import { ImageFs } from '../../../src/fs/image/image-fs.js';
import { LOCK_EX, LOCK_NB, native, nativeCodecs } from '../../../src/native/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import type { BlobBackend, ReadOptions } from '../../../src/storage/backend/types.js';
import { CountingBackend } from '../../helpers/counting-backend.js';
import { openPaths } from '../../helpers/env.js';
import { ChunkNeighbors } from '../../../src/storage/chunk/neighbors.js';
import { BlobDevice, type ChunkSegment, type DeviceOptions } from '../../../src/storage/device.js';
import { Prefetcher } from '../../../src/storage/prefetch/prefetcher.js';

const CHUNK = 65536;

/** A work directory with an image of one file `f` holding `content`, in chunks of `chunkSize`. */
async function oneFileImage(prefix: string, content: Uint8Array, chunkSize: number): Promise<{ work: string; image: RafsImage; chunks: ChunkInfo[] }> {
  const work = await mkdtemp(join(tmpdir(), prefix));
  const src = join(work, 'src');
  await mkdir(src);
  await writeFile(join(src, 'f'), content);
  const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize, log: silentLogger });
  const image = openBootstrap(r.bootstrap);
  const f = image.lookup(image.rootIno, Buffer.from('f'));
  assert.ok(f);
  return { work, image, chunks: image.fileChunks(f.ino) };
}

/** A backend whose reads are `read`'s (its size and close do nothing). */
function backendOf(kind: string, read: BlobBackend['read']): BlobBackend {
  return { kind, read, size: async () => 0, close: async () => undefined };
}

/**
 * A peer that never answers: each read ends only when the caller's signal fires (rejecting with
 * its reason). Reads go to `serve` instead while it returns a backend; `extraListeners` more abort
 * listeners per read stand for a real client's own (the registry client's watchdog, undici's).
 */
function stallingBackend(opts: { serve?: () => BlobBackend | undefined; extraListeners?: number } = {}): { backend: BlobBackend; signals: AbortSignal[] } {
  const signals: AbortSignal[] = [];
  const backend: BlobBackend = {
    kind: 'stalling',
    read: (id: string, offset: number, length: number, ro?: ReadOptions) => {
      const served = opts.serve?.();
      if (served !== undefined) return served.read(id, offset, length, ro);
      const signal = ro?.signal;
      assert.ok(signal, 'the device passes a signal');
      signals.push(signal);
      for (let i = 0; i < (opts.extraListeners ?? 0); i++) signal.addEventListener('abort', () => undefined, { once: true });
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    },
    size: async () => 0,
    close: async () => undefined,
  };
  return { backend, signals };
}

describe('chunk device: one fetch per chunk', () => {
  let work: string;
  let image: RafsImage;
  let chunks: ChunkInfo[];
  const content = randomBytes(5 * CHUNK + 1234);
  let n = 0;

  before(async () => {
    ({ work, image, chunks } = await oneFileImage('damselfly-device-', content, CHUNK));
    assert.equal(chunks.length, 6);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function device(more: Partial<DeviceOptions> = {}): { dev: BlobDevice; backend: CountingBackend; metrics: Metrics } {
    const backend = new CountingBackend(new LocalFsBackend({ dir: join(work, 'blobs') }));
    const metrics = new Metrics();
    // A fresh cache directory: opening its files takes real I/O, so every asker waits for it.
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: join(work, `cache-${n++}`), mergeLimit: CHUNK, metrics, log: silentLogger, ...more });
    return { dev, backend, metrics };
  }

  function fetchedOnce(backend: CountingBackend): void {
    const offsets = backend.reads.map(([o]) => o).sort((a, b) => a - b);
    assert.deepEqual(offsets, [...new Set(chunks.map((c) => c.compressedOffset))].sort((a, b) => a - b), 'every chunk fetched exactly once');
  }

  async function readAll(dev: BlobDevice, order: number[]): Promise<void> {
    await Promise.all(
      order.map(async (i) => {
        const c = chunks[i] as ChunkInfo;
        const dst = Buffer.alloc(c.uncompressedSize);
        await dev.read([{ chunk: c, from: 0, length: c.uncompressedSize }], [dst]);
        assert.deepEqual(dst, content.subarray(i * CHUNK, i * CHUNK + c.uncompressedSize), `chunk ${i}`);
      }),
    );
  }

  test('fetches under way hold at most the fetch budget: readers of many chunks at once wait their turn', async () => {
    // Unbounded (the default budget is far above this image): all six fetches at once.
    const free = device();
    await readAll(free.dev, [0, 1, 2, 3, 4, 5]);
    assert.equal(free.backend.maxInFlight, 6);
    await free.dev.close();
    await free.backend.close();
    // Each fetch costs its compressed bytes (random data: about a chunk) and a chunk decoded: a
    // budget of three chunks takes one full chunk's fetch at a time (and the short last chunk's,
    // 1234 bytes, beside one).
    const { dev, backend, metrics } = device({ fetchBudgetBytes: 3 * CHUNK });
    await readAll(dev, [0, 1, 2, 3, 4, 5]);
    assert.ok(backend.maxInFlight <= 2, `${backend.maxInFlight} reads at once`);
    fetchedOnce(backend);
    assert.ok((metrics.snapshot()['storage.fetch_budget_waits'] ?? 0) >= 3, JSON.stringify(metrics.snapshot()));
    await readAll(dev, [5, 0]); // from the cache now
    fetchedOnce(backend);
    await dev.close();
    await backend.close();
  });

  test('a read of two chunks whose first fails at once ends only after the second is in: nothing is written into its buffer after it failed', async () => {
    // The FUSE reply goes out with EIO as soon as the read fails, and its buffer (a /dev/fuse reply
    // buffer, or guest memory) is someone else's then: the other chunk's late copy used to land there.
    const local = new LocalFsBackend({ dir: join(work, 'blobs') });
    const backend = backendOf('flaky', async (id, offset, length, o) => {
      if (offset === (chunks[0] as ChunkInfo).compressedOffset) throw new DamselflyError(ErrorCode.Backend, 'chunk 0: connection reset');
      await new Promise((r) => setTimeout(r, 100));
      return local.read(id, offset, length, o);
    });
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, mergeLimit: CHUNK, metrics: new Metrics(), log: silentLogger });
    const dst = Buffer.alloc(2 * CHUNK);
    const read = dev.read(
      [
        { chunk: chunks[0] as ChunkInfo, from: 0, length: CHUNK },
        { chunk: chunks[1] as ChunkInfo, from: 0, length: CHUNK },
      ],
      [dst],
    );
    await assert.rejects(read, /chunk 0: connection reset/);
    dst.fill(0xee); // the buffer's next user
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(dst.every((b) => b === 0xee), 'written after the read had failed');
    await dev.close();
    await local.close();
  });

  test('a backend that throws instead of rejecting gives its fetch budget back: later reads and close() do not wait for it', async () => {
    const local = new LocalFsBackend({ dir: join(work, 'blobs') });
    const backend = backendOf('throwing', (id, offset, length, o) => {
      if (offset === (chunks[0] as ChunkInfo).compressedOffset) throw new DamselflyError(ErrorCode.Backend, 'thrown, not rejected');
      return local.read(id, offset, length, o);
    });
    // A budget of three chunks: two leaked fetches would leave no room for any other.
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, mergeLimit: CHUNK, fetchBudgetBytes: 3 * CHUNK, metrics: new Metrics(), log: silentLogger });
    const one = (i: number): Promise<void> => dev.read([{ chunk: chunks[i] as ChunkInfo, from: 0, length: 100 }], [Buffer.alloc(100)]);
    for (let i = 0; i < 3; i++) await assert.rejects(one(0), /thrown, not rejected/);
    const bounded = <T>(p: Promise<T>, what: string): Promise<T> =>
      Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} still waits after 2 s`)), 2000).unref())]);
    await bounded(one(1), 'a read of another chunk');
    await bounded(dev.close(), 'close()');
    await local.close();
  });

  test('a prefetch and readers of the same chunks, started together', async () => {
    const { dev, backend } = device();
    const pre = dev.prefetch(chunks);
    await readAll(dev, [0, 5, 2]);
    await pre;
    fetchedOnce(backend);
    await readAll(dev, [0, 1, 2, 3, 4, 5]);
    fetchedOnce(backend);
    await dev.close();
    await backend.close();
  });

  test('once closed, the device opens no cache again: a late prefetch step or read is refused, no handle is left open', async () => {
    const { dev, backend } = device();
    const cacheDir = join(work, `cache-${n - 1}`);
    const blob = image.blobs[0];
    assert.ok(blob);
    await readAll(dev, [0]);
    assert.equal((await openPaths(cacheDir)).length, 2, 'the cache file and its chunk map are open while serving');
    // The prefetcher's next batch, or a reader, arriving after close() (the daemon's shutdown
    // racing them): each used to open the cache anew, a handle close() never saw, whose shared
    // lock then waited behind close's exclusive one on the event loop thread, for ever.
    await dev.close();
    await assert.rejects(dev.prefetch(chunks, { background: true }), (e: unknown) => e instanceof DamselflyError && e.code === ErrorCode.Aborted);
    const dst = Buffer.alloc(CHUNK);
    await assert.rejects(dev.read([{ chunk: chunks[1] as ChunkInfo, from: 0, length: CHUNK }], [dst]), (e: unknown) => e instanceof DamselflyError && e.code === ErrorCode.Aborted);
    assert.deepEqual(await openPaths(cacheDir), [], 'nothing of the cache is open after close');
    assert.equal(backend.reads.length, 1, 'nothing fetched after close');
    await backend.close();
  });

  test('close() aborts the backend reads under way: their readers fail at once, chunks fetched before stay cached', async () => {
    const inner = new LocalFsBackend({ dir: join(work, 'blobs') });
    let stall = false;
    const { backend, signals } = stallingBackend({ serve: () => (stall ? undefined : inner) });
    const cacheDir = join(work, `cache-${n++}`);
    const metrics = new Metrics();
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir, mergeLimit: CHUNK, metrics, log: silentLogger });
    await readAll(dev, [0]);
    stall = true;
    const dst = Buffer.alloc(CHUNK);
    const stalled = dev.read([{ chunk: chunks[1] as ChunkInfo, from: 0, length: CHUNK }], [dst]);
    const background = dev.prefetch([chunks[3] as ChunkInfo], { background: true });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(signals.length, 2, 'both reads are out');
    const aborted = (e: unknown): boolean => e instanceof DamselflyError && e.code === ErrorCode.Aborted;
    const failed = [assert.rejects(stalled, aborted), assert.rejects(background, aborted)];
    const t0 = Date.now();
    await dev.close();
    assert.ok(Date.now() - t0 < 1000, 'close did not wait for the stalled reads');
    await Promise.all(failed);
    await inner.close();
    // A new device on the same cache: chunk 0 is there, 1 and 3 are not.
    const counting = new CountingBackend(new LocalFsBackend({ dir: join(work, 'blobs') }));
    const again = new BlobDevice({ blobs: image.blobs, backend: counting, codecs: nativeCodecs, cacheDir, mergeLimit: CHUNK, metrics: new Metrics(), log: silentLogger });
    await readAll(again, [0, 1, 3]);
    assert.deepEqual(
      counting.reads.map(([o]) => o),
      [(chunks[1] as ChunkInfo).compressedOffset, (chunks[3] as ChunkInfo).compressedOffset],
      'only the chunks whose reads were aborted are fetched again',
    );
    await again.close();
    await counting.close();
  });

  test('many backend reads at once all listen on the device’s one close signal: no listener-leak warning from Node', async () => {
    // Two more listeners a read, as the registry client adds (its watchdog, and undici's request).
    const { backend, signals } = stallingBackend({ extraListeners: 2 });
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: join(work, `cache-${n++}`), mergeLimit: CHUNK, metrics: new Metrics(), log: silentLogger });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const reads = chunks.map((c) => dev.prefetch([c]).catch(() => undefined));
      for (let i = 0; signals.length < chunks.length; i++) {
        assert.ok(i < 100, 'every read is out');
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      await dev.close();
      await Promise.all(reads);
      assert.ok(3 * signals.length > 10, `${3 * signals.length} listeners at once`);
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('a prefetch stopped and its device closed while its batches are out: no chunk counted failed, no warning', async () => {
    const { backend, signals } = stallingBackend();
    const metrics = new Metrics();
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: join(work, `cache-${n++}`), mergeLimit: CHUNK, metrics, log: silentLogger });
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const prefetcher = new Prefetcher(dev, { threads: 2, mergeBytes: CHUNK, bandwidthLimit: 0, metrics, log });
    const running = prefetcher.start(chunks);
    for (let i = 0; signals.length < 2; i++) {
      assert.ok(i < 100, 'both prefetch threads have a read out');
      await new Promise((r) => setTimeout(r, 5));
    }
    // As ImageService.close does: the prefetcher stops, then the device closes (aborting the reads).
    prefetcher.stop();
    await dev.close();
    const result = await running;
    assert.equal(result.stopped, true);
    assert.equal(result.failed, 0, 'batches cut short by the stop are not failures');
    assert.equal(metrics.snapshot()['prefetch.failed_chunks'] ?? 0, 0);
    assert.deepEqual(warnings, []);
  });

  test('a prefetch waiting on its bandwidth limit settles at once when stopped', async () => {
    const { dev, backend } = device();
    // 1 byte/s: the first batch goes, the next waits for its turn (up to a second at a time).
    const prefetcher = new Prefetcher(dev, { threads: 1, mergeBytes: CHUNK, bandwidthLimit: 1, metrics: new Metrics(), log: silentLogger });
    const running = prefetcher.start(chunks);
    await new Promise((r) => setTimeout(r, 100));
    const stopped = Date.now();
    prefetcher.stop();
    const result = await running;
    assert.ok(Date.now() - stopped < 100, `settled ${Date.now() - stopped} ms after the stop`);
    assert.equal(result.stopped, true);
    await dev.close();
    await backend.close();
  });

  test('readers first, then prefetches that overlap them and each other', async () => {
    const { dev, backend, metrics } = device();
    const reading = readAll(dev, [3, 1]);
    const pres = [dev.prefetch(chunks.slice(0, 4)), dev.prefetch(chunks.slice(2)), dev.prefetch(chunks, { hintCached: true })];
    await Promise.all([reading, ...pres]);
    fetchedOnce(backend);
    assert.equal(metrics.get('storage.chunks_fetched'), chunks.length);
    await dev.close();
    await backend.close();
  });

  test('a background prefetch marks its reads; a reader waiting for one of its chunks expedites it once', async () => {
    const marks: string[] = [];
    const expedited: number[] = [];
    const inner = new LocalFsBackend({ dir: join(work, 'blobs') });
    const backend: BlobBackend = {
      kind: 'marking',
      read: async (id: string, offset: number, length: number, opts?: ReadOptions) => {
        marks.push(`${offset}:${opts?.background === true ? 'background' : 'reader'}`);
        await new Promise((r) => setTimeout(r, 20));
        return inner.read(id, offset, length);
      },
      size: (id: string) => inner.size(id),
      expedite: (_id: string, offset: number) => void expedited.push(offset),
      close: () => inner.close(),
    };
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: join(work, `cache-${n++}`), mergeLimit: CHUNK, metrics: new Metrics(), log: silentLogger });
    const c = (i: number): ChunkInfo => chunks[i] as ChunkInfo;
    const pre = dev.prefetch(chunks.slice(0, 3), { background: true });
    await new Promise((r) => setTimeout(r, 5)); // its reads are out
    await Promise.all([readAll(dev, [2, 2]), readAll(dev, [4])]);
    await pre;
    assert.deepEqual(marks.slice(0, 3).sort(), [0, 1, 2].map((i) => `${c(i).compressedOffset}:background`).sort());
    assert.ok(marks.includes(`${c(4).compressedOffset}:reader`), 'a reader’s own miss is not background');
    assert.deepEqual(expedited, [c(2).compressedOffset], 'the two readers of chunk 2 expedited it once; chunk 4 was not in flight');
    await dev.close();
    await backend.close();
  });

  test('read amplification fetches the chunks stored after a missing one, up to the first cached one', async () => {
    const index = new ChunkNeighbors(chunks);
    const amplify: Partial<DeviceOptions> = { amplifyBytes: 1 << 30, neighbors: (c, max) => index.after(c, max), cacheDir: join(work, `cache-${n++}`) };
    const offsets = (is: number[]): number[] => is.map((i) => (chunks[i] as ChunkInfo).compressedOffset);
    const first = device(amplify);
    await readAll(first.dev, [3]);
    assert.deepEqual(first.backend.reads.map(([o]) => o), offsets([3, 4, 5]), 'chunk 3 and the two stored after it');
    await first.dev.close();
    await first.backend.close();
    // A restarted daemon on the same cache: chunks 3 to 5 are known from the cache file's record only.
    const second = device(amplify);
    await readAll(second.dev, [1]);
    assert.deepEqual(second.backend.reads.map(([o]) => o), offsets([1, 2]), 'chunks 1 and 2, not 3 to 5 again');
    await readAll(second.dev, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(second.backend.reads.map(([o]) => o), offsets([1, 2, 0]), 'then chunk 0 alone');
    await second.dev.close();
    await second.backend.close();
  });

  test('blob read-ahead: a miss where the last fetch ended also fetches the chunks stored next; any other miss fetches itself', async () => {
    const index = new ChunkNeighbors(chunks);
    const { dev, backend, metrics } = device({ sequentialBytes: 1 << 20, neighbors: (c, max) => index.after(c, max), mergeLimit: 4 << 20 });
    const c = (i: number): ChunkInfo => chunks[i] as ChunkInfo;
    const span = (from: number, to: number): [number, number] => [c(from).compressedOffset, c(to).compressedOffset + c(to).compressedSize - c(from).compressedOffset];
    for (const i of [1, 2, 3, 4, 5, 0]) await readAll(dev, [i]);
    assert.deepEqual(
      backend.reads,
      [
        span(1, 1), // a first miss: that chunk alone (reading one file fetches that file)
        span(2, 4), // continues where the last fetch ended: a window of 128 KiB after it, two 64 KiB chunks
        span(5, 5), // continues again (3 and 4 were cached); nothing stored after it
        span(0, 0), // not where the last fetch ended: alone again
      ],
    );
    assert.equal(metrics.get('storage.amplified_chunks'), 2);
    await dev.close();
    await backend.close();
  });

  test('the neighbour index is prepared once, in a later turn than the first miss, and a failing one costs no read', async () => {
    const index = new ChunkNeighbors(chunks);
    let prepared = 0;
    const { dev, backend } = device({
      sequentialBytes: 1 << 20,
      neighbors: (c, max) => index.after(c, max),
      prepareNeighbors: () => {
        prepared++;
        throw new Error('no index'); // logged; the read that needs the index would report it
      },
    });
    const reading = readAll(dev, [1]);
    assert.equal(prepared, 0, 'not in the read itself');
    await reading;
    await new Promise((r) => setImmediate(r));
    assert.equal(prepared, 1);
    await readAll(dev, [3]);
    await readAll(dev, [0]);
    await new Promise((r) => setImmediate(r));
    assert.equal(prepared, 1, 'once');
    await dev.close();
    await backend.close();
  });

  test('prepare() builds the neighbour index before any read, once, and has the backend get ready for every blob; one it cannot open is a warning', async () => {
    const index = new ChunkNeighbors(chunks);
    let prepared = 0;
    const asked: string[][] = [];
    const warnings: string[] = [];
    const counting = new CountingBackend(new LocalFsBackend({ dir: join(work, 'blobs') }));
    const backend: BlobBackend = Object.assign(Object.create(counting) as CountingBackend, {
      prepare: async (ids: string[]) => {
        asked.push(ids);
        return [{ id: ids[0] as string, err: 'gone' }];
      },
    });
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const { dev } = device({ backend, log, sequentialBytes: 1 << 20, neighbors: (c, max) => index.after(c, max), prepareNeighbors: () => void prepared++ });
    await dev.prepare();
    assert.equal(prepared, 1, 'built in prepare()');
    assert.deepEqual(asked, [image.blobs.map((b) => b.id)]);
    assert.equal(warnings.length, 1, warnings.join(''));
    assert.match(warnings[0] as string, new RegExp(`"blob":"${image.blobs[0]?.id}".*"err":"gone".*a blob of the image cannot be read`));
    await readAll(dev, [1, 3, 0]);
    await new Promise((r) => setImmediate(r));
    assert.equal(prepared, 1, 'not again at the first miss');
    await dev.close();
    await dev.prepare(); // closed: nothing is opened again
    assert.equal(asked.length, 1);
    await counting.close();
  });
});

describe('image filesystem read-ahead', () => {
  let work: string;
  const content = randomBytes(20 * CHUNK);

  before(async () => {
    ({ work } = await oneFileImage('damselfly-readahead-', content, CHUNK));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('a sequential reader has each chunk ahead of it asked for once per pass; reads are exact', async () => {
    const image = openBootstrap(await readFile(join(work, 'boot')));
    const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
    const metrics = new Metrics();
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: join(work, 'cache'), metrics, log: silentLogger });
    const asked: number[][] = [];
    const prefetch = dev.prefetch.bind(dev);
    dev.prefetch = (chunks, opts) => {
      asked.push(chunks.map((c) => c.index));
      return prefetch(chunks, opts);
    };
    const fs = new ImageFs({ image, device: dev, metrics, log: silentLogger, readahead: 4 * CHUNK });
    const ctx = { uid: 0, gid: 0, pid: 1 };
    const f = await fs.lookup(ctx, 1, Buffer.from('f'));
    const pass = async (): Promise<void> => {
      for (let off = 0; off < content.length; off += 16384) {
        const dst = Buffer.alloc(16384);
        assert.equal(await fs.read(ctx, f.nodeid, 0n, off, 16384, [dst]), 16384);
        assert.deepEqual(dst, content.subarray(off, off + 16384), `read at ${off}`);
      }
    };
    await pass();
    const chunkIndexes = image.fileChunks(f.attr.ino).map((c) => c.index);
    const first = asked.flat();
    // Every chunk after the first is asked for exactly once, before the reader gets to it.
    assert.deepEqual([...first].sort((a, b) => a - b), chunkIndexes.slice(1));
    assert.ok(asked.length <= chunkIndexes.length, `${asked.length} read-ahead calls for ${chunkIndexes.length} chunks`);
    // A new pass from the start (not sequential to the last read) asks again.
    asked.length = 0;
    await pass();
    assert.deepEqual(asked.flat().sort((a, b) => a - b), chunkIndexes.slice(1));
    await dev.close();
    await backend.close();
  });
});

/**
 * Decoded chunks and backend reads use buffers from a pool: a fresh megabyte costs page faults,
 * and V8 schedules a full garbage collection every few tens of megabytes of them (reading a
 * 336 MB file spent more CPU on those than on decompression). A buffer goes back only when
 * nothing uses it: a reuse too early would hand a reader another chunk's bytes.
 */
describe('chunk device: buffer reuse', () => {
  // Larger than the codecs' synchronous limit: decoded on the thread pool, while the loop goes on.
  const C = 128 << 10;
  const N = 32;
  let work: string;
  let image: RafsImage;
  let chunks: ChunkInfo[];
  // Compressible (16 symbols), so that chunks are stored compressed and decoded on the thread pool.
  const content = randomBytes(N * C).map((x) => x & 0x0f);
  let n = 0;

  /** Passes the device's allocator on; answers after 0-2 ms, so that completions interleave. */
  class JitterBackend implements BlobBackend {
    readonly kind = 'jitter';
    reads = 0;
    constructor(private readonly inner: BlobBackend) {}
    async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
      this.reads++;
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 3)));
      return this.inner.read(id, offset, length, opts);
    }
    size(id: string): Promise<number> {
      return this.inner.size(id);
    }
    close(): Promise<void> {
      return this.inner.close();
    }
  }

  /** Overwrites every buffer handed back at once: a reader or decoder still using it sees 0xEE. */
  class PoisoningPool extends BufferPool {
    override release(view: Uint8Array): boolean {
      const ok = super.release(view);
      if (ok) new Uint8Array(view.buffer).fill(0xee);
      return ok;
    }
  }

  before(async () => {
    ({ work, image, chunks } = await oneFileImage('damselfly-device-pool-', content, C));
    assert.equal(chunks.length, N);
    assert.ok(chunks.every((c) => c.compressedSize < c.uncompressedSize), 'chunks stored compressed');
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function device(pool: BufferPool, more: Partial<DeviceOptions> = {}): { dev: BlobDevice; backend: JitterBackend } {
    const backend = new JitterBackend(new LocalFsBackend({ dir: join(work, 'blobs') }));
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: join(work, `cache-${n++}`), bufferPool: pool, metrics: new Metrics(), log: silentLogger, ...more });
    return { dev, backend };
  }

  test('a sequential pass reuses a few buffers instead of taking new ones', async () => {
    const pool = new PoisoningPool({ minSize: 4096 });
    const { dev, backend } = device(pool, { mergeLimit: C, recentBytes: 2 * C });
    for (let i = 0; i < N; i++) {
      const c = chunks[i] as ChunkInfo;
      const dst = Buffer.alloc(C);
      await dev.read([{ chunk: c, from: 0, length: C }], [dst]);
      assert.deepEqual(dst, content.subarray(i * C, (i + 1) * C), `chunk ${i}`);
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(backend.reads, N);
    // Each chunk took two buffers (its stored bytes, its decoded data): 64 without reuse.
    assert.ok(pool.created <= 12, `${pool.created} buffers created for ${N} chunks`);
    await dev.close();
    await backend.close();
  });

  test('devices going to rest together share one garbage collection (the default rest hook)', async () => {
    const metrics = new Metrics();
    const devs = [0, 1, 2].map(() => device(new PoisoningPool({ minSize: 4096 }), { mergeLimit: C, recentBytes: 4 * C, recentIdleMs: 200, metrics }));
    for (const { dev } of devs) {
      const dst = Buffer.alloc(C);
      await dev.read([{ chunk: chunks[0] as ChunkInfo, from: 0, length: C }], [dst]);
      assert.deepEqual(dst, content.subarray(0, C));
    }
    // At rest after 200 ms; the collection a second after the first asked for it.
    await new Promise((r) => setTimeout(r, 1800));
    assert.equal(metrics.get('storage.rests'), 3, 'each device went to rest');
    assert.equal(metrics.get('storage.collections'), 1, 'one collection for the three');
    for (const { dev, backend } of devs) {
      await dev.close();
      await backend.close();
    }
  });

  test('at rest, the chunks kept in memory are dropped, the pool hands their memory back and the rest hook (a garbage collection by default) runs once; reads then come from the cache', async () => {
    const discarded: ArrayBuffer[] = [];
    const pool = new PoisoningPool({ minSize: 4096, discard: (ab) => discarded.push(ab) });
    let rests = 0;
    const metrics = new Metrics();
    const { dev, backend } = device(pool, { mergeLimit: C, recentBytes: 4 * C, recentIdleMs: 300, atRest: () => {
        rests++;
      }, metrics });
    const readChunk = async (i: number): Promise<void> => {
      const dst = Buffer.alloc(C);
      await dev.read([{ chunk: chunks[i] as ChunkInfo, from: 0, length: C }], [dst]);
      assert.deepEqual(dst, content.subarray(i * C, (i + 1) * C), `chunk ${i}`);
    };
    for (let i = 0; i < 4; i++) await readChunk(i);
    await new Promise((r) => setTimeout(r, 150));
    await readChunk(0); // a read within the idle time keeps them
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(discarded.length, 0, 'not at rest yet: nothing discarded');
    assert.equal(rests, 0, 'not at rest yet: no collection');
    await new Promise((r) => setTimeout(r, 600));
    assert.ok(discarded.length >= 4, `the decoded chunks' buffers were handed back (${discarded.length})`);
    assert.equal(pool.idleSize, 0);
    assert.equal(rests, 1, 'one collection once at rest');
    assert.equal(metrics.get('storage.rests'), 1, 'counted');
    for (let i = 0; i < 4; i++) await readChunk(i);
    assert.equal(backend.reads, 4, 'no chunk fetched again: the cache file has them');
    await dev.close();
    await backend.close();
  });

  test('eight readers at random chunks and offsets, with merged reads and a small memory list, get exact bytes', async () => {
    const pool = new PoisoningPool({ minSize: 4096 });
    for (let round = 0; round < 3; round++) {
      const { dev, backend } = device(pool, { mergeLimit: 4 * C, recentBytes: C });
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          for (let k = 0; k < 40; k++) {
            const i = Math.floor(Math.random() * N);
            const c = chunks[i] as ChunkInfo;
            const from = Math.floor(Math.random() * C);
            const length = 1 + Math.floor(Math.random() * (C - from));
            const dst = Buffer.alloc(length);
            // Sometimes two neighbouring chunks in one read, so that fetches merge.
            const next = chunks[i + 1];
            if (next !== undefined && k % 3 === 0) {
              const both = Buffer.alloc(length + C);
              await dev.read([{ chunk: c, from, length }, { chunk: next, from: 0, length: C }], [both]);
              const want = Buffer.concat([content.subarray(i * C + from, i * C + from + length), content.subarray((i + 1) * C, (i + 2) * C)]);
              assert.deepEqual(both, want);
            } else {
              await dev.read([{ chunk: c, from, length }], [dst]);
              assert.deepEqual(dst, content.subarray(i * C + from, i * C + from + length));
            }
          }
        }),
      );
      await dev.close();
      await backend.close();
    }
    assert.ok(pool.created < 3 * N, `buffers were reused (${pool.created} created)`);
  });

  test('a memory cache (no cache directory, or a blob cache that cannot open; with --validate too) keeps its buffers until it evicts them', async () => {
    await writeFile(join(work, 'a-file'), 'not a directory');
    const variants: Array<{ cacheDir?: string; validate: boolean }> = [{ validate: false }, { cacheDir: join(work, 'a-file', 'cache'), validate: false }, { validate: true }];
    for (const { cacheDir, validate } of variants) {
      const pool = new PoisoningPool({ minSize: 4096 });
      const metrics = new Metrics();
      const backend = new JitterBackend(new LocalFsBackend({ dir: join(work, 'blobs') }));
      // Room for half the chunks; no recent list: every second pass read comes from the memory cache or the backend.
      const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, ...(cacheDir !== undefined ? { cacheDir } : {}), validate, bufferPool: pool, memoryCacheBytes: (N / 2) * C, recentBytes: 0, mergeLimit: C, metrics, log: silentLogger });
      for (let pass = 0; pass < 2; pass++) {
        for (let i = 0; i < N; i++) {
          const dst = Buffer.alloc(C);
          await dev.read([{ chunk: chunks[i] as ChunkInfo, from: 0, length: C }], [dst]);
          assert.deepEqual(dst, content.subarray(i * C, (i + 1) * C), `${cacheDir ?? 'no cache dir'}: pass ${pass}, chunk ${i}`);
          await new Promise((r) => setImmediate(r));
        }
        // Backwards too: the chunks still in memory are read before the fetches evict them.
        for (let i = N - 1; i >= 0; i--) {
          const dst = Buffer.alloc(C);
          await dev.read([{ chunk: chunks[i] as ChunkInfo, from: 0, length: C }], [dst]);
          assert.deepEqual(dst, content.subarray(i * C, (i + 1) * C), `${cacheDir ?? 'no cache dir'}: pass ${pass} backwards, chunk ${i}`);
        }
      }
      // Eight readers at once: fetches evict chunks that other reads are being served from.
      await Promise.all(
        Array.from({ length: 8 }, async (_, r) => {
          for (let k = 0; k < 30; k++) {
            const i = (r * 7 + k * 5) % N;
            const dst = Buffer.alloc(C);
            await dev.read([{ chunk: chunks[i] as ChunkInfo, from: 0, length: C }], [dst]);
            assert.deepEqual(dst, content.subarray(i * C, (i + 1) * C), `${cacheDir ?? 'no cache dir'}${validate ? ', validate' : ''}: reader ${r}, chunk ${i}`);
          }
        }),
      );
      const s = metrics.snapshot();
      assert.ok((s['storage.cache_hits'] ?? 0) > 0, `the memory cache served reads: ${JSON.stringify(s)}`);
      assert.equal(s['storage.cache_open_failures'] ?? 0, cacheDir === undefined ? 0 : 1);
      await dev.close();
      await backend.close();
      assert.ok(pool.created < 2 * N, `buffers were reused (${pool.created} created for ${N} chunks)`);
    }
  });
});

test('without a cache directory, one memory bound holds for all the blobs of the image', async () => {
  const C = 65536;
  const work = await mkdtemp(join(tmpdir(), 'damselfly-device-memory-'));
  try {
    const contents = [randomBytes(8 * C), randomBytes(8 * C)];
    const sources: string[] = [];
    for (const [i, content] of contents.entries()) {
      const src = join(work, `layer-${i}`);
      await mkdir(src);
      await writeFile(join(src, `f${i}`), content);
      sources.push(src);
    }
    const r = await build({ sources, blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: C, log: silentLogger });
    const image = openBootstrap(r.bootstrap);
    assert.equal(image.blobs.length, 2, 'one blob per layer');
    const files = [0, 1].map((i) => image.fileChunks((image.lookup(image.rootIno, Buffer.from(`f${i}`)) as { ino: number }).ino));
    const metrics = new Metrics();
    const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
    // Room for four chunks in all; no recent list: a read is served by the memory cache or the backend.
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, memoryCacheBytes: 4 * C, recentBytes: 0, metrics, log: silentLogger });
    const read = async (f: number, i: number): Promise<void> => {
      const dst = Buffer.alloc(C);
      await dev.read([{ chunk: files[f]?.[i] as ChunkInfo, from: 0, length: C }], [dst]);
      assert.deepEqual(dst, (contents[f] as Buffer).subarray(i * C, (i + 1) * C), `file ${f} chunk ${i}`);
      await new Promise((r) => setImmediate(r)); // the store after the fetch
    };
    for (const f of [0, 1]) for (let i = 0; i < 8; i++) await read(f, i);
    const hits = (): number => metrics.snapshot()['storage.cache_hits'] ?? 0;
    const before = hits();
    for (let i = 4; i < 8; i++) await read(0, i);
    assert.equal(hits() - before, 0, "the first blob's chunks were evicted for the second's");
    const again = hits();
    for (let i = 4; i < 8; i++) await read(1, i);
    assert.equal(hits() - again, 0, 'and those for the first blob read again just now');
    const last = hits();
    for (let i = 4; i < 8; i++) await read(1, i);
    assert.equal(hits() - last, 4, 'the last four chunks read are in memory');
    await dev.close();
    await backend.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('without a cache directory, the memory cache starts small and grows to a working set read again', async () => {
  const C = 65536;
  const work = await mkdtemp(join(tmpdir(), 'damselfly-device-grow-'));
  try {
    const content = randomBytes(12 * C);
    const src = join(work, 'src');
    await mkdir(src);
    await writeFile(join(src, 'f'), content);
    const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: C, log: silentLogger });
    const image = openBootstrap(r.bootstrap);
    const chunks = image.fileChunks((image.lookup(image.rootIno, Buffer.from('f')) as { ino: number }).ino);
    assert.equal(chunks.length, 12);
    const metrics = new Metrics();
    const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
    // Room for two chunks at first, for sixteen at most; no recent list, no merged or read-ahead fetches.
    const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, memoryCacheStartBytes: 2 * C, memoryCacheBytes: 16 * C, recentBytes: 0, mergeLimit: C, metrics, log: silentLogger });
    const fetched = (): number => metrics.snapshot()['storage.chunks_fetched'] ?? 0;
    const pass = async (n: number): Promise<number> => {
      const before = fetched();
      for (let i = 0; i < n; i++) {
        const dst = Buffer.alloc(C);
        await dev.read([{ chunk: chunks[i] as ChunkInfo, from: 0, length: C }], [dst]);
        assert.deepEqual(dst, content.subarray(i * C, (i + 1) * C), `chunk ${i}`);
        await new Promise((r) => setImmediate(r)); // the store after the fetch
      }
      return fetched() - before;
    };
    // Six chunks round and round: the first passes fetch them again, then the cache holds them all.
    const perPass: number[] = [];
    for (let p = 0; p < 8; p++) perPass.push(await pass(6));
    assert.equal(perPass[0], 6);
    assert.equal(perPass.at(-1), 0, `chunks fetched per pass: ${perPass.join(' ')}`);
    // All twelve once through and then again: the cache grows on, to twelve chunks, fetched no more.
    const wider: number[] = [];
    for (let p = 0; p < 8; p++) wider.push(await pass(12));
    assert.equal(wider.at(-1), 0, `chunks fetched per pass of twelve: ${wider.join(' ')}`);
    await dev.close();
    await backend.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('chunk cache after a failure', () => {
  const content = randomBytes(2 * CHUNK);
  let work: string;
  let image: RafsImage;
  let chunks: ChunkInfo[];
  let n = 0;
  before(async () => {
    ({ work, image, chunks } = await oneFileImage('damselfly-cache-fail-', content, CHUNK));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const seg = (i: number): ChunkSegment[] => [{ chunk: chunks[i] as ChunkInfo, from: 0, length: CHUNK }];
  async function readChunk(dev: BlobDevice, i: number): Promise<Buffer> {
    const dst = Buffer.alloc(CHUNK, 0xaa);
    await dev.read(seg(i), [dst]);
    return dst;
  }
  /** Daemons in turn on one cache directory; nothing kept in memory, so every read goes to the cache. */
  function daemons(): { next: () => BlobDevice; cacheDir: string; id: string } {
    const cacheDir = join(work, `cache-${n++}`);
    return {
      cacheDir,
      id: (image.blobs[0] as { id: string }).id,
      next: () => new BlobDevice({ blobs: image.blobs, backend: new LocalFsBackend({ dir: join(work, 'blobs') }), codecs: nativeCodecs, cacheDir, mergeLimit: CHUNK, recentBytes: 0, metrics: new Metrics(), log: silentLogger }),
    };
  }

  test('after an unclean end, the chunks the next daemon never read are still verified by the one after it', async () => {
    const d = daemons();
    const a = d.next();
    await a.read([...seg(0), ...seg(1)], [Buffer.alloc(2 * CHUNK)]);
    await a.close();
    // The host lost power while a daemon ran: the map's marks and its "in use" flag reached the
    // disk, chunk 0's data did not.
    const map = await open(join(d.cacheDir, `${d.id}.chunk_map.dfly`), 'r+');
    await map.write(Buffer.from([1, 0, 0, 0]), 0, 4, 12);
    await map.close();
    const data = await open(join(d.cacheDir, `${d.id}.blob.data`), 'r+');
    await data.write(Buffer.alloc(CHUNK), 0, CHUNK, (chunks[0] as ChunkInfo).uncompressedOffset);
    await data.close();
    // The next daemon reads chunk 1 only and closes cleanly (the flag is cleared)...
    const b = d.next();
    assert.deepEqual(await readChunk(b, 1), content.subarray(CHUNK));
    await b.close();
    // ...and the one after it must not trust chunk 0's mark: it used to serve zeros.
    const c = d.next();
    assert.deepEqual(await readChunk(c, 0), content.subarray(0, CHUNK));
    await c.close();
  });

  test('`cache gc` removing the blob while a daemon opens it (and another makes the map again): the daemon does not pair the old marks with a new data file', async () => {
    const d = daemons();
    const a = d.next();
    await a.read(seg(0), [Buffer.alloc(CHUNK)]);
    await a.close();
    // cache gc: the map locked exclusively, the data file removed...
    const mapPath = join(d.cacheDir, `${d.id}.chunk_map.dfly`);
    const gc = await open(mapPath, 'r');
    assert.ok(native.flock(gc.fd, LOCK_EX | LOCK_NB));
    await rm(join(d.cacheDir, `${d.id}.blob.data`));
    // ...while a daemon opens the blob (it waits for the lock)...
    const b = d.next();
    const first = readChunk(b, 1);
    await new Promise((r) => setTimeout(r, 100));
    // ...then the map removed, and made again by another daemon opening the blob just then.
    await rm(mapPath);
    await writeFile(mapPath, '');
    await gc.close();
    assert.deepEqual(await first, content.subarray(CHUNK));
    await new Promise((r) => setTimeout(r, 50)); // the store of chunk 1, past a hole where chunk 0 was
    assert.deepEqual(await readChunk(b, 0), content.subarray(0, CHUNK), 'chunk 0 served from the old marks as zeros');
    await b.close();
  });

  test('a cache data file cut short under a daemon: every chunk is verified from then on, none served as the zeros of a hole', async () => {
    const d = daemons();
    const a = d.next();
    await a.read([...seg(0), ...seg(1)], [Buffer.alloc(2 * CHUNK)]);
    await a.close();
    const b = d.next();
    assert.deepEqual(await readChunk(b, 0), content.subarray(0, CHUNK)); // the cache is open, both chunks present
    await truncate(join(d.cacheDir, `${d.id}.blob.data`), 0);
    // Past the end: fetched again and stored, which extends the file with a hole below it.
    assert.deepEqual(await readChunk(b, 1), content.subarray(CHUNK));
    await new Promise((r) => setTimeout(r, 50)); // the store
    assert.deepEqual(await readChunk(b, 0), content.subarray(0, CHUNK));
    await b.close();
    const c = d.next();
    assert.deepEqual(await readChunk(c, 0), content.subarray(0, CHUNK));
    await c.close();
  });
});
