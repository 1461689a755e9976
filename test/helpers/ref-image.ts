/**
 * What the tests of ref images (ZRan and tar-ref: layers indexed in place) check alike: that the
 * image is a bootstrap and meta blobs only; every reader serving it (check, unpack, the kernel's
 * EROFS, a FUSE mount with a chunk cache, first with its layer, then without it); a changed layer
 * byte failing its file and nothing else; and the layers of what `convert --oci-ref` pushes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Annotation } from '../../src/oci/media-types.js';
import { damselfly, damselflyOk, sh } from './env.js';
import { startMount, withKernelErofs } from './mount.js';
import { type Entry, compareTrees } from './tree.js';

/** A blob id: the sha256 of `b`, in hex. */
export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** What tar leaves out of a test tree: its socket. */
export const notInTar = (p: string): boolean => p === '/socket';

/** The chunks `inspect --path` shows of one file of the image (`blobDir` for where batch or ZRan chunks are). */
export async function chunksOf<T>(boot: string, blobDir: string, path: string): Promise<T[]> {
  const r = await damselflyOk(['inspect', '--bootstrap', boot, '--blob-dir', blobDir, '--path', path, '--json']);
  return (JSON.parse(r.stdout) as { chunks: T[] }).chunks;
}

export interface RefBlobInfo {
  id: string;
  compressedSize: number;
  features: string[];
  metaBlob?: { id: string; size: number };
}

/**
 * The blob table of a one-layer ref image, after asserting that its blob directory holds its meta
 * blob alone (the data stays in the layer), named by its sha256 as the table records it.
 */
export async function refBlobTable(boot: string, blobDir: string): Promise<{ compressor: string; digester: string; blob: RefBlobInfo; meta: Buffer }> {
  const names = await readdir(blobDir);
  assert.equal(names.length, 1, 'only the meta blob is written: the data stays in the layer');
  const meta = await readFile(join(blobDir, names[0] as string));
  assert.equal(names[0], sha256(meta));
  const info = JSON.parse((await damselflyOk(['inspect', '--bootstrap', boot, '--no-tree', '--json'])).stdout) as { compressor: string; digester: string; blobs: RefBlobInfo[] };
  const [blob] = info.blobs;
  assert.ok(blob !== undefined && info.blobs.length === 1);
  assert.deepEqual(blob.metaBlob, { id: names[0], size: meta.length });
  return { compressor: info.compressor, digester: info.digester, blob, meta };
}

export interface Served {
  boot: string;
  blobDir: string;
  /** The layer file, copied into `blobDir` under `layerId` while it is needed. */
  layer: string;
  layerId: string;
  /** The tree the image holds, and its listing. */
  src: string;
  listing: Map<string, Entry>;
  ignore: (path: string) => boolean;
  /** Scratch: mountpoints, the chunk cache, the unpacked tree and the exported view go under it. */
  dir: string;
  /** Run while the layer is in `blobDir`, after the other readers. */
  withLayer?: () => Promise<void>;
}

/**
 * Every reader of the image agrees with the source: `check`, `unpack`, the kernel's EROFS (the
 * strictest reader of the bootstrap) over the layer's exported view, and a FUSE mount with a
 * chunk cache, first with the layer (chunks fetched), then with the layer gone (every chunk from
 * the cache, none fetched).
 */
