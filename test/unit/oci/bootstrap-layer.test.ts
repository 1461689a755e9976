/**
 * Reading a Nydus image's bootstrap layer from a store: the layer is unpacked as it arrives, checked against
 * its descriptor (digest, and never more bytes than its size), and `image/image.boot` is taken out
 * of the gzip tar. Bad layers and broken downloads give a clear error, never a bootstrap or a hang.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { FormatError, IntegrityError } from '../../../src/base/index.js';
import { type TarEntry, TAR_END, encodeTarHeaders, tarPadding } from '../../../src/format/tar.js';
import { fetchBootstrap } from '../../../src/oci/convert/bootstrap-layer.js';
import { Annotation, type Descriptor, type Manifest } from '../../../src/oci/media-types.js';
import type { ImageStore } from '../../../src/oci/store.js';

const BOOT = randomBytes(70_000);

function entry(path: string, data: Buffer): Buffer {
  const e: TarEntry = { path: Buffer.from(path), type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtimeSec: 0, mtimeNsec: 0, linkpath: Buffer.alloc(0), devmajor: 0, devminor: 0, xattrs: [] };
  return Buffer.concat([encodeTarHeaders(e), data, Buffer.alloc(tarPadding(data.length))]);
}

function tarOf(...entries: Array<[string, Buffer]>): Buffer {
  return Buffer.concat([...entries.map(([p, d]) => entry(p, d)), TAR_END]);
}

function digestOf(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** A store serving one manifest whose bootstrap layer is `layer` (described by `desc`), in small pieces. */
function store(layer: Buffer, desc: Partial<Descriptor> = {}): ImageStore {
  const d: Descriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(layer), size: layer.length, annotations: { [Annotation.NYDUS_BOOTSTRAP]: 'true' }, ...desc };
  const manifest: Manifest = { schemaVersion: 2, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(Buffer.alloc(0)), size: 0 }, layers: [d] };
  return {
    name: 'test/image',
    resolve: async () => ({ manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digestOf(Buffer.from('m')), bytes: Buffer.from('m') }),
    async *blobStream() {
      for (let i = 0; i < layer.length; i += 4096) yield layer.subarray(i, i + 4096);
    },
    hasBlob: async () => true,
    putBlob: async () => undefined,
    putManifest: async () => '',
  };
}

describe('bootstrap layer', () => {
  test('image/image.boot out of a gzip tar, next to other entries', async () => {
    const layer = gzipSync(tarOf(['image/other', randomBytes(3000)], ['./image/image.boot', BOOT], ['image/after', randomBytes(10)]));
    const { bootstrap, layer: d } = await fetchBootstrap(store(layer));
    assert.deepEqual(bootstrap, BOOT);
    assert.equal(d.size, layer.length);
  });

  test('a download that fails mid-way fails the fetch with its error (no hang, nothing uncaught)', async () => {
    const layer = gzipSync(tarOf(['image/image.boot', BOOT]));
    const broken = store(layer);
    broken.blobStream = async function* () {
      yield layer.subarray(0, 4096);
      throw new Error('connection reset by the test');
    };
    await assert.rejects(fetchBootstrap(broken), /connection reset by the test/);
  });

  test('a layer that does not match its digest, or is longer than its descriptor, is refused', async () => {
    const layer = gzipSync(tarOf(['image/image.boot', BOOT]));
    await assert.rejects(fetchBootstrap(store(layer, { digest: digestOf(Buffer.from('other')) })), (e: unknown) => e instanceof IntegrityError && /does not match its digest/.test(e.message));
    await assert.rejects(fetchBootstrap(store(layer, { size: layer.length - 1 })), (e: unknown) => e instanceof IntegrityError && /longer than its descriptor/.test(e.message));
    await assert.rejects(fetchBootstrap(store(layer, { size: -1 })), (e: unknown) => e instanceof FormatError && /out of range/.test(e.message));
    await assert.rejects(fetchBootstrap(store(layer, { size: layer.length + 1 })), (e: unknown) => e instanceof IntegrityError && /not its descriptor's/.test(e.message));
  });

  test('a layer named by its sha512 digest is checked with sha512', async () => {
    const layer = gzipSync(tarOf(['image/image.boot', BOOT]));
    const sha512 = `sha512:${createHash('sha512').update(layer).digest('hex')}`;
    assert.deepEqual((await fetchBootstrap(store(layer, { digest: sha512 }))).bootstrap, BOOT);
    const wrong = `sha512:${createHash('sha512').update(BOOT).digest('hex')}`;
    await assert.rejects(fetchBootstrap(store(layer, { digest: wrong })), (e: unknown) => e instanceof IntegrityError && /does not match its digest/.test(e.message));
  });

  test('a layer without image/image.boot, or not a tar, gives a FormatError', async () => {
    await assert.rejects(fetchBootstrap(store(gzipSync(tarOf(['image/not-it', BOOT])))), (e: unknown) => e instanceof FormatError && /holds no image\/image.boot/.test(e.message));
    const corrupt = gzipSync(tarOf(['image/image.boot', BOOT]));
    corrupt.writeUInt8((corrupt.at(-20) as number) ^ 0xff, corrupt.length - 20); // the gzip stream breaks (its digest is of the new bytes)
    await assert.rejects(fetchBootstrap(store(corrupt)), (e: unknown) => e instanceof FormatError && /bootstrap layer sha256:/.test(e.message));
  });
});
