/**
 * ZRan (spec §5.5): random access into a gzip layer. Checked here: inflation started at any block
 * boundary the indexer reports (with the bits of the byte before it and its window) gives exactly
 * the stream's bytes from there, across gzip members; short, truncated and corrupt input is a
 * FormatError; the ZRan context table round-trips and a decoded one is checked; through the
 * device, the chunks of one context come from one backend read, decoded once, stored together;
 * and mutated context tables are refused, or inflate to errors, never crash the process.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ByteWriter, DamselflyError, FormatError, Metrics, silentLogger } from '../../../src/base/index.js';
import { buildRefImage } from '../../../src/builder/ref-build.js';
import { BLOB_META_HEADER_SIZE, type BlobMetaHeader, CI_V2_SIZE, CiFlag, ZRAN_CONTEXT_SIZE, type ZranContext, decodeBlobChunkTable, decodeBlobMetaHeader, encodeCiV2, encodeZranTable } from '../../../src/format/blob/meta.js';
import type { ChunkInfo } from '../../../src/format/chunk-info.js';
import type { GzipPoint } from '../../../src/format/compression.js';
import { BlobFeature } from '../../../src/format/constants.js';
import type { BlobInfo, RafsImage } from '../../../src/format/image.js';
import { openBootstrap } from '../../../src/format/open.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import { loadBlobMeta } from '../../../src/storage/blob-meta.js';
import { decodeChunkAsync } from '../../../src/storage/chunk/decode.js';
import { ChunkNeighbors } from '../../../src/storage/chunk/neighbors.js';
import { batches } from '../../../src/storage/prefetch/prefetcher.js';
import { BlobDevice } from '../../../src/storage/device.js';
import { CountingBackend } from '../../helpers/counting-backend.js';
import { tarArchive, tarEntry } from '../../helpers/tar.js';
import { prng, textBytes as text } from '../../helpers/tree.js';

/** A gzip stream of several members, and every boundary in it. */
function indexed(parts: Buffer[]): { gz: Buffer; whole: Buffer; points: GzipPoint[] } {
  const gz = Buffer.concat(parts.map((p, i) => gzipSync(p, { level: 1 + (i % 9) })));
  const ix = nativeCodecs.gzipIndexer({ in: 0, out: 0 });
  const points: GzipPoint[] = [];
  const out: Uint8Array[] = [];
  // Pushed in uneven pieces: boundaries fall at piece edges too.
  for (let at = 0, n = 1; at < gz.length; at += n, n = (n * 7 + 3) % 70_000 + 1) {
    let rest: Uint8Array = gz.subarray(at, at + n);
    while (rest.length > 0) {
      const r = ix.push(rest);
      points.push(...r.points);
      out.push(r.output);
      rest = rest.subarray(r.consumed);
    }
  }
  ix.finish();
  return { gz, whole: Buffer.concat(out), points };
}

test('inflating from every boundary gives the stream from there, across members', async () => {
  const parts = [text(1, 900_000), prng(2, 70_000), text(3, 5_000), text(4, 1_200_000)];
  const { gz, whole, points } = indexed(parts);
  assert.deepEqual(whole, Buffer.concat(parts));
  assert.ok(points.length > 20, `${points.length} boundaries`);
  assert.ok(points.some((p) => p.bits !== 0), 'boundaries inside a byte');
  assert.ok(points.some((p) => p.dict.length === 32768) && points.some((p) => p.dict.length === 0), 'windows full, and empty at a member start');
  for (const [i, p] of points.entries()) {
    const size = Math.min(300_000, whole.length - p.out);
    if (size === 0) continue;
    const got = i % 2 === 0 ? nativeCodecs.inflateFrom(gz.subarray(p.in), p, size) : await nativeCodecs.inflateFromAsync(gz.subarray(p.in), p, size);
    assert.ok(Buffer.from(got).equals(whole.subarray(p.out, p.out + size)), `from boundary ${i} (in ${p.in}, out ${p.out}, ${p.bits} bits)`);
  }
  // To the very end of the stream, from the first boundary: three member changes on the way.
  const first = points[0] as GzipPoint;
  assert.ok(Buffer.from(nativeCodecs.inflateFrom(gz.subarray(first.in), first, whole.length)).equals(whole));
});

