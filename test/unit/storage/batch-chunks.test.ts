/**
 * Batch chunks (nydus-image `--batch-size`, spec §5.6): the data of small files compressed together
 * as one stored unit. The bootstrap's chunk table says nothing of where a member is stored (nydus-
 * image leaves offset, size and flags 0), so a reader must locate members through the blob's CI
 * array and batch contexts, which it reads from the blob before serving. Checked here: the CI v2
 * encoding, the checks on a decoded table, the builder's layout, the located chunks, one backend
 * read for a whole batch, wrong batch bytes failing every member (nothing cached), and the blob meta
 * kept in the cache directory for a daemon started again without its backend.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ByteReader, ByteWriter, DamselflyError, FormatError, IntegrityError, Metrics, UnsupportedError, silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import {
  BATCH_CONTEXT_SIZE,
  BLOB_META_HEADER_SIZE,
  CI_V2_SIZE,
  CiFlag,
  type BlobMetaHeader,
  decodeBlobChunkTable,
  decodeBlobMetaHeader,
  decodeCiEntry,
  encodeBatchContext,
  encodeCiV2,
} from '../../../src/format/blob/meta.js';
import { type ChunkInfo, sameStoredUnit } from '../../../src/format/chunk-info.js';
import { Compressor } from '../../../src/format/compression.js';
import { BlobFeature, ChunkFlag, Digester } from '../../../src/format/constants.js';
import type { BlobInfo, RafsImage } from '../../../src/format/image.js';
import { openBootstrap } from '../../../src/format/open.js';
import { RafsV6Image } from '../../../src/format/v6/reader.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import type { BlobBackend } from '../../../src/storage/backend/types.js';
import { CountingBackend } from '../../helpers/counting-backend.js';
import { CACHE_META_SUFFIX, decodeStoredBlobMeta, loadBlobMeta } from '../../../src/storage/blob-meta.js';
import { ChunkState, FileBlobCache } from '../../../src/storage/cache/blob-cache.js';
import { decodeChunkAsync } from '../../../src/storage/chunk/decode.js';
import { ChunkNeighbors } from '../../../src/storage/chunk/neighbors.js';
import { BlobDevice } from '../../../src/storage/device.js';

const BATCH = 16 << 10;

test('chunk info v2 of a batch member round-trips', () => {
  const w = new ByteWriter();
  const e = { uncompressedOffset: 0x7000, uncompressedSize: 3000, compressedOffset: 123456, compressedSize: 0, flags: CiFlag.BATCH | CiFlag.COMPRESSED, data: (5n << 32n) | 777n };
  encodeCiV2(w, e);
  const b = w.finish();
  assert.equal(b.length, CI_V2_SIZE);
  assert.deepEqual(decodeCiEntry(new ByteReader(b, 't'), 0, true), { ...e, compressed: true });
  assert.throws(() => encodeCiV2(new ByteWriter(), { ...e, flags: 0x20 }), RangeError);
});

test('neighbours: a batch is one stored unit, taken whole and counted once', () => {
  const chunk = (index: number, compressedOffset: number, compressedSize: number, batch?: boolean): ChunkInfo => ({
    digest: new Uint8Array(32),
    blobIndex: 0,
    flags: batch ? ChunkFlag.BATCH | ChunkFlag.COMPRESSED : ChunkFlag.COMPRESSED,
    compressedOffset,
    compressedSize,
    uncompressedOffset: index * 4096,
    uncompressedSize: 10,
    fileOffset: 0,
    index,
    crc32: 0,
    ...(batch ? { batch: { offset: index * 10, size: 100 } } : {}),
  });
  const a = chunk(0, 0, 100);
  const [b1, b2, b3] = [chunk(1, 100, 50, true), chunk(2, 100, 50, true), chunk(3, 100, 50, true)];
  const c = chunk(4, 150, 30);
  const n = new ChunkNeighbors([a, b1, b2, b3, c] as ChunkInfo[]);
  const idx = (cs: ChunkInfo[]): number[] => cs.map((x) => x.index);
  assert.deepEqual(idx(n.after(a, 200)), [1, 2, 3, 4]);
  assert.deepEqual(idx(n.after(a, 60)), [1, 2, 3]);
  assert.deepEqual(idx(n.after(b2 as ChunkInfo, 200)), [4]);
  assert.deepEqual(idx(n.members(b2 as ChunkInfo)), [1, 3]);
  assert.deepEqual(n.members(a), []);
});

/** CI data of `members` (size, batch, offset) over `batches` (stored, uncompressed sizes), with its header. */
function ciData(members: Array<[number, number, number]>, batches: Array<[number, number]>): { ci: Buffer; h: BlobMetaHeader } {
  const w = new ByteWriter();
  members.forEach(([size, batch, offset], i) =>
    encodeCiV2(w, { uncompressedOffset: i * 4096, uncompressedSize: size, compressedOffset: 0, compressedSize: 0, flags: CiFlag.BATCH | CiFlag.COMPRESSED, data: (BigInt(batch) << 32n) | BigInt(offset) }),
  );
  for (const [compressedSize, uncompressedSize] of batches) encodeBatchContext(w, { compressedSize, uncompressedSize });
  const ci = w.finish();
  const h = {
    features: BlobFeature.BATCH | BlobFeature.CHUNK_INFO_V2 | BlobFeature.ALIGNED,
    ciCompressor: Compressor.None,
    ciEntries: members.length,
    ciOffset: 0,
    ciCompressedSize: ci.length,
    ciUncompressedSize: ci.length,
    zranOffset: members.length * CI_V2_SIZE,
    zranSize: batches.length * BATCH_CONTEXT_SIZE,
    zranCount: batches.length,
  };
  return { ci, h };
}

