/**
 * tar-ref images (`build --type tar-ref`, nydus-image `create --type tar-ref`, spec §5.1): a plain
 * (uncompressed) tar layer indexed in place. Each chunk is a range of the layer, stored as it is;
 * the image is a bootstrap and a small meta blob (the CI array), and the blob table names the layer
 * by its sha256. Served through a kernel FUSE mount (a lone small file read costs only its bytes,
 * and the layer is not needed once the chunk cache holds them) and by the kernel's EROFS, unpacked,
 * checked; a changed layer byte gives EIO for its file only and fails check. Either ref type takes
 * either kind of layer, as nydus-image: a gzip layer under a plain one stacks; `convert --oci-ref`
 * of an image with a plain layer is served with `--image`. A layer of another kind (zstd) is a
 * clear error.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Metrics, silentLogger } from '../../src/base/index.js';
import { openBootstrap } from '../../src/format/open.js';
import { nativeCodecs } from '../../src/native/index.js';
import { MediaType } from '../../src/oci/media-types.js';
import { LocalFsBackend } from '../../src/storage/backend/localfs.js';
import { loadBlobMeta } from '../../src/storage/blob-meta.js';
import { BlobDevice } from '../../src/storage/device.js';
import { resolvePath } from '../../src/tools/walk.js';
import { damselfly, damselflyOk, sh } from '../helpers/env.js';
import { startMount } from '../helpers/mount.js';
import { makeOciImage } from '../helpers/oci-image.js';
import { assertServed, assertTamperedLayer, chunksOf, notInTar, nydusLayers, refBlobTable, sha256, stackedTree } from '../helpers/ref-image.js';
import { type Entry, compareTrees, listTree, makeTree, prng } from '../helpers/tree.js';

interface ChunkView {
  fileOffset: number;
  blob: string;
  compressed: boolean;
  compressedOffset: number;
  compressedSize: number;
  uncompressedSize: number;
}

describe('tar-ref images', () => {
  let work: string;
  let src: string;
  let listing: Map<string, Entry>;
  let layer: Buffer;
  let out: string;
  let blobs: string;
  let layerId: string;

  const fileChunks = (path: string): Promise<ChunkView[]> => chunksOf<ChunkView>(join(out, 'boot'), blobs, path);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-tar-ref-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 200, seed: 0x7a11 });
    await writeFile(join(src, 'large.bin'), prng(0x7a12, 3_500_000));
    listing = await listTree(src);
    sh(`tar --format=posix --xattrs --xattrs-include='*' --numeric-owner -C '${src}' -cf '${join(work, 'layer.tar')}' .`);
    layer = await readFile(join(work, 'layer.tar'));
    layerId = sha256(layer);
    out = join(work, 'image');
    blobs = join(out, 'blobs');
    await damselflyOk(['build', '--type', 'tar-ref', '--bootstrap', join(out, 'boot'), '--blob-dir', blobs, join(work, 'layer.tar')]);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('the image is a bootstrap and a meta blob; every chunk is its bytes of the layer, uncompressed', async () => {
    const t = await refBlobTable(join(out, 'boot'), blobs);
    // As nydus-image writes it: the ref types' gzip and sha256, CHUNK_INFO_V2 and SEPARATE without ZRAN.
    assert.deepEqual([t.compressor, t.digester], ['gzip', 'sha256']);
    assert.equal(t.blob.id, layerId);
    assert.equal(t.blob.compressedSize, layer.length);
    assert.deepEqual([...t.blob.features].sort(), ['ALIGNED', 'CHUNK_INFO_V2', 'SEPARATE']);
    assert.ok(t.meta.length < 8192, `a ${t.meta.length}-byte meta blob`);

    const data = await readFile(join(src, 'large.bin'));
    const chunks = await fileChunks('/large.bin');
    assert.equal(chunks.length, 4);
    for (const c of chunks) {
      assert.equal(c.compressed, false);
      assert.equal(c.compressedSize, c.uncompressedSize);
      assert.equal(c.compressedOffset % 512, 0, 'a file starts on a tar block');
      assert.deepEqual(layer.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize), data.subarray(c.fileOffset, c.fileOffset + c.uncompressedSize));
    }
  });

  test('served through FUSE (a small file costs its bytes), from the chunk cache with the layer gone, by EROFS; unpacked and checked', async () => {
    const lone = async (): Promise<void> => {
      const small = await readFile(join(src, 'small.txt'));
      const mnt = join(work, 'mnt-lone');
      await mkdir(mnt, { recursive: true });
      const m = await startMount(['--bootstrap', join(out, 'boot'), '--blob-dir', blobs, '--stats'], mnt);
      try {
        assert.deepEqual(await readFile(join(mnt, 'small.txt')), small);
      } finally {
        const s = JSON.parse((await m.stop()).stdout) as Record<string, number>;
        assert.equal(s['storage.backend_bytes'], small.length, 'one small file read: its bytes of the layer, nothing more');
      }
    };
    await assertServed({ boot: join(out, 'boot'), blobDir: blobs, layer: join(work, 'layer.tar'), layerId, src, listing, ignore: notInTar, dir: join(work, 'served'), withLayer: lone });
  });

  test('a changed layer byte: EIO for its file, check names it and the layer; other files still served', async () => {
    const [c] = (await fileChunks('/large.bin')).slice(2);
    assert.ok(c !== undefined);
    await assertTamperedLayer({ boot: join(out, 'boot'), blobDir: blobs, layer, layerId, at: c.compressedOffset + 1000, dir: join(work, 'tampered'), src, broken: '/large.bin', intact: '/repeated.bin' });
  });

  test('either type takes either layer: a plain tar over a gzip one stacks (whiteout, change, shared chunk)', async () => {
    const d = join(work, 'mixed');
    const upper = join(d, 'upper');
    await mkdir(join(upper, 'dir'), { recursive: true });
    await writeFile(join(upper, '.wh.small.txt'), '');
    await writeFile(join(upper, 'dir', 'compressible.txt'), 'changed in the plain upper layer\n');
    await writeFile(join(upper, 'added.bin'), prng(0x7a13, 300_000));
    await copyFile(join(src, 'large.bin'), join(upper, 'same-as-below.bin'));
    sh(`tar --format=posix --numeric-owner -C '${upper}' -cf '${join(d, 'upper.tar')}' .`);
    const upperTar = await readFile(join(d, 'upper.tar'));
    const lowerGz = gzipSync(layer);
    await writeFile(join(d, 'lower.tar.gz'), lowerGz);
    const r = JSON.parse((await damselflyOk(['build', '--type', 'targz-ref', '--json', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(d, 'lower.tar.gz'), join(d, 'upper.tar')])).stdout) as {
      blobs: Array<{ id: string; kind: string; contexts: number }>;
    };
    assert.deepEqual(
      r.blobs.map((b) => [b.id, b.kind, b.contexts > 0]),
      [
        [sha256(lowerGz), 'gzip', true],
        [sha256(upperTar), 'tar', false],
      ],
    );
    await writeFile(join(d, 'blobs', sha256(lowerGz)), lowerGz);
    await writeFile(join(d, 'blobs', sha256(upperTar)), upperTar);
    const shared = JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--path', '/same-as-below.bin', '--json'])).stdout) as { chunks: ChunkView[] };
    assert.ok(shared.chunks.length > 0 && shared.chunks.every((c) => c.blob === sha256(lowerGz)), 'deduplicated into the lower layer');
    assert.match((await damselflyOk(['check', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs')])).stdout, /OK/);

    const expected = join(d, 'expected');
    stackedTree(src, upper, expected, ['small.txt']);
    const mnt = join(d, 'mnt');
    await mkdir(mnt);
    const m = await startMount(['--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs')], mnt);
    try {
      assert.deepEqual(await compareTrees(expected, mnt, { ignore: (p) => notInTar(p) || p === '/' || p === '/dir' }), []);
    } finally {
      await m.stop();
    }
  });

  test('convert --oci-ref of an image with a plain tar layer: tar-ref with a prefetch table, served with --image from the target', async () => {
    const d = join(work, 'oci-ref');
    const upper = join(d, 'upper');
    await mkdir(upper, { recursive: true });
    await writeFile(join(upper, 'added.bin'), prng(0x7a14, 200_000));
    const made = await makeOciImage(join(d, 'source'), 'v1', [src, upper], d, { plainLayers: [1] });
    const target = join(d, 'target');
    await writeFile(join(d, 'prefetch.list'), '/added.bin\n');
    const r = JSON.parse(
      (await damselflyOk(['convert', '--oci-ref', '--prefetch-files', join(d, 'prefetch.list'), '--source', `oci:${join(d, 'source')}:v1`, '--target', `oci:${target}:ref`, '--json'])).stdout,
    ) as { blobs: string[] };
    assert.deepEqual(
      r.blobs.map((b) => `sha256:${b}`),
      made.layers,
    );
    const pushed = await nydusLayers(target);
    assert.deepEqual(
      pushed.blobLayers.map((l) => [l.mediaType, l.ref]),
      made.layers.map((digest) => [MediaType.NYDUS_BLOB, digest]),
    );
    assert.equal(pushed.bootstrapLayers, 1);
    assert.match((await damselflyOk(['check', '--image', `oci:${target}:ref`])).stdout, /OK/);
    const info = JSON.parse((await damselflyOk(['inspect', '--image', `oci:${target}:ref`, '--json'])).stdout) as { prefetch: number[]; tree: Array<{ path: string; ino: number }> };
    assert.deepEqual(info.prefetch, [info.tree.find((t) => t.path === '/added.bin')?.ino], 'the prefetch table');
    const expected = join(d, 'expected');
    stackedTree(src, upper, expected);
    const mnt = join(d, 'mnt');
    await mkdir(mnt);
    const m = await startMount(['--image', `oci:${target}:ref`], mnt);
    try {
      assert.deepEqual(await compareTrees(expected, mnt, { ignore: (p) => notInTar(p) || p === '/' }), []);
    } finally {
      assert.equal((await m.stop()).code, 0, m.stderr());
    }
  });

  test('a v7 tar (no ustar magic) is a plain layer too; a zstd layer, or bytes that are no layer: refused with a clear message, nothing written', async () => {
    sh(`tar --format=v7 -C '${src}' -cf '${join(work, 'v7.tar')}' small.txt`);
    await damselflyOk(['build', '--type', 'tar-ref', '--bootstrap', join(work, 'v7', 'boot'), '--blob-dir', join(work, 'v7', 'blobs'), join(work, 'v7.tar')]);
    assert.equal((await readdir(join(work, 'v7', 'blobs'))).length, 1, 'its meta blob');
    sh(`zstd -q -c '${join(work, 'layer.tar')}' > '${join(work, 'layer.tar.zst')}'`);
    await writeFile(join(work, 'junk'), prng(0x7a15, 4096));
    for (const bad of ['layer.tar.zst', 'junk']) {
      const r = await damselfly(['build', '--type', 'tar-ref', '--bootstrap', join(work, 'bad', 'boot'), '--blob-dir', join(work, 'bad', 'blobs'), join(work, bad)]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`${bad.replace('.', '\\.')} is neither a gzip-compressed nor a plain tar layer`));
      assert.deepEqual(await readdir(join(work, 'bad')).catch(() => []), [], 'nothing written');
    }
  });

  test('two indexes of one layer with other chunk sizes share a cache directory, not a cache: each reads its own bytes', async () => {
    // Both name the blob by the layer's digest; their chunks are numbered and placed by their own
    // meta blob. Sharing one cache file and chunk map, the second trusted the first's marks and
    // served the holes of the file as data.
    const cache = join(work, 'shared-cache');
    const open = async (chunkSize: string) => {
      const dir = join(work, `cs-${chunkSize}`);
      await damselflyOk(['build', '--type', 'tar-ref', '--chunk-size', chunkSize, '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), join(work, 'layer.tar')]);
      const image = openBootstrap(await readFile(join(dir, 'boot')));
      await copyFile(join(work, 'layer.tar'), join(dir, 'blobs', (image.blobs[0] as { id: string }).id));
      const backend = new LocalFsBackend({ dir: join(dir, 'blobs') });
      await loadBlobMeta(image, backend, nativeCodecs, { cacheDir: cache });
      return { image, device: new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir: cache, metrics: new Metrics(), log: silentLogger }) };
    };
    const readWhole = async (o: Awaited<ReturnType<typeof open>>, path: string): Promise<Buffer> => {
      const ino = resolvePath(o.image, path);
      assert.ok(ino !== undefined);
      const parts: Buffer[] = [];
      for (const c of o.image.fileChunks(ino)) {
        const b = Buffer.alloc(c.uncompressedSize);
        await o.device.read([{ chunk: c, from: 0, length: c.uncompressedSize }], [b]);
        parts.push(b);
      }
      return Buffer.concat(parts);
    };
    const want = prng(0x7a12, 3_500_000);
    const a = await open('0x1000');
    const b = await open('0x10000');
    assert.equal(a.image.blobs[0]?.id, b.image.blobs[0]?.id, 'one blob id for both');
    try {
      assert.deepEqual(await readWhole(a, '/large.bin'), want);
      await a.device.close();
      assert.deepEqual(await readWhole(b, '/large.bin'), want);
    } finally {
      await b.device.close();
    }
    assert.equal((await readdir(cache)).filter((n) => n.endsWith('.blob.data')).length, 2, 'a cache for each index');
  });
});
