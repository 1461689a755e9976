/**
 * The local chunk cache of images lazily loaded from a registry (Debian's docker-registry):
 *
 * - `damselfly cache gc --max-size N` evicts whole blobs, least recently used first, and never a
 *   blob a running daemon has open; evicted blobs are fetched again on demand, correctly;
 * - a cache size limit in the daemon's config (`filecache.max_size`) trims the directory the same
 *   way when a daemon starts;
 * - two daemons sharing one cache directory, reading the same image at the same time, both read
 *   exact bytes, and leave a cache that a third daemon with `--validate` serves without one
 *   verification failure and without fetching anything.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { damselflyOk, sh, requireTool } from '../helpers/env.js';
import { type RunningMount, startMount } from '../helpers/mount.js';
import { type TestRegistry, registryMissing, startRegistry } from '../helpers/registry.js';
import { type Entry, compareTrees, listTree } from '../helpers/tree.js';
import { keptBootstrapPath } from '../../src/storage/cache/kept-bootstrap.js';
import { type Converted, type LayeredImage, Mountpoints, convertTo, makeLayeredImage, readEveryFile, registryConfig, statsOf, writeConfig } from './network-fixtures.test.js';

requireTool(registryMissing());

interface CacheEntry {
  kind: 'blob' | 'bootstrap';
  /** Blob id, or bootstrap layer digest. */
  id: string;
  bytes: number;
  lastUsed: number;
  inUse: boolean;
}

