/**
 * OCI layer builds through the CLI: the reference layer all-entry-type.tar against GNU tar's own
 * extraction; a stack of three generated layers (tar, tar.gz, tar.zst) with additions, changes,
 * whiteouts, an opaque directory, type changes, xattrs, hardlinks and symlinks, checked against a
 * small independent model of OCI layer application, with one blob per layer and cross-layer chunk
 * dedup counted exactly; `--chunk-dict`; `--prefetch-files`; `--inline-bootstrap`; multi-member
 * gzip and multi-frame zstd layers (with skippable frames); sparse files in each GNU tar format;
 * hostile layers (clean failures with a
 * message and nothing left behind, values a RAFS inode cannot hold, absolute paths, symlinked
 * parents); and reproducibility.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { native, nativeCodecs } from '../../src/native/index.js';
import { TAR_END, encodeSparseTarHeaders } from '../../src/format/tar.js';
import { loadImage } from '../../src/storage/open-image.js';
import { VECTORS, damselfly, damselflyOk, sh, vectorsMissing, withTempDir } from '../helpers/env.js';
import { type Compression, type Item, item, materialize, referenceMerge, tarBytes, writeLayer } from '../helpers/layers.js';
import { tarEntry } from '../helpers/tar.js';
import { compareTrees, prng } from '../helpers/tree.js';

const CHUNK = 64 * 1024;
const CHUNK_ARGS = ['--chunk-size', '64K'];

/** Chunk accounting the builder must reproduce: chunks seen first in each layer, dedup hits, dictionary hits. */
function expectedChunks(layers: Item[][], dict: Set<string> = new Set()): { perLayer: number[]; chunks: number; stored: number; dedupHits: number; dictHits: number } {
  const seen = new Set<string>();
  const r = { perLayer: [] as number[], chunks: 0, stored: 0, dedupHits: 0, dictHits: 0 };
  for (const layer of layers) {
    let fresh = 0;
    for (const { entry, data } of layer) {
      if (entry.type !== 'file' || data === undefined) continue;
      for (let off = 0; off < data.length; off += CHUNK) {
        const key = chunkKey(data.subarray(off, off + CHUNK));
        r.chunks++;
        if (seen.has(key)) r.dedupHits++;
        else if (dict.has(key)) r.dictHits++;
        else {
          r.stored++;
          fresh++;
        }
        seen.add(key);
      }
    }
    r.perLayer.push(fresh);
  }
  return r;
}

function chunkKey(b: Buffer): string {
  return `${createHash('sha256').update(b).digest('hex')}:${b.length}`;
}

function chunkKeys(items: Item[]): Set<string> {
  const keys = new Set<string>();
  for (const { data } of items) for (let off = 0; data !== undefined && off < data.length; off += CHUNK) keys.add(chunkKey(data.subarray(off, off + CHUNK)));
  return keys;
}

// ---------------------------------------------------------------------------------------------
// The three-layer stack

const T1 = 1_600_000_000;
const T2 = 1_650_000_000;
const T3 = 1_700_000_000;
const TOOL = prng(11, 200_000); // 4 chunks of 64 KiB
const BIG = prng(12, 150_000); // 3 chunks

function layer1(): Item[] {
  const t = { time: T1 };
  return [
    item('./', 'dir', { ...t, mtimeNsec: 5, mode: 0o755 }),
    item('bin/', 'dir', t),
    item('bin/tool', 'file', { ...t, mode: 0o755, data: TOOL }),
    item('etc/', 'dir', t),
    item('etc/passwd', 'file', { ...t, data: 'root:x:0:0:root:/root:/bin/sh\n' }),
    item('etc/hosts', 'file', { ...t, data: '127.0.0.1 localhost\n' }),
    item('lib/', 'dir', t),
    item('lib/big.bin', 'file', { ...t, data: BIG }),
    item('data/', 'dir', { ...t, xattrs: [[Buffer.from('user.dir'), Buffer.from('lower')]] }),
    item('data/a.txt', 'file', { ...t, data: 'a\n' }),
    item('data/b.txt', 'file', { ...t, data: 'b\n' }),
    item('data/sub/', 'dir', t),
    item('data/sub/c.txt', 'file', { ...t, data: 'c\n' }),
    item('opaque/', 'dir', t),
    item('opaque/x', 'file', { ...t, data: 'lower x\n' }),
    item('opaque/y', 'file', { ...t, data: 'lower y\n' }),
    item('opaque/sub/', 'dir', t),
    item('opaque/sub/z', 'file', { ...t, data: 'lower z\n' }),
    item('f2d', 'file', { ...t, data: 'a file that becomes a directory\n' }),
    item('d2f/', 'dir', t),
    item('d2f/inner', 'file', { ...t, data: 'inside a directory that becomes a file\n' }),
    item('d2f/deeper/', 'dir', t),
    item('d2f/deeper/f', 'file', { ...t, data: 'deeper\n' }),
    item('gone', 'file', { ...t, data: 'deleted in layer 2\n' }),
    item('gone-dir/', 'dir', t),
    item('gone-dir/f', 'file', { ...t, data: 'deleted with its directory\n' }),
    item('xattr', 'file', {
      ...t,
      data: 'xattrs\n',
      xattrs: [
        [Buffer.from('user.bin'), Buffer.from([0, 10, 255, 0])],
        [Buffer.from('trusted.t'), Buffer.from('lower')],
      ],
    }),
    item('hl/', 'dir', t),
    item('hl/orig', 'file', { ...t, data: 'linked content\n' }),
    item('hl/link', 'hardlink', { ...t, linkpath: Buffer.from('hl/orig') }),
    item('hl/link2', 'hardlink', { ...t, linkpath: Buffer.from('./hl/orig') }),
    item('link', 'symlink', { ...t, linkpath: Buffer.from('etc/passwd') }),
    item('dev/', 'dir', t),
    item('dev/null', 'char', { ...t, mode: 0o666, devmajor: 1, devminor: 3 }),
    item('dev/sda', 'block', { ...t, mode: 0o660, devmajor: 8, devminor: 0 }),
    item('dev/fifo', 'fifo', { ...t, mode: 0o600 }),
    item('owned', 'file', { ...t, mode: 0o4750, uid: 1000, gid: 3_000_000, mtimeNsec: 123_456_789, data: 'owned\n' }),
  ];
}