test('a decoded blob chunk table is checked: batch indexes, members inside their batch, sane contexts', () => {
  const good = ciData([[100, 0, 0], [200, 0, 100], [50, 1, 0]], [[250, 300], [50, 50]]);
  const t = decodeBlobChunkTable(good.ci, good.h, 't');
  assert.deepEqual(t.batches, [{ compressedSize: 250, uncompressedSize: 300 }, { compressedSize: 50, uncompressedSize: 50 }]);
  assert.equal(t.entries.length, 3);

  const bad: Array<[string, ReturnType<typeof ciData>]> = [
    ['a member names a batch that does not exist', ciData([[100, 2, 0]], [[90, 100]])],
    ['a member reaches past its batch', ciData([[100, 0, 1]], [[90, 100]])],
    ['an empty batch', ciData([[100, 0, 0]], [[0, 100]])],
    ['a batch stored larger than its data', ciData([[100, 0, 0]], [[101, 100]])],
  ];
  for (const [what, { ci, h }] of bad) assert.throws(() => decodeBlobChunkTable(ci, h, 't'), FormatError, what);
  assert.throws(() => decodeBlobChunkTable(good.ci, { ...good.h, zranCount: 9 }, 't'), FormatError, 'contexts past the CI data');
  assert.throws(() => decodeBlobChunkTable(good.ci.subarray(1), good.h, 't'), FormatError, 'CI data of the wrong size');
});

