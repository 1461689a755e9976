/**
 * Wrong arguments to `build` and `convert` are usage errors raised before anything is written. The
 * image format options (--chunk-size, --batch-size, --compression-level): a layout RAFS cannot
 * express is refused by the builder itself, so every caller gets it, and `convert` refuses it
 * before pulling anything. A missing source leaves no blob directory behind.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { UsageError, silentLogger } from '../../../src/base/index.js';
import { type BuildOptions, build, checkFormatOptions } from '../../../src/builder/build.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { openBootstrap } from '../../../src/format/open.js';
import { TAR_END, encodeTarHeaders, tarPadding } from '../../../src/format/tar.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { convertImage } from '../../../src/oci/convert/convert.js';
import { parseImageRef } from '../../../src/oci/reference.js';
import { OciLayoutStore } from '../../../src/oci/store.js';
import { damselfly } from '../../helpers/env.js';

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-format-'));
  await writeFile(join(work, 'f'), 'data');
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const BAD: [string, Partial<BuildOptions>, RegExp][] = [
  ['a chunk size that is not a power of two', { chunkSize: 5000 }, /chunk size must be a power of two from 4096 to 16777216, not 5000/],
  ['a chunk size below 4 KiB', { chunkSize: 2048 }, /chunk size .* not 2048/],
  ['a chunk size above 16 MiB', { chunkSize: 32 << 20 }, /chunk size .* not 33554432/],
  ['a batch size that is not a power of two', { batchSize: 6000 }, /batch size must be 0 or a power of two .* not 6000/],
  ['a batch size above the chunk size', { chunkSize: 64 << 10, batchSize: 128 << 10 }, /batch size .* chunk size \(65536\), not 131072/],
  ['a level for lz4_block', { compressor: Compressor.Lz4Block, compressionLevel: 3 }, /applies to zstd only/],
  ['a zstd level above 22', { compressionLevel: 23 }, /level must be 1 to 22, not 23/],
  // A 16 MiB chunk that does not compress is stored at 2^24 bytes, one more than v2 chunk info holds.
  ['16 MiB chunks in batches', { chunkSize: 16 << 20, batchSize: 4 << 20 }, /with --batch-size the chunk size is at most 8 MiB/],
  ['16 MiB chunks encrypted', { chunkSize: 16 << 20, encrypt: true }, /with --encrypt the chunk size is at most 8 MiB/],
];

function layout(dir: string): OciLayoutStore {
  const ref = parseImageRef(`oci:${dir}`);
  if (ref.kind !== 'oci-layout') throw new Error(`oci:${dir} is not an OCI layout reference`);
  return new OciLayoutStore(ref, silentLogger);
}

function options(more: Partial<BuildOptions>): BuildOptions {
  return { sources: [work], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 1 << 20, log: silentLogger, ...more };
}

test('build rejects a layout RAFS cannot express, and writes nothing', async () => {
  for (const [what, more, message] of BAD) {
    assert.throws(() => checkFormatOptions(options(more)), (e: unknown) => e instanceof UsageError && message.test(e.message), what);
    await assert.rejects(build(options(more)), (e: unknown) => e instanceof UsageError && message.test(e.message), what);
  }
  assert.deepEqual((await readdir(work)).sort(), ['f']);
  // The limits themselves are fine.
  for (const more of [{ chunkSize: 4096 }, { chunkSize: 16 << 20 }, { chunkSize: 8 << 20, batchSize: 8 << 20, encrypt: true }, { compressionLevel: 22 }]) checkFormatOptions(options(more));
});

test('a missing source is refused before the blob directory is made', async () => {
  await assert.rejects(build(options({ sources: [work, join(work, 'missing')] })), (e: unknown) => e instanceof UsageError && /source .*missing does not exist/.test(e.message));
  assert.deepEqual((await readdir(work)).sort(), ['f']);
});

test('more layers with data than RAFS v6 has blobs: a usage error naming the first one too many, no blob left', async () => {
  const layers = join(work, 'layers');
  await mkdir(layers);
  const sources: string[] = [];
  for (let i = 1; i <= 255; i++) {
    const data = Buffer.from(`layer ${i}\n`);
    const tar = Buffer.concat([encodeTarHeaders({ path: Buffer.from(`f${i}`), type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtimeSec: 0, mtimeNsec: 0, linkpath: Buffer.alloc(0), devmajor: 0, devminor: 0, xattrs: [] }), data, Buffer.alloc(tarPadding(data.length)), TAR_END]);
    sources.push(join(layers, `l${i}.tar`));
    await writeFile(sources[sources.length - 1] as string, tar);
  }
  const blobDir = join(layers, 'blobs');
  await assert.rejects(build(options({ sources, blobDir, bootstrapPath: join(layers, 'boot') })), (e: unknown) => e instanceof UsageError && /more than 254 layers hold data \(.*l255\.tar is the 255th\)/.test(e.message));
  assert.deepEqual(await readdir(blobDir), []);
  // 254 build.
  const r = await build(options({ sources: sources.slice(0, 254), blobDir, bootstrapPath: join(layers, 'boot') }));
  assert.equal(openBootstrap(r.bootstrap).blobs.length, 254);
  await rm(layers, { recursive: true });
});

test('convert rejects a bad format before reading its source', async () => {
  // No OCI layout there: had convert read the source first, it would fail on that instead.
  const source = layout(join(work, 'no-such-layout'));
  const target = layout(join(work, 'out'));
  for (const [what, more, message] of BAD) {
    const o = options(more);
    await assert.rejects(
      convertImage({ source, target, codecs: nativeCodecs, compressor: o.compressor, digester: o.digester, chunkSize: o.chunkSize, ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}), ...(o.compressionLevel !== undefined ? { compressionLevel: o.compressionLevel } : {}), ...(o.encrypt === true ? { encrypt: true } : {}), workDir: join(work, 'convert'), log: silentLogger }),
      (e: unknown) => e instanceof UsageError && message.test(e.message),
      what,
    );
  }
  assert.deepEqual((await readdir(work)).sort(), ['f']);
});

test('the CLI of convert says so and exits 2 (usage)', async () => {
  const r = await damselfly(['convert', '--source', `oci:${join(work, 'no-such-layout')}`, '--target', `oci:${join(work, 'out')}`, '--chunk-size', '5000']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /chunk size must be a power of two from 4096 to 16777216, not 5000/);
});
