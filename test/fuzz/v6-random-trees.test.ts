/**
 * Seeded random trees through the RAFS v6 writer, read back by the Linux EROFS driver (the
 * strictest reader of every inode, directory block and xattr there is) and by Damselfly's own FUSE
 * mount. Each tree draws its shape from its seed: directories of up to a few hundred entries with
 * names of 1 to 255 bytes (any byte but '/' and NUL), files of sizes around block and chunk
 * boundaries (empty, sparse, compressible, random, duplicated), hardlinks, symlinks of targets up
 * to 4095 bytes, devices, fifos and sockets, modes with every bit, owners past 16 bits, mtimes
 * before 1970 and past 2038 with nanoseconds, and up to a handful of user., trusted. and
 * security. xattrs per entry with values of up to a few KiB. Each is built with options drawn
 * from the seed too (chunk size, compressor, digester, batches), from the directory itself or
 * from GNU tar's archive of it as an OCI layer (plain or gzipped).
 *
 * Invariant: both mounts show exactly the source tree (`compareTrees`: type, mode, owner, size,
 * nlink, device numbers, mtime, symlink targets, xattrs, content, hardlink groups), and so do
 * `unpack` to a directory and `unpack --tar` extracted by GNU tar (tar has no sockets).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, lchown, link, lstat, mkdir, open, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { native } from '../../src/native/index.js';
import { damselflyOk, sh, withTempDir } from '../helpers/env.js';
import { startMount, withKernelErofs } from '../helpers/mount.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { compareTrees, listTree, prng } from '../helpers/tree.js';

const TREES = 6;

const NAME_BYTES = Buffer.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+=@ ~');

function randomName(rng: Rng, taken: Set<string>): Buffer {
  for (;;) {
    const len = rng.next() < 0.05 ? 200 + rng.int(56) : 1 + rng.int(rng.next() < 0.7 ? 12 : 60);
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = rng.next() < 0.08 ? 0x80 + rng.int(0x80) : (NAME_BYTES[rng.int(NAME_BYTES.length)] as number);
    const key = b.toString('latin1');
    if (key === '.' || key === '..' || taken.has(key)) continue;
    taken.add(key);
    return b;
  }
}

const IDS = [0, 1, 1000, 65534, 65535, 65536, 2 ** 31 - 1, 4_000_000_000];
const SECONDS = [0, 1, 1_000_000_000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 5, 4_102_444_800, -1, -86_400 * 365 * 10];

/** A tree's bounds: entries, and bytes of file data (the source, the blobs and the views are on disk). */
const MAX_ENTRIES = 1500;
const MAX_BYTES = 48 << 20;

interface Built {
  chunkSize: number;
  entriesLeft: number;
  bytesLeft: number;
  /** Every regular file made so far, for hardlinks. */
  files: Buffer[];
  /** The last few contents written, for files with the same content. */
  contents: Buffer[];
  /** Every path, children before their directory (times are set in this order). */
  paths: Buffer[];
}