function layer2(): Item[] {
  const t = { time: T2 };
  return [
    item('etc/', 'dir', { ...t, mode: 0o750 }), // attributes change, children stay
    item('etc/passwd', 'file', { ...t, data: 'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/sh\n' }),
    item('data/.wh.a.txt', 'file', t),
    item('.wh.gone', 'file', t),
    item('.wh.gone-dir', 'file', t),
    item('opaque/', 'dir', t),
    item('opaque/.wh..wh..opq', 'file', t),
    item('opaque/new', 'file', { ...t, data: 'upper new\n' }),
    item('opaque/x', 'file', { ...t, data: 'upper x\n' }),
    item('f2d/', 'dir', t),
    item('f2d/inner', 'file', { ...t, data: 'now a directory\n' }),
    item('d2f', 'file', { ...t, data: 'now a file\n' }),
    item('data/new.txt', 'file', { ...t, data: 'added without listing data/\n' }),
    item('xattr', 'file', { ...t, data: 'xattrs v2\n', xattrs: [[Buffer.from('user.bin'), Buffer.from('\n\0upper\0\n')]] }),
    item('hl/orig', 'file', { ...t, data: 'orig replaced; the other names keep the old inode\n' }),
    item('hl2/', 'dir', t),
    item('hl2/a', 'file', { ...t, data: prng(13, 70_000) }),
    item('hl2/b', 'hardlink', { ...t, linkpath: Buffer.from('hl2/a') }),
    item('hl2/c', 'hardlink', { ...t, linkpath: Buffer.from('hl2/a') }),
  ];
}

function layer3(): Item[] {
  const t = { time: T3 };
  return [
    item('lib/big-copy.bin', 'file', { ...t, data: BIG }), // the same chunks as lib/big.bin: nothing new stored
    item('bin/tool', 'file', { ...t, mode: 0o700, data: TOOL }), // metadata change only
    item('f2d/.wh.inner', 'file', t),
    item('f2d/other', 'file', { ...t, data: 'other\n' }),
    item('hl2/.wh.a', 'file', t), // one name of a hardlink group removed
    item('link', 'symlink', { ...t, linkpath: Buffer.from('/bin/tool') }),
    item('new-dir/', 'dir', { ...t, mode: 0o700, uid: 5, gid: 6 }),
    item('new-dir/fresh', 'file', { ...t, data: prng(14, 10_000) }),
  ];
}

const STACK: Array<{ items: () => Item[]; compression: Compression }> = [
  { items: layer1, compression: 'tar' },
  { items: layer2, compression: 'tar.gz' },
  { items: layer3, compression: 'tar.zst' },
];

interface BuildJson {
  blobs: Array<{ id: string; size: number; chunks: number }>;
  blobTable: string[];
  prefetch: string[];
  chunks: { chunks: number; stored: number; dedupHits: number; dictHits: number };
}

interface InspectJson {
  blobs: Array<{ id: string; chunkCount: number; index: number }>;
  prefetch: number[];
  tree: Array<{ path: string; kind: string; ino: number; nlink: number }>;
}

async function buildJson(args: string[]): Promise<BuildJson> {
  return JSON.parse((await damselflyOk(['build', '--json', ...CHUNK_ARGS, ...args])).stdout) as BuildJson;
}

async function inspectJson(args: string[]): Promise<InspectJson> {
  return JSON.parse((await damselflyOk(['inspect', '--json', ...args])).stdout) as InspectJson;
}

async function dirBytes(dir: string): Promise<Map<string, Buffer>> {
  const m = new Map<string, Buffer>();
  for (const n of (await readdir(dir)).sort()) m.set(n, await readFile(join(dir, n)));
  return m;
}

