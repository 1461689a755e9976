/**
 * Bootstraps kept next to the chunk cache: where they go; `cache gc` removing the temporary files
 * of writers that are gone (a daemon killed between writing one and renaming it), never the
 * temporary file of a process that runs; and kept bootstraps counted in the cache's size and
 * evicted with the blobs, least recently used first.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import { gcCache, listCache, trimCacheFor } from '../../../src/storage/cache/gc.js';
import { isStaleKeptTemp, keptBootstrapDigest, keptBootstrapPath, keptTemp, writeKeptBootstrap } from '../../../src/storage/cache/kept-bootstrap.js';

/** No process has this pid: Linux's pid_max is at most 2^22. */
const GONE = 4_194_305;

test('kept bootstraps: names, and what counts as a stale temporary file', () => {
  const path = keptBootstrapPath('/cache', 'sha256:abc');
  assert.equal(path, '/cache/sha256-abc.image.boot');
  assert.equal(keptTemp(path), `/cache/sha256-abc.image.boot.${process.pid}.tmp`);
  assert.equal(isStaleKeptTemp(`sha256-abc.image.boot.${process.pid}.tmp`), false, 'this process runs');
  assert.equal(isStaleKeptTemp(`sha256-abc.image.boot.${GONE}.tmp`), true);
  assert.equal(isStaleKeptTemp('sha256-abc.image.boot'), false);
  assert.equal(isStaleKeptTemp(`x.blob.data.${GONE}.tmp`), false);
  assert.equal(isStaleKeptTemp(`x.blob_meta.dfly.${GONE}.tmp`), true, 'a blob meta left half-written');
  const digest = `sha256:${'ab'.repeat(32)}`;
  assert.equal(keptBootstrapDigest(`sha256-${'ab'.repeat(32)}.image.boot`), digest);
  assert.equal(keptBootstrapPath('/cache', digest), `/cache/sha256-${'ab'.repeat(32)}.image.boot`);
  for (const other of ['sha256-abc.image.boot', `sha256-${'ab'.repeat(32)}.image.boot.123.tmp`, `${'ab'.repeat(32)}.blob.data`]) {
    assert.equal(keptBootstrapDigest(other), undefined, other);
  }
});

