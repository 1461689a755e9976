/**
 * Seeded chaos for the verified chunk cache (`--cache-dir` with `--validate`): between rounds of
 * concurrent reads through the image filesystem, the cache's data file gets bytes overwritten, is
 * cut short or removed, its chunk map gets states overwritten (valid and not) or is removed, and
 * the backend blob gets chunks corrupted and later restored; the device is started again on the
 * same cache each round, as a restarted daemon is, and in some rounds two devices share the cache
 * (two daemons of images with a blob in common), one closing while the other still reads.
 *
 * Invariants: every read returns the file's exact bytes, or EIO when a chunk it needs is corrupt in
 * the backend and not verified in the cache — never other bytes, never another error, never a
 * hang; and once the backend is whole again, everything reads right.
 */
import assert from 'node:assert/strict';
import { mkdir, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { DamselflyError, Metrics, silentLogger } from '../../src/base/index.js';
import { build } from '../../src/builder/build.js';
import type { ChunkInfo } from '../../src/format/chunk-info.js';
import { Compressor } from '../../src/format/compression.js';
import { Digester } from '../../src/format/constants.js';
import { openBootstrap } from '../../src/format/open.js';
import { ImageFs } from '../../src/fs/image/image-fs.js';
import { Errno, FsError } from '../../src/fs/types.js';
import { errnoOf } from '../../src/fuse/index.js';
import { nativeCodecs } from '../../src/native/index.js';
import { LocalFsBackend } from '../../src/storage/backend/localfs.js';
import { CACHE_DATA_SUFFIX, CACHE_MAP_SUFFIX } from '../../src/storage/cache/blob-cache.js';
import { CHUNK_MAP_HEADER } from '../../src/storage/cache/chunk-map.js';
import { BlobDevice } from '../../src/storage/device.js';
import { openPaths, withTempDir } from '../helpers/env.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { prng } from '../helpers/tree.js';

const ROUNDS = 300;
const READS = 24;
const CHUNK = 65536;
const READ_LIMIT_MS = 10_000;

test(`the verified chunk cache under chaos (${ROUNDS} rounds of ${READS} concurrent reads): exact bytes or EIO`, async (t) => {
  await withTempDir('damselfly-fuzz-cache-', async (work) => {
    const src = join(work, 'src');
    await mkdir(src);
    const contents = new Map<string, Buffer>();
    for (const [i, size] of [0, 1, 5000, CHUNK, CHUNK + 1, 3 * CHUNK + 17, 400_000].entries()) contents.set(`f${i}`, prng(100 + i, size));
    contents.set('same', contents.get('f5') as Buffer); // chunks shared with f5
    for (const [name, data] of contents) await writeFile(join(src, name), data);
    const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: CHUNK, log: silentLogger });
    const image = openBootstrap(r.bootstrap);
    const blob = image.blobs[0];
    assert.ok(blob !== undefined && image.blobs.length === 1);
    const blobPath = join(work, 'blobs', blob.id);
    const pristine = await readFile(blobPath);
    const cacheDir = join(work, 'cache');
    const dataPath = join(cacheDir, blob.id + CACHE_DATA_SUFFIX);
    const mapPath = join(cacheDir, blob.id + CACHE_MAP_SUFFIX);
    const chunksOf = new Map<string, ChunkInfo[]>();
    for (const name of contents.keys()) {
      const e = image.lookup(image.rootIno, Buffer.from(name));
      assert.ok(e);
      chunksOf.set(name, image.fileChunks(e.ino));
    }
    const allChunks = [...new Map([...chunksOf.values()].flat().map((c) => [c.index, c])).values()];
    /** Chunks whose backend bytes are corrupt now. */
    const bad = new Set<number>();
    const counts = new Map<string, number>();
    const count = (k: string): void => void counts.set(k, (counts.get(k) ?? 0) + 1);

    const chaos = async (rng: Rng, cacheOnly = false): Promise<void> => {
      const exists = async (p: string): Promise<number | undefined> => (await stat(p).catch(() => undefined))?.size;
      const action = rng.int(cacheOnly ? 4 : 8);
      const dataSize = await exists(dataPath);
      const mapSize = await exists(mapPath);
      if (action === 0 && dataSize !== undefined && dataSize > 0) {
        const fh = await open(dataPath, 'r+');
        await fh.write(prng(rng.int(1 << 30), 1 + rng.int(5000)), 0, undefined, rng.int(dataSize));
        await fh.close();
        count('cache data overwritten');
      } else if (action === 1 && dataSize !== undefined) {
        await truncate(dataPath, rng.int(dataSize + 1));
        count('cache data cut');
      } else if (action === 2 && mapSize !== undefined && mapSize > CHUNK_MAP_HEADER) {
        const fh = await open(mapPath, 'r+');
        for (let k = 1 + rng.int(4); k > 0; k--) await fh.write(Buffer.from([rng.pick([0, 1, 2, 3, 0xff])]), 0, 1, CHUNK_MAP_HEADER + rng.int(mapSize - CHUNK_MAP_HEADER));
        await fh.close();
        count('chunk map states overwritten');
      } else if (action === 3) {
        await rm(rng.next() < 0.5 ? dataPath : mapPath, { force: true });
        count('cache file removed');
      } else if (action === 4 || action === 5) {
        const c = rng.pick(allChunks);
        const b = await readFile(blobPath);
        const at = c.compressedOffset + rng.int(c.compressedSize);
        b[at] = (b[at] as number) ^ (1 << rng.int(8));
        await writeFile(blobPath, b);
        bad.add(c.index);
        count('backend chunk corrupted');
      } else if (action === 6 && bad.size > 0) {
        await writeFile(blobPath, pristine);
        bad.clear();
        count('backend restored');
      }
    };

    const readOnce = async (fs: ImageFs, name: string, off: number, len: number): Promise<string> => {
      const ctx = { uid: 0, gid: 0, pid: 1 };
      const e = await fs.lookup(ctx, 1, Buffer.from(name));
      const want = (contents.get(name) as Buffer).subarray(off, off + len);
      const dst = Buffer.alloc(len);
      const what = `${name} [${off}, +${len})`;
      const started = Date.now();
      try {
        const n = await fs.read(ctx, e.nodeid, 0n, off, len, [dst]);
        assert.equal(n, want.length, `${what}: length`);
        assert.ok(dst.subarray(0, n).equals(want), `${what}: wrong bytes`);
        return 'exact';
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        // What the FUSE server answers: our errors, as EIO (never a TypeError's internal failure).
        assert.ok((err instanceof FsError || err instanceof DamselflyError) && errnoOf(err) === Errno.EIO, `${what}: ${String(err)}`);
        const touched = (chunksOf.get(name) as ChunkInfo[]).filter((c) => c.fileOffset < off + len && c.fileOffset + c.uncompressedSize > off);
        assert.ok(touched.some((c) => bad.has(c.index)), `${what}: EIO, but no chunk it needs is corrupt in the backend`);
        return 'EIO';
      } finally {
        assert.ok(Date.now() - started < READ_LIMIT_MS, `${what}: took ${Date.now() - started} ms`);
      }
    };

    /**
     * One round: one device, or two sharing the cache as two daemons of images with a blob in
     * common do, each closed as soon as its own reads are done (the other still reading).
     */
    const round = async (rng: Rng, reads: number): Promise<void> => {
      const names = [...contents.keys()].filter((n) => (contents.get(n) as Buffer).length > 0);
      const user = async (n: number): Promise<void> => {
        const metrics = new Metrics();
        const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
        const device = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, cacheDir, validate: true, metrics, log: silentLogger });
        const fs = new ImageFs({ image, device, metrics, log: silentLogger });
        try {
          const results = await Promise.all(
            Array.from({ length: n }, () => {
              const name = rng.pick(names);
              const size = (contents.get(name) as Buffer).length;
              const off = rng.int(size);
              return readOnce(fs, name, off, 1 + rng.int(Math.min(size - off, 3 * CHUNK)));
            }),
          );
          for (const x of results) count(`read ${x}`);
        } finally {
          await device.close();
          await backend.close();
        }
      };
      if (rng.next() < 0.4) {
        count('rounds with two users');
        const first = 1 + rng.int(reads - 1);
        await Promise.all([user(first), user(reads - first)]);
      } else await user(reads);
    };

    for (let i = 0; i < ROUNDS; i++) {
      const rng = caseRng('cache-chaos', i);
      for (let k = 1 + rng.int(3); k > 0; k--) await chaos(rng);
      // Half the rounds, the cache is also changed while the reads are under way.
      if (rng.next() < 0.5) await Promise.all([round(rng, READS), (async () => { for (let k = 1 + rng.int(3); k > 0; k--) { await new Promise((res) => setImmediate(res)); await chaos(rng, true); } })()]);
      else await round(rng, READS);
      // Closed means closed: no file of the cache is still open (nor its lock held), whatever failed.
      assert.deepEqual(await openPaths(cacheDir), [], `round ${i}: files of the cache left open after close`);
    }
    // The backend whole again: everything reads right, whatever the cache went through.
    await writeFile(blobPath, pristine);
    bad.clear();
    const rng = caseRng('cache-chaos', ROUNDS);
    await round(rng, READS);
    t.diagnostic([...counts].sort().map(([k, n]) => `${k}: ${n}`).join(', '));
    assert.ok((counts.get('read exact') ?? 0) > 0 && (counts.get('read EIO') ?? 0) > 0, 'the rounds saw both outcomes');
  });
});
