/**
 * The first pass of a tar layer built with a prefetch list (`storeTarPrefetchFiles`): what it
 * submits to the chunk store, in which order, cut where, and how deep a path may be. A fake store
 * records the submissions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import type { ChunkRef, ChunkStore } from '../../../src/builder/chunk-store.js';
import { storeTarPrefetchFiles } from '../../../src/builder/sources/tar.js';
import { TAR_END, type TarEntry, encodeTarHeaders, tarPadding } from '../../../src/format/tar.js';
import { prng } from '../../helpers/tree.js';

const CHUNK = 4096;

function entry(path: string, type: TarEntry['type'], size = 0): TarEntry {
  return { path: Buffer.from(path), type, mode: 0o644, uid: 0, gid: 0, size, mtimeSec: 0, mtimeNsec: 0, linkpath: Buffer.from(type === 'hardlink' ? 'a' : ''), devmajor: 0, devminor: 0, xattrs: [] };
}

function tar(files: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [encodeTarHeaders(entry('dir/', 'dir'))];
  for (const [path, data] of files) parts.push(encodeTarHeaders(entry(path, 'file', data.length)), data, Buffer.alloc(tarPadding(data.length)));
  parts.push(encodeTarHeaders(entry('link', 'hardlink')), TAR_END);
  return Buffer.concat(parts);
}

/** Feeds `bytes` in uneven pieces, as a decompressor would. */
async function* pieces(bytes: Buffer): AsyncGenerator<Uint8Array> {
  for (let i = 0, n = 1000; i < bytes.length; i += n, n = n * 3 + 7) yield bytes.subarray(i, i + n);
}

function fakeStore(): { store: ChunkStore; submitted: Buffer[] } {
  const submitted: Buffer[] = [];
  const store = {
    opts: { chunkSize: CHUNK },
    ready: () => undefined,
    checkFileSize: () => undefined,
    submit: (data: Buffer) => {
      submitted.push(Buffer.from(data));
      return Promise.resolve({} as ChunkRef);
    },
  } as unknown as ChunkStore;
  return { store, submitted };
}

/** `data` cut in chunks, as the store must see it. */
function chunks(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += CHUNK) out.push(data.subarray(i, i + CHUNK));
  return out;
}

const a = prng(1, 3 * CHUNK + 100);
const b = prng(2, CHUNK);
const c = prng(3, 2 * CHUNK + 1);
const layer = tar([
  ['a', a],
  ['b', b],
  ['dir/c', c],
]);

test('the selected files, in list order, each cut in chunks; a directory selects what is below it; others are left out', async () => {
  const { store, submitted } = fakeStore();
  const r = await storeTarPrefetchFiles(pieces(layer), ['/dir', '/nowhere', 'a', '/dir/c'], { store, log: silentLogger });
  assert.deepEqual(r, { files: 2, bytes: a.length + c.length });
  assert.deepEqual(submitted, [...chunks(c), ...chunks(a)]);
});

test('past the memory bound, a selected file is stored as it comes, ahead of the held ones', async () => {
  const { store, submitted } = fakeStore();
  // a (listed second) is held; dir/c (listed first) does not fit beside it and goes at once.
  await storeTarPrefetchFiles(pieces(layer), ['/dir/c', '/a'], { store, log: silentLogger, bufferBytes: a.length });
  assert.deepEqual(submitted, [...chunks(c), ...chunks(a)]);
  const { store: s2, submitted: sub2 } = fakeStore();
  await storeTarPrefetchFiles(pieces(layer), ['/b', '/a'], { store: s2, log: silentLogger, bufferBytes: b.length });
  // a comes first in the tar and does not fit: stored at once; b is held, then stored.
  assert.deepEqual(sub2, [...chunks(a), ...chunks(b)]);
});

test('an entry path of 1024 components is matched against the patterns; a deeper one is refused', async () => {
  const { store, submitted } = fakeStore();
  const deep = `${'d/'.repeat(1023)}f`;
  const r = await storeTarPrefetchFiles(pieces(tar([[deep, b]])), ['/d/d', '/a'], { store, log: silentLogger });
  assert.deepEqual(r, { files: 1, bytes: b.length }, 'below /d/d');
  assert.deepEqual(submitted, chunks(b));
  await assert.rejects(storeTarPrefetchFiles(pieces(tar([[`${'d/'.repeat(100_000)}f`, b]])), ['/d'], { store, log: silentLogger }), /100001 components deep/);
});