test('kept bootstraps count in the cache size and are evicted with the blobs, least recently used first', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-kept-'));
  try {
    const now = Date.now() / 1000;
    const put = (name: string, bytes: number, hoursAgo: number): void => {
      writeFileSync(join(dir, name), Buffer.alloc(bytes, 1));
      utimesSync(join(dir, name), now - hoursAgo * 3600, now - hoursAgo * 3600);
    };
    const [blobOld, blobNew] = ['aa'.repeat(32), 'bb'.repeat(32)];
    const [bootOld, bootNew] = [`sha256:${'cc'.repeat(32)}`, `sha256:${'dd'.repeat(32)}`];
    put(`${blobOld}.blob.data`, 64 << 10, 4);
    put(`${blobOld}.chunk_map.dfly`, 4096, 4);
    put(keptBootstrapPath(dir, bootOld).slice(dir.length + 1), 32 << 10, 3);
    put(`${blobNew}.blob.data`, 64 << 10, 2);
    put(`${blobNew}.chunk_map.dfly`, 4096, 2);
    put(keptBootstrapPath(dir, bootNew).slice(dir.length + 1), 32 << 10, 1);
    const ls = await listCache(dir);
    assert.deepEqual(
      ls.map((e) => [e.kind, e.id]),
      [
        ['blob', blobOld],
        ['bootstrap', bootOld],
        ['blob', blobNew],
        ['bootstrap', bootNew],
      ],
    );
    assert.ok(ls.every((e) => e.bytes > 0 && !e.inUse));
    const total = ls.reduce((n, e) => n + e.bytes, 0);
    const [oldBlob, oldBoot] = ls as [(typeof ls)[0], (typeof ls)[0]];
    // Room for all but the two least recently used: the old blob, then the old bootstrap.
    const r = await gcCache(dir, total - oldBlob.bytes - oldBoot.bytes, silentLogger);
    assert.deepEqual([r.removed, r.removedBootstraps], [[blobOld], [bootOld]]);
    assert.equal(r.freedBytes, oldBlob.bytes + oldBoot.bytes);
    assert.deepEqual(readdirSync(dir).sort(), [`${blobNew}.blob.data`, `${blobNew}.chunk_map.dfly`, keptBootstrapPath(dir, bootNew).slice(dir.length + 1)].sort());
    const all = await gcCache(dir, 0, silentLogger);
    assert.deepEqual([all.removed, all.removedBootstraps], [[blobNew], [bootNew]]);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cache gc removes the temporary files of writers that are gone, and nothing else', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-kept-'));
  try {
    const kept = keptBootstrapPath(dir, 'sha256:abc');
    writeFileSync(kept, 'bootstrap');
    writeFileSync(`${kept}.${GONE}.tmp`, 'half');
    writeFileSync(keptTemp(kept), 'being written');
    const r = await gcCache(dir, 1 << 30, silentLogger);
    assert.deepEqual(r.removed, []);
    assert.deepEqual(readdirSync(dir).sort(), ['sha256-abc.image.boot', `sha256-abc.image.boot.${process.pid}.tmp`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cache gc keeps the blobs it is told to keep, and counts only what it could remove', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-kept-'));
  try {
    const now = Date.now() / 1000;
    const put = (name: string, hoursAgo: number): void => {
      writeFileSync(join(dir, name), Buffer.alloc(64 << 10, 1));
      utimesSync(join(dir, name), now - hoursAgo * 3600, now - hoursAgo * 3600);
    };
    const [own, other, stuck] = ['aa'.repeat(32), 'bb'.repeat(32), 'cc'.repeat(32)];
    // The image about to be served owns the oldest blob: a daemon with a size limit evicted it
    // before opening it, then fetched it all again.
    put(`${own}.blob.data`, 5);
    put(`${other}.blob.data`, 4);
    // A data "file" that cannot be unlinked (a directory: EISDIR) was counted as freed.
    mkdirSync(join(dir, `${stuck}.blob.data`));
    utimesSync(join(dir, `${stuck}.blob.data`), now - 3 * 3600, now - 3 * 3600);
    const r = await trimCacheFor(dir, 0, [{ id: own }], undefined, silentLogger);
    assert.deepEqual(r.removed, [other]);
    assert.deepEqual(r.busy, [own]);
    assert.ok(r.remainingBytes >= (64 << 10), `${r.remainingBytes} bytes said to remain`);
    assert.deepEqual(readdirSync(dir).sort(), [`${own}.blob.data`, `${stuck}.blob.data`].sort());
    assert.ok(existsSync(join(dir, `${stuck}.blob.data`)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a kept bootstrap is written whole under a temporary name and renamed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-kept-'));
  try {
    const path = keptBootstrapPath(dir, `sha256:${'ab'.repeat(32)}`);
    const bootstrap = Buffer.from('a bootstrap, as kept for the next daemon of its image');
    await writeKeptBootstrap(path, bootstrap);
    assert.deepEqual(readdirSync(dir), [path.slice(dir.length + 1)], 'no temporary file left');
    assert.deepEqual(readFileSync(path), bootstrap);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a kept blob meta counts with its blob, or as the blob when no chunk of it was fetched, and goes with it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-kept-'));
  try {
    const [withData, alone] = ['aa'.repeat(32), 'bb'.repeat(32)];
    writeFileSync(join(dir, `${withData}.blob.data`), Buffer.alloc(8192, 1));
    writeFileSync(join(dir, `${withData}.blob_meta.dfly`), Buffer.alloc(16384, 2));
    writeFileSync(join(dir, `${alone}.blob_meta.dfly`), Buffer.alloc(16384, 3));
    const ls = await listCache(dir);
    assert.deepEqual(ls.map((e) => e.id).sort(), [withData, alone].sort());
    assert.ok((ls.find((e) => e.id === withData)?.bytes ?? 0) >= 8192 + 16384);
    assert.ok((ls.find((e) => e.id === alone)?.bytes ?? 0) >= 16384);
    const r = await gcCache(dir, 0, silentLogger);
    assert.deepEqual(r.removed.sort(), [withData, alone].sort());
    assert.equal(r.remainingBytes, 0);
    assert.deepEqual(readdirSync(dir), [], '"0 bytes remain" is what the directory holds');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
