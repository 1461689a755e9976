/**
 * Seeded mutation fuzzing of ZRan ("targz-ref") images, whose data is a gzip layer that nobody
 * checked before us: the native inflater starts in the middle of a deflate stream (a bit offset and
 * a 32 KiB window from the meta blob) and runs over whatever bytes the registry serves.
 *
 * - Serving: a valid layer is indexed once; then each mutant of it (bytes flipped or overwritten,
 *   a run zeroed, a region repeated, the stream cut short) is what the backend holds, and every
 *   file is read through the device. A read gives exactly the file's bytes or fails with a
 *   DamselflyError (a changed byte that inflates still fails its chunk's sha256): never other bytes,
 *   a crash or a hang.
 * - Building: each mutant is also indexed (`buildRefImage`). It builds (only when the gzip stream
 *   still decodes: a changed header byte that nothing reads, garbage after the last member) and then
 *   every file reads back through the device as the builder indexed it, or fails with a
 *   DamselflyError. Each mutant has a time bound.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { DamselflyError, Metrics, silentLogger } from '../../src/base/index.js';
import { buildRefImage } from '../../src/builder/ref-build.js';
import type { ChunkInfo } from '../../src/format/chunk-info.js';
import type { RafsImage } from '../../src/format/image.js';
import { openBootstrap } from '../../src/format/open.js';
import { nativeCodecs } from '../../src/native/index.js';
import { LocalFsBackend } from '../../src/storage/backend/localfs.js';
import { loadBlobMeta } from '../../src/storage/blob-meta.js';
import { ChunkNeighbors } from '../../src/storage/chunk/neighbors.js';
import { BlobDevice } from '../../src/storage/device.js';
import { withTempDir, within } from '../helpers/env.js';
import { type Rng, caseRng, flipBits } from '../helpers/rng.js';
import { tarArchive, tarEntry } from '../helpers/tar.js';
import { prng, textBytes as text } from '../helpers/tree.js';

const MUTANTS = 120;
const MUTANT_LIMIT_MS = 20_000;

/**
 * The files of the layer: small ones (several to a chunk's context), a large compressible one and
 * a large incompressible one (stored blocks), so that the layer has contexts past its start (one
 * at least every 512 KiB of it) with real windows, in three gzip members.
 */
function seedFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 24; i++) files.set(`small/f${String(i).padStart(2, '0')}`, text(200 + i, 1000 + i * 1777));
  files.set('text', text(7, 1_600_000));
  files.set('random', prng(8, 900_000));
  files.set('tail', text(9, 300_000));
  return files;
}

/** A gzip stream of the tar, as three members (as `pigz` or a concatenating tool writes). */
function layerOf(files: Map<string, Buffer>): Buffer {
  const dirs = [{ entry: tarEntry('small/', 'dir') }];
  const tar = tarArchive([...dirs, ...[...files].map(([name, data]) => ({ entry: tarEntry(name, 'file', { size: data.length }), data }))]);
  const cuts = [0, Math.floor(tar.length / 3), Math.floor((tar.length * 2) / 3), tar.length];
  return Buffer.concat(cuts.slice(1).map((end, i) => gzipSync(tar.subarray(cuts[i], end), { level: 6 })));
}

function mutate(seed: Buffer, rng: Rng): { bytes: Buffer; what: string } {
  const b = Buffer.from(seed);
  const r = rng.next();
  if (r < 0.3) return { bytes: b, what: flipBits(b, rng, 6) };
  if (r < 0.45) {
    // The first member's header: magic, method, flags, mtime, xfl, OS (mtime, xfl and OS decode the same).
    const at = rng.int(10);
    b[at] = rng.int(256);
    return { bytes: b, what: `header byte ${at} overwritten` };
  }
  if (r < 0.6) {
    const at = rng.int(b.length);
    const n = Math.min(b.length - at, 1 + rng.int(4096));
    b.fill(rng.pick([0, 0xff]), at, at + n);
    return { bytes: b, what: `${n} bytes at ${at} filled` };
  }
  if (r < 0.75) {
    // The same length, a region copied over another: still offsets the index knows, wrong data.
    const n = 1 + rng.int(65536);
    const from = rng.int(b.length - n);
    const to = rng.int(b.length - n);
    seed.copy(b, to, from, from + n);
    return { bytes: b, what: `${n} bytes from ${from} copied to ${to}` };
  }
  if (r < 0.85) {
    const cut = rng.int(seed.length);
    return { bytes: b.subarray(0, cut), what: `cut at ${cut}` };
  }
  const junk = Buffer.alloc(1 + rng.int(2048));
  for (let i = 0; i < junk.length; i++) junk[i] = rng.int(256);
  return rng.int(2) === 0 ? { bytes: Buffer.concat([b, junk]), what: `${junk.length} bytes of garbage appended` } : { bytes: Buffer.concat([b, gzipSync(junk)]), what: 'a member of garbage appended' };
}

