/**
 * The real Nydus images of ../shared/vectors/nydus: each unpacks to exactly its expected.tsv,
 * `check` passes on each (every structure and chunk digest; for v5 the inode digest tree), and the
 * v5 image matches the Nydus project's own md5 listing (tree.result).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, readFile, readlink, writeFile, mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { RafsV5Image } from '../../src/format/v5/reader.js';
import { walkImage } from '../../src/tools/walk.js';
import { CLI, VECTORS, damselfly, damselflyOk, sh, vectorsMissing, withTempDir } from '../helpers/env.js';

interface Vector {
  name: string;
  /** CLI arguments naming the image. */
  args: (dir: string) => string[];
}

const BLOB_INLINED = '2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca';
const VECTORS_LIST: Vector[] = [
  { name: 'v5-sha256-uncompressed', args: (d) => ['--bootstrap', join(d, 'image.boot'), '--blob-dir', join(d, 'blobs')] },
  { name: 'v6-blake3-zstd', args: (d) => ['--bootstrap', join(d, 'image.boot'), '--blob-dir', join(d, 'blobs')] },
  { name: 'v6-inlined-bootstrap', args: (d) => ['--blob', join(d, BLOB_INLINED)] },
];

const skip = vectorsMissing();

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** The unpacked tree in expected.tsv's format (sizes of directories as the image records them). */
async function listing(image: string[], out: string): Promise<string[]> {
  const inspect = JSON.parse((await damselflyOk(['inspect', '--json', ...image.filter((a, i, all) => a !== '--blob-dir' && all[i - 1] !== '--blob-dir')])).stdout) as {
    tree: Array<{ path: string; kind: string; mode: string; size: number }>;
  };
  const lines: string[] = [];
  for (const e of inspect.tree) {
    const perm = (parseInt(e.mode, 8) & 0o7777).toString(8);
    let hash = '';
    const host = join(out, e.path);
    if (e.kind === 'file') hash = await sha256File(host);
    if (e.kind === 'symlink') hash = await readlink(host); // expected.tsv holds the target itself
    lines.push([e.path, e.kind, perm, String(e.size), hash].join('\t'));
  }
  return lines.sort();
}

