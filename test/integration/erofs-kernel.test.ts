/**
 * Independent checks of the RAFS v6 images Damselfly writes: erofs-utils' fsck.erofs extracts the
 * source tree from the bootstrap and the uncompressed blob views (spec §9–10), and the Linux EROFS
 * driver mounts the bootstrap with those views as extra devices over loop devices, showing every
 * path with the source's content, mode, owner, mtime, device numbers, xattrs and hardlinks.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { damselflyOk, sh } from '../helpers/env.js';
import { withKernelErofs } from '../helpers/mount.js';
import { type Entry, compareTrees, listTree, makeTree } from '../helpers/tree.js';

describe('RAFS v6 written by Damselfly, read by EROFS implementations', () => {
  let work: string;
  let src: string;
  let srcListing: Map<string, Entry>;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-erofs-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 5000, hugeSparse: true });
    srcListing = await listTree(src);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  for (const layout of [
    { name: 'zstd, 1 MiB chunks', args: [] as string[] },
    { name: 'lz4_block, sha256, 4 KiB chunks', args: ['--compressor', 'lz4_block', '--digester', 'sha256', '--chunk-size', '4K'] },
    // Small files' data stored in batches: the views come from decoded batches (spec §5.6).
    { name: 'zstd, 1 MiB chunks, 64 KiB batches', args: ['--batch-size', '64K'] },
  ]) {
    test(`${layout.name}: fsck.erofs and the kernel agree with the source`, async () => {
      const out = join(work, layout.name.replace(/[^a-z0-9]+/gi, '-'));
      const boot = join(out, 'boot');
      await damselflyOk(['build', ...layout.args, '--bootstrap', boot, '--blob-dir', join(out, 'blobs'), src]);
      const views = (await damselflyOk(['export', '--bootstrap', boot, '--blob-dir', join(out, 'blobs'), '--blob-views', join(out, 'views')])).stdout.trim().split('\n');

      // erofs-utils: a full check of the metadata and extraction of every file.
      const devices = views.map((v) => `--device=${v}`).join(' ');
      sh(`fsck.erofs ${devices} ${boot}`);
      sh(`fsck.erofs ${devices} --extract=${out}/fsck ${boot}`);
      // fsck.erofs 1.5 restores content and types; it does not promise owners, times or xattrs.
      const fsckDiffs = await compareTrees(src, join(out, 'fsck'), { leftListing: srcListing, mtimes: false });
      const contentDiffs = fsckDiffs.filter((d) => /content|only in|target|size/.test(d));
      assert.deepEqual(contentDiffs, []);

      // The kernel: bootstrap and blob views on loop devices.
      await withKernelErofs(boot, views, join(out, 'mnt'), async (mnt) => {
        assert.deepEqual(await compareTrees(src, mnt, { leftListing: srcListing }), []);
      });
    });
  }
});