/** Outcome of reading every file of a ZRan image whose layer, in `blobDir`, may not be the one indexed. */
async function readAll(boot: Buffer, blobDir: string, files: Map<string, Buffer>, label: string): Promise<{ same: number; failed: number }> {
  const image = openBootstrap(boot) as RafsImage;
  const backend = new LocalFsBackend({ dir: blobDir });
  await loadBlobMeta(image, backend, nativeCodecs);
  const index = new ChunkNeighbors(image.allChunks?.() ?? []);
  // No cache directory: every mutant's chunks come from its own layer, through the memory cache.
  const dev = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, metrics: new Metrics(), log: silentLogger, batchMembers: (c) => index.members(c) });
  const out = { same: 0, failed: 0 };
  try {
    for (const [name, data] of files) {
      let node: { ino: number } | undefined = { ino: image.rootIno };
      for (const part of name.split('/')) node = node === undefined ? undefined : (image.lookup(node.ino, Buffer.from(part)) as { ino: number } | undefined);
      assert.ok(node !== undefined, `${label}: ${name} is in the image`);
      const chunks: ChunkInfo[] = image.fileChunks(node.ino);
      const got = Buffer.alloc(data.length);
      try {
        await dev.read(
          chunks.map((c) => ({ chunk: c, from: 0, length: c.uncompressedSize })),
          [got],
        );
      } catch (e) {
        assert.ok(e instanceof DamselflyError, `${label}: reading ${name}: ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
        out.failed++;
        continue;
      }
      assert.ok(got.equals(data), `${label}: ${name} read back other bytes`);
      out.same++;
    }
  } finally {
    await dev.close();
    await backend.close();
  }
  return out;
}

test(`ZRan layers mutated after indexing, and mutated before it (${MUTANTS} each): the right bytes or a DamselflyError, in bounded time`, async (t) => {
  await withTempDir('zran-fuzz', async (work) => {
    const files = seedFiles();
    const seed = layerOf(files);
    const seedPath = join(work, 'layer.tar.gz');
    await writeFile(seedPath, seed);
    const built = await buildRefImage({ sources: [seedPath], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), chunkSize: 256 << 10, codecs: nativeCodecs, log: silentLogger });
    const layerId = (built.blobs[0] as { id: string }).id;
    await copyFile(seedPath, join(work, 'blobs', layerId)); // the layer is the image's data blob
    assert.ok((built.blobs[0] as { contexts: number }).contexts >= 4, `contexts past the start: ${(built.blobs[0] as { contexts: number }).contexts}`);
    const boot = await readFile(join(work, 'boot'));
    const metaBlob = (built.blobs[0] as { metaBlob: { id: string; path: string } }).metaBlob;
    assert.deepEqual(await readAll(boot, join(work, 'blobs'), files, 'the seed'), { same: files.size, failed: 0 });

    const served = { same: 0, failed: 0 };
    const builds = { built: 0, refused: 0 };
    for (let i = 0; i < MUTANTS; i++) {
      const { bytes, what } = mutate(seed, caseRng('zran-layer', i));
      const label = `mutant ${i} (${what})`;
      const dir = join(work, `m${i}`);
      await mkdir(join(dir, 'served'), { recursive: true });
      // Serving: the mutant stands where the indexed layer was.
      await writeFile(join(dir, 'served', layerId), bytes);
      await copyFile(metaBlob.path, join(dir, 'served', metaBlob.id));
      const s = await within(MUTANT_LIMIT_MS, `${label} served`, readAll(boot, join(dir, 'served'), files, `${label} served`));
      served.same += s.same;
      served.failed += s.failed;
      // Building: the mutant indexed as a layer of its own.
      const layer = join(dir, 'layer.tar.gz');
      await writeFile(layer, bytes);
      try {
        const r = await within(MUTANT_LIMIT_MS, `${label} built`, buildRefImage({ sources: [layer], blobDir: join(dir, 'blobs'), bootstrapPath: join(dir, 'boot'), chunkSize: 256 << 10, codecs: nativeCodecs, log: silentLogger }));
        builds.built++;
        await copyFile(layer, join(dir, 'blobs', (r.blobs[0] as { id: string }).id));
        // It built, so its gzip stream decodes whole: its tar is the seed's (every member's CRC held).
        const b = await within(MUTANT_LIMIT_MS, `${label} read back`, readAll(await readFile(join(dir, 'boot')), join(dir, 'blobs'), files, `${label} built`));
        assert.deepEqual(b, { same: files.size, failed: 0 }, `${label}: an image built from it reads back whole`);
      } catch (e) {
        assert.ok(e instanceof DamselflyError, `${label} built: ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
        builds.refused++;
      }
      await rm(dir, { recursive: true, force: true });
    }
    t.diagnostic(`served: ${served.same} files whole, ${served.failed} failed; built: ${builds.built}, refused: ${builds.refused}`);
    assert.ok(served.failed > 0 && served.same > 0 && builds.refused > 0, 'the mutants reach both outcomes');
  });
});
