/**
 * Seeded mutation fuzzing of the OCI layer path of the builder, which `convert` feeds with any
 * image a registry serves: a layer tar with every entry kind the builder knows (files, directories,
 * symlinks, hardlinks to this layer and to the one below, whiteouts and an opaque directory, a FIFO,
 * a character device, PAX xattrs and long names, sparse files in the old GNU and PAX 1.0 forms),
 * over a directory layer, mutated — bytes flipped,
 * header fields overwritten with digits or garbage, blocks dropped, repeated or inserted, the
 * stream cut short — and built. Each mutant must build an image that then opens and walks whole,
 * or fail with a DamselflyError (a FormatError naming what is wrong), within a bound.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DamselflyError } from '../../src/base/index.js';
import { silentLogger } from '../../src/base/log.js';
import { build } from '../../src/builder/build.js';
import { Compressor } from '../../src/format/compression.js';
import { Digester } from '../../src/format/constants.js';
import { openBootstrap } from '../../src/format/open.js';
import { TAR_END, type TarEntry, encodeTarHeaders, tarPadding } from '../../src/format/tar.js';
import { nativeCodecs } from '../../src/native/index.js';
import { walkImage } from '../../src/tools/walk.js';
import { withTempDir, within } from '../helpers/env.js';
import { type Rng, caseRng, flipBits } from '../helpers/rng.js';
import { metaBlocks, oldGnuSparse, paxRecord, tarArchive, tarEntry as entry } from '../helpers/tar.js';
import { prng } from '../helpers/tree.js';

const MUTANTS = 250;
const MUTANT_LIMIT_MS = 10_000;

/** The seed layer: every entry kind, then the end marker. */
function seedLayer(): Buffer {
  const file = (path: string, data: Buffer, extra: Partial<TarEntry> = {}): { entry: TarEntry; data: Buffer } => ({ entry: entry(path, 'file', { size: data.length, ...extra }), data });
  const plain = tarArchive([
    { entry: entry('./', 'dir') },
    file('a', prng(1, 70_000)),
    { entry: entry('d/', 'dir') },
    file('d/b', Buffer.from('small file\n')),
    { entry: entry('l', 'symlink', { linkpath: Buffer.from('a') }) },
    { entry: entry('h', 'hardlink', { linkpath: Buffer.from('a') }) },
    { entry: entry('lower-link', 'hardlink', { linkpath: Buffer.from('base/kept') }) },
    { entry: entry('base/.wh.gone', 'file') },
    { entry: entry('base/sub/.wh..wh..opq', 'file') },
    { entry: entry('p', 'fifo') },
    { entry: entry('c', 'char', { devmajor: 1, devminor: 3 }) },
    file('x', Buffer.from('xattr'), { xattrs: [[Buffer.from('user.k'), Buffer.from([0, 1, 0xff])]], mtimeNsec: 123_456_789 }),
    file(`long/${'n'.repeat(150)}/${'m'.repeat(120)}`, Buffer.from('abc')),
  ]);
  // Sparse files: old GNU with extension blocks (30 runs), and PAX 1.0 with its map in the data.
  const runs = Array.from({ length: 30 }, (_, i): [number, number] => [i * 9000 + 100, 50]);
  const map = Buffer.from(`2\n4096\n600\n70000\n1000\n`);
  const v10 = [paxRecord('GNU.sparse.major', '1'), paxRecord('GNU.sparse.minor', '0'), paxRecord('GNU.sparse.name', 'sparse10'), paxRecord('GNU.sparse.realsize', '80000')];
  const stored10 = Buffer.concat([map, Buffer.alloc(tarPadding(map.length)), prng(3, 1600)]);
  return Buffer.concat([
    plain.subarray(0, plain.length - TAR_END.length),
    oldGnuSparse('sparse-gnu', runs, 300_000, prng(2, 30 * 50)),
    metaBlocks('x', Buffer.concat(v10)),
    encodeTarHeaders(entry('GNUSparseFile.0/sparse10', 'file', { size: stored10.length })),
    stored10,
    Buffer.alloc(tarPadding(stored10.length)),
    TAR_END,
  ]);
}