export async function assertServed(o: Served): Promise<void> {
  const mnt = join(o.dir, 'mnt');
  await mkdir(mnt, { recursive: true });
  const args = ['--bootstrap', o.boot, '--blob-dir', o.blobDir, '--cache-dir', join(o.dir, 'cache'), '--stats'];
  await copyFile(o.layer, join(o.blobDir, o.layerId));
  try {
    assert.match((await damselflyOk(['check', '--bootstrap', o.boot, '--blob-dir', o.blobDir])).stdout, /OK/);
    const unpacked = join(o.dir, 'unpacked');
    await damselflyOk(['unpack', '--bootstrap', o.boot, '--blob-dir', o.blobDir, '--output', unpacked]);
    assert.deepEqual(await compareTrees(o.src, unpacked, { leftListing: o.listing, ignore: o.ignore }), []);
    const views = join(o.dir, 'views');
    await damselflyOk(['export', '--bootstrap', o.boot, '--blob-dir', o.blobDir, '--blob-views', views]);
    await withKernelErofs(o.boot, [join(views, `${o.layerId}.blob.data`)], join(o.dir, 'erofs'), async (m) => {
      assert.deepEqual(await compareTrees(o.src, m, { leftListing: o.listing, ignore: o.ignore }), []);
    });
    await o.withLayer?.();
    const cold = await startMount(args, mnt);
    try {
      assert.deepEqual(await compareTrees(o.src, mnt, { leftListing: o.listing, ignore: o.ignore }), []);
    } finally {
      const s = JSON.parse((await cold.stop()).stdout) as Record<string, number>;
      assert.ok((s['storage.chunks_fetched'] ?? 0) > 0, 'chunks fetched from the layer');
    }
  } finally {
    await rm(join(o.blobDir, o.layerId), { force: true });
  }
  const again = await startMount(args, mnt);
  try {
    assert.deepEqual(await compareTrees(o.src, mnt, { leftListing: o.listing, ignore: o.ignore }), []);
  } finally {
    const s = JSON.parse((await again.stop()).stdout) as Record<string, number>;
    assert.equal(s['storage.chunks_fetched'] ?? 0, 0, 'every chunk from the cache');
    assert.ok((s['storage.cache_hits'] ?? 0) > 0);
  }
}

export interface Tampered {
  boot: string;
  blobDir: string;
  layer: Buffer;
  layerId: string;
  /** The layer byte changed. */
  at: number;
  dir: string;
  src: string;
  /** A file whose data the changed byte is in, and one it is not. */
  broken: string;
  intact: string;
}

/**
 * With one byte of the layer changed: `check` fails, naming the file and the layer that no longer
 * hashes to its id; a mount answers EIO for that file, never other bytes, and still serves others.
 */
export async function assertTamperedLayer(o: Tampered): Promise<void> {
  await mkdir(o.dir, { recursive: true });
  const changed = Buffer.from(o.layer);
  changed[o.at] = (changed[o.at] as number) ^ 0x20;
  await writeFile(join(o.dir, o.layerId), changed);
  for (const name of await readdir(o.blobDir)) await copyFile(join(o.blobDir, name), join(o.dir, name));
  const checked = await damselfly(['check', '--bootstrap', o.boot, '--blob-dir', o.dir]);
  assert.notEqual(checked.code, 0);
  assert.match(checked.stdout + checked.stderr, new RegExp(o.broken.slice(1).replaceAll('.', '\\.')));
  assert.match(checked.stdout + checked.stderr, /not to its id/);
  const mnt = join(o.dir, 'mnt');
  await mkdir(mnt, { recursive: true });
  const m = await startMount(['--bootstrap', o.boot, '--blob-dir', o.dir], mnt);
  try {
    await assert.rejects(readFile(join(mnt, o.broken)), /EIO/);
    assert.deepEqual(await readFile(join(mnt, o.intact)), await readFile(join(o.src, o.intact)));
  } finally {
    assert.match((await m.stop()).stderr, /failed verification|does not inflate|digest/);
  }
}

/** `dest`: the tree of `upper` stacked on `lower`, with the whiteouts (`.wh.NAME`) of `removed` applied. */
export function stackedTree(lower: string, upper: string, dest: string, removed: string[] = []): void {
  sh(`cp -a '${lower}' '${dest}' && cp -a '${upper}/.' '${dest}/'`);
  for (const name of removed) sh(`rm '${dest}/.wh.${name}' '${dest}/${name}'`);
}

/**
 * The Nydus blob layers of the OCI layout's (only) image, each with the layer it indexes, and how
 * many bootstrap layers it has.
 */
export async function nydusLayers(layout: string): Promise<{ blobLayers: Array<{ mediaType: string; ref: string | undefined }>; bootstrapLayers: number }> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const digest = (index.manifests[0] as { digest: string }).digest;
  const manifest = JSON.parse(await readFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8')) as {
    layers: Array<{ mediaType: string; annotations?: Record<string, string> }>;
  };
  return {
    blobLayers: manifest.layers.filter((l) => l.annotations?.[Annotation.NYDUS_BLOB] === 'true').map((l) => ({ mediaType: l.mediaType, ref: l.annotations?.[Annotation.NYDUS_REF] })),
    bootstrapLayers: manifest.layers.filter((l) => l.annotations?.[Annotation.NYDUS_BOOTSTRAP] === 'true').length,
  };
}