describe('OCI layer builds', () => {
  let work: string;
  let layers: string[];
  let expected: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-layers-'));
    layers = [];
    for (const [i, l] of STACK.entries()) layers.push(await writeLayer(work, `layer${i + 1}`, l.items(), l.compression));
    expected = join(work, 'expected');
    await mkdir(expected);
    await materialize(referenceMerge(STACK.map((l) => l.items())), expected);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('all-entry-type.tar as one layer unpacks like GNU tar extracts it (hardlinks kept)', { skip: vectorsMissing() }, async () => {
    const vector = join(VECTORS, 'tar', 'all-entry-type.tar');
    const d = join(work, 'vector');
    await damselflyOk(['build', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), vector]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
    await mkdir(join(d, 'ref'));
    sh(`tar --xattrs --xattrs-include='*' --numeric-owner -xpf '${vector}' -C '${d}/ref'`);
    // The layer has no entry for its root: the two roots' attributes are not the layer's.
    assert.deepEqual(await compareTrees(join(d, 'ref'), join(d, 'out'), { ignore: (p) => p === '/' }), []);
    const st = await lstat(join(d, 'out', 'tar/dir1/dir3/hardlink1.txt'));
    assert.equal(st.nlink, 4);
    for (const p of ['tar/dir1/dir3/xfile.txt', 'tar/dir1/hardlink2.txt', 'tar/dir2/hardlink3.txt']) assert.equal((await lstat(join(d, 'out', p))).ino, st.ino, p);
    assert.equal((await readFile(join(d, 'out', 'tar/dir1/dir3/hardlink1.txt'))).length, 15);
    await damselflyOk(['check', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs')]);
  });

  test('three layers (tar, tar.gz, tar.zst): merged tree, one blob per layer, cross-layer dedup', async () => {
    const d = join(work, 'stack');
    const boot = join(d, 'boot');
    const blobs = join(d, 'blobs');
    const result = await buildJson(['--bootstrap', boot, '--blob-dir', blobs, ...layers]);
    const want = expectedChunks(STACK.map((l) => l.items()));
    assert.deepEqual(want.perLayer.map((n) => n > 0), [true, true, true], 'test bug: every layer has new data');
    assert.ok(want.dedupHits >= 7, 'test bug: lib/big-copy.bin and bin/tool repeat 7 chunks');
    assert.deepEqual(
      { chunks: result.chunks.chunks, stored: result.chunks.stored, dedupHits: result.chunks.dedupHits, dictHits: result.chunks.dictHits },
      { chunks: want.chunks, stored: want.stored, dedupHits: want.dedupHits, dictHits: 0 },
    );
    assert.equal(result.blobs.length, 3);
    assert.deepEqual(result.blobs.map((b) => b.chunks), want.perLayer);
    assert.deepEqual((await readdir(blobs)).sort(), result.blobs.map((b) => b.id).sort());

    const image = ['--bootstrap', boot, '--blob-dir', blobs];
    const info = await inspectJson(['--bootstrap', boot]);
    assert.deepEqual(info.blobs.map((b) => b.id), result.blobs.map((b) => b.id));
    assert.deepEqual(info.blobs.map((b) => b.chunkCount), want.perLayer);
    // The repeated file's chunks all live in the bottom layer's blob, shared with the original.
    const chunksOf = async (path: string): Promise<Array<{ blobIndex: number; digest: string }>> =>
      (JSON.parse((await damselflyOk(['inspect', '--json', '--bootstrap', boot, '--path', path])).stdout) as { chunks: Array<{ blobIndex: number; digest: string }> }).chunks;
    const copy = await chunksOf('/lib/big-copy.bin');
    assert.equal(copy.length, 3);
    assert.deepEqual(copy, await chunksOf('/lib/big.bin'));
    assert.ok(copy.every((c) => c.blobIndex === 0));
    assert.ok((await chunksOf('/bin/tool')).every((c) => c.blobIndex === 0));
    assert.ok((await chunksOf('/new-dir/fresh')).every((c) => c.blobIndex === 2));

    const check = await damselflyOk(['check', ...image]);
    assert.match(check.stdout, /\nOK\n$/);
    await damselflyOk(['unpack', ...image, '--output', join(d, 'out')]);
    assert.deepEqual(await compareTrees(expected, join(d, 'out')), []);
    // Spot checks of the merge, beyond the exact comparison above.
    const out = (p: string): string => join(d, 'out', p);
    assert.equal(existsSync(out('gone')) || existsSync(out('gone-dir')) || existsSync(out('data/a.txt')), false);
    assert.deepEqual((await readdir(out('opaque'))).sort(), ['new', 'x']);
    assert.ok((await lstat(out('f2d'))).isDirectory());
    assert.deepEqual(await readdir(out('f2d')), ['other']);
    assert.ok((await lstat(out('d2f'))).isFile());
    assert.equal((await lstat(out('hl/link'))).ino, (await lstat(out('hl/link2'))).ino);
    assert.equal((await lstat(out('hl/link'))).nlink, 2);
    assert.equal((await lstat(out('hl/orig'))).nlink, 1);
    assert.equal((await lstat(out('hl2/b'))).nlink, 2);
    assert.deepEqual(native.lgetxattr(out('data'), 'user.dir'), Buffer.from('lower'));
    assert.equal(native.lgetxattr(out('xattr'), 'trusted.t'), null);
  });

  test('--chunk-dict: a second image references the first image\'s blob and stores only new chunks', async () => {
    const d = join(work, 'dict');
    await mkdir(d);
    const a = layer1();
    // Image B: the same layer with one file changed, one removed and one added.
    const b = [
      ...a.filter((i) => !['etc/passwd', 'gone'].includes(i.entry.path.toString())),
      item('etc/passwd', 'file', { time: T2, data: 'changed\n' }),
      item('extra.bin', 'file', { time: T2, data: Buffer.concat([BIG.subarray(0, CHUNK), prng(15, 100_000)]) }),
    ];
    const la = await writeLayer(d, 'a', a, 'tar');
    const lb = await writeLayer(d, 'b', b, 'tar.zst');
    const ra = await buildJson(['--bootstrap', join(d, 'a.boot'), '--blob-dir', join(d, 'blobs-a'), la]);
    assert.equal(ra.blobs.length, 1);
    const blobA = (ra.blobs[0] as { id: string }).id;
    const rb = await buildJson(['--chunk-dict', join(d, 'a.boot'), '--bootstrap', join(d, 'b.boot'), '--blob-dir', join(d, 'blobs-b'), lb]);
    const want = expectedChunks([b], chunkKeys(a));
    assert.ok(want.dictHits > 0 && want.stored > 0, 'test bug');
    assert.deepEqual(
      { chunks: rb.chunks.chunks, stored: rb.chunks.stored, dedupHits: rb.chunks.dedupHits, dictHits: rb.chunks.dictHits },
      { chunks: want.chunks, stored: want.stored, dedupHits: want.dedupHits, dictHits: want.dictHits },
    );
    assert.equal(rb.blobs.length, 1);
    const blobB = (rb.blobs[0] as { id: string; chunks: number });
    assert.equal(blobB.chunks, want.stored);
    assert.deepEqual(await readdir(join(d, 'blobs-b')), [blobB.id]);
    const info = await inspectJson(['--bootstrap', join(d, 'b.boot')]);
    assert.deepEqual(info.blobs.map((x) => x.id), [blobB.id, blobA]);
    assert.equal(info.blobs[0]?.chunkCount, want.stored);

    // B's own blob dir alone is not enough; with A's blob next to B's it unpacks and checks.
    const alone = await damselfly(['unpack', '--bootstrap', join(d, 'b.boot'), '--blob-dir', join(d, 'blobs-b'), '--output', join(d, 'partial')]);
    assert.notEqual(alone.code, 0);
    const both = join(d, 'blobs-both');
    await mkdir(both);
    await copyFile(join(d, 'blobs-a', blobA), join(both, blobA));
    await copyFile(join(d, 'blobs-b', blobB.id), join(both, blobB.id));
    await damselflyOk(['check', '--bootstrap', join(d, 'b.boot'), '--blob-dir', both]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'b.boot'), '--blob-dir', both, '--output', join(d, 'out')]);
    const ref = join(d, 'expected');
    await mkdir(ref);
    await materialize(referenceMerge([b]), ref);
    assert.deepEqual(await compareTrees(ref, join(d, 'out')), []);
  });

  test('--prefetch-files: the listed paths head the prefetch table, in order', async () => {
    const d = join(work, 'prefetch');
    await mkdir(d);
    const list = join(d, 'prefetch.txt');
    await writeFile(list, ['# prefetch these first', '/new-dir/fresh', 'lib/big.bin', '/does/not/exist', '', '/data', '/hl/link', '/new-dir/fresh', '/hl/link2'].join('\n'));
    const r = await buildJson(['--prefetch-files', list, '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), ...layers]);
    // Missing paths are skipped; a second name of the same inode (hl/link2) adds nothing.
    assert.deepEqual(r.prefetch, ['/new-dir/fresh', '/lib/big.bin', '/data', '/hl/link']);
    const info = await inspectJson(['--bootstrap', join(d, 'boot')]);
    const ino = new Map(info.tree.map((t) => [t.path, t.ino]));
    assert.deepEqual(info.prefetch, ['/new-dir/fresh', '/lib/big.bin', '/data', '/hl/link'].map((p) => ino.get(p)));
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
    assert.deepEqual(await compareTrees(expected, join(d, 'out')), []);
  });

  test('--prefetch-files on a tar layer: the listed files\' data leads the blob, in list order, stored once', async () => {
    const d = join(work, 'prefetch-order');
    await mkdir(d);
    const data = new Map(['a', 'b', 'c', 'd'].map((n, i) => [n, prng(40 + i, 150_000)] as const)); // 3 chunks each
    const layer = join(d, 'layer.tar');
    await writeFile(layer, tarBytes([item('./', 'dir'), item('dir/', 'dir'), ...[...data].map(([n, bytes]) => item(n === 'c' ? 'dir/c' : n, 'file', { data: bytes }))]));
    await writeFile(join(d, 'list'), '/d\n/dir\n/b\n');
    const r = await buildJson(['--prefetch-files', join(d, 'list'), '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), layer]);
    assert.deepEqual(r.prefetch, ['/d', '/dir', '/b']);
    const chunkIndexes = async (path: string): Promise<number[]> =>
      (JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(d, 'boot'), '--path', path, '--json'])).stdout) as { chunks: Array<{ index: number }> }).chunks.map((c) => c.index);
    // d, then everything below dir (c), then b; a, listed nowhere, last. Each chunk stored once.
    assert.deepEqual([await chunkIndexes('/d'), await chunkIndexes('/dir/c'), await chunkIndexes('/b'), await chunkIndexes('/a')], [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]);
    assert.equal((await inspectJson(['--bootstrap', join(d, 'boot')])).blobs[0]?.chunkCount, 12);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
    for (const [n, bytes] of data) assert.ok((await readFile(join(d, 'out', n === 'c' ? 'dir/c' : n))).equals(bytes), n);
  });

  test('--prefetch-files on several layers: each blob leads with the listed files it holds, in list order', async () => {
    const d = join(work, 'prefetch-layers');
    await mkdir(d);
    const data = new Map(['a', 'b', 'c', 'd'].map((n, i) => [n, prng(50 + i, 150_000)] as const)); // 3 chunks each
    const file = (n: string): Item => item(n, 'file', { data: data.get(n) as Buffer });
    await writeFile(join(d, 'lower.tar'), tarBytes([item('./', 'dir'), file('a'), file('b')]));
    await writeFile(join(d, 'upper.tar'), tarBytes([item('./', 'dir'), file('c'), file('d')]));
    await writeFile(join(d, 'list'), '/d\n/b\n');
    const r = await buildJson(['--prefetch-files', join(d, 'list'), '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(d, 'lower.tar'), join(d, 'upper.tar')]);
    assert.deepEqual(r.prefetch, ['/d', '/b']);
    const chunks = async (path: string): Promise<string[]> =>
      (JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(d, 'boot'), '--path', path, '--json'])).stdout) as { chunks: Array<{ blobIndex: number; index: number }> }).chunks.map((c) => `${c.blobIndex}:${c.index}`);
    // The lower blob: b (listed), then a; the upper blob: d (listed), then c. It was the top layer alone.
    assert.deepEqual(
      [await chunks('/b'), await chunks('/a'), await chunks('/d'), await chunks('/c')],
      [
        ['0:0', '0:1', '0:2'],
        ['0:3', '0:4', '0:5'],
        ['1:0', '1:1', '1:2'],
        ['1:3', '1:4', '1:5'],
      ],
    );
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
    for (const [n, bytes] of data) assert.ok((await readFile(join(d, 'out', n))).equals(bytes), n);
  });

  test('--inline-bootstrap: the top blob alone opens the image; unpack and check pass', async () => {
    const d = join(work, 'inline');
    const r = await buildJson(['--inline-bootstrap', '--blob-dir', join(d, 'blobs'), ...layers]);
    assert.equal(r.blobs.length, 3);
    assert.equal(existsSync(join(d, 'boot')), false);
    const top = join(d, 'blobs', (r.blobs[2] as { id: string }).id);
    const check = await damselflyOk(['check', '--blob', top]);
    assert.match(check.stdout, /\nOK\n$/);
    await damselflyOk(['unpack', '--blob', top, '--output', join(d, 'out')]);
    assert.deepEqual(await compareTrees(expected, join(d, 'out')), []);
    await damselflyOk(['unpack', '--blob', top, '--tar', join(d, 'out.tar')]);
    // A tar that exists already, or cannot be created: a clear error, the file untouched (it was an
    // unhandled 'error' event of a write stream, a stack trace).
    const before = await readFile(join(d, 'out.tar'));
    for (const [target, code] of [[join(d, 'out.tar'), 'EEXIST'], [join(d, 'missing-dir', 'x.tar'), 'ENOENT']] as const) {
      const r = await damselfly(['unpack', '--blob', top, '--tar', target]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^damselfly: .*${code}`, 'm'));
      assert.doesNotMatch(r.stderr, /Unhandled|node:events|\n {4}at /);
    }
    assert.ok((await readFile(join(d, 'out.tar'))).equals(before));
    await mkdir(join(d, 'from-tar'));
    sh(`tar --xattrs --xattrs-include='*' --numeric-owner -xpf '${d}/out.tar' -C '${d}/from-tar'`);
    // `unpack --tar` lists each directory's subtree right after it, as `tar c` does: GNU tar sets a
    // directory's times when it leaves it, so directory mtimes come out right too (breadth-first,
    // they did not).
    assert.deepEqual(await compareTrees(expected, join(d, 'from-tar'), { ignore: (p) => p === '/' }), []);
  });

  test('directory layers carry OCI whiteouts as tar layers do: .wh.NAME removes, .wh..wh..opq hides what is below', async () => {
    const d = join(work, 'dir-whiteouts');
    const put = async (path: string, data?: string): Promise<void> => {
      await mkdir(join(d, path, '..'), { recursive: true });
      if (data === undefined) await mkdir(join(d, path), { recursive: true });
      else await writeFile(join(d, path), data);
    };
    await put('lower/keep', 'kept\n');
    await put('lower/gone', 'whited out\n');
    await put('lower/dir/old', 'hidden by the opaque upper dir\n');
    await put('lower/sub/deeper/x', 'x\n');
    await put('upper/.wh.gone', '');
    await put('upper/dir/.wh..wh..opq', '');
    await put('upper/dir/new', 'new\n');
    await put('upper/sub/.wh.deeper', '');
    await put('upper/sub/.wh..wh.plnk', ''); // aufs metadata: dropped
    await buildJson(['--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(d, 'lower'), join(d, 'upper')]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
    assert.deepEqual(sh(`cd '${join(d, 'out')}' && find . | sort`).trim().split('\n'), ['.', './dir', './dir/new', './keep', './sub']);
  });

  test('--whiteout-spec overlayfs reads a real overlayfs upper directory (0/0 devices, opaque dirs) as the merged mount shows it; none keeps them as entries', async () => {
    const d = join(work, 'overlay-whiteouts');
    for (const sub of ['lower/dir/deep', 'lower/sub', 'upper', 'work', 'merged']) await mkdir(join(d, sub), { recursive: true });
    await writeFile(join(d, 'lower/keep'), 'kept\n');
    await writeFile(join(d, 'lower/gone'), 'removed in the upper layer\n');
    await writeFile(join(d, 'lower/dir/old'), 'hidden by the opaque upper dir\n');
    await writeFile(join(d, 'lower/dir/deep/older'), 'hidden too\n');
    await writeFile(join(d, 'lower/sub/x'), 'x\n');
    await writeFile(join(d, 'lower/.wh.not-a-whiteout'), 'an ordinary file under this spec\n');
    // The upper directory as the kernel writes it: a whiteout device for each removed name, and
    // trusted.overlay.opaque=y on a directory removed and made again.
    sh(`mount -t overlay overlay -o lowerdir='${d}/lower',upperdir='${d}/upper',workdir='${d}/work' '${d}/merged'`);
    try {
      sh(`cd '${d}/merged' && rm gone sub/x && rm -r dir && mkdir dir && echo new > dir/new && echo changed > keep`);
      const merged = sh(`cd '${d}/merged' && find . | sort && cat keep dir/new`);
      sh(`umount '${d}/merged'`);
      assert.equal((await lstat(join(d, 'upper/gone'))).rdev, 0, 'the kernel made a whiteout device');
      assert.deepEqual(native.lgetxattr(Buffer.from(join(d, 'upper/dir')), Buffer.from('trusted.overlay.opaque')), Buffer.from('y'));
      await buildJson(['--whiteout-spec', 'overlayfs', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(d, 'lower'), join(d, 'upper')]);
      await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
      assert.equal(sh(`cd '${d}/out' && find . | sort && cat keep dir/new`), merged);
      // The opaque mark is bookkeeping of the layer stack, not an xattr of the image's directory.
      assert.deepEqual(native.llistxattr(Buffer.from(join(d, 'out/dir'))), []);
      // none: the upper directory as it is, whiteout devices and the opaque xattr included.
      await buildJson(['--whiteout-spec', 'none', '--bootstrap', join(d, 'boot-none'), '--blob-dir', join(d, 'blobs'), join(d, 'upper')]);
      await damselflyOk(['unpack', '--bootstrap', join(d, 'boot-none'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out-none')]);
      // (The kernel links every whiteout to one inode, in the work directory too: nlink differs.)
      const devices = new Set(['/gone', '/sub/x']);
      assert.deepEqual(await compareTrees(join(d, 'upper'), join(d, 'out-none'), { ignore: (p) => p === '/' || devices.has(p) }), []);
      for (const p of devices) {
        const st = await lstat(join(d, 'out-none', p));
        assert.ok(st.isCharacterDevice() && st.rdev === 0, `${p} is kept as the whiteout device it is`);
      }
      // A ref build takes layer tars only: the spec cannot apply.
      const r = await damselfly(['build', '--type', 'tar-ref', '--whiteout-spec', 'overlayfs', '--bootstrap', join(d, 'boot-ref'), '--blob-dir', join(d, 'blobs'), join(d, 'upper')]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--whiteout-spec cannot apply/);
    } finally {
      sh(`! mountpoint -q '${d}/merged' || umount '${d}/merged'`);
    }
  });

  test('a directory source or a layer tar links every kind of inode it links (as nydus-image); unpack, to a directory or a tar, links them again', async () => {
    const d = join(work, 'special-links');
    await mkdir(join(d, 'src/d'), { recursive: true });
    sh(`cd '${d}/src' && echo x > f && ln f d/f && mkfifo p && ln p d/p && ln -s target s && ln s d/s && mknod c c 1 3 && ln c d/c`);
    await buildJson(['--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), join(d, 'src')]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out')]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot'), '--blob-dir', join(d, 'blobs'), '--tar', join(d, 'out.tar')]);
    await mkdir(join(d, 'from-tar'));
    sh(`tar --numeric-owner -xpf '${d}/out.tar' -C '${d}/from-tar'`);
    // The archive unpack wrote, as a layer: its hard link entries give one inode each again.
    await buildJson(['--bootstrap', join(d, 'boot-tar'), '--blob-dir', join(d, 'blobs'), join(d, 'out.tar')]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'boot-tar'), '--blob-dir', join(d, 'blobs'), '--output', join(d, 'out-tar')]);
    for (const out of ['out', 'from-tar', 'out-tar']) {
      assert.deepEqual(await compareTrees(join(d, 'src'), join(d, out), { ignore: (p) => p === '/' }), [], out);
      for (const n of ['f', 'p', 's', 'c']) {
        const [a, b] = await Promise.all([lstat(join(d, out, n)), lstat(join(d, out, 'd', n))]);
        assert.ok(a.ino === b.ino && a.nlink === 2, `${out}: ${n} and d/${n} are one inode`);
      }
    }
  });

  test('sparse files in layer tars of each GNU tar format (old GNU, PAX 0.0, 0.1, 1.0) build and unpack to the same bytes, holes stored as one zero chunk; unpack --tar --sparse writes them back as GNU tar does', async () => {
    const d = join(work, 'sparse');
    await mkdir(join(d, 'src'), { recursive: true });
    // 8 MiB with 40 islands (more runs than an old GNU header holds: extension blocks; a PAX 1.0
    // map of more than one block), one of 300 MiB (past what a prefetch build holds in memory) that is nearly all hole, one that is all hole,
    // and one whose data ends it.
    const islands = Array.from({ length: 40 }, (_, i) => `printf 'island %02d' ${i} | dd of=many bs=1 seek=${i * 200_003 + 17} conv=notrunc status=none`).join(' && ');
    sh(`cd '${d}/src' && truncate -s 8M many && ${islands} && truncate -s 300M huge && head -c 100000 /dev/urandom | dd of=huge bs=1 seek=200000000 conv=notrunc status=none && truncate -s 3M empty && truncate -s 1M ends && echo tail >> ends && echo plain > plain && touch -d @1700000000 *`); // whole seconds: the old GNU format has no more
    // The distinct chunks of the tree: its data, and one chunk of zeros for every hole.
    const distinct = new Set<string>();
    for (const name of await readdir(join(d, 'src'))) {
      const bytes = await readFile(join(d, 'src', name));
      for (let off = 0; off < bytes.length; off += CHUNK) distinct.add(chunkKey(bytes.subarray(off, off + CHUNK)));
    }
    const formats: Array<[string, string]> = [['gnu', '--format=gnu'], ['0.0', '--format=posix --sparse-version=0.0'], ['0.1', '--format=posix --sparse-version=0.1'], ['1.0', '--format=posix --sparse-version=1.0']];
    for (const [name, flags] of formats) {
      const tar = join(d, `${name}.tar`);
      sh(`cd '${d}/src' && tar ${flags} --sparse --numeric-owner -cf '${tar}' .`);
      const out = join(d, name);
      // One build stores two of them first: `many` held in memory, `huge` past that budget.
      await writeFile(join(d, 'prefetch'), '/many\n/huge\n');
      const prefetch = name === '1.0' ? ['--prefetch-files', join(d, 'prefetch')] : [];
      const built = await buildJson([...prefetch, '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), tar]);
      // The data (100,000 random bytes, 40 islands, a few more) and one chunk of zeros, compressed.
      assert.equal(built.chunks.stored, distinct.size, `${name}: chunks stored`);
      assert.ok(built.blobs[0]!.size < 400_000, `${name}: a blob of ${built.blobs[0]!.size} bytes`);
      await damselflyOk(['unpack', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), '--output', join(out, 'out')]);
      assert.deepEqual(await compareTrees(join(d, 'src'), join(out, 'out'), { ignore: (p) => p === '/' }), [], name);
      await damselflyOk(['check', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs')]);
    }
    // unpack --tar --sparse writes them as GNU tar --sparse does: the archive holds their data
    // alone, GNU tar extracts them with their holes, and they build back to the same tree.
    const out = join(d, '1.0');
    await damselflyOk(['unpack', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), '--tar', join(d, 'sparse-out.tar'), '--sparse']);
    const archived = (await lstat(join(d, 'sparse-out.tar'))).size;
    // 312 MiB of files: the chunks with data (43 of 64 KiB: 40 islands, 3 of huge's) and no more.
    assert.ok(archived < 44 * 65_536 + 64 * 1024, `an archive of ${archived} bytes`);
    await mkdir(join(d, 'gnu-x'));
    sh(`tar --numeric-owner -xpf '${d}/sparse-out.tar' -C '${d}/gnu-x'`);
    assert.deepEqual(await compareTrees(join(d, 'src'), join(d, 'gnu-x'), { ignore: (p) => p === '/' }), []);
    assert.ok(Number(sh(`du -k --apparent-size=false '${d}/gnu-x/huge' | cut -f1`)) < 1024, 'GNU tar extracted the holes as holes');
    await buildJson(['--bootstrap', join(d, 'again', 'boot'), '--blob-dir', join(d, 'again', 'blobs'), join(d, 'sparse-out.tar')]);
    await damselflyOk(['unpack', '--bootstrap', join(d, 'again', 'boot'), '--blob-dir', join(d, 'again', 'blobs'), '--output', join(d, 'again', 'out')]);
    assert.deepEqual(await compareTrees(join(d, 'src'), join(d, 'again', 'out'), { ignore: (p) => p === '/' }), []);
    assert.equal((await damselfly(['unpack', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), '--output', join(d, 'nope'), '--sparse'])).code, 2);
    // A tar-ref chunk is a range of the layer itself, and a hole is not in it: a clear refusal.
    const ref = await damselfly(['build', '--type', 'tar-ref', '--bootstrap', join(d, 'ref', 'boot'), '--blob-dir', join(d, 'ref', 'blobs'), join(d, 'gnu.tar')]);
    assert.notEqual(ref.code, 0);
    assert.match(ref.stderr, /sparse file cannot be referenced in place/);
  });

  test('--inline-bootstrap over a top layer with no data: its blob still has a device of a block (nydusd refuses a slot of none)', async () => {
    const d = join(work, 'inline-empty');
    await mkdir(join(d, 'top', 'emptydir'), { recursive: true });
    const r = await buildJson(['--inline-bootstrap', '--blob-dir', join(d, 'blobs'), ...layers, join(d, 'top')]);
    const top = join(d, 'blobs', (r.blobs.at(-1) as { id: string }).id);
    const { image } = await loadImage(nativeCodecs, { blob: top });
    const slots = image.blobs.map((b) => b.device?.blocks ?? 0);
    assert.ok(slots.every((n) => n >= 1), `device slots of ${slots.join(', ')} blocks`);
    assert.match((await damselflyOk(['check', '--blob', top])).stdout, /\nOK\n$/);
    await damselflyOk(['unpack', '--blob', top, '--output', join(d, 'out')]);
    assert.deepEqual(await compareTrees(expected, join(d, 'out'), { ignore: (p) => p === '/' || p === '/emptydir' }), []);
  });

  test('layers of several gzip members (eStargz-style) and zstd frames with skippable frames (zstd:chunked-style)', async () => {
    const d = join(work, 'frames');
    await mkdir(d);
    const plain = tarBytes(layer1());
    const cuts = [0, 1000, 70_000, 200_001, 250_000, plain.length];
    const pieces = cuts.slice(1).map((end, i) => plain.subarray(cuts[i], end));
    const skippable = (payload: string): Buffer => {
      const h = Buffer.alloc(8);
      h.writeUInt32LE(0x184d2a5e, 0);
      h.writeUInt32LE(payload.length, 4);
      return Buffer.concat([h, Buffer.from(payload)]);
    };
    const gz: Buffer[] = [];
    const zst: Buffer[] = [skippable('leading skippable frame')];
    for (const [i, piece] of pieces.entries()) {
      await writeFile(join(d, `piece${i}`), piece);
      gz.push(Buffer.from(sh(`gzip -n -c '${d}/piece${i}' | base64 -w0`), 'base64'));
      zst.push(Buffer.from(sh(`zstd -q -c '${d}/piece${i}' | base64 -w0`), 'base64'), skippable(`manifest ${i}`));
    }
    await writeFile(join(d, 'layer.tar.gz'), Buffer.concat(gz));
    await writeFile(join(d, 'layer.tar.zst'), Buffer.concat(zst));
    assert.deepEqual(Buffer.from(sh(`zstd -q -d -c '${d}/layer.tar.zst' | base64 -w0`), 'base64'), plain, 'test bug: zstd reads it');
    const ref = join(d, 'expected');
    await mkdir(ref);
    await materialize(referenceMerge([layer1()]), ref);
    for (const name of ['layer.tar.gz', 'layer.tar.zst']) {
      const o = join(d, name.replace(/\W/g, '-'));
      await damselflyOk(['build', '--bootstrap', join(o, 'boot'), '--blob-dir', join(o, 'blobs'), join(d, name)]);
      await damselflyOk(['unpack', '--bootstrap', join(o, 'boot'), '--blob-dir', join(o, 'blobs'), '--output', join(o, 'out')]);
      assert.deepEqual(await compareTrees(ref, join(o, 'out')), [], name);
    }
  });

  test('building the same layers twice gives byte-identical bootstraps and blobs', async () => {
    const d = join(work, 'repro');
    const outputs: Array<{ boot: Buffer; blobs: Map<string, Buffer> }> = [];
    for (const n of ['a', 'b']) {
      await buildJson(['--bootstrap', join(d, n, 'boot'), '--blob-dir', join(d, n, 'blobs'), ...layers]);
      outputs.push({ boot: await readFile(join(d, n, 'boot')), blobs: await dirBytes(join(d, n, 'blobs')) });
    }
    const [x, y] = outputs as [(typeof outputs)[0], (typeof outputs)[0]];
    assert.ok(x.boot.equals(y.boot));
    assert.deepEqual([...x.blobs.keys()], [...y.blobs.keys()]);
    assert.equal(x.blobs.size, 3);
    for (const [id, bytes] of x.blobs) assert.ok(bytes.equals(y.blobs.get(id) as Buffer), id);
    // The same holds with the bootstrap inlined, and with another compressor.
    const inl: Array<Map<string, Buffer>> = [];
    for (const n of ['c', 'e']) {
      await buildJson(['--inline-bootstrap', '--compressor', 'lz4_block', '--digester', 'sha256', '--blob-dir', join(d, n), ...layers]);
      inl.push(await dirBytes(join(d, n)));
    }
    assert.deepEqual(inl[0], inl[1]);
  });
});

describe('hostile layers', () => {
  const good = [item('./', 'dir'), item('a', 'file', { data: prng(21, 100_000) })];

  let cases = 0;

  /** Builds `good` then `bad`; checks the failure is clean and leaves nothing behind. */
  async function buildFails(parent: string, bad: { name: string; bytes: Buffer }, message: RegExp): Promise<void> {
    const dir = join(parent, `case-${cases++}`);
    await mkdir(dir);
    const goodPath = join(dir, 'good.tar');
    await writeFile(goodPath, tarBytes(good));
    const badPath = join(dir, bad.name);
    await writeFile(badPath, bad.bytes);
    const out = join(dir, 'out');
    const r = await damselfly(['build', ...CHUNK_ARGS, '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), goodPath, badPath]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, message);
    assert.match(r.stderr, /^damselfly: /m);
    assert.doesNotMatch(r.stderr, /TypeError|RangeError|internal error|^\s+at /m);
    // Nothing written: no bootstrap, no blob, no temp file; nothing next to the layers either.
    assert.deepEqual(await readdir(join(out, 'blobs')), []);
    assert.deepEqual((await readdir(out)).sort(), ['blobs']);
    assert.deepEqual((await readdir(dir)).sort(), [bad.name, 'good.tar', 'out'].sort());
  }

  test('a file system that runs out of space: build and unpack fail naming the file, and leave nothing cut short', async () => {
    await withTempDir('hostile-enospc', async (dir) => {
      const out = join(dir, 'small');
      await mkdir(out);
      sh(`mount -t tmpfs -o size=256k damselfly-test ${out}`);
      try {
        const layer = join(dir, 'big.tar');
        await writeFile(layer, tarBytes([item('./', 'dir'), item('random', 'file', { data: prng(24, 1 << 20) })]));
        const r = await damselfly(['build', '--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs'), layer]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`^damselfly: ${out}/blobs/\\S+: ENOSPC`, 'm'));
        assert.deepEqual(await readdir(join(out, 'blobs')), []);
        assert.deepEqual(await readdir(out), ['blobs']);
        // The same image built elsewhere, unpacked into the small file system: as tar, and as a tree.
        await damselflyOk(['build', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), layer]);
        const tar = await damselfly(['unpack', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), '--tar', join(out, 'x.tar')]);
        assert.equal(tar.code, 1, tar.stderr);
        assert.match(tar.stderr, new RegExp(`^damselfly: ${out}/x\\.tar: ENOSPC`, 'm'));
        const tree = await damselfly(['unpack', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), '--output', join(out, 'tree')]);
        assert.equal(tree.code, 1, tree.stderr);
        assert.match(tree.stderr, new RegExp(`^damselfly: ${out}/tree/random: ENOSPC`, 'm'));
        assert.deepEqual((await readdir(out)).sort(), ['blobs', 'tree']);
        assert.deepEqual(await readdir(join(out, 'tree')), [], 'no file cut short');
        const views = await damselfly(['export', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), '--blob-views', out]);
        assert.equal(views.code, 1, views.stderr);
        assert.match(views.stderr, new RegExp(`^damselfly: ${out}/\\S+\\.blob\\.data\\S*: ENOSPC`, 'm'));
        assert.deepEqual((await readdir(out)).sort(), ['blobs', 'tree'], 'no view, whole or partial');
        // The bootstrap on a full file system (its blob fits elsewhere): the error names it, and
        // the bootstrap already there is left whole.
        await writeFile(join(out, 'boot'), 'old');
        await writeFile(join(out, 'filler'), Buffer.alloc(1 << 20)).catch(() => undefined);
        const boot = await damselfly(['build', '--bootstrap', join(out, 'boot'), '--blob-dir', join(dir, 'blobs2'), layer]);
        assert.equal(boot.code, 1, boot.stderr);
        assert.match(boot.stderr, new RegExp(`^damselfly: ${out}/boot: ENOSPC`, 'm'));
        assert.equal(await readFile(join(out, 'boot'), 'utf8'), 'old');
        assert.deepEqual((await readdir(out)).sort(), ['blobs', 'boot', 'filler', 'tree'], 'no temporary file left');
      } finally {
        sh(`umount ${out}`);
      }
    });
  });

  test('a sparse file of petabytes in a few bytes of tar, or of terabytes in a directory, is refused before it is cut into chunks', async () => {
    await withTempDir('hostile-sparse', async (dir) => {
      // A PAX 1.0 sparse entry of 2^52 bytes, all hole: 3 KB of tar (it ran the builder out of memory).
      const e = tarEntry('huge', 'file', { size: 2 ** 52 });
      const bytes = Buffer.concat([encodeSparseTarHeaders(e, []), TAR_END]);
      await buildFails(dir, { name: 'bad.tar', bytes }, /tar entry "huge" of 4503599627370496 bytes takes the image past 4194304 chunk references/);
      // The same from a directory: 15 TiB of hole at 64 KiB chunks.
      sh(`mkdir '${dir}/src' && truncate -s 15T '${dir}/src/huge'`);
      const r = await damselfly(['build', ...CHUNK_ARGS, '--bootstrap', join(dir, 'd', 'boot'), '--blob-dir', join(dir, 'd', 'blobs'), join(dir, 'src')]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /huge of 16492674416640 bytes takes the image past 4194304 chunk references/);
    });
  });

  test("a '../escape' entry is refused", async () => {
    await withTempDir('hostile-dotdot', async (dir) => {
      const bytes = tarBytes([item('./', 'dir'), item('ok', 'file', { data: prng(22, 70_000) }), item('../escape', 'file', { data: 'out!' })]);
      await buildFails(dir, { name: 'bad.tar', bytes }, /escapes the layer/);
      const nested = tarBytes([item('d/', 'dir'), item('d/../../escape', 'file', { data: 'out!' })]);
      await buildFails(dir, { name: 'bad.tar', bytes: nested }, /escapes the layer/);
    });
  });

  test('a hardlink to a missing target is refused', async () => {
    await withTempDir('hostile-hardlink', async (dir) => {
      const bytes = tarBytes([item('big', 'file', { data: prng(23, 200_000) }), item('dangling', 'hardlink', { linkpath: Buffer.from('no/such/file') })]);
      await buildFails(dir, { name: 'bad.tar', bytes }, /missing/);
    });
  });

  test('an entry deeper than 1024 components (tar or directory) is refused with a clear message; 1024 builds and checks', async () => {
    await withTempDir('hostile-deep', async (dir) => {
      // 2000 components is within PATH_MAX (4096 bytes); it used to end in "internal error:
      // RangeError: Maximum call stack size exceeded" from the recursive tree walks.
      const bytes = tarBytes([item(`${'d/'.repeat(2000)}f`, 'file', { data: 'deep' })]);
      await buildFails(dir, { name: 'bad.tar', bytes }, /2001 components deep \(at most 1024\)/);
      const ok = join(dir, 'ok.tar');
      await writeFile(ok, tarBytes([item(`${'d/'.repeat(1023)}f`, 'file', { data: 'deep' })]));
      await damselflyOk(['build', ...CHUNK_ARGS, '--bootstrap', join(dir, 'ok.boot'), '--blob-dir', join(dir, 'ok-blobs'), ok]);
      await damselflyOk(['check', '--bootstrap', join(dir, 'ok.boot'), '--blob-dir', join(dir, 'ok-blobs')]);
      // A directory source as deep: the same limit, checked on the merged tree.
      const src = join(dir, 'deep-src');
      await mkdir(join(src, ...Array<string>(1100).fill('d')), { recursive: true });
      const r = await damselfly(['build', '--bootstrap', join(dir, 'dir', 'boot'), '--blob-dir', join(dir, 'dir', 'blobs'), src]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^damselfly: the entry "d" lies 1025 components deep \(at most 1024\)$/m);
      assert.doesNotMatch(r.stderr, /internal error|RangeError/);
      assert.deepEqual(await readdir(join(dir, 'dir', 'blobs')).catch(() => []), [], 'no blob left behind');
      assert.equal(existsSync(join(dir, 'dir', 'boot')), false);
    });
  });

  test('truncated and corrupt compressed layers are refused', async () => {
    await withTempDir('hostile-compressed', async (dir) => {
      const plain = tarBytes([item('f', 'file', { data: prng(24, 300_000) }), item('g', 'file', { data: 'g' })]);
      await writeFile(join(dir, 'plain'), plain);
      const gz = Buffer.from(sh(`gzip -n -c '${dir}/plain' | base64 -w0`), 'base64');
      const zst = Buffer.from(sh(`zstd -q -c '${dir}/plain' | base64 -w0`), 'base64');
      sh(`rm '${dir}/plain'`);
      await buildFails(dir, { name: 'bad.tar.gz', bytes: gz.subarray(0, gz.length >> 1) }, /gzip/);
      const corruptGz = Buffer.from(gz);
      for (let i = 1000; i < 1100; i++) corruptGz[i] = (corruptGz[i] as number) ^ 0x5a;
      await buildFails(dir, { name: 'bad.tar.gz', bytes: corruptGz }, /gzip/);
      const corruptZst = Buffer.from(zst);
      for (let i = zst.length >> 1; i < (zst.length >> 1) + 64; i++) corruptZst[i] = (corruptZst[i] as number) ^ 0x5a;
      await buildFails(dir, { name: 'bad.tar.zst', bytes: corruptZst }, /zstd/);
      await buildFails(dir, { name: 'bad.tar.zst', bytes: zst.subarray(0, zst.length - 100) }, /zstd/);
      await buildFails(dir, { name: 'bad.tar', bytes: plain.subarray(0, 150_000) }, /truncated/);
    });
  });

  test('values a RAFS inode cannot hold are refused up front, not by the bootstrap writer', async () => {
    await withTempDir('hostile-limits', async (dir) => {
      const cases: Array<[Item, RegExp]> = [
        [item('s', 'symlink', { linkpath: Buffer.alloc(5000, 'a') }), /5000-byte target/],
        [item('s', 'symlink', { linkpath: Buffer.alloc(4096, 'a') }), /4096-byte target \(at most 4095, as Linux\)/],
        [item('x', 'file', { xattrs: [[Buffer.from('user.big'), Buffer.alloc(70_000, 1)]] }), /70000-byte value/],
        [item('x', 'file', { xattrs: Array.from({ length: 8000 }, (_, i): [Buffer, Buffer] => [Buffer.from(`user.x${i}`), Buffer.alloc(40, 2)]) }), /do not fit one inode/],
        [item('u', 'file', { uid: 2 ** 33 }), /uid or gid/],
        [item('g', 'dir', { gid: 2 ** 32 }), /uid or gid/],
        [item('c', 'char', { devmajor: 4096, devminor: 1 }), /device 4096,1 out of range/],
        [item('b', 'block', { devmajor: 1, devminor: 1 << 20 }), /out of range/],
      ];
      for (const [bad, message] of cases) await buildFails(dir, { name: 'bad.tar', bytes: tarBytes([item('ok', 'file', { data: prng(25, 80_000) }), bad]) }, message);
    });
  });

  test('xattrs RAFS has no prefix for are skipped with a warning; the rest of the entry is kept', async () => {
    await withTempDir('hostile-xattr-name', async (dir) => {
      const l = join(dir, 'l.tar');
      const xattrs: Array<[Buffer, Buffer]> = [
        [Buffer.from('system.nfs4_acl'), Buffer.from('acl')],
        [Buffer.from('user.kept'), Buffer.from('yes')],
        [Buffer.from('user.twice'), Buffer.from('first')],
        [Buffer.from('user.twice'), Buffer.from('last')],
      ];
      await writeFile(l, tarBytes([item('f', 'file', { data: 'f', xattrs })]));
      const r = await damselflyOk(['build', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), l]);
      assert.match(r.stderr, /skipping an xattr RAFS cannot store/);
      const info = JSON.parse((await damselflyOk(['inspect', '--json', '--bootstrap', join(dir, 'boot'), '--path', '/f'])).stdout) as { xattrs: Array<{ name: string; value: string }> };
      assert.deepEqual(info.xattrs.map((x) => [x.name, Buffer.from(x.value, 'base64').toString()]), [['user.kept', 'yes'], ['user.twice', 'last']]);
    });
  });

  test('an absolute path stays inside the image; so do writes through a symlinked directory', async () => {
    await withTempDir('hostile-absolute', async (dir) => {
      const l1 = join(dir, 'l1.tar');
      const l2 = join(dir, 'l2.tar');
      await writeFile(l1, tarBytes([item('/etc/', 'dir'), item('/etc/x', 'file', { data: 'inside\n' }), item('/abs-hl', 'hardlink', { linkpath: Buffer.from('/etc/x') }), item('evil', 'symlink', { linkpath: Buffer.from('../../outside') })]));
      await writeFile(l2, tarBytes([item('evil/pwned', 'file', { data: 'where am I?\n' })]));
      const b = join(dir, 'img');
      await damselflyOk(['build', '--bootstrap', join(b, 'boot'), '--blob-dir', join(b, 'blobs'), l1, l2]);
      const info = await inspectJson(['--bootstrap', join(b, 'boot')]);
      const paths = new Map(info.tree.map((t) => [t.path, t]));
      assert.equal(paths.get('/etc/x')?.kind, 'file');
      assert.equal(paths.get('/etc/x')?.nlink, 2);
      assert.equal(paths.get('/abs-hl')?.ino, paths.get('/etc/x')?.ino);
      assert.equal(paths.get('/evil/pwned')?.kind, 'file');
      const out = join(dir, 'u', 'out');
      await damselflyOk(['unpack', '--bootstrap', join(b, 'boot'), '--blob-dir', join(b, 'blobs'), '--output', out]);
      assert.equal(await readFile(join(out, 'etc', 'x'), 'utf8'), 'inside\n');
      assert.equal(await readFile(join(out, 'evil', 'pwned'), 'utf8'), 'where am I?\n');
      assert.equal(existsSync(join(dir, 'outside')), false);
      assert.deepEqual((await readdir(dir)).sort(), ['img', 'l1.tar', 'l2.tar', 'u']);
      assert.deepEqual(await readdir(join(dir, 'u')), ['out']);
    });
  });
});
