/**
 * Bootstraps kept next to the chunk cache: where they go, and `cache gc` removing the temporary
 * files of writers that are gone (a daemon killed between writing one and renaming it), never a
 * kept bootstrap or the temporary file of a process that runs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import { gcCache } from '../../../src/storage/cache/gc.js';
import { isStaleKeptTemp, keptBootstrapPath, keptTemp } from '../../../src/storage/cache/kept-bootstrap.js';

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
