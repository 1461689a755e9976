/**
 * Seeded mutation fuzzing of the OCI layer path of the builder, which `convert` feeds with any
 * image a registry serves: a layer tar with every entry kind the builder knows (files, directories,
 * symlinks, hardlinks to this layer and to the one below, whiteouts and an opaque directory, a FIFO,
 * a character device, PAX xattrs and long names), over a directory layer, mutated — bytes flipped,
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
import type { TarEntry } from '../../src/format/tar.js';
import { nativeCodecs } from '../../src/native/index.js';
import { walkImage } from '../../src/tools/walk.js';
import { withTempDir, within } from '../helpers/env.js';
import { type Rng, caseRng, flipBits } from '../helpers/rng.js';
import { tarArchive, tarEntry as entry } from '../helpers/tar.js';
import { prng } from '../helpers/tree.js';

const MUTANTS = 250;
const MUTANT_LIMIT_MS = 10_000;

/** The seed layer: every entry kind, then the end marker. */
function seedLayer(): Buffer {
  const file = (path: string, data: Buffer, extra: Partial<TarEntry> = {}): { entry: TarEntry; data: Buffer } => ({ entry: entry(path, 'file', { size: data.length, ...extra }), data });
  return tarArchive([
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
}

function mutate(seed: Buffer, rng: Rng): { bytes: Buffer; what: string } {
  const blocks = seed.length / 512;
  const b = Buffer.from(seed);
  const r = rng.next();
  if (r < 0.3) return { bytes: b, what: flipBits(b, rng, 8) };
  if (r < 0.6) {
    // A header field (name, mode, uid, gid, size, mtime, checksum, type, linkname, magic, prefix).
    const [off, len] = rng.pick([[0, 100], [100, 8], [108, 8], [116, 8], [124, 12], [136, 12], [148, 8], [156, 1], [157, 100], [257, 8], [345, 155]] as const);
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
