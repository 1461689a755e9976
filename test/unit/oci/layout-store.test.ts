/**
 * Writing an OCI layout (`convert --target oci:DIR`): a blob file cut short by an earlier writer is
 * replaced rather than trusted because of its name, one already whole is left alone, and the
 * index (written under another name, then renamed, under a lock) keeps every tag, also when
 * several writers tag at once.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import { MediaType } from '../../../src/oci/media-types.js';
import { parseImageRef } from '../../../src/oci/reference.js';
import { OciLayoutStore, readDocument, sha256Digest } from '../../../src/oci/store.js';

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-layout-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function layout(dir: string, tag: string): OciLayoutStore {
  const ref = parseImageRef(`oci:${dir}:${tag}`);
  if (ref.kind !== 'oci-layout') throw new Error('not an OCI layout reference');
  return new OciLayoutStore(ref, silentLogger);
}

test('a blob cut short is written again; a whole one is left as it is', async () => {
  const dir = join(work, 'blobs-case');
  const store = layout(dir, 'latest');
  const data = Buffer.from('the content of a layer, '.repeat(1000));
  const digest = sha256Digest(data);
  const path = join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path, data.subarray(0, 100)); // an earlier writer stopped here
  const d = { digest, size: data.length };
  await assert.rejects(readDocument(store, d, 'the blob'), /100 bytes, its descriptor says/, 'the short file does not pass as the blob');
  await store.putBlob(digest, data);
  assert.deepEqual(await readDocument(store, d, 'the blob'), data);
  const before = await stat(path);
  const fromFile = join(work, 'layer');
  await writeFile(fromFile, data);
  await store.putBlob(digest, { path: fromFile, size: data.length });
  assert.equal((await stat(path)).ino, before.ino, 'the whole blob was not written again');
  assert.deepEqual((await readdir(join(dir, 'blobs', 'sha256'))).sort(), [digest.slice('sha256:'.length)], 'no temporary file');
});

test('manifests of two tags: the index keeps both, and no temporary file stays behind', async () => {
  const dir = join(work, 'index-case');
  const manifests = ['a', 'b'].map((t) => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: { mediaType: 'x', digest: sha256Digest(Buffer.from(t)), size: 1 }, layers: [] })));
  await layout(dir, 'one').putManifest(MediaType.OCI_MANIFEST, manifests[0] as Buffer);
  await layout(dir, 'two').putManifest(MediaType.OCI_MANIFEST, manifests[1] as Buffer);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  assert.deepEqual(
    index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]),
    [
      ['one', sha256Digest(manifests[0] as Buffer)],
      ['two', sha256Digest(manifests[1] as Buffer)],
    ],
  );
  assert.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
});

test('tags written at once (two converts into one layout) all stay in the index', async () => {
  const dir = join(work, 'concurrent-case');
  await mkdir(dir, { recursive: true });
  const tags = Array.from({ length: 20 }, (_, i) => `t${i}`);
  const manifestOf = (t: string): Buffer => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: { mediaType: 'x', digest: sha256Digest(Buffer.from(t)), size: 1 }, layers: [] }));
  // Separate stores, as separate processes would have; flock locks are per open file, so the
  // writers of one process exclude each other as those of two would.
  await Promise.all(tags.map((t) => layout(dir, t).putManifest(MediaType.OCI_MANIFEST, manifestOf(t))));
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
  assert.deepEqual(
    index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']).sort(),
    [...tags].sort(),
  );
  for (const m of index.manifests) assert.equal(m.digest, sha256Digest(manifestOf(m.annotations['org.opencontainers.image.ref.name'] as string)));
});