test('short, truncated and corrupt streams are FormatErrors', () => {
  const { gz, whole, points } = indexed([text(5, 400_000), text(6, 400_000)]);
  const p = points[1] as GzipPoint;
  assert.throws(() => nativeCodecs.inflateFrom(gz.subarray(p.in, p.in + 1000), p, 200_000), (e: unknown) => e instanceof FormatError && /ends/.test(e.message));
  // More output than the stream holds: the range ends in the last member's trailer.
  assert.throws(() => nativeCodecs.inflateFrom(gz.subarray(p.in), p, whole.length - p.out + 1), FormatError);
  // Truncated inside a member.
  const ix = nativeCodecs.gzipIndexer({ in: 0, out: 0 });
  ix.push(gz.subarray(0, 300_000));
  assert.throws(() => ix.finish(), /truncated/);
  // Trailing bytes that are no gzip member.
  const bad = nativeCodecs.gzipIndexer({ in: 0, out: 0 });
  const tail = Buffer.concat([gz, Buffer.from('not a gzip member')]);
  assert.throws(() => {
    for (let rest: Uint8Array = tail; rest.length > 0; ) rest = rest.subarray(bad.push(rest).consumed);
  }, FormatError);
  // A dictionary longer than deflate's window, or bits past a byte, are refused before inflating.
  assert.throws(() => nativeCodecs.inflateFrom(gz.subarray(p.in), { ...p, dict: Buffer.alloc(40_000) }, 10), FormatError);
  assert.throws(() => nativeCodecs.inflateFrom(gz.subarray(p.in), { ...p, bits: 8 }, 10), FormatError);
});

test('the ZRan context table round-trips; a decoded one is checked', () => {
  const ctx = (i: number, dict: number): ZranContext => ({ inOffset: 10 + i * 1000, inLen: 2000, outOffset: i * 5000, outLen: 9000, at: { dict: prng(i, dict), bits: i % 8, byte: 0x55 + i } });
  const contexts = [ctx(0, 0), ctx(1, 32768), ctx(2, 100)];
  const entries = [
    { uncompressedOffset: 0, uncompressedSize: 4000, compressedOffset: 10, compressedSize: 900, flags: CiFlag.COMPRESSED | CiFlag.ZRAN, data: 0n },
    { uncompressedOffset: 4096, uncompressedSize: 5000, compressedOffset: 900, compressedSize: 1100, flags: CiFlag.COMPRESSED | CiFlag.ZRAN, data: (2n << 32n) | 4000n },
  ];
  const table = (es = entries, cs = contexts): { ci: Buffer; h: BlobMetaHeader } => {
    const z = encodeZranTable(cs);
    const w = new ByteWriter();
    for (const e of es) encodeCiV2(w, e);
    w.bytes(z);
    const ci = w.finish();
    const h: BlobMetaHeader = {
      features: BlobFeature.ZRAN | BlobFeature.SEPARATE | BlobFeature.CHUNK_INFO_V2 | BlobFeature.ALIGNED,
      ciCompressor: 0,
      ciEntries: es.length,
      ciOffset: 0,
      ciCompressedSize: ci.length,
      ciUncompressedSize: ci.length,
      zranOffset: es.length * CI_V2_SIZE,
      zranSize: z.length,
      zranCount: cs.length,
    };
    return { ci, h };
  };
  const { ci, h } = table();
  assert.equal(h.zranSize, 3 * ZRAN_CONTEXT_SIZE + 32768 + 100);
  const t = decodeBlobChunkTable(ci, h, 't');
  assert.deepEqual(
    t.zran.map((z) => ({ ...z, at: { ...z.at, dict: Buffer.from(z.at.dict) } })),
    contexts.map((z) => ({ ...z, at: { ...z.at, dict: Buffer.from(z.at.dict) } })),
  );
  const refused = (what: RegExp, es = entries, cs = contexts, edit?: (x: { ci: Buffer; h: BlobMetaHeader }) => void): void => {
    const x = table(es, cs);
    edit?.(x);
    assert.throws(() => decodeBlobChunkTable(x.ci, x.h, 't'), (e: unknown) => e instanceof FormatError && what.test(e.message), String(what));
  };
  refused(/names ZRan context 3/, [{ ...(entries[0] as (typeof entries)[0]), data: 3n << 32n }]);
  refused(/outside its ZRan context/, [{ ...(entries[0] as (typeof entries)[0]), data: 8000n }]);
  refused(/not a ZRan chunk/, [{ ...(entries[0] as (typeof entries)[0]), flags: CiFlag.COMPRESSED }]);
  refused(/context 0 is invalid/, entries, [{ ...(contexts[0] as ZranContext), outLen: 0 }, ...contexts.slice(1)]);
  refused(/context 1 is invalid/, entries, contexts, ({ ci, h }) => ci.writeUInt8(9, h.zranOffset + ZRAN_CONTEXT_SIZE + 37)); // bits
  refused(/context 2 is invalid/, entries, contexts, ({ ci, h }) => ci.writeUInt32LE(40_000, h.zranOffset + 2 * ZRAN_CONTEXT_SIZE + 32)); // dict size
  refused(/outside the CI data/, entries, contexts, ({ h }) => (h.zranSize += 1));
  refused(/both batch and ZRan/, entries, contexts, ({ h }) => (h.features |= BlobFeature.BATCH));
});

