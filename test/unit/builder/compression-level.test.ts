/**
 * `--compression-level`: zstd's level for chunk data. A higher level stores compressible data in
 * fewer bytes, the image reads back the same (zstd decodes every level), the output stays
 * reproducible, and a level that does not apply (another compressor, out of range) is a usage error.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { UsageError, silentLogger } from '../../../src/base/index.js';
import { type BuildOptions, build } from '../../../src/builder/build.js';
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
  const noise = prng(7, 1 << 20);
  const lines: string[] = [];
  for (let i = 0, n = 0; n < 3 << 20; i++) {
    const line = `line ${i}: value=${noise.readUInt32LE((i * 4) % (noise.length - 4))} state=${i % 7 === 0 ? 'ok' : 'pending'}\n`;
    lines.push(line);
    n += line.length;
  }
  data = Buffer.from(lines.join(''));
  await writeFile(join(src, 'f'), data);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

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
  ] as const) {
    await assert.rejects(build(options('bad', more)), UsageError, what);
  }
});
