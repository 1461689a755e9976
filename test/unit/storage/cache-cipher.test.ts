/**
 * The encrypted chunk cache (filecache `enable_encryption`): chunks round-trip through the cache
 * file, whole or in any slice; the file holds none of their bytes in the clear, each 4 KiB page
 * encrypted under its own tweak; the files are named after the key, so a daemon with another key
 * or none finds nothing of this cache; convergent encryption keys by chunk digest.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ChunkInfo } from '../../../src/format/chunk-info.js';
import { ChunkState, FileBlobCache } from '../../../src/storage/cache/blob-cache.js';
import { CacheCipher } from '../../../src/storage/cache/cache-cipher.js';
import { withTempDir } from '../../helpers/env.js';

const BLOB = 'ab'.repeat(32);
const KEY = 'fc4a7db5614afc2f400e9478bebed1aefdbc9d7cd03210b84f144683a7a6fd1a';
const OTHER_KEY = '00112233445566778899aabbccddeeff0123456789abcdef0123456789abcdef';

function chunk(index: number, uncompressedOffset: number, data: Uint8Array): ChunkInfo {
  return { digest: randomBytes(32), blobIndex: 0, flags: 0, compressedOffset: 0, compressedSize: data.length, uncompressedOffset, uncompressedSize: data.length, fileOffset: 0, index, crc32: 0 };
}

function cipher(key: string, convergent = false): CacheCipher {
  return CacheCipher.fromConfig({ enableEncryption: true, enableConvergentEncryption: convergent, encryptionKey: key }) as CacheCipher;
}

test('chunks round-trip, whole and sliced across pages; nothing in the clear; every page its own tweak', async () => {
  await withTempDir('cache-cipher', async (dir) => {
    const c = cipher(KEY);
    // Equal pages in one chunk: with a tweak per page they still encrypt differently.
    const page = randomBytes(4096);
    const datas = [randomBytes(1), Buffer.concat([page, page, randomBytes(1000)]), randomBytes(1 << 20)];
    const chunks = [chunk(0, 0, datas[0] as Buffer), chunk(1, 4096, datas[1] as Buffer), chunk(2, 16384, datas[2] as Buffer)];
    const { cache } = await FileBlobCache.open(dir, { id: BLOB }, c);
    for (const [i, ch] of chunks.entries()) await cache.store(ch, datas[i] as Buffer);
    for (const [i, ch] of chunks.entries()) {
      const data = datas[i] as Buffer;
      assert.equal(cache.state(ch), ChunkState.PRESENT);
      assert.deepEqual(Buffer.from(await cache.readChunk(ch)), data);
      for (const [from, length] of [[0, 1], [4095, 2], [100, data.length - 100], [data.length - 1, 1]] as const) {
        if (length <= 0 || from < 0 || from + length > data.length) continue;
        const a = Buffer.alloc(Math.ceil(length / 2));
        const b = Buffer.alloc(length - a.length);
        await cache.readInto(ch, from, length, [a, b]);
        assert.deepEqual(Buffer.concat([a, b]), data.subarray(from, from + length), `chunk ${i} bytes ${from}+${length}`);
      }
    }
    await cache.close();
    const names = (await readdir(dir)).sort();
    assert.ok(names.every((n) => n.startsWith(`${BLOB}.xts-`)), names.join(' '));
    const file = await readFile(join(dir, names.find((n) => n.endsWith('.blob.data')) as string));
    for (const d of datas.slice(1)) for (let at = 0; at + 64 <= d.length; at += 4096) assert.equal(file.indexOf(d.subarray(at, at + 64)), -1, `bytes ${at}.. in the clear`);
    assert.notDeepEqual(file.subarray(4096, 8192), file.subarray(8192, 12288), 'equal pages encrypt differently');

    // Opened again (a restart): the chunks are there, and read back right.
    const again = await FileBlobCache.open(dir, { id: BLOB }, c);
    assert.deepEqual(Buffer.from(await again.cache.readChunk(chunks[2] as ChunkInfo)), datas[2]);
    await again.cache.close();
  });
});

test('another key, or none, finds none of this cache', async () => {
  await withTempDir('cache-cipher', async (dir) => {
    const data = randomBytes(10_000);
    const ch = chunk(0, 0, data);
    const { cache } = await FileBlobCache.open(dir, { id: BLOB }, cipher(KEY));
    await cache.store(ch, data);
    await cache.close();
    assert.equal(await FileBlobCache.exists(dir, { id: BLOB }, cipher(KEY)), true);
    for (const other of [cipher(OTHER_KEY), cipher(KEY, true), undefined]) {
      assert.equal(await FileBlobCache.exists(dir, { id: BLOB }, other), false);
      const o = await FileBlobCache.open(dir, { id: BLOB }, other);
      assert.equal(o.cache.state(ch), ChunkState.ABSENT, 'a chunk of the other cache is not present here');
      await o.cache.close();
    }
  });
});

test('convergent: the key comes from the chunk digest; unaligned chunks are refused', async () => {
  await withTempDir('cache-cipher', async (dir) => {
    const data = randomBytes(8192);
    const a = chunk(0, 0, data);
    const b = { ...chunk(1, 8192, data), digest: a.digest };
    const c = cipher(KEY, true);
    const { cache } = await FileBlobCache.open(dir, { id: BLOB }, c);
    await cache.store(a, data);
    await cache.store(b, data);
    assert.deepEqual(Buffer.from(await cache.readChunk(b)), data);
    await cache.close();
    const file = await readFile(join(dir, `${c.cacheName(BLOB)}.blob.data`));
    assert.notDeepEqual(file.subarray(0, 8192), data);
    // Same key for equal chunks, but each page its own tweak: the two copies still differ.
    assert.notDeepEqual(file.subarray(0, 8192), file.subarray(8192, 16384));
    assert.throws(() => c.seal(chunk(2, 100, data), data), /aligned/);
  });
});

test('a key of two equal halves, or of the wrong size, is refused', () => {
  assert.throws(() => cipher(KEY.slice(0, 32).repeat(2)), RangeError);
  assert.throws(() => cipher('abcd'), RangeError);
  assert.equal(CacheCipher.fromConfig({ enableEncryption: false, enableConvergentEncryption: false, encryptionKey: KEY }), undefined);
});
