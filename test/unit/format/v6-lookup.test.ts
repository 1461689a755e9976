/**
 * Lookup in a v6 directory of many dirent blocks: a binary search over the blocks by their first
 * names, then over the names of one block. Every name is found with the inode readdir gives it;
 * names sorting before the first, between two neighbours (across a block boundary too) and after
 * the last are not; `.` and `..` are not names a lookup returns.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import type { RafsImage } from '../../../src/format/image.js';
import { openBootstrap } from '../../../src/format/open.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { seededRng } from '../../helpers/rng.js';

let work: string;
let image: RafsImage;
let dir: number;
const names: Buffer[] = [];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-v6-lookup-'));
  const src = join(work, 'src', 'd');
  await mkdir(src, { recursive: true });
  const rng = seededRng(6);
  const seen = new Set<string>();
  // 3,000 names of 1 to 60 bytes (some 40 dirent blocks), some sharing long prefixes.
  while (seen.size < 3000) {
    const len = 1 + rng.int(rng.int(4) === 0 ? 60 : 8);
    let name = '';
    for (let i = 0; i < len; i++) name += String.fromCharCode(0x21 + rng.int(0x5e));
    if (name.includes('/') || name === '.' || name === '..') continue;
    seen.add(rng.int(5) === 0 ? `prefix-shared-by-many-${name}` : name);
  }
  for (const n of seen) await writeFile(join(src, n), '');
  names.push(...[...seen].map((n) => Buffer.from(n)).sort(Buffer.compare));
  const r = await build({ sources: [join(work, 'src')], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 4096, log: silentLogger });
  image = openBootstrap(r.bootstrap);
  dir = image.lookup(image.rootIno, Buffer.from('d'))?.ino as number;
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('every name of a directory of many blocks is found with its inode', () => {
  const listed = [...image.readdir(dir)];
  assert.deepEqual(
    listed.map((e) => Buffer.from(e.name)),
    names,
  );
  for (const e of listed) assert.equal(image.lookup(dir, e.name)?.ino, e.ino, Buffer.from(e.name).toString());
});

test('names before the first, between neighbours and after the last are absent; so are . and ..', () => {
  const absent: Buffer[] = [Buffer.from([0x20]), Buffer.from([0x7f, 0x7f]), Buffer.from('.'), Buffer.from('..')];
  for (let i = 0; i < names.length; i++) {
    const n = names[i] as Buffer;
    const between = Buffer.concat([n, Buffer.from([0x20])]); // sorts right after n, before n's successor
    if (i + 1 < names.length && Buffer.compare(between, names[i + 1] as Buffer) >= 0) continue;
    absent.push(between, n.subarray(0, n.length - 1));
  }
  const present = new Set(names.map((n) => n.toString('latin1')));
  let checked = 0;
  for (const a of absent) {
    if (a.length === 0 || present.has(a.toString('latin1'))) continue;
    assert.equal(image.lookup(dir, a), undefined, JSON.stringify(a.toString('latin1')));
    checked++;
  }
  assert.ok(checked > 3000, `${checked} absent names checked`);
});
