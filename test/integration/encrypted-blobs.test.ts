/**
 * Encrypted blobs (`build --encrypt`, nydus-image `--encrypt`, spec §5.12), end to end: images
 * built with zstd, without compression, and with batches serve the source tree through a kernel
 * FUSE mount and unpack to it; `check` passes; the blob holds none of the data in the clear; the
 * bootstrap records the cipher (superblock flag, blob features, key and tweak in the blob table);
 * short chunks are stored in 18 bytes, the one unit XTS padding cannot express stays plain; changed
 * encrypted bytes give EIO, never other data. And the encrypted chunk cache (nydusd filecache
 * `enable_encryption`): served from, kept across restarts, holding no data in the clear, never read
 * by a daemon without its key.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { damselflyOk } from '../helpers/env.js';
import { startMount } from '../helpers/mount.js';
import { type Entry, compareTrees, listTree, makeTree, prng } from '../helpers/tree.js';

interface ChunkView {
  compressed: boolean;
  encrypted?: boolean;
  compressedOffset: number;
  compressedSize: number;
  uncompressedSize: number;
  batch?: unknown;
}

async function inspectPath(out: string, path: string): Promise<ChunkView[]> {
  const r = await damselflyOk(['inspect', '--bootstrap', join(out, 'boot'), '--path', path, '--json']);
  return (JSON.parse(r.stdout) as { chunks: ChunkView[] }).chunks;
}

async function onlyBlob(out: string): Promise<string> {
  const names = await readdir(join(out, 'blobs'));
  assert.equal(names.length, 1);
  return join(out, 'blobs', names[0] as string);
}

describe('encrypted blobs', () => {
  let work: string;
  let src: string;
  let listing: Map<string, Entry>;
  /** 300 KiB that no compressor shrinks: stored as is, unless encrypted. */
  const random = prng(0xe1c, 300 << 10);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-encrypt-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 300, seed: 0xe1c });
    await mkdir(join(src, 'units'));
    await writeFile(join(src, 'units', 'random'), random);
    for (const n of [1, 15, 16, 17]) await writeFile(join(src, 'units', `len${n}`), prng(n, n));
    // 18 bytes ending as a padded short unit does: stored plain (decrypting it would drop bytes).
    await writeFile(join(src, 'units', 'marked18'), Buffer.concat([prng(18, 16), Buffer.from([0x78, 0x90])]));
    listing = await listTree(src);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const layouts = [
    { name: 'zstd', args: [] as string[] },
    { name: 'none', args: ['--compressor', 'none'] },
    { name: 'zstd, 64K batches', args: ['--batch-size', '64K'] },
  ];
  for (const { name, args } of layouts) {
    test(`${name}: served, unpacked and checked; nothing in the clear`, async () => {
      const out = join(work, name.replace(/\W+/g, '-'));
      await damselflyOk(['build', '--encrypt', ...args, '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), src]);
      const blobPath = await onlyBlob(out);

      const info = JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(out, 'boot'), '--no-tree', '--json'])).stdout) as { flags: string[]; blobs: Array<{ features: string[]; cipher: string | null }> };
      assert.ok(info.flags.includes('ENCRYPTION_ASE_128_XTS'));
      const blob = info.blobs[0] as { features: string[]; cipher: string | null };
      assert.ok(blob.features.includes('ENCRYPTED') && blob.features.includes('CHUNK_INFO_V2'), blob.features.join(','));
      assert.equal(blob.cipher, 'aes-128-xts');

      // The blob table entry as bytes (spec §3.5): cipher_algo 1, a key of two different halves.
      const boot = await readFile(join(out, 'boot'));
      const table = Number(boot.readBigUInt64LE(1152 + 8));
      assert.equal(boot.readUInt32LE(table + 216), 1);
      const key = boot.subarray(table + 168, table + 200);
      assert.notDeepEqual(key.subarray(0, 16), key.subarray(16));
      assert.notDeepEqual(boot.subarray(table + 200, table + 216), Buffer.alloc(16), 'a tweak was drawn');

      const stored = await readFile(blobPath);
      for (let at = 0; at + 64 <= random.length; at += 32 << 10) {
        assert.equal(stored.indexOf(random.subarray(at, at + 64)), -1, `bytes ${at}.. of the incompressible file are in the blob in the clear`);
      }
      if (!args.includes('--batch-size')) {
        // Batched, these small files are stored together, one unit of many bytes.
        const [one] = await inspectPath(out, '/units/len1');
        assert.deepEqual([one?.encrypted, one?.compressedSize], [true, 18], 'a 1-byte chunk is stored in 18 encrypted bytes');
        const [sixteen] = await inspectPath(out, '/units/len16');
        assert.deepEqual([sixteen?.encrypted, sixteen?.compressedSize], [true, 16]);
        const [marked] = await inspectPath(out, '/units/marked18');
        assert.deepEqual([marked?.encrypted, marked?.compressedSize], [undefined, 18], 'the ambiguous unit is stored plain');
      }

      assert.match((await damselflyOk(['check', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs')])).stdout, /OK/);
      const unpacked = join(out, 'unpacked');
      await damselflyOk(['unpack', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), '--output', unpacked]);
      assert.deepEqual(await compareTrees(src, unpacked, { leftListing: listing }), []);

      const mnt = join(out, 'mnt');
      await mkdir(mnt);
      const m = await startMount(['--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), '--cache-dir', join(out, 'cache')], mnt);
      try {
        assert.deepEqual(await compareTrees(src, mnt, { leftListing: listing }), []);
      } finally {
        await m.stop();
      }
    });
  }

  test('an encrypted chunk cache (filecache enable_encryption): served, kept, no data in the clear, never taken for a plain one', async () => {
    const out = join(work, 'cache-encrypted');
    await damselflyOk(['build', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), src]);
    const cacheDir = join(out, 'cache');
    const config = async (name: string, filecache: Record<string, unknown>): Promise<string> => {
      const path = join(out, name);
      await writeFile(path, JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: join(out, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: cacheDir, ...filecache } } }, mode: 'direct' }));
      return path;
    };
    const key = 'fc4a7db5614afc2f400e9478bebed1aefdbc9d7cd03210b84f144683a7a6fd1a';
    const encrypted = await config('encrypted.json', { enable_encryption: true, encryption_key: key });
    const mnt = join(out, 'mnt');
    await mkdir(mnt);
    const serve = async (cfg: string, body: () => Promise<void>): Promise<void> => {
      const m = await startMount(['--bootstrap', join(out, 'boot'), '--config', cfg], mnt);
      try {
        await body();
      } finally {
        await m.stop();
      }
    };
    await serve(encrypted, async () => assert.deepEqual(await compareTrees(src, mnt, { leftListing: listing }), []));
    const names = await readdir(cacheDir);
    const data = names.filter((n) => n.endsWith('.blob.data'));
    assert.equal(data.length, 1);
    assert.match(data[0] as string, /\.xts-[0-9a-f]{8}\.blob\.data$/);
    const file = await readFile(join(cacheDir, data[0] as string));
    for (let at = 0; at + 64 <= random.length; at += 32 << 10) assert.equal(file.indexOf(random.subarray(at, at + 64)), -1, `cached bytes ${at}.. in the clear`);

    // The blobs gone: a daemon with the same key serves everything from its cache.
    await rm(join(out, 'blobs'), { recursive: true });
    await serve(encrypted, async () => assert.deepEqual(await compareTrees(src, mnt, { leftListing: listing }), []));
    // One without the key does not take that cache for its own: nothing to serve the data from.
    await serve(await config('plain.json', {}), async () => {
      await assert.rejects(readFile(join(mnt, 'units', 'random')), /EIO/);
    });
  });

  test('changed encrypted bytes: EIO for that file, never other data; the rest still served', async () => {
    const out = join(work, 'tampered');
    await damselflyOk(['build', '--encrypt', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), src]);
    const [c] = await inspectPath(out, '/units/random');
    assert.ok(c !== undefined && c.encrypted === true);
    const fh = await open(await onlyBlob(out), 'r+');
    try {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, c.compressedOffset + 1000);
      b[0] = (b[0] as number) ^ 0x01;
      await fh.write(b, 0, 1, c.compressedOffset + 1000);
    } finally {
      await fh.close();
    }
    const mnt = join(out, 'mnt');
    await mkdir(mnt);
    const m = await startMount(['--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs')], mnt);
    try {
      await assert.rejects(readFile(join(mnt, 'units', 'random')), /EIO/);
      assert.deepEqual(await readFile(join(mnt, 'units', 'len17')), prng(17, 17));
    } finally {
      const { stderr } = await m.stop();
      assert.match(stderr, /failed verification|IntegrityError|digest/);
    }
  });
});
