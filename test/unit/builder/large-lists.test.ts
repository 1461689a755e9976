/**
 * Lists of hundreds of thousands of items where the code once spread them into a call
 * (`push(...xs)`), which overflows V8's stack past about 125,000 arguments: a directory of
 * 200,000 entries merged into the tree, a file of 130,000 chunks in a tar layer with a prefetch
 * list, an image of 200,000 chunks (and prefetch entries) planned for prefetch, and the v5 digest
 * of a directory of 200,000 entries recomputed by `check`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import type { ChunkRef, ChunkStore } from '../../../src/builder/chunk-store.js';
import { applyLayer, emptyRoot, finishMerge } from '../../../src/builder/merge.js';
import { storeTarPrefetchFiles } from '../../../src/builder/sources/tar.js';
import { TreeNode, resolvePrefetch } from '../../../src/builder/tree.js';
import { prefetchPlan } from '../../../src/daemon/prefetch-plan.js';
import type { ChunkInfo } from '../../../src/format/chunk-info.js';
import type { RafsImage } from '../../../src/format/image.js';
import { Digester } from '../../../src/format/constants.js';
import { createHasher } from '../../../src/format/digest.js';
import type { InodeAttr } from '../../../src/format/image.js';
import { TAR_END, type TarEntry, encodeTarHeaders } from '../../../src/format/tar.js';
import { v5InodeDigest } from '../../../src/tools/check.js';

const MANY = 200_000;

test('a directory of 200,000 entries merges into the tree', () => {
  const layer = emptyRoot();
  const dir = TreeNode.dir();
  for (let i = 0; i < MANY; i++) (dir.children as Map<string, TreeNode>).set(`f${i}`, new TreeNode('file', 0o644));
  (layer.children as Map<string, TreeNode>).set('d', dir);
  const root = emptyRoot();
  applyLayer(root, layer);
  const merged = finishMerge(root);
  assert.equal(merged.children?.get('d')?.children?.size, MANY);
});

test('a selected file of 130,000 chunks in a tar layer', async () => {
  const CHUNK = 4096;
  const chunks = 130_000;
  const header: TarEntry = { path: Buffer.from('big'), type: 'file', mode: 0o644, uid: 0, gid: 0, size: chunks * CHUNK, mtimeSec: 0, mtimeNsec: 0, linkpath: Buffer.alloc(0), devmajor: 0, devminor: 0, xattrs: [] };
  const piece = Buffer.alloc(256 * CHUNK);
  async function* layer(): AsyncGenerator<Uint8Array> {
    yield encodeTarHeaders(header);
    for (let left = chunks * CHUNK; left > 0; left -= piece.length) yield piece.subarray(0, Math.min(piece.length, left));
    yield TAR_END;
  }
  let submitted = 0;
  const ref = {} as ChunkRef;
  const store = {
    opts: { chunkSize: CHUNK },
    ready: () => undefined,
    checkFileSize: () => undefined,
    submit: () => (submitted++, Promise.resolve(ref)),
  } as unknown as ChunkStore;
  const r = await storeTarPrefetchFiles(layer(), ['/big'], { store, log: silentLogger });
  assert.deepEqual(r, { files: 1, bytes: chunks * CHUNK });
  assert.equal(submitted, chunks);
});

test('an image of 200,000 chunks and prefetch entries is planned for prefetch', () => {
  const chunk = (i: number): ChunkInfo => ({ blobIndex: 0, index: i, compressedOffset: i * 10, compressedSize: 10 }) as ChunkInfo;
  const image = {
    prefetch: Array.from({ length: MANY }, (_, i) => i + 2),
    getAttr: () => ({ kind: 'file' }),
    fileChunks: (ino: number) => [chunk(ino - 2)],
    allChunks: () => Array.from({ length: MANY }, (_, i) => chunk(i)),
  } as unknown as RafsImage;
  const plan = prefetchPlan(image, { all: true });
  assert.equal(plan.length, 2 * MANY, 'the prefetch table, then every chunk');
  assert.equal(plan[MANY]?.index, 0);
});

test("check: the v5 digest of a directory of 200,000 entries", () => {
  const digestOf = (i: number): Buffer => Buffer.alloc(32, i & 0xff);
  const image = {
    digester: Digester.Blake3,
    readdir: function* () {
      for (let i = 0; i < MANY; i++) yield { ino: i + 2 };
    },
    inodeRecord: (ino: number) => ({ digest: digestOf(ino) }),
    fileChunks: () => [],
    readlink: () => Buffer.alloc(0),
  } as unknown as Parameters<typeof v5InodeDigest>[0];
  const h = createHasher(Digester.Blake3);
  for (let i = 0; i < MANY; i++) h.update(digestOf(i + 2));
  assert.deepEqual(v5InodeDigest(image, { ino: 1, kind: 'dir' } as InodeAttr), h.digest());
});

test('a prefetch list of 200,000 paths resolves in linear time, each file once', () => {
  const root = TreeNode.dir();
  const paths: string[] = [];
  for (let i = 0; i < MANY; i++) {
    (root.children as Map<string, TreeNode>).set(`f${i}`, new TreeNode('file', 0o644));
    paths.push(`/f${i}`);
  }
  paths.push('/f7', '/./f7', '/missing');
  const missing: string[] = [];
  const started = Date.now();
  const out = resolvePrefetch(root, paths, (p) => missing.push(p));
  // Each path was compared with every earlier one: 40,000 took 3.3 s, this would take minutes.
  assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
  assert.equal(out.length, MANY);
  assert.equal(out[7]?.path, '/f7');
  assert.deepEqual(missing, ['/missing']);
});
