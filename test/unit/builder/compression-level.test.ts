/**
 * `--compression-level`: zstd's level for chunk data. A higher level stores compressible data in
 * fewer bytes, the image reads back the same (zstd decodes every level), the output stays
 * reproducible, and a level that does not apply (another compressor, out of range) is a usage error.
 *
 * `--prefetch-compression-level`: the prefetch files' chunks (from a directory or a tar layer, alone
 * or in a batch) are stored at it (default 19, or the chunk level if higher), the other files' at
 * the chunk level, and no more than `prefetchLevelBytes` of them; a chunk that the chunk level
 * cannot shrink is not tried at the prefetch level.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { UsageError, silentLogger } from '../../../src/base/index.js';
import { type BuildOptions, type BuildResult, build } from '../../../src/builder/build.js';
import { ChunkStore } from '../../../src/builder/chunk-store.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { openBootstrap } from '../../../src/format/open.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import { ToolChunkReader } from '../../../src/tools/chunk-reader.js';
import { prng } from '../../helpers/tree.js';

let work: string;
let src: string;
/** Compressible data: text-like lines with random numbers, 3 MiB. */
let data: Buffer;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-level-'));
  src = join(work, 'src');
  await mkdir(src);
  data = textLike(7, 3 << 20);
  await writeFile(join(src, 'f'), data);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Compressible data: text-like lines with random numbers, about `size` bytes. */
function textLike(seed: number, size: number): Buffer {
  const noise = prng(seed, 1 << 20);
  const lines: string[] = [];
  for (let i = 0, n = 0; n < size; i++) {
    const line = `line ${i}: value=${noise.readUInt32LE((i * 4) % (noise.length - 4))} state=${i % 7 === 0 ? 'ok' : 'pending'}\n`;
    lines.push(line);
    n += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, size);
}