describe('Nydus reference images', { skip }, () => {
  for (const v of VECTORS_LIST) {
    test(`${v.name}: unpacks to expected.tsv and passes check`, async () => {
      const dir = join(VECTORS, v.name);
      const expected = (await readFile(join(dir, 'expected.tsv'), 'utf8')).split('\n').filter((l) => l !== '').sort();
      await withTempDir('vector', async (tmp) => {
        const out = join(tmp, 'out');
        await damselflyOk(['unpack', ...v.args(dir), '--output', out]);
        assert.deepEqual(await listing(v.args(dir), out), expected);
        const check = await damselflyOk(['check', ...v.args(dir)]);
        assert.match(check.stdout, /\nOK\n$/);
        // Unpacking to a tar gives the same files.
        const tarOut = join(tmp, 'image.tar');
        await damselflyOk(['unpack', ...v.args(dir), '--tar', tarOut]);
        const untarred = join(tmp, 'untarred');
        await mkdir(untarred);
        sh(`tar -xpf ${tarOut} -C ${untarred}`);
        assert.deepEqual(await listing(v.args(dir), untarred), expected);
      });
    });
  }

  test('v5: the md5 sums of the Nydus project listing (tree.result) match', async () => {
    const dir = join(VECTORS, 'v5-sha256-uncompressed');
    const result = await readFile(join(dir, 'tree.result'), 'utf8');
    const sums = [...result.matchAll(/^([0-9a-f]{32})  (\/.*)$/gm)].map((m) => [m[2] as string, m[1] as string] as const);
    assert.equal(sums.length, 23);
    await withTempDir('vector-md5', async (tmp) => {
      await damselflyOk(['unpack', ...VECTORS_LIST[0]!.args(dir), '--output', tmp + '/out']);
      for (const [path, md5] of sums) {
        assert.equal(createHash('md5').update(await readFile(join(tmp, 'out', path))).digest('hex'), md5, path);
      }
    });
  });

  test('v5: check verifies the inode digest tree (a changed inode digest is found)', async () => {
    const dir = join(VECTORS, 'v5-sha256-uncompressed');
    await withTempDir('vector-digest', async (tmp) => {
      const boot = Buffer.from(await readFile(join(dir, 'image.boot')));
      // The root record is at 0x2160 (spec Appendix A); its first 32 bytes are i_digest.
      boot.writeUInt8(boot.readUInt8(0x2160 + 5) ^ 0xff, 0x2160 + 5);
      await writeFile(join(tmp, 'image.boot'), boot);
      const r = await damselfly(['check', '--bootstrap', join(tmp, 'image.boot'), '--blob-dir', join(dir, 'blobs')]);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /PROBLEM \(\/\): inode digest [0-9a-f]+ does not match/);
      // And an intact copy passes, named as nydus-image takes it (the bootstrap as the argument, -D).
      await copyFile(join(dir, 'image.boot'), join(tmp, 'intact.boot'));
      const ok = await damselfly(['check', join(tmp, 'intact.boot'), '-D', join(dir, 'blobs')]);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /\nOK\n$/);
      // A bootstrap given both ways is a usage error, naming both.
      const twice = await damselfly(['check', join(tmp, 'intact.boot'), '-B', join(tmp, 'image.boot'), '-D', join(dir, 'blobs')]);
      assert.equal(twice.code, 2);
      assert.match(twice.stderr, /the bootstrap is given twice: .*intact\.boot and --bootstrap .*image\.boot/);
    });
  });

  test('v5: a file whose chunk record names another chunk\'s index, described otherwise, is refused, not given that chunk\'s bytes', async () => {
    const dir = join(VECTORS, 'v5-sha256-uncompressed');
    await withTempDir('vector-alias', async (tmp) => {
      const boot = Buffer.from(await readFile(join(dir, 'image.boot')));
      const image = new RafsV5Image(boot);
      const ino = (suffix: string): number => {
        for (const it of walkImage(image)) if (it.attr.kind === 'file' && Buffer.from(it.path).toString().endsWith(suffix)) return it.attr.ino;
        throw new Error(`no ${suffix} in the vector`);
      };
      const [a, b] = [ino('/layer.tar'), ino('/manifest.json')];
      const aIndex = (image.fileChunks(a)[0] as { index: number }).index;
      // The small file's first chunk record claims the large file's first chunk (index at +72):
      // everything after the reader knows a chunk by blob and index, so it got the large one's
      // bytes, checked against the large one's digest, and `unpack --tar` wrote a megabyte where
      // its header said 203 bytes (the rest of the archive read from file data).
      const area = (image as unknown as { chunkArea(rec: unknown): number }).chunkArea(image.inodeRecord(b));
      boot.writeUInt32LE(aIndex, area + 72);
      await writeFile(join(tmp, 'image.boot'), boot);
      const lied = new RafsV5Image(boot);
      lied.fileChunks(a);
      assert.throws(() => lied.fileChunks(b), /is described otherwise by another file/);
      const args = ['--bootstrap', join(tmp, 'image.boot'), '--blob-dir', join(dir, 'blobs')];
      const check = await damselfly(['check', ...args]);
      assert.equal(check.code, 1, check.stdout);
      assert.match(check.stdout, /described otherwise by another file/);
      const tar = await damselfly(['unpack', ...args, '--tar', join(tmp, 'out.tar')]);
      assert.equal(tar.code, 1, tar.stderr);
      assert.deepEqual(await readdir(tmp), ['image.boot'], 'no archive left');
    });
  });

  test('unpack --output as a user keeps the files (as tar without --same-owner) instead of failing at the first chown', async () => {
    const dir = join(VECTORS, 'v6-blake3-zstd');
    await withTempDir('vector-user', async (tmp) => {
      await chmod(tmp, 0o777);
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'unpack', join(dir, 'image.boot'), '--blob-dir', join(dir, 'blobs'), '--output', join(tmp, 'out')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const st = await stat(join(tmp, 'out'));
      assert.equal(st.uid, 65534);
      const root = await withTempDir('vector-root', async (mine) => {
        await damselflyOk(['unpack', join(dir, 'image.boot'), '--blob-dir', join(dir, 'blobs'), '--output', join(mine, 'out')]);
        return sh(`cd '${join(mine, 'out')}' && find . -type f -exec sha256sum {} + | sort`);
      });
      assert.equal(sh(`cd '${join(tmp, 'out')}' && find . -type f -exec sha256sum {} + | sort`), root);
    });
  });

  test('v6: the uncompressed blob view matches fsck.erofs, an independent EROFS implementation', async () => {
    const dir = join(VECTORS, 'v6-blake3-zstd');
    await withTempDir('vector-erofs', async (tmp) => {
      const views = (await damselflyOk(['export', '--bootstrap', join(dir, 'image.boot'), '--blob-dir', join(dir, 'blobs'), '--blob-views', join(tmp, 'views')])).stdout.trim().split('\n');
      sh(`fsck.erofs ${views.map((v) => `--device=${v}`).join(' ')} --extract=${tmp}/x ${dir}/image.boot`);
      assert.deepEqual((await readdir(join(tmp, 'x'))).sort(), ['lib.rs', 'sync_io.rs']);
      assert.equal(await sha256File(join(tmp, 'x', 'lib.rs')), '1810eba864521293bb0d6b55a3c82318d4d89f294ed761c456d9088a17de0c69');
    });
  });
});
