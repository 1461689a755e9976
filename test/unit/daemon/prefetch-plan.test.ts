/**
 * The prefetch plan: the listed paths' chunks first, in list order (a directory: every file below
 * it), paths the image lacks reported and skipped; without a list, the bootstrap's prefetch table;
 * with `all`, then every chunk in blob order. As blob ranges: chunks stored one after the other
 * merged, in plan order, each chunk once, up to a byte budget.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import { Compressor } from '../../../src/format/compression.js';
import { ChunkFlag, Digester } from '../../../src/format/constants.js';
import type { ChunkInfo } from '../../../src/format/chunk-info.js';
import type { RafsImage } from '../../../src/format/image.js';
import { openBootstrap } from '../../../src/format/open.js';
import { planRanges, prefetchPlan } from '../../../src/daemon/prefetch-plan.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { resolvePath } from '../../../src/tools/walk.js';

const CHUNK = 4096;

describe('prefetch plan', () => {
  let work: string;
  let image: RafsImage;
  const chunksOf = (path: string): string[] => image.fileChunks(resolvePath(image, path) as number).map((c) => `${c.blobIndex}:${c.index}`);
  const keys = (cs: Array<{ blobIndex: number; index: number }>): string[] => cs.map((c) => `${c.blobIndex}:${c.index}`);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-plan-'));
    const src = join(work, 'src');
    await mkdir(join(src, 'd', 'e'), { recursive: true });
    // Distinct contents (no dedup): a, d/b, d/e/c of 1, 2 and 3 chunks.
    await writeFile(join(src, 'a'), Buffer.alloc(CHUNK, 1));
    await writeFile(join(src, 'd', 'b'), Buffer.concat([Buffer.alloc(CHUNK, 2), Buffer.alloc(CHUNK, 3)]));
    await writeFile(join(src, 'd', 'e', 'c'), Buffer.concat([Buffer.alloc(CHUNK, 4), Buffer.alloc(CHUNK, 5), Buffer.alloc(CHUNK, 6)]));
    const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: CHUNK, prefetchFiles: ['/d/e/c'], log: silentLogger });
    image = openBootstrap(r.bootstrap);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('listed paths in order, a directory meaning the files below it; missing paths reported', () => {
    const missing: string[] = [];
    const plan = prefetchPlan(image, { files: ['/a', '/nope', '/d'], all: false, onMissing: (p) => missing.push(p) });
    assert.deepEqual(keys(plan), [...chunksOf('/a'), ...chunksOf('/d/b'), ...chunksOf('/d/e/c')]);
    assert.deepEqual(missing, ['/nope']);
  });

  test("without a list, the bootstrap's prefetch table; with all, then every chunk in blob order", () => {
    assert.deepEqual(keys(prefetchPlan(image, { all: false })), chunksOf('/d/e/c'));
    const all = prefetchPlan(image, { all: true });
    assert.deepEqual(keys(all.slice(0, 3)), chunksOf('/d/e/c'));
    const rest = all.slice(3);
    assert.equal(rest.length, 6);
    assert.deepEqual([...rest].sort((x, y) => x.compressedOffset - y.compressedOffset), rest, 'blob order');
  });

  test('as blob ranges: stored runs merged, in plan order, each chunk once, within the budget', () => {
    // The table's file /d/e/c is stored first (the builder puts prefetch files first), then a, d/b.
    const [c0, c1, c2] = image.fileChunks(resolvePath(image, '/d/e/c') as number);
    const [a0] = image.fileChunks(resolvePath(image, '/a') as number);
    assert.ok(c0 && c1 && c2 && a0);
    assert.equal(c1.compressedOffset, c0.compressedOffset + c0.compressedSize, 'stored one after the other');
    const blob = (image.blobs[0] as { id: string }).id;
    const whole = c0.compressedSize + c1.compressedSize + c2.compressedSize;
    assert.deepEqual(planRanges([c0, c1, c2, c1], image.blobs, 1 << 20), [{ id: blob, offset: c0.compressedOffset, length: whole }]);
    // Out of storage order: separate ranges, in the order given.
    assert.deepEqual(planRanges([c2, c0], image.blobs, 1 << 20), [
      { id: blob, offset: c2.compressedOffset, length: c2.compressedSize },
      { id: blob, offset: c0.compressedOffset, length: c0.compressedSize },
    ]);
    // The budget: whole chunks only, stopping at the first that does not fit.
    assert.deepEqual(planRanges([c0, c1, c2, a0], image.blobs, c0.compressedSize + c1.compressedSize + 1), [{ id: blob, offset: c0.compressedOffset, length: c0.compressedSize + c1.compressedSize }]);
    assert.deepEqual(planRanges(prefetchPlan(image, { all: false }), image.blobs, 1 << 20), [{ id: blob, offset: c0.compressedOffset, length: whole }]);
    // Members of batches (one stored unit each), in any order: each batch read once.
    const member = (c: ChunkInfo, unit: ChunkInfo, index: number): ChunkInfo => ({ ...c, index, flags: ChunkFlag.BATCH, compressedOffset: unit.compressedOffset, compressedSize: unit.compressedSize, batch: { offset: 0, size: 1 } });
    const [m1, m2, m3] = [member(c0, c0, 100), member(c0, c0, 101), member(c0, c2, 102)];
    assert.deepEqual(planRanges([m1, m3, m2, m3, m1], image.blobs, 1 << 20), [
      { id: blob, offset: c0.compressedOffset, length: c0.compressedSize },
      { id: blob, offset: c2.compressedOffset, length: c2.compressedSize },
    ]);
  });
});
