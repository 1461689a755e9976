/**
 * `convert --chunk-dict REF`, between OCI layouts (no registry: the same code pushes to one): a
 * second image whose layer repeats most of the first one's files stores only its new chunks, its
 * blob table references the dictionary's blob, that blob is copied into a target that lacks it
 * (and not pushed again into one that has it), and the result mounted with `--image` reads back
 * every file of its source.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Annotation } from '../../src/oci/media-types.js';
import { damselflyOk } from '../helpers/env.js';
import { startMount } from '../helpers/mount.js';
import { makeOciImage } from '../helpers/oci-image.js';
import { prng } from '../helpers/tree.js';

interface Converted {
  manifestDigest: string;
  blobs: string[];
  bootstrapDigest: string;
  bytesPushed: number;
}

let work: string;
const FILES = { shared1: prng(11, 300_000), shared2: prng(12, 2_500_000), aOnly: prng(13, 100_000), bOnly: prng(14, 150_000) };

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-chunk-dict-'));
  for (const [name, files] of [
    ['a', { shared1: FILES.shared1, shared2: FILES.shared2, 'a-only': FILES.aOnly }],
    ['b', { shared1: FILES.shared1, 'sub/shared2': FILES.shared2, 'b-only': FILES.bOnly }],
  ] as const) {
    const dir = join(work, `src-${name}`);
    await mkdir(join(dir, 'sub'), { recursive: true });
    for (const [path, data] of Object.entries(files)) await writeFile(join(dir, path), data);
    await makeOciImage(join(work, 'oci'), name, [dir], work);
  }
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function convert(source: string, target: string, extra: string[] = []): Promise<Converted> {
  const r = await damselflyOk(['convert', '--source', source, '--target', target, '--json', ...extra]);
  return JSON.parse(r.stdout) as Converted;
}

function blobFile(layout: string, id: string): string {
  return join(layout, 'blobs', 'sha256', id);
}

test('a second image converted against the first stores only its new chunks and reads back whole', async () => {
  const dictLayout = join(work, 'nydus-a');
  const a = await convert(`oci:${join(work, 'oci')}:a`, `oci:${dictLayout}:latest`);
  assert.equal(a.blobs.length, 1);
  const dictBlob = a.blobs[0] as string;
  const dictSize = (await stat(blobFile(dictLayout, dictBlob))).size;

  const target = join(work, 'nydus-b');
  const b = await convert(`oci:${join(work, 'oci')}:b`, `oci:${target}:latest`, ['--chunk-dict', `oci:${dictLayout}:latest`]);
  assert.equal(b.blobs.length, 2, `the dictionary's blob and a new one: ${b.blobs.join(', ')}`);
  assert.ok(b.blobs.includes(dictBlob), 'the blob table references the dictionary blob');
  const newBlob = b.blobs.find((id) => id !== dictBlob) as string;
  const newSize = (await stat(blobFile(target, newBlob))).size;
  // Random data does not compress: the new blob holds b-only (150 kB) and little else.
  assert.ok(newSize < FILES.bOnly.length + 64 * 1024, `new blob of ${newSize} bytes`);
  assert.ok(newSize < dictSize / 10, `new blob ${newSize} bytes, dictionary blob ${dictSize}`);
  // The target lacked the dictionary blob: it was copied there, byte for byte.
  assert.deepEqual(await readFile(blobFile(target, dictBlob)), await readFile(blobFile(dictLayout, dictBlob)));
  assert.equal(b.bytesPushed > dictSize, true, `${b.bytesPushed} bytes pushed`);
  const manifest = JSON.parse((await readFile(blobFile(target, b.manifestDigest.slice('sha256:'.length)))).toString()) as {
    layers: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const boot = manifest.layers.find((l) => l.digest === b.bootstrapDigest);
  assert.deepEqual(JSON.parse(boot?.annotations?.[Annotation.NYDUS_REFERENCE_BLOB_IDS] ?? '[]'), b.blobs);

  const mnt = join(work, 'mnt');
  await mkdir(mnt);
  const m = await startMount(['--image', `oci:${target}:latest`, '--cache-dir', join(work, 'cache')], mnt);
  try {
    assert.deepEqual(await readFile(join(mnt, 'shared1')), FILES.shared1);
    assert.deepEqual(await readFile(join(mnt, 'sub/shared2')), FILES.shared2);
    assert.deepEqual(await readFile(join(mnt, 'b-only')), FILES.bOnly);
  } finally {
    assert.equal((await m.stop()).code, 0, m.stderr());
  }

  // Into the dictionary's own layout: its blob is there already and is not pushed again.
  const again = await convert(`oci:${join(work, 'oci')}:b`, `oci:${dictLayout}:b`, ['--chunk-dict', `oci:${dictLayout}:latest`]);
  assert.deepEqual(again.blobs, b.blobs, 'the same blobs (reproducible)');
  assert.ok(again.bytesPushed < dictSize, `${again.bytesPushed} bytes pushed, the dictionary blob has ${dictSize}`);
});

test('convert --encrypt: encrypted blobs in the layout, served by --image; a dictionary of them serves a plain image too', async () => {
  const dictLayout = join(work, 'nydus-a-encrypted');
  const a = await convert(`oci:${join(work, 'oci')}:a`, `oci:${dictLayout}:latest`, ['--encrypt']);
  assert.equal(a.blobs.length, 1);
  const stored = await readFile(blobFile(dictLayout, a.blobs[0] as string));
  assert.equal(stored.indexOf(FILES.shared2.subarray(1000, 1064)), -1, 'the incompressible file is not in the blob in the clear');

  // b converted plain against the encrypted dictionary: one image, an encrypted blob and a plain one.
  const target = join(work, 'nydus-b-mixed');
  const b = await convert(`oci:${join(work, 'oci')}:b`, `oci:${target}:latest`, ['--chunk-dict', `oci:${dictLayout}:latest`]);
  assert.equal(b.blobs.length, 2);
  const newBlob = b.blobs.find((id) => id !== a.blobs[0]) as string;
  assert.notEqual((await readFile(blobFile(target, newBlob))).indexOf(FILES.bOnly.subarray(1000, 1064)), -1, 'the new blob is plain');

  for (const [image, files] of [
    [`oci:${dictLayout}:latest`, { shared1: FILES.shared1, shared2: FILES.shared2, 'a-only': FILES.aOnly }],
    [`oci:${target}:latest`, { shared1: FILES.shared1, 'sub/shared2': FILES.shared2, 'b-only': FILES.bOnly }],
  ] as const) {
    const mnt = join(work, 'mnt-encrypted');
    await mkdir(mnt, { recursive: true });
    const m = await startMount(['--image', image], mnt);
    try {
      for (const [path, data] of Object.entries(files)) assert.deepEqual(await readFile(join(mnt, path)), data, `${image} ${path}`);
    } finally {
      assert.equal((await m.stop()).code, 0, m.stderr());
    }
  }
});