describe('a ZRan image through the device', () => {
  let work: string;
  let boot: Buffer;
  let metaId: string;
  const files = new Map<string, Buffer>();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-zran-unit-'));
    // A tar of small files and one larger (the test helper writes it as the builder's encoder does).
    for (let i = 0; i < 40; i++) files.set(`f${String(i).padStart(2, '0')}`, text(100 + i, 3000 + i * 997));
    files.set('large', text(7, 700_000));
    const tar = tarArchive([...files].map(([name, data]) => ({ entry: tarEntry(name, 'file', { size: data.length }), data })));
    await writeFile(join(work, 'layer.tar.gz'), gzipSync(tar));
    const r = await buildRefImage({ sources: [join(work, 'layer.tar.gz')], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), chunkSize: 64 << 10, codecs: nativeCodecs, log: silentLogger });
    boot = await readFile(join(work, 'boot'));
    metaId = (r.blobs[0] as { metaBlob: { id: string } }).metaBlob.id;
    await copyFile(join(work, 'layer.tar.gz'), join(work, 'blobs', (r.blobs[0] as { id: string }).id));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('the chunks of a context come from one backend read, decoded once, and are stored together', async () => {
    const image = openBootstrap(boot) as RafsImage;
    const be = new CountingBackend(new LocalFsBackend({ dir: join(work, 'blobs') }), 2);
    await loadBlobMeta(image, be, nativeCodecs);
    const metaReads = be.reads.length;
    const blob = image.blobs[0];
    assert.ok(blob !== undefined && blob.separateMeta !== undefined);
    assert.equal(be.reads.length, 1, 'the blob meta from the meta blob, once');
    const chunksOf = (name: string): ChunkInfo[] => image.fileChunks((image.lookup(image.rootIno, Buffer.from(name)) as { ino: number }).ino);
    const all = image.allChunks?.() ?? [];
    const index = new ChunkNeighbors(all);
    const metrics = new Metrics();
    const dev = new BlobDevice({ blobs: image.blobs, backend: be, codecs: nativeCodecs, cacheDir: join(work, 'cache'), metrics, log: silentLogger, batchMembers: (c) => index.members(c) });
    try {
      const a = chunksOf('f00')[0] as ChunkInfo;
      const sharing = [...files.keys()].map((n) => chunksOf(n)[0] as ChunkInfo).filter((c) => c.compressedOffset === a.compressedOffset);
      assert.ok(sharing.length > 3, `${sharing.length} files in the first context`);
      const dst = Buffer.alloc(a.uncompressedSize);
      await dev.read([{ chunk: a, from: 0, length: a.uncompressedSize }], [dst]);
      assert.deepEqual(dst, files.get('f00'));
      assert.deepEqual(be.reads.slice(metaReads), [[a.compressedOffset, a.compressedSize]], 'one read of the context\'s range');
      assert.equal(metrics.snapshot()['storage.chunks_fetched'], sharing.length, 'its other chunks came with it');
      // Every file, each chunk verified against its sha256.
      for (const [name, data] of files) {
        const cs = chunksOf(name);
        const out = Buffer.alloc(data.length);
        let at = 0;
        await dev.read(
          cs.map((c) => {
            const s = { chunk: c, from: 0, length: c.uncompressedSize };
            at += c.uncompressedSize;
            return s;
          }),
          [out],
        );
        assert.equal(at, data.length);
        assert.deepEqual(out, data, name);
      }
      const contexts = new Set(all.map((c) => c.compressedOffset));
      assert.equal(be.reads.length - metaReads, contexts.size, 'each context read once');
    } finally {
      await dev.close();
      await be.close();
    }
  });

  test('overlapping contexts are read as one range: by a reader, by the prefetch batches, by read-ahead', async () => {
    const image = openBootstrap(boot) as RafsImage;
    const be = new CountingBackend(new LocalFsBackend({ dir: join(work, 'blobs') }), 2);
    await loadBlobMeta(image, be, nativeCodecs);
    const metaReads = be.reads.length;
    const all = (image.allChunks?.() ?? []).sort((a, b) => a.compressedOffset - b.compressedOffset);
    // Two contexts whose compressed ranges overlap (each runs to the end of its last chunk).
    const units = [...new Map(all.map((c) => [c.compressedOffset, c])).values()];
    const i = units.findIndex((u, k) => k + 1 < units.length && (units[k + 1] as ChunkInfo).compressedOffset < u.compressedOffset + u.compressedSize);
    assert.ok(i >= 0, 'the layer has overlapping contexts');
    const [a, b] = [units[i] as ChunkInfo, units[i + 1] as ChunkInfo];
    const union = [a.compressedOffset, Math.max(a.compressedOffset + a.compressedSize, b.compressedOffset + b.compressedSize) - a.compressedOffset];
    assert.deepEqual(batches([a, b], 4 << 20).length, 1, 'one prefetch batch');
    assert.ok(new ChunkNeighbors(all).after(a, 4 << 20).some((n) => n.compressedOffset === b.compressedOffset), 'read-ahead takes the next context');
    const dev = new BlobDevice({ blobs: image.blobs, backend: be, codecs: nativeCodecs, metrics: new Metrics(), log: silentLogger });
    try {
      const bufs = [Buffer.alloc(a.uncompressedSize), Buffer.alloc(b.uncompressedSize)];
      await dev.read(
        [
          { chunk: a, from: 0, length: a.uncompressedSize },
          { chunk: b, from: 0, length: b.uncompressedSize },
        ],
        [Buffer.concat(bufs)],
      );
      assert.deepEqual(be.reads.slice(metaReads), [union], 'one backend read of their union');
    } finally {
      await dev.close();
      await be.close();
    }
  });

  test('mutated CI data (1500 seeded mutants) is refused, or every chunk inflates or fails with an error: never a crash', async () => {
    const meta = await readFile(join(work, 'blobs', metaId));
    const gz = await readFile(join(work, 'layer.tar.gz'));
    const image0 = openBootstrap(boot) as RafsImage;
    const blob = image0.blobs[0] as BlobInfo;
    const m = blob.meta;
    const ci = Buffer.from(nativeCodecs.decompress(m.compressor, meta.subarray(0, m.compressedSize), m.uncompressedSize));
    const h = decodeBlobMetaHeader(meta.subarray(m.compressedSize, m.compressedSize + BLOB_META_HEADER_SIZE), 'h');
    let seed = 0x2a11;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const boundary = [0, 1, 7, 8, 0x7f, 0x80, 0xff];
    const outcomes = { refused: 0, located: 0, inflated: 0, failed: 0 };
    for (let i = 0; i < 1500; i++) {
      const mutant = Buffer.from(ci);
      for (let k = 1 + rand(4); k > 0; k--) {
        // Mostly the contexts (offsets, lengths, bits, dictionary bytes); sometimes anywhere.
        const at = rand(3) !== 0 ? h.zranOffset + rand(Math.max(1, Math.min(mutant.length - h.zranOffset, h.zranCount * ZRAN_CONTEXT_SIZE + 64))) : rand(mutant.length);
        mutant[at] = rand(2) === 0 ? (boundary[rand(boundary.length)] as number) : rand(256);
      }
      const image = openBootstrap(boot) as RafsImage;
      let chunks: ChunkInfo[];
      try {
        image.attachBlobMeta(blob.index, decodeBlobChunkTable(mutant, h, 'mutant'));
        // Entries that moved a chunk away from where the bootstrap has it are refused here.
        chunks = image.allChunks?.() ?? [];
        outcomes.located++;
      } catch (e) {
        assert.ok(e instanceof FormatError, `mutant ${i}: ${String(e)}`);
        outcomes.refused++;
        continue;
      }
      for (const c of chunks) {
        assert.ok(c.zran !== undefined && c.zran.offset + c.uncompressedSize <= c.zran.size && c.zran.size <= 16 << 20, 'a chunk inside its context');
        if (c.compressedOffset + c.compressedSize > gz.length) continue; // the backend refuses such a read
        try {
          await decodeChunkAsync(nativeCodecs, blob, c, gz.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize));
          outcomes.inflated++;
        } catch (e) {
          assert.ok(e instanceof DamselflyError, `mutant ${i}: ${String(e)}`);
          outcomes.failed++;
        }
      }
    }
    assert.ok(outcomes.refused > 100 && outcomes.located > 100 && outcomes.failed > 0, JSON.stringify(outcomes));
  });
});