describe('the chunk cache of network images', () => {
  let work: string;
  let reg: TestRegistry;
  const img: Record<'a' | 'b', LayeredImage> = {} as never;
  const conv: Record<'a' | 'b', Converted> = {} as never;
  const listing: Record<'a' | 'b', Map<string, Entry>> = {} as never;
  let mnt: string;
  let mnt2: string;
  let mps: Mountpoints;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-net-cache-'));
    const [a, b, r] = await Promise.all([makeLayeredImage(join(work, 'a'), 21, 0.5), makeLayeredImage(join(work, 'b'), 22, 0.5), startRegistry()]);
    img.a = a;
    img.b = b;
    reg = r;
    conv.a = await convertTo(a, reg.host, 'net/a');
    conv.b = await convertTo(b, reg.host, 'net/b');
    listing.a = await listTree(a.expected);
    listing.b = await listTree(b.expected);
    mps = new Mountpoints(work);
  });
  after(async () => {
    mps?.detachAll();
    await reg?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const ref = (x: 'a' | 'b'): string => `docker://${reg.host}/net/${x}:v1`;

  async function cacheLsAll(dir: string): Promise<CacheEntry[]> {
    return JSON.parse((await damselflyOk(['cache', 'ls', '--cache-dir', dir, '--json'])).stdout) as CacheEntry[];
  }

  /** The cached blobs, least recently used first. */
  async function cacheLs(dir: string): Promise<CacheEntry[]> {
    return (await cacheLsAll(dir)).filter((e) => e.kind === 'blob');
  }

  /** Mounts image `x` on `cache`, reads every file (or the listed ones), unmounts; the counters. */
  async function readThrough(x: 'a' | 'b', cache: string, extra: string[] = []): Promise<Record<string, number>> {
    mnt = await mps.next();
    const m = await startMount(['--image', ref(x), '--plain-http', '--cache-dir', cache, '--stats', ...extra], mnt);
    const diffs = await compareTrees(img[x].expected, mnt, { leftListing: listing[x] }).catch((e: unknown) => [String(e)]);
    const r = await m.stop();
    assert.deepEqual(diffs, []);
    assert.equal(r.code, 0, r.stderr);
    return statsOf(r.stdout);
  }

  /** Sets a blob's "last used" time (the mtime of its data file and chunk map). */
  function age(cache: string, id: string, secondsAgo: number): void {
    const t = Math.floor(Date.now() / 1000) - secondsAgo;
    sh(`touch -d @${t} '${join(cache, `${id}.blob.data`)}' '${join(cache, `${id}.chunk_map.dfly`)}'`);
  }

  test('cache gc --max-size evicts whole unused blobs, least recently used first, and keeps a blob in use', async () => {
    const cache = join(work, 'cache-gc');
    await readThrough('a', cache);
    await readThrough('b', cache);
    const [a0, a1, a2] = conv.a.blobs as [string, string, string];
    const [b0, b1, b2] = conv.b.blobs as [string, string, string];
    let ls = await cacheLs(cache);
    assert.equal(ls.length, 6);
    assert.ok(ls.every((b) => !b.inUse));
    const aIds = new Set(conv.a.blobs);
    assert.deepEqual(
      ls.map((b) => (aIds.has(b.id) ? 'a' : 'b')),
      ['a', 'a', 'a', 'b', 'b', 'b'],
      'image a, used first, is listed first',
    );
    // Image a is mounted again and reads a file of its bottom layer: blob a0 is now in use.
    mnt = await mps.next();
    const m: RunningMount = await startMount(['--image', ref('a'), '--plain-http', '--cache-dir', cache, '--stats'], mnt);
    try {
      assert.deepEqual(await readEveryFile(mnt, img.a.expected, ['data/multi.bin']), []);
      // An explicit LRU order: a0 (in use) oldest, then a1, a2, b0, b1, b2.
      [a0, a1, a2, b0, b1, b2].forEach((id, i) => age(cache, id, 6 * 3600 - i * 3600));
      ls = await cacheLs(cache);
      assert.deepEqual(
        ls.map((b) => b.id),
        [a0, a1, a2, b0, b1, b2],
      );
      assert.deepEqual(
        ls.filter((b) => b.inUse).map((b) => b.id),
        [a0],
      );
      // The bootstraps kept for the next daemon of each image were written (a's just reused) after
      // those times: the most recently used entries, kept by this limit.
      const all = await cacheLsAll(cache);
      const boots = all.filter((e) => e.kind === 'bootstrap');
      assert.deepEqual(boots.map((e) => e.id).sort(), [conv.a.bootstrapDigest, conv.b.bootstrapDigest].sort());
      assert.deepEqual(all.slice(-2), boots, 'the kept bootstraps are the most recently used');
      assert.equal(boots.at(-1)?.id, conv.a.bootstrapDigest, "image a's, reused by this mount, is the newest");
      const size = new Map(all.map((b) => [b.id, b.bytes]));
      const total = all.reduce((n, b) => n + b.bytes, 0);
      const bootBytes = boots.reduce((n, b) => n + b.bytes, 0);
      const max = (size.get(a0) as number) + (size.get(b1) as number) + (size.get(b2) as number) + bootBytes;
      const r = JSON.parse((await damselflyOk(['cache', 'gc', '--cache-dir', cache, '--max-size', String(max), '--json'])).stdout) as { removed: string[]; removedBootstraps: string[]; busy: string[]; freedBytes: number; remainingBytes: number };
      console.log(`gc of a ${total}-byte cache to ${max}: removed ${r.removed.length} blobs (${r.freedBytes} bytes), kept ${r.busy.length} in use; ${r.remainingBytes} bytes remain`);
      assert.deepEqual(r.removed, [a1, a2, b0], 'least recently used first, skipping the blob in use');
      assert.deepEqual(r.removedBootstraps, [], 'the kept bootstraps, used last, fit');
      assert.deepEqual(r.busy, [a0]);
      assert.ok(r.remainingBytes <= max);
      assert.deepEqual(
        (await cacheLs(cache)).map((b) => b.id),
        [a0, b1, b2],
      );
      // The running daemon still reads everything (a1 and a2 fetched again).
      assert.deepEqual(await compareTrees(img.a.expected, mnt, { leftListing: listing.a }), []);
    } finally {
      const r = await m.stop();
      assert.equal(r.code, 0, r.stderr);
    }
    // Image b: b0 comes from the registry again, b1 and b2 from the cache.
    const s = await readThrough('b', cache);
    assert.ok((s['storage.chunks_fetched'] ?? 0) > 0 && (s['storage.cache_hits'] ?? 0) > 0, JSON.stringify(s));
    assert.equal(s['storage.cache_verify_failures'] ?? 0, 0);
  });

  test('a daemon with a cache size limit (filecache.max_size) trims the cache directory when it starts', async () => {
    const cache = join(work, 'cache-limit');
    await readThrough('a', cache);
    await readThrough('b', cache);
    conv.a.blobs.forEach((id, i) => age(cache, id, 7200 - i));
    conv.b.blobs.forEach((id, i) => age(cache, id, 3600 - i));
    const before = await cacheLsAll(cache);
    const bootA = before.find((e) => e.id === conv.a.bootstrapDigest);
    const bootB = before.find((e) => e.id === conv.b.bootstrapDigest);
    assert.ok(bootA !== undefined && bootB !== undefined, 'a bootstrap kept for each image');
    // Image a's bootstrap, older than b's blobs: evicted with a's blobs.
    sh(`touch -d @${Math.floor(Date.now() / 1000) - 5400} '${keptBootstrapPath(cache, conv.a.bootstrapDigest)}'`);
    const bBytes = before.filter((b) => conv.b.blobs.includes(b.id)).reduce((n, b) => n + b.bytes, 0) + bootB.bytes;
    const cfg = registryConfig({ host: reg.host, repo: 'net/b' }, { amplifyBytes: 0 });
    (cfg['cache'] as Record<string, unknown>) = { type: 'blobcache', filecache: { work_dir: cache, max_size: bBytes + 4096 } };
    const file = await writeConfig(join(work, 'limit.json'), cfg);
    const s = await readThrough('b', cache, ['--config', file]);
    const after = await cacheLsAll(cache);
    console.log(`max_size ${bBytes + 4096}: ${before.length} entries (${before.reduce((n, b) => n + b.bytes, 0)} bytes) -> ${after.length} (${after.reduce((n, b) => n + b.bytes, 0)} bytes)`);
    assert.deepEqual(after.map((b) => b.id).sort(), [...conv.b.blobs, conv.b.bootstrapDigest].sort(), 'the older image a was evicted, its kept bootstrap too');
    assert.equal(s['storage.chunks_fetched'] ?? 0, 0, 'image b was served from the cache entirely');
  });

  test('two daemons sharing one cache directory read the same image at once; the cache they leave verifies', async () => {
    const cache = join(work, 'cache-shared');
    const files = [...img.a.files.keys()];
    mnt = await mps.next();
    mnt2 = await mps.next();
    const [m1, m2] = await Promise.all([
      startMount(['--image', ref('a'), '--plain-http', '--cache-dir', cache, '--stats', '--log-level', 'info'], mnt),
      startMount(['--image', ref('a'), '--plain-http', '--cache-dir', cache, '--stats', '--log-level', 'info'], mnt2),
    ]);
    let r1;
    let r2;
    try {
      const reversed = [...files].reverse();
      const results = await Promise.all([
        readEveryFile(mnt, img.a.expected, files),
        readEveryFile(mnt2, img.a.expected, reversed),
        readEveryFile(mnt, img.a.expected, reversed),
        readEveryFile(mnt2, img.a.expected, files),
      ]);
      assert.deepEqual(results, [[], [], [], []]);
      assert.ok((await cacheLs(cache)).every((b) => b.inUse));
    } finally {
      [r1, r2] = await Promise.all([m1.stop(), m2.stop()]);
    }
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r2.code, 0, r2.stderr);
    const [s1, s2] = [statsOf(r1.stdout), statsOf(r2.stdout)];
    console.log(`shared cache: daemon 1 fetched ${s1['storage.chunks_fetched']} chunks, daemon 2 ${s2['storage.chunks_fetched']}`);
    const ls = await cacheLs(cache);
    assert.equal(ls.length, conv.a.blobs.length);
    assert.ok(ls.every((b) => !b.inUse));
    // A third daemon verifies every cached chunk on read (--validate): none fails, none is fetched.
    mnt = await mps.next();
    const m3 = await startMount(['--image', ref('a'), '--plain-http', '--cache-dir', cache, '--validate', '--stats', '--log-level', 'info'], mnt);
    const diffs = await compareTrees(img.a.expected, mnt, { leftListing: listing.a }).catch((e: unknown) => [String(e)]);
    const r3 = await m3.stop();
    assert.deepEqual(diffs, []);
    const s3 = statsOf(r3.stdout);
    assert.equal(s3['storage.cache_verify_failures'] ?? 0, 0);
    assert.equal(s3['storage.chunks_fetched'] ?? 0, 0, 'every chunk was in the shared cache');
    assert.ok((s3['storage.cache_hits'] ?? 0) > 0);
    assert.doesNotMatch(r3.stderr, /not closed cleanly/, 'the last daemon to leave recorded a clean close');
  });
});