describe('an image built with --batch-size', () => {
  let work: string;
  let boot: Buffer;
  let blob: BlobInfo;
  const files = new Map<string, Buffer>();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-batch-'));
    const src = join(work, 'src');
    await mkdir(src);
    // Small files (batched: under BATCH / 2), one at the limit (not batched), and a large one.
    for (let i = 0; i < 30; i++) files.set(`s${String(i).padStart(2, '0')}`, i % 3 === 0 ? Buffer.alloc(300 + i * 97, i) : randomBytes(300 + i * 97));
    files.set('limit', randomBytes(BATCH / 2));
    files.set('large', randomBytes(3 * 65536 + 5));
    for (const [name, data] of files) await writeFile(join(src, name), data);
    const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, batchSize: BATCH, log: silentLogger });
    boot = r.bootstrap;
    assert.equal(r.blobTable.length, 1);
    blob = r.blobTable[0] as BlobInfo;
  });
  const opened: BlobBackend[] = [];
  after(async () => {
    for (const b of opened) await b.close();
    await rm(work, { recursive: true, force: true });
  });

  const ino = (image: RafsImage, name: string): number => {
    const e = image.lookup(image.rootIno, Buffer.from(name));
    assert.ok(e, name);
    return e.ino;
  };
  const backend = (dir = join(work, 'blobs')): CountingBackend => {
    const b = new CountingBackend(new LocalFsBackend({ dir }), 2);
    opened.push(b);
    return b;
  };

  test('the blob holds batches laid out as nydus-image\'s builder source does; the chunk table has no location for their members', async () => {
    assert.equal(blob.features & (BlobFeature.BATCH | BlobFeature.CHUNK_INFO_V2), BlobFeature.BATCH | BlobFeature.CHUNK_INFO_V2);
    const bytes = await readFile(join(work, 'blobs', blob.id));
    const h = decodeBlobMetaHeader(bytes.subarray(blob.meta.offset + blob.meta.compressedSize, blob.meta.offset + blob.meta.compressedSize + BLOB_META_HEADER_SIZE), 'h');
    assert.equal(h.features & BlobFeature.BATCH, BlobFeature.BATCH);
    assert.equal(h.zranOffset, blob.chunkCount * CI_V2_SIZE);
    assert.ok(h.zranCount >= 2, 'the small files fill more than one batch');
    assert.equal(h.zranSize, h.zranCount * BATCH_CONTEXT_SIZE);

    const image = openBootstrap(boot) as RafsV6Image;
    assert.deepEqual(image.blobsNeedingMeta().map((b) => b.id), [blob.id]);
    // Until the blob meta is given, a batch blob's chunks cannot be located.
    assert.throws(() => image.fileChunks(ino(image, 's01')), UnsupportedError);
    const table = Array.from({ length: image.sb.chunkTableSize / 80 }, (_, i) => image.chunkTableEntryAt(i));
    const members = table.filter((c) => c.compressedSize === 0);
    assert.equal(members.length, 30, 'the 30 small files');
    for (const c of members) assert.deepEqual([c.compressedOffset, c.flags], [0, 0]);

    await loadBlobMeta(image, backend(), nativeCodecs);
    assert.deepEqual(image.blobsNeedingMeta(), []);
    const units = new Map<number, ChunkInfo[]>();
    for (const [name, data] of files) {
      const cs = image.fileChunks(ino(image, name));
      if (!name.startsWith('s')) {
        assert.ok(cs.every((c) => c.batch === undefined && !(c.flags & ChunkFlag.BATCH)), `${name} is stored alone`);
        continue;
      }
      assert.equal(cs.length, 1);
      const c = cs[0] as ChunkInfo;
      assert.ok(c.batch !== undefined && c.flags & ChunkFlag.BATCH, `${name} is in a batch`);
      assert.equal(c.uncompressedSize, data.length);
      assert.ok(c.batch.size < BATCH);
      const list = units.get(c.compressedOffset) ?? [];
      units.set(c.compressedOffset, [...list, c]);
    }
    // Members follow each other in their batch, in the order the files were stored.
    for (const list of units.values()) {
      let at = 0;
      for (const c of list.sort((a, b) => (a.batch?.offset ?? 0) - (b.batch?.offset ?? 0))) {
        assert.equal(c.batch?.offset, at);
        at += c.uncompressedSize;
        assert.ok(sameStoredUnit(list[0] as ChunkInfo, c));
      }
      assert.equal(at, list[0]?.batch?.size);
    }
    assert.equal(units.size, h.zranCount);
  });

  test('reading one member fetches its batch once; the other members come without another backend read', async () => {
    const image = openBootstrap(boot) as RafsV6Image;
    const be = backend();
    await loadBlobMeta(image, be, nativeCodecs);
    const metaReads = be.reads.length;
    const index = new ChunkNeighbors(image.allChunks());
    const dev = new BlobDevice({ blobs: image.blobs, backend: be, codecs: nativeCodecs, cacheDir: join(work, 'cache-a'), metrics: new Metrics(), log: silentLogger, batchMembers: (c) => index.members(c) });
    try {
      const read = async (name: string): Promise<Buffer> => {
        const c = image.fileChunks(ino(image, name))[0] as ChunkInfo;
        const dst = Buffer.alloc(c.uncompressedSize);
        await dev.read([{ chunk: c, from: 0, length: c.uncompressedSize }], [dst]);
        return dst;
      };
      // Two members of the first batch at once, then every small file.
      const [a, b] = await Promise.all([read('s00'), read('s01')]);
      assert.deepEqual(a, files.get('s00'));
      assert.deepEqual(b, files.get('s01'));
      const first = image.fileChunks(ino(image, 's00'))[0] as ChunkInfo;
      assert.deepEqual(be.reads.slice(metaReads), [[first.compressedOffset, first.compressedSize]], 'one read of the whole batch');
      const names = [...files.keys()].filter((n) => n.startsWith('s'));
      for (const n of names) assert.deepEqual(await read(n), files.get(n), n);
      const units = new Set(names.map((n) => (image.fileChunks(ino(image, n))[0] as ChunkInfo).compressedOffset));
      assert.equal(be.reads.length - metaReads, units.size, 'each batch read once');
    } finally {
      await dev.close();
    }
  });

  test('wrong bytes in a stored batch fail every member with an integrity error, and nothing is cached', async () => {
    const image = openBootstrap(boot) as RafsV6Image;
    await loadBlobMeta(image, backend(), nativeCodecs);
    const c = image.fileChunks(ino(image, 's01'))[0] as ChunkInfo;
    const bad = join(work, 'bad-blobs');
    await mkdir(bad, { recursive: true });
    const bytes = await readFile(join(work, 'blobs', blob.id));
    bytes.writeUInt8((bytes.readUInt8(c.compressedOffset + 7) ^ 0x40), c.compressedOffset + 7);
    await writeFile(join(bad, blob.id), bytes);
    const index = new ChunkNeighbors(image.allChunks());
    const cacheDir = join(work, 'cache-bad');
    const dev = new BlobDevice({ blobs: image.blobs, backend: backend(bad), codecs: nativeCodecs, cacheDir, metrics: new Metrics(), log: silentLogger, batchMembers: (x) => index.members(x) });
    const members = [c, ...index.members(c)];
    try {
      for (const m of members) {
        await assert.rejects(dev.read([{ chunk: m, from: 0, length: m.uncompressedSize }], [Buffer.alloc(m.uncompressedSize)]), IntegrityError);
      }
    } finally {
      await dev.close();
    }
    const { cache } = await FileBlobCache.open(cacheDir, blob);
    try {
      for (const m of members) assert.equal(cache.state(m), ChunkState.ABSENT);
    } finally {
      await cache.close();
    }
  });

  test('the blob meta is kept in the cache directory: read again when it is damaged, used when the backend is gone', async () => {
    const cacheDir = join(work, 'cache-meta');
    const be = backend();
    await loadBlobMeta(openBootstrap(boot), be, nativeCodecs, { cacheDir });
    assert.equal(be.reads.length, 1);
    const kept = join(cacheDir, blob.id + CACHE_META_SUFFIX);
    assert.deepEqual((await readdir(cacheDir)).filter((n) => n.endsWith('.tmp')), []);

    // The backend gone: the kept copy serves.
    be.fail = true;
    const offline = openBootstrap(boot);
    await loadBlobMeta(offline, be, nativeCodecs, { cacheDir });
    assert.equal(offline.fileChunks(ino(offline, 's02')).length, 1);

    // A damaged copy: read from the backend again, and kept anew.
    const good = await readFile(kept);
    await writeFile(kept, good.subarray(0, 100));
    be.fail = false;
    const again = openBootstrap(boot);
    await loadBlobMeta(again, be, nativeCodecs, { cacheDir });
    assert.equal(be.reads.length, 2);
    assert.deepEqual(await readFile(kept), good);

    // Damaged and no backend: a clear error, not a served image.
    await writeFile(kept, good.subarray(0, 100));
    be.fail = true;
    await assert.rejects(loadBlobMeta(openBootstrap(boot), be, nativeCodecs, { cacheDir }), /the backend is gone/);
  });

  test('mutated CI data (2000 seeded mutants) is refused with a clear error or locates every member inside its batch, never a crash', async () => {
    const bytes = await readFile(join(work, 'blobs', blob.id));
    const m = blob.meta;
    const packed = bytes.subarray(m.offset, m.offset + m.compressedSize);
    const ci = m.compressor === Compressor.None ? Buffer.from(packed) : Buffer.from(nativeCodecs.decompress(m.compressor, packed, m.uncompressedSize));
    const h = decodeBlobMetaHeader(bytes.subarray(m.offset + m.compressedSize, m.offset + m.compressedSize + BLOB_META_HEADER_SIZE), 'h');
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const boundary = [0, 1, 0x7f, 0x80, 0xff];
    const outcomes = { refused: 0, located: 0 };
    for (let i = 0; i < 2000; i++) {
      const mutant = Buffer.from(ci);
      for (let k = 1 + rand(4); k > 0; k--) {
        // Mostly the fields of entries and of the batch contexts; sometimes anywhere.
        const at = rand(3) === 0 ? h.zranOffset + rand(Math.max(1, mutant.length - h.zranOffset)) : rand(mutant.length);
        mutant[at] = rand(2) === 0 ? (boundary[rand(boundary.length)] as number) : rand(256);
      }
      const image = openBootstrap(boot) as RafsV6Image;
      try {
        image.attachBlobMeta(blob.index, decodeBlobChunkTable(mutant, h, 'mutant'));
        for (const c of image.allChunks()) {
          if (c.batch === undefined) continue;
          assert.ok(c.batch.offset + c.uncompressedSize <= c.batch.size && c.batch.size <= 16 << 20, 'a member inside its batch');
          if (c.compressedOffset + c.compressedSize > bytes.length) continue; // the backend refuses such a read
          await decodeChunkAsync(nativeCodecs, blob, c, bytes.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize)).catch((e: unknown) => {
            assert.ok(e instanceof DamselflyError, `mutant ${i}: ${String(e)}`);
          });
        }
        outcomes.located++;
      } catch (e) {
        assert.ok(e instanceof DamselflyError, `mutant ${i}: ${String(e)}`);
        outcomes.refused++;
      }
    }
    assert.ok(outcomes.refused > 100 && outcomes.located > 100, JSON.stringify(outcomes));
  });

  test('a blob meta that disagrees with the chunk table about a chunk is refused', async () => {
    const image = openBootstrap(boot) as RafsV6Image;
    const bytes = await readFile(join(work, 'blobs', blob.id));
    const table = decodeStoredBlobMeta(nativeCodecs, blob, bytes.subarray(blob.meta.offset, blob.meta.offset + blob.meta.compressedSize + BLOB_META_HEADER_SIZE));
    // The entry of the chunk-table's first chunk moved to another uncompressed slot.
    const c = (openBootstrap(boot) as RafsV6Image).chunkTableEntryAt(0);
    const wrong = { ...table, entries: table.entries.map((e, i) => (i === c.index ? { ...e, uncompressedOffset: e.uncompressedOffset + 4096 } : e)) };
    image.attachBlobMeta(c.blobIndex, wrong);
    assert.throws(() => image.allChunks(), FormatError);
    assert.throws(() => image.attachBlobMeta(c.blobIndex, { ...table, entries: table.entries.slice(1) }), FormatError);
  });
});
