/**
 * The localfs backend: exact ranges from blob files; large reads into aligned buffers bypass the
 * page cache (O_DIRECT) and still return exactly the bytes asked for, at any offset, up to the end
 * of a file whose size is not a multiple of the block size; where O_DIRECT cannot be used (an
 * unaligned buffer) the read goes through the page cache instead.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BackendError } from '../../../src/base/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import { chunkBufferPool } from '../../../src/storage/device.js';

const ID = 'a'.repeat(64);
let dir: string;
const content = randomBytes(3 * 1024 * 1024 + 1234); // not a multiple of 4096

before(async () => {
  // Under /var/tmp: a disk file system (tmpfs may refuse O_DIRECT).
  dir = await mkdtemp(join('/var/tmp', 'damselfly-localfs-'));
  await writeFile(join(dir, ID), content);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Flags of this process's open files on `path`. */
async function openFlags(path: string): Promise<number[]> {
  const out: number[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== path) continue;
    const info = await readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => '');
    const m = /^flags:\s+([0-7]+)/m.exec(info);
    if (m) out.push(parseInt(m[1] as string, 8));
  }
  return out;
}

test('large reads at any offset, through O_DIRECT, return exactly the range', async () => {
  const pool = chunkBufferPool();
  const b = new LocalFsBackend({ dir });
  const allocate = (n: number): Buffer => pool.acquire(n);
  const ranges: Array<[number, number]> = [
    [0, 1 << 20],
    [1, 300_000],
    [4095, 4097 * 64],
    [123_457, 1_000_003],
    [content.length - 700_000, 700_000], // to the end of the file, past its last full block
    [content.length - 300_001, 300_000],
  ];
  for (const [off, len] of ranges) {
    const got = await b.read(ID, off, len, { allocate });
    assert.equal(got.length, len);
    assert.ok(got.equals(content.subarray(off, off + len)), `${off}+${len}`);
    pool.release(got);
  }
  const flags = await openFlags(join(dir, ID));
  assert.ok(flags.some((f) => (f & constants.O_DIRECT) !== 0), 'a descriptor with O_DIRECT is open on the blob');
  await assert.rejects(b.read(ID, content.length - 10, 300_000, { allocate }), BackendError);
  await b.close();
  assert.deepEqual(await openFlags(join(dir, ID)), [], 'both descriptors closed');
});

test('an unaligned buffer: the read goes through the page cache, and is exact', async () => {
  const b = new LocalFsBackend({ dir });
  const allocate = (n: number): Buffer => Buffer.allocUnsafeSlow(n + 1).subarray(1); // never 4096-aligned
  for (const [off, len] of [
    [8192, 512 << 10],
    [5, 1 << 20],
  ] as const) {
    const got = await b.read(ID, off, len, { allocate });
    assert.ok(got.equals(content.subarray(off, off + len)), `${off}+${len}`);
  }
  await b.close();
});

test('small reads, and reads without an allocator, use the page cache', async () => {
  const b = new LocalFsBackend({ dir });
  assert.ok((await b.read(ID, 77, 1000)).equals(content.subarray(77, 1077)));
  assert.ok((await b.read(ID, 77, 2 << 20)).equals(content.subarray(77, 77 + (2 << 20))));
  assert.deepEqual(
    (await openFlags(join(dir, ID))).filter((f) => (f & constants.O_DIRECT) !== 0),
    [],
    'no O_DIRECT descriptor was opened',
  );
  await b.close();
});
