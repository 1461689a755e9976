/**
 * ZRan images (`build --type targz-ref`, nydus-image `create --type targz-ref`, spec §5.5), end to
 * end: a GNU tar of the test tree, gzip-compressed as two members (a stream that restarts, as
 * concatenated gzip files do), indexed in place. The image is a bootstrap and a small meta blob;
 * the data stays in the layer, which the blob table names by its sha256. Served through a kernel
 * FUSE mount (cold, and again from the chunk cache with the layer gone) and by the kernel's EROFS
 * (over the exported view), unpacked, checked; a second layer stacked on it (a whiteout, a changed
 * file, a chunk the lower layer has); `convert --oci-ref` of an OCI image (layout to layout),
 * served with `--image`. A changed byte of the layer gives EIO for the files inflated through it,
 * never other data, and fails check; files of other contexts are still served. A missing meta
 * blob, or a layer cut short, is a clear error. (Plain tar layers: tar-ref.test.ts.)
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { MediaType } from '../../src/oci/media-types.js';
import { damselfly, damselflyOk, sh, waitFor } from '../helpers/env.js';
import { startMount } from '../helpers/mount.js';
import { makeOciImage } from '../helpers/oci-image.js';
import { assertServed, assertTamperedLayer, chunksOf, notInTar, nydusLayers, refBlobTable, sha256, stackedTree } from '../helpers/ref-image.js';
import { type Entry, compareTrees, listTree, makeTree, prng } from '../helpers/tree.js';

interface ZranView {
  compressedOffset: number;
  compressedSize: number;
  zran?: { offset: number; size: number; dictionary: number; bits: number };
}

describe('ZRan (targz-ref) images', () => {
  let work: string;
  let src: string;
  let listing: Map<string, Entry>;
  let layer: Buffer;
  let out: string;
  let blobs: string;
  let layerId: string;

  const fileChunks = (path: string): Promise<ZranView[]> => chunksOf<ZranView>(join(out, 'boot'), blobs, path);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-zran-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 200, seed: 0x2a11 });
    // 6 MB of text that deflate shrinks about a quarter: several contexts inside one file.
    await writeFile(join(src, 'text.b64'), prng(0x2a12, 4_500_000).toString('base64'));
    listing = await listTree(src);
    const tar = join(work, 'layer.tar');
    sh(`tar --format=posix --xattrs --xattrs-include='*' --numeric-owner -C '${src}' -cf '${tar}' .`);
    const bytes = await readFile(tar);
    const cut = Math.floor(bytes.length * 0.4);
    layer = Buffer.concat([gzipSync(bytes.subarray(0, cut)), gzipSync(bytes.subarray(cut), { level: 9 })]);
    await writeFile(join(work, 'layer.tar.gz'), layer);
    layerId = sha256(layer);

    out = join(work, 'image');
    blobs = join(out, 'blobs');
    await damselflyOk(['build', '--type', 'targz-ref', '--bootstrap', join(out, 'boot'), '--blob-dir', blobs, join(work, 'layer.tar.gz')]);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('the image is a bootstrap and a meta blob; the blob table names the layer and the meta blob by digest', async () => {
    const t = await refBlobTable(join(out, 'boot'), blobs);
    assert.ok(t.meta.length < layer.length / 10, `meta blob of ${t.meta.length} bytes for a ${layer.length}-byte layer`);
    assert.deepEqual([t.compressor, t.digester], ['gzip', 'sha256']);
    assert.equal(t.blob.id, layerId);
    assert.equal(t.blob.compressedSize, layer.length);
    for (const f of ['ZRAN', 'SEPARATE', 'CHUNK_INFO_V2', 'ALIGNED']) assert.ok(t.blob.features.includes(f), t.blob.features.join(','));

    // The layer's file is needed only to read data: the chunks are located through the meta blob.
    const chunks = await fileChunks('/text.b64');
    assert.ok(chunks.length >= 6, `${chunks.length} chunks`);
    const contexts = new Set(chunks.map((c) => `${c.compressedOffset}+${c.compressedSize}`));
    assert.ok(contexts.size >= 3, `${contexts.size} contexts for the file`);
    for (const c of chunks) {
      assert.ok(c.zran !== undefined && c.zran.size <= 16 << 20 && c.zran.offset < c.zran.size);
      assert.ok(c.compressedOffset + c.compressedSize <= layer.length);
    }
    assert.ok(chunks.some((c) => (c.zran?.dictionary ?? 0) === 32768), 'contexts inside a member carry a 32 KiB window');
  });

  test('served cold through FUSE and again from the chunk cache with the layer gone, by EROFS; unpacked and checked', async () => {
    await assertServed({ boot: join(out, 'boot'), blobDir: blobs, layer: join(work, 'layer.tar.gz'), layerId, src, listing, ignore: notInTar, dir: join(work, 'served') });
  });

  test('a changed layer byte: EIO for the file inflated through it, other contexts still served', async () => {
    // A chunk in the middle of the text: its context starts and ends inside the text's deflate
    // data, where a changed byte changes what every later byte of that inflation decodes to.
    const chunks = await fileChunks('/text.b64');
    const mid = chunks[Math.floor(chunks.length / 2)] as ZranView;
    const at = mid.compressedOffset + Math.floor(mid.compressedSize / 2);
    // A file inflated from elsewhere in the layer.
    let other: string | undefined;
    for (const path of ['/small.txt', '/dir/compressible.txt', '/repeated.bin', '/hard-a']) {
      const [c] = await fileChunks(path);
      if (c !== undefined && (at < c.compressedOffset || at >= c.compressedOffset + c.compressedSize)) other = path;
    }
    assert.ok(other !== undefined, 'a file of another context');
    await assertTamperedLayer({ boot: join(out, 'boot'), blobDir: blobs, layer, layerId, at, dir: join(work, 'tampered'), src, broken: '/text.b64', intact: other });
  });

  test('--prefetch-files: the prefetch table of a ZRan image; mounted with --prefetch, its files\' contexts are fetched before any read', async () => {
    const d = join(work, 'prefetch');
    await writeFile(join(work, 'prefetch.list'), ['/text.b64', '/not/there', '/small.txt'].join('\n'));
    const r = JSON.parse(
      (await damselflyOk(['build', '--type', 'targz-ref', '--json', '--prefetch-files', join(work, 'prefetch.list'), '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(work, 'layer.tar.gz')])).stdout,
    ) as { prefetch: string[] };
    assert.deepEqual(r.prefetch, ['/text.b64', '/small.txt'], 'missing paths skipped');
    const info = JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(d, 'boot'), '--json'])).stdout) as { prefetch: number[]; tree: Array<{ path: string; ino: number }> };
    const ino = new Map(info.tree.map((t) => [t.path, t.ino]));
    assert.deepEqual(info.prefetch, [ino.get('/text.b64'), ino.get('/small.txt')]);
    // Only the table differs from the image built without it: the same meta blob, the same layer.
    assert.deepEqual(await readdir(join(d, 'blobs')), await readdir(blobs));
    await copyFile(join(work, 'layer.tar.gz'), join(d, 'blobs', layerId));
    const wanted = (await fileChunks('/text.b64')).length + (await fileChunks('/small.txt')).length;
    const mnt = join(d, 'mnt');
    await mkdir(mnt);
    const m = await startMount(['--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--prefetch', '--stats', '--log-level', 'info'], mnt);
    try {
      await waitFor('the prefetch to finish', () => m.stderr().includes('"msg":"prefetch finished"'), 20_000);
      assert.match(m.stderr(), /"failed":0,[^\n]*"prefetch finished"/);
    } finally {
      const s = JSON.parse((await m.stop()).stdout) as Record<string, number>;
      assert.equal(s['prefetch.done_chunks'], wanted, "the listed files' chunks, without a read");
      assert.equal(s['fuse.requests.READ'] ?? 0, 0);
    }
  });

  test('an eStargz layer (a gzip member per file, its TOC and landmark): estargz-ref and a layers build leave those out, as nydus-image', async () => {
    const d = join(work, 'estargz');
    const tree = join(d, 'tree');
    await mkdir(join(tree, 'etc'), { recursive: true });
    await writeFile(join(tree, 'etc', 'first'), prng(0x2a15, 70_000).toString('base64'));
    await writeFile(join(tree, 'later.bin'), prng(0x2a16, 200_000));
    const expected = join(d, 'expected');
    sh(`cp -a '${tree}' '${expected}'`);
    // As eStargz orders a layer: the prioritized files, the landmark, the rest, the TOC last.
    await writeFile(join(tree, '.prefetch.landmark'), Buffer.from([0xf]));
    await writeFile(join(tree, 'stargz.index.json'), JSON.stringify({ version: 1, entries: [] }));
    const entries = ['./etc', './etc/first', './.prefetch.landmark', './later.bin', './stargz.index.json'];
    const members: Buffer[] = [];
    for (const [i, e] of entries.entries()) {
      // One entry's tar without the end-of-archive blocks, which the last member holds.
      sh(`tar --format=posix --numeric-owner --no-recursion --blocking-factor=1 -C '${tree}' -cf - '${e}' | head -c -1024 > '${join(d, `entry-${i}`)}'`);
      members.push(gzipSync(await readFile(join(d, `entry-${i}`))));
    }
    members.push(gzipSync(Buffer.alloc(1024)));
    await writeFile(join(d, 'layer.tar.gz'), Buffer.concat(members));
    for (const type of ['estargz-ref', 'layers']) {
      const out2 = join(d, type);
      await damselflyOk(['build', '--type', type, '--bootstrap', join(out2, 'boot'), '--blob-dir', join(out2, 'blobs'), join(d, 'layer.tar.gz')]);
      if (type !== 'layers') await copyFile(join(d, 'layer.tar.gz'), join(out2, 'blobs', sha256(await readFile(join(d, 'layer.tar.gz')))));
      await damselflyOk(['unpack', '--bootstrap', join(out2, 'boot'), '--blob-dir', join(out2, 'blobs'), '--output', join(out2, 'unpacked')]);
      assert.deepEqual(await compareTrees(expected, join(out2, 'unpacked'), { ignore: (p) => p === '/' }), [], type);
    }
  });

  test('two layers: whiteouts and changes apply, a chunk both hold stays in the lower one, each layer a blob with its meta blob', async () => {
    const d = join(work, 'two');
    const upper = join(d, 'upper');
    await mkdir(join(upper, 'dir'), { recursive: true });
    await writeFile(join(upper, '.wh.small.txt'), '');
    await writeFile(join(upper, 'dir', 'compressible.txt'), 'changed in the upper layer\n');
    await writeFile(join(upper, 'added.b64'), prng(0x2a13, 300_000).toString('base64'));
    await copyFile(join(src, 'repeated.bin'), join(upper, 'same-as-below.bin'));
    sh(`tar --format=posix --numeric-owner -C '${upper}' -czf '${join(d, 'upper.tar.gz')}' .`);
    const upperGz = await readFile(join(d, 'upper.tar.gz'));
    const r = JSON.parse(
      (await damselflyOk(['build', '--type', 'targz-ref', '--json', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(work, 'layer.tar.gz'), join(d, 'upper.tar.gz')])).stdout,
    ) as { blobs: Array<{ id: string; metaBlob: { id: string } }> };
    assert.deepEqual(
      r.blobs.map((b) => b.id),
      [layerId, sha256(upperGz)],
    );
    assert.deepEqual((await readdir(join(d, 'blobs'))).sort(), r.blobs.map((b) => b.metaBlob.id).sort());
    await copyFile(join(work, 'layer.tar.gz'), join(d, 'blobs', layerId));
    await writeFile(join(d, 'blobs', sha256(upperGz)), upperGz);
    const info = JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--path', '/same-as-below.bin', '--json'])).stdout) as { chunks: Array<{ blob: string }> };
    assert.ok(info.chunks.length > 0 && info.chunks.every((c) => c.blob === layerId), 'deduplicated into the lower layer');
    assert.match((await damselflyOk(['check', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs')])).stdout, /OK/);

    const expected = join(d, 'expected');
    stackedTree(src, upper, expected, ['small.txt']);
    const mnt = join(d, 'mnt');
    await mkdir(mnt);
    const m = await startMount(['--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs')], mnt);
    try {
      assert.deepEqual(await compareTrees(expected, mnt, { ignore: (p) => notInTar(p) || p === '/' || p === '/dir' }), []);
      assert.equal(await readFile(join(mnt, 'dir', 'compressible.txt'), 'utf8'), 'changed in the upper layer\n');
    } finally {
      await m.stop();
    }
  });

  test('convert --oci-ref: a meta blob layer per layer naming the original, served with --image from the target', async () => {
    const d = join(work, 'oci-ref');
    const upper = join(d, 'upper');
    await mkdir(upper, { recursive: true });
    await writeFile(join(upper, 'added.b64'), prng(0x2a14, 200_000).toString('base64'));
    await writeFile(join(upper, '.wh.small.txt'), '');
    const made = await makeOciImage(join(d, 'source'), 'v1', [src, upper], d);
    const target = join(d, 'target');
    const r = JSON.parse((await damselflyOk(['convert', '--oci-ref', '--source', `oci:${join(d, 'source')}:v1`, '--target', `oci:${target}:ref`, '--json'])).stdout) as { blobs: string[] };
    assert.deepEqual(r.blobs.map((b) => `sha256:${b}`), made.layers, 'the blob table names the original layers');

    const pushed = await nydusLayers(target);
    assert.deepEqual(
      pushed.blobLayers.map((l) => [l.mediaType, l.ref]),
      made.layers.map((digest) => [MediaType.NYDUS_BLOB, digest]),
    );
    assert.equal(pushed.bootstrapLayers, 1);
    // The original layers are in the target (copied where it lacked them): the image's data.
    for (const digest of made.layers) assert.ok((await stat(join(target, 'blobs', 'sha256', digest.slice(7)))).size > 0);

    // Checked where it is (as nydusify check): the meta blobs and the layers read from the layout.
    assert.match((await damselflyOk(['check', '--image', `oci:${target}:ref`])).stdout, /OK/);
    const expected = join(d, 'expected');
    stackedTree(src, upper, expected, ['small.txt']);
    const mnt = join(d, 'mnt');
    await mkdir(mnt);
    const m = await startMount(['--image', `oci:${target}:ref`], mnt);
    try {
      assert.deepEqual(await compareTrees(expected, mnt, { ignore: (p) => notInTar(p) || p === '/' }), []);
    } finally {
      assert.equal((await m.stop()).code, 0, m.stderr());
    }
    const bad = await damselfly(['convert', '--oci-ref', '--encrypt', '--source', `oci:${join(d, 'source')}:v1`, '--target', `oci:${join(d, 't2')}:x`]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--oci-ref keeps the layers as they are: --encrypt cannot apply/);
  });

  test('a missing meta blob, a layer cut short: clear errors, nothing left behind', async () => {
    const mnt = join(work, 'mnt-missing');
    await mkdir(mnt, { recursive: true });
    const empty = join(work, 'no-blobs');
    await mkdir(empty, { recursive: true });
    const r = await damselfly(['mount', '--bootstrap', join(out, 'boot'), '--blob-dir', empty, mnt], { timeoutMs: 20_000 });
    assert.notEqual(r.code, 0);
    const metaId = (await readdir(blobs))[0] as string;
    assert.match(r.stderr, new RegExp(metaId));

    // (A layer that is neither gzip nor a plain tar: tar-ref.test.ts.)
    // A second layer cut short: refused, and the first layer's meta blob is not left behind.
    await writeFile(join(work, 'cut.tar.gz'), layer.subarray(0, Math.floor(layer.length / 2)));
    const cut = await damselfly(['build', '--type', 'targz-ref', '--bootstrap', join(work, 'b3'), '--blob-dir', join(work, 'b3-blobs'), join(work, 'layer.tar.gz'), join(work, 'cut.tar.gz')]);
    assert.notEqual(cut.code, 0);
    assert.match(cut.stderr, /cut\.tar\.gz: .*truncated|cut\.tar\.gz.*ends/);
    assert.deepEqual(await readdir(join(work, 'b3-blobs')).catch(() => []), []);
    assert.equal((await stat(join(work, 'b3')).catch(() => undefined)) === undefined, true, 'no bootstrap');
  });
});