function options(name: string, more: Partial<BuildOptions>): BuildOptions {
  return { sources: [src], blobDir: join(work, name, 'blobs'), bootstrapPath: join(work, name, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 1 << 20, log: silentLogger, ...more };
}

test('a higher zstd level stores fewer bytes, reads back the same, and is reproducible', async () => {
  const sizes = new Map<number, number>();
  for (const level of [3, 19]) {
    const r = await build(options(`l${level}`, { compressionLevel: level }));
    const blob = r.blobs[0];
    assert.ok(blob);
    sizes.set(level, r.stats.bytesStored);
    const again = await build(options(`l${level}-again`, { compressionLevel: level }));
    assert.deepEqual(await readFile(again.blobs[0]?.path as string), await readFile(blob.path), 'reproducible');
    const image = openBootstrap(r.bootstrap);
    const backend = new LocalFsBackend({ dir: join(work, `l${level}`, 'blobs') });
    try {
      const reader = await ToolChunkReader.open(image, backend, nativeCodecs);
      const f = image.lookup(image.rootIno, Buffer.from('f'));
      assert.ok(f);
      const parts: Buffer[] = [];
      for await (const { data: d } of reader.readFile(f.ino)) parts.push(Buffer.from(d));
      assert.deepEqual(Buffer.concat(parts), data);
    } finally {
      await backend.close();
    }
  }
  const [l3, l19] = [sizes.get(3) as number, sizes.get(19) as number];
  assert.ok(l19 < l3 * 0.95, `level 19 stores ${l19} bytes, level 3 ${l3}`);
  // Level 3 is the default.
  const plain = await build(options('default', {}));
  assert.equal(plain.stats.bytesStored, l3);
});

test('a level that does not apply is a usage error', async () => {
  for (const [what, more] of [
    ['lz4_block has no level', { compressor: Compressor.Lz4Block, compressionLevel: 3 }],
    ['below 1', { compressionLevel: 0 }],
    ['above 22', { compressionLevel: 23 }],
    ['not a whole number', { compressionLevel: 2.5 }],
    ['lz4_block has no prefetch level', { compressor: Compressor.Lz4Block, prefetchCompressionLevel: 19 }],
    ['a prefetch level above 22', { prefetchCompressionLevel: 23 }],
  ] as const) {
    await assert.rejects(build(options('bad', more)), UsageError, what);
  }
});

/** Bytes stored for each named top-level file's chunks (a batch member counts its whole batch). */
function storedBytes(r: BuildResult, names: string[]): Map<string, number> {
  const image = openBootstrap(r.bootstrap);
  const out = new Map<string, number>();
  for (const name of names) {
    const e = image.lookup(image.rootIno, Buffer.from(name));
    assert.ok(e, name);
    out.set(name, image.fileChunks(e.ino).reduce((n, c) => n + c.compressedSize, 0));
  }
  return out;
}

test('the prefetch files are stored at the prefetch level, the others at the chunk level, from a directory and from a tar layer', async () => {
  const dir = join(work, 'hot-cold');
  await mkdir(dir);
  await writeFile(join(dir, 'hot'), textLike(11, 2 << 20));
  await writeFile(join(dir, 'cold'), textLike(12, 2 << 20));
  const layer = join(work, 'hot-cold.tar');
  execFileSync('tar', ['-C', dir, '-cf', layer, '.']);
  const names = ['hot', 'cold'];
  const at = async (name: string, more: Partial<BuildOptions>): Promise<Map<string, number>> => storedBytes(await build(options(name, { sources: [dir], ...more })), names);
  const l3 = await at('hc-3', {});
  const l19 = await at('hc-19', { compressionLevel: 19 });
  assert.ok((l19.get('hot') as number) < (l3.get('hot') as number) * 0.95, `level 19 ${l19.get('hot')}, level 3 ${l3.get('hot')}`);
  for (const [what, sources] of [['directory', [dir]], ['tar layer', [layer]]] as const) {
    const hot = await at(`hc-pf-${what}`, { sources: [...sources], prefetchFiles: ['/hot'] });
    assert.equal(hot.get('hot'), l19.get('hot'), `${what}: the prefetch file at 19 by default`);
    assert.equal(hot.get('cold'), l3.get('cold'), `${what}: the other file at the chunk level`);
    const asked = await at(`hc-pf3-${what}`, { sources: [...sources], prefetchFiles: ['/hot'], prefetchCompressionLevel: 3 });
    assert.deepEqual(asked, l3, `${what}: --prefetch-compression-level 3`);
  }
  // A chunk level above 19 applies to the prefetch files too.
  const l20 = await at('hc-20', { compressionLevel: 20 });
  const pf20 = await at('hc-pf-20', { compressionLevel: 20, prefetchFiles: ['/hot'] });
  assert.deepEqual(pf20, l20);
});

test('a batch holding a prefetch file is compressed at the prefetch level', async () => {
  const dir = join(work, 'batch');
  await mkdir(dir);
  for (const [name, seed] of [['a', 21], ['b', 22], ['c', 23]] as const) await writeFile(join(dir, name), textLike(seed, 40_000));
  const stored = async (name: string, more: Partial<BuildOptions>): Promise<number> => (await build(options(name, { sources: [dir], batchSize: 1 << 20, ...more }))).stats.bytesStored;
  const l3 = await stored('b-3', {});
  const l19 = await stored('b-19', { compressionLevel: 19 });
  assert.ok(l19 < l3, `level 19 ${l19}, level 3 ${l3}`);
  // b goes first, then a and c in tree order, all three in the one batch: stored as when every
  // chunk is at 19, in the same order.
  const pf = await stored('b-pf', { prefetchFiles: ['/b'] });
  assert.equal(pf, await stored('b-pf-19', { prefetchFiles: ['/b'], compressionLevel: 19 }));
  assert.ok(pf < (await stored('b-pf-3', { prefetchFiles: ['/b'], prefetchCompressionLevel: 3 })));
});

test('no more than prefetchLevelBytes of chunks are stored at the prefetch level', async () => {
  const blobDir = join(work, 'cap');
  await mkdir(blobDir);
  const store = new ChunkStore({ codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 1 << 20, blobDir, prefetchLevelBytes: 2 << 20 });
  await store.openBlob();
  store.prefetchPhase(true);
  const chunks = [31, 32, 33].map((seed) => textLike(seed, 1 << 20));
  const refs = await Promise.all(chunks.map((c) => store.submit(c)));
  store.prefetchPhase(false);
  await store.closeBlob();
  for (const [i, ref] of refs.entries()) {
    const c = chunks[i] as Buffer;
    const level = i < 2 ? 19 : 3;
    assert.equal(ref.compressedSize, nativeCodecs.compress(Compressor.Zstd, c, level).length, `chunk ${i} at level ${level}`);
  }
});

test('a prefetch chunk that the chunk level leaves nearly whole is not compressed again at the prefetch level', async () => {
  const blobDir = join(work, 'incompressible');
  await mkdir(blobDir);
  const levels: Array<number | undefined> = [];
  const codecs = { ...nativeCodecs, compressAsync: (algo: Compressor, src: Uint8Array, level?: number) => (levels.push(level), nativeCodecs.compressAsync(algo, src, level)) };
  const store = new ChunkStore({ codecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 1 << 20, blobDir });
  await store.openBlob();
  store.prefetchPhase(true);
  const random = prng(41, 1 << 20);
  const text = textLike(42, 1 << 20);
  const [r, t] = await Promise.all([store.submit(random), store.submit(text)]);
  store.prefetchPhase(false);
  await store.closeBlob();
  // The random chunk: one try at the chunk level (stored as it is); the text: that, then 19.
  assert.deepEqual(levels, [undefined, undefined, 19]);
  assert.equal(r.compressedSize, random.length);
  assert.equal(t.compressedSize, nativeCodecs.compress(Compressor.Zstd, text, 19).length);
});
