/**
 * Round trip of the builder and unpacker: a generated tree with every file kind (including a
 * directory of 20,000 entries and a sparse file larger than 4 GiB), built with each compressor ×
 * digester × chunk size (4 KiB, 1 MiB), and with small files' data in batches (`--batch-size`),
 * unpacks to the identical tree; building twice gives byte-identical bootstrap and blobs; `check`
 * passes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { damselflyOk } from '../helpers/env.js';
import { type Entry, compareTrees, listTree, makeTree } from '../helpers/tree.js';

const COMPRESSORS = ['none', 'lz4_block', 'zstd'] as const;
const DIGESTERS = ['blake3', 'sha256'] as const;
const CHUNK_SIZES = ['4K', '1M'] as const;

async function readDirBytes(dir: string): Promise<Map<string, Buffer>> {
  const m = new Map<string, Buffer>();
  for (const n of (await readdir(dir)).sort()) m.set(n, await readFile(join(dir, n)));
  return m;
}

describe('build → unpack round trip', () => {
  let work: string;
  let src: string;
  let srcListing: Map<string, Entry>;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-roundtrip-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 20_000, hugeSparse: true });
    srcListing = await listTree(src);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const layouts: Array<{ compressor: string; digester: string; chunk: string; batch?: string }> = [];
  for (const compressor of COMPRESSORS) for (const digester of DIGESTERS) for (const chunk of CHUNK_SIZES) layouts.push({ compressor, digester, chunk });
  // Batches: compressed, stored raw (none), and as large as the chunk (4 KiB: files under 2 KiB).
  layouts.push({ compressor: 'zstd', digester: 'blake3', chunk: '1M', batch: '64K' }, { compressor: 'none', digester: 'sha256', chunk: '1M', batch: '256K' }, { compressor: 'lz4_block', digester: 'blake3', chunk: '4K', batch: '4K' });

  for (const { compressor, digester, chunk, batch } of layouts) {
    test(`${compressor} × ${digester} × ${chunk} chunks${batch ? ` × ${batch} batches` : ''}`, async () => {
      const out = join(work, `${compressor}-${digester}-${chunk}-${batch ?? 0}`);
      const build = async (name: string): Promise<void> => {
        const batchArgs = batch ? ['--batch-size', batch] : [];
        await damselflyOk(['build', '--compressor', compressor, '--digester', digester, '--chunk-size', chunk, ...batchArgs, '--bootstrap', join(out, name, 'boot'), '--blob-dir', join(out, name, 'blobs'), src]);
      };
      await build('a');
      await build('b');
      // Reproducible: byte-identical bootstrap and blobs.
      assert.deepEqual(await readFile(join(out, 'b', 'boot')), await readFile(join(out, 'a', 'boot')));
      const blobsA = await readDirBytes(join(out, 'a', 'blobs'));
      assert.deepEqual(await readDirBytes(join(out, 'b', 'blobs')), blobsA);
      assert.equal(blobsA.size, 1);

      const image = ['--bootstrap', join(out, 'a', 'boot'), '--blob-dir', join(out, 'a', 'blobs')];
      if (batch !== undefined) {
        const small = JSON.parse((await damselflyOk(['inspect', ...image, '--path', '/small.txt', '--json'])).stdout) as { chunks: Array<{ batch?: { size: number } }> };
        assert.ok(small.chunks[0]?.batch !== undefined, 'a small file is stored in a batch');
      }
      const check = await damselflyOk(['check', ...image]);
      assert.match(check.stdout, /\nOK\n$/);
      await damselflyOk(['unpack', ...image, '--output', join(out, 'unpacked')]);
      assert.deepEqual(await compareTrees(src, join(out, 'unpacked'), { leftListing: srcListing }), []);
      await rm(out, { recursive: true, force: true });
    });
  }
});
