/**
 * Walking an untrusted image's tree (check, unpack, inspect): a chain of directories deeper than
 * any path can name is refused at once. Each item carries its whole path, so the walk cost the
 * square of the depth: a 10,000-level chain took `check` 37 s and 800 MB, deeper ones ran out of
 * memory (leaving a partial `unpack --tar` archive behind).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormatError } from '../../../src/base/index.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { openBootstrap } from '../../../src/format/open.js';
import { type BootstrapNode, writeV6Bootstrap } from '../../../src/format/v6/writer.js';
import { MAX_WALK_DEPTH, walkImage } from '../../../src/tools/walk.js';

function chain(depth: number): Buffer {
  const dir = (): BootstrapNode => ({ kind: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, rdev: 0, size: 0, xattrs: [], entries: [] });
  const root = dir();
  let at = root;
  for (let i = 0; i < depth; i++) {
    const next = dir();
    at.entries?.push({ name: Buffer.from('a'), node: next });
    at = next;
  }
  return writeV6Bootstrap({ root, chunkSize: 1 << 20, compressor: Compressor.Zstd, digester: Digester.Blake3, explicitUidGid: false, blobs: [], prefetch: [] });
}

test('a tree deeper than PATH_MAX allows is refused at once; one as deep as it allows is walked', () => {
  for (const order of ['levels', 'tar'] as const) {
    const deepest = [...walkImage(openBootstrap(chain(MAX_WALK_DEPTH)), { order })];
    assert.equal(deepest.length, MAX_WALK_DEPTH + 1);
    assert.equal((deepest.at(-1) as { components: unknown[] }).components.length, MAX_WALK_DEPTH);
    assert.throws(() => [...walkImage(openBootstrap(chain(MAX_WALK_DEPTH + 1)), { order })], (e: unknown) => e instanceof FormatError && /deeper than 2048 directories/.test(e.message));
  }
});