function join2(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

async function makeFile(path: Buffer, rng: Rng, b: Built): Promise<void> {
  const c = b.chunkSize;
  let size = rng.pick([0, 1, 1 + rng.int(100), 4095, 4096, 4097, 1 + rng.int(20_000), c - 1, c, c + 1, 2 * c + 7, 1 + rng.int(3 * c)]);
  if (size > b.bytesLeft) size = rng.int(5000);
  b.bytesLeft -= size;
  const kind = rng.int(10);
  if (kind === 0 && b.contents.length > 0) {
    const same = rng.pick(b.contents); // chunks shared with another file
    await writeFile(path, same);
    b.contents.push(same);
  } else if (kind === 1 && size > 8192) {
    // Sparse: a few pieces of data in holes.
    const fh = await open(path, 'w');
    await fh.truncate(size);
    for (let k = rng.int(3); k >= 0; k--) {
      const at = rng.int(size);
      const piece = prng(rng.int(1 << 30), Math.min(size - at, 1 + rng.int(9000)));
      await fh.write(piece, 0, piece.length, at);
    }
    await fh.close();
  } else {
    const data = kind < 5 ? Buffer.from('compressible line of text\n'.repeat(Math.ceil(size / 26) + 1)).subarray(0, size) : prng(rng.int(1 << 30), size);
    await writeFile(path, data);
    b.contents.push(data);
  }
  if (b.contents.length > 8) b.contents.shift();
  b.files.push(path);
}

/** user. xattrs only where Linux allows them: regular files and directories. */
function setXattrs(path: Buffer, rng: Rng, userAllowed: boolean): void {
  const taken = new Set<string>();
  let room = 3000; // what one ext4 block holds, names included (the source is on ext4 here)
  for (let k = rng.next() < 0.5 ? 0 : rng.int(6); k > 0 && room > 100; k--) {
    const prefix = userAllowed ? rng.pick(['user.', 'user.', 'trusted.', 'security.']) : rng.pick(['trusted.', 'security.']);
    const len = rng.next() < 0.05 ? 100 + rng.int(140) : 1 + rng.int(30); // with the prefix, at most 255 (XATTR_NAME_MAX)
    const name = prefix + Array.from({ length: len }, () => String.fromCharCode(NAME_BYTES[rng.int(NAME_BYTES.length)] as number)).join('');
    if (taken.has(name)) continue;
    taken.add(name);
    const size = Math.min(room - name.length - 40, rng.next() < 0.1 ? 1500 + rng.int(2000) : rng.int(rng.next() < 0.5 ? 16 : 400));
    if (size < 0) break;
    room -= name.length + size + 40;
    native.lsetxattr(path, name, size === 0 ? Buffer.alloc(0) : randomBytes(size));
  }
}

async function makeDir(dir: Buffer, depth: number, rng: Rng, b: Built): Promise<void> {
  const taken = new Set<string>();
  const n = rng.next() < 0.08 ? 150 + rng.int(450) : depth === 0 ? 10 + rng.int(30) : rng.int(16);
  for (let i = 0; i < n && b.entriesLeft > 0; i++, b.entriesLeft--) {
    const path = join2(dir, randomName(rng, taken));
    const r = rng.next();
    if (r < 0.25 && depth < 4) {
      await mkdir(path);
      await makeDir(path, depth + 1, rng, b);
    } else if (r < 0.7 || b.files.length === 0) {
      await makeFile(path, rng, b);
    } else if (r < 0.8) {
      await link(rng.pick(b.files), path);
    } else if (r < 0.92) {
      await symlink(rng.next() < 0.1 ? 't'.repeat(1 + rng.int(4095)) : randomName(rng, new Set()), path);
    } else {
      const [type, perm] = rng.pick([[0o020000, 0o666], [0o060000, 0o640], [0o010000, 0o644], [0o140000, 0o755]] as const);
      const dev = type === 0o020000 || type === 0o060000;
      native.mknod(path, type | perm, dev ? rng.int(4096) : 0, dev ? rng.int(1 << 20) : 0);
    }
    const st = await lstat(path);
    if (!st.isSymbolicLink()) await chmod(path, rng.int(0o10000));
    await lchown(path, rng.pick(IDS), rng.pick(IDS));
    // A second name of an inode adds no xattrs: the first gave it all one ext4 block holds.
    if (st.isDirectory() || st.nlink === 1) setXattrs(path, rng, st.isFile() || st.isDirectory());
    if (!st.isDirectory()) b.paths.push(path);
  }
  b.paths.push(dir);
}

/** A random tree at `root`; returns the build options drawn for it. */
async function makeRandomTree(root: string, rng: Rng): Promise<string[]> {
  const chunkSize = rng.pick([4096, 65536, 1 << 20]);
  const args = ['--chunk-size', String(chunkSize)];
  const compressor = rng.pick(['zstd', 'lz4_block', 'none']);
  args.push('--compressor', compressor, '--digester', rng.pick(['blake3', 'sha256']));
  if (compressor !== 'none' && chunkSize >= 65536 && rng.next() < 0.3) args.push('--batch-size', '64K'); // at most the chunk size
  await mkdir(root);
  const b: Built = { chunkSize, entriesLeft: MAX_ENTRIES, bytesLeft: MAX_BYTES, files: [], contents: [], paths: [] };
  await makeDir(Buffer.from(root), 0, rng, b);
  // Times last, children before their directory (making entries moves a directory's mtime).
  for (const p of b.paths) native.lutimens(p, 0, 0, rng.pick(SECONDS), rng.int(1_000_000_000));
  return args;
}

async function kernelMount(out: string, boot: string, body: (mnt: string) => Promise<void>): Promise<void> {
  const views = (await damselflyOk(['export', '--bootstrap', boot, '--blob-dir', join(out, 'blobs'), '--blob-views', join(out, 'views')])).stdout.trim().split('\n').filter(Boolean);
  await withKernelErofs(boot, views, join(out, 'erofs'), body);
}

test(`random trees (${TREES}) through the v6 writer: the kernel's EROFS, damselfly mount and unpack (to a directory, to a tar) show the source exactly`, async (t) => {
  await withTempDir('damselfly-fuzz-trees-', async (dir) => {
    const summary: string[] = [];
    for (let i = 0; i < TREES; i++) {
      const rng = caseRng('v6-random-trees', i);
      const out = join(dir, `tree-${i}`);
      const src = join(out, 'src');
      await mkdir(out);
      const args = await makeRandomTree(src, rng);
      const listing = await listTree(src);
      const boot = join(out, 'boot');
      // The source as it is, or as an OCI layer: GNU tar's POSIX archive of it (PAX times with
      // nanoseconds, negative ones included; SCHILY xattrs), plain or gzipped. Tar leaves sockets out.
      const source = rng.pick(['dir', 'tar', 'tar.gz'] as const);
      let input = src;
      if (source !== 'dir') {
        input = join(out, `layer.${source}`);
        sh(`tar --format=posix --xattrs --xattrs-include='*' --numeric-owner ${source === 'tar.gz' ? '-z' : ''} -C '${src}' -cf '${input}' . 2>/dev/null || [ $? = 1 ]`);
      }
      const ignore = (path: string): boolean => source !== 'dir' && listing.get(path)?.st.isSocket() === true;
      await damselflyOk(['build', ...args, '--bootstrap', boot, '--blob-dir', join(out, 'blobs'), input]);
      const what = `tree ${i} (${source}, ${args.join(' ')}, ${listing.size} entries)`;
      await kernelMount(out, boot, async (mnt) => {
        assert.deepEqual(await compareTrees(src, mnt, { leftListing: listing, ignore }), [], `${what}: the kernel's EROFS`);
      });
      const fuse = join(out, 'fuse');
      await mkdir(fuse);
      const m = await startMount(['--bootstrap', boot, '--blob-dir', join(out, 'blobs')], fuse);
      try {
        assert.deepEqual(await compareTrees(src, fuse, { leftListing: listing, ignore }), [], `${what}: damselfly mount`);
      } finally {
        assert.equal((await m.stop()).code, 0);
      }
      // Back out of the image: `unpack` to a directory, and to a tar file GNU tar extracts.
      const image = ['--bootstrap', boot, '--blob-dir', join(out, 'blobs')];
      await damselflyOk(['unpack', ...image, '--output', join(out, 'unpacked')]);
      assert.deepEqual(await compareTrees(src, join(out, 'unpacked'), { leftListing: listing, ignore }), [], `${what}: unpack`);
      await damselflyOk(['unpack', ...image, '--tar', join(out, 'image.tar')]);
      await mkdir(join(out, 'untarred'));
      sh(`tar --xattrs --xattrs-include='*' --numeric-owner -C '${out}/untarred' -xpf '${out}/image.tar' 2>/dev/null`);
      const noSockets = (path: string): boolean => listing.get(path)?.st.isSocket() === true;
      assert.deepEqual(await compareTrees(src, join(out, 'untarred'), { leftListing: listing, ignore: noSockets }), [], `${what}: unpack --tar, extracted by GNU tar`);
      summary.push(`${listing.size} entries (${source}, ${args.join(' ')})`);
      await rm(out, { recursive: true, force: true });
    }
    t.diagnostic(summary.join('; '));
    assert.equal(summary.length, TREES);
  });
});