function mutate(seed: Buffer, rng: Rng): { bytes: Buffer; what: string } {
  const blocks = seed.length / 512;
  const b = Buffer.from(seed);
  const r = rng.next();
  if (r < 0.3) return { bytes: b, what: flipBits(b, rng, 8) };
  if (r < 0.6) {
    // A header field (name, mode, uid, gid, size, mtime, checksum, type, linkname, magic, prefix).
    // Old GNU sparse headers: their runs, is-extended flag and real size; in an extension block,
    // its runs and flag.
    const [off, len] = rng.pick([[0, 100], [100, 8], [108, 8], [116, 8], [124, 12], [136, 12], [148, 8], [156, 1], [157, 100], [257, 8], [345, 155], [386, 96], [482, 1], [483, 12], [0, 24], [504, 1]] as const);
    const block = rng.int(blocks) * 512;
    const fill = rng.pick(['digits', 'garbage', 'max', 'spaces']);
    for (let i = 0; i < len; i++) {
      b[block + off + i] = fill === 'digits' ? 0x30 + rng.int(8) : fill === 'garbage' ? rng.int(256) : fill === 'max' ? 0x37 : 0x20;
    }
    return { bytes: b, what: `block ${block / 512} field ${off}+${len} ${fill}` };
  }
  if (r < 0.7) {
    const cut = rng.int(seed.length);
    return { bytes: b.subarray(0, cut), what: `cut at ${cut}` };
  }
  const at = rng.int(blocks) * 512;
  if (r < 0.8) return { bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + 512)]), what: `block ${at / 512} dropped` };
  if (r < 0.9) return { bytes: Buffer.concat([b.subarray(0, at + 512), b.subarray(at, at + 512), b.subarray(at + 512)]), what: `block ${at / 512} repeated` };
  const junk = Buffer.alloc(512);
  for (let i = 0; i < 512; i++) junk[i] = rng.int(256);
  return { bytes: Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]), what: `a random block inserted at ${at / 512}` };
}

test(`mutated layer tars (${MUTANTS}): an image that walks whole, or a DamselflyError, in bounded time`, async (t) => {
  await withTempDir('tar-fuzz', async (work) => {
    const lower = join(work, 'lower');
    mkdirSync(join(lower, 'base', 'sub'), { recursive: true });
    writeFileSync(join(lower, 'base', 'kept'), 'from the layer below\n');
    writeFileSync(join(lower, 'base', 'gone'), 'whited out\n');
    writeFileSync(join(lower, 'base', 'sub', 'hidden'), 'under an opaque directory\n');
    const seed = seedLayer();
    // The seed itself builds, its sparse files whole: mutants start from a layer that works.
    writeFileSync(join(work, 'seed.tar'), seed);
    const r = await build({ sources: [lower, join(work, 'seed.tar')], blobDir: join(work, 'seed-blobs'), bootstrapPath: join(work, 'seed-boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
    const sizes = new Map([...walkImage(openBootstrap(r.bootstrap))].map((it) => [it.path, it.attr.size]));
    assert.deepEqual([sizes.get('/sparse-gnu'), sizes.get('/sparse10'), sizes.get('/a')], [300_000, 80_000, 70_000]);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < MUTANTS; i++) {
      const { bytes, what } = mutate(seed, caseRng('layer-tar', i));
      const dir = join(work, `m${i}`);
      mkdirSync(dir);
      const layer = join(dir, 'layer.tar');
      writeFileSync(layer, bytes);
      const started = Date.now();
      const built = build({ sources: [lower, layer], blobDir: join(dir, 'blobs'), bootstrapPath: join(dir, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
      try {
        const r = await within(MUTANT_LIMIT_MS, `mutant ${i} (${what})`, built);
        const image = openBootstrap(r.bootstrap);
        let n = 0;
        for (const item of walkImage(image)) {
          n++;
          if (item.attr.kind === 'symlink') image.readlink(item.attr.ino);
          if (item.attr.hasXattrs) image.xattrs(item.attr.ino);
        }
        assert.ok(n > 0, `mutant ${i} (${what}): an empty image`);
        outcomes.set('built', (outcomes.get('built') ?? 0) + 1);
      } catch (e) {
        assert.ok(e instanceof DamselflyError, `mutant ${i} (${what}): ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
        const kind = `refused (${e.constructor.name})`;
        outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
      }
      assert.ok(Date.now() - started < MUTANT_LIMIT_MS, `mutant ${i} (${what}) took ${Date.now() - started} ms`);
      rmSync(dir, { recursive: true, force: true });
    }
    t.diagnostic([...outcomes].map(([k, n]) => `${k} ${n}`).join(', '));
  });
});
