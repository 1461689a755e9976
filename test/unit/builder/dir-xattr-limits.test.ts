/**
 * A directory source with xattrs RAFS cannot store: a value of 65,536 bytes (Linux allows it, the
 * format's length is 16 bits) and more xattrs than one inode's area holds. The build fails with a
 * FormatError naming the file, not with the bootstrap writer's RangeError; 65,535 bytes build.
 * On tmpfs (/dev/shm), which takes user xattrs of any size Linux allows.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FormatError, silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { openBootstrap } from '../../../src/format/open.js';
import { native, nativeCodecs } from '../../../src/native/index.js';

let work: string;
before(async () => {
  work = await mkdtemp('/dev/shm/damselfly-xattr-limits-');
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function buildDir(name: string, setup: (file: string) => void): Promise<Buffer> {
  const src = join(work, name, 'src');
  await mkdir(src, { recursive: true });
  const file = join(src, 'f');
  await writeFile(file, 'x');
  setup(file);
  const r = await build({ sources: [src], blobDir: join(work, name, 'blobs'), bootstrapPath: join(work, name, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 1 << 20, log: silentLogger });
  return r.bootstrap;
}

test('a 65,535-byte xattr value builds and reads back', async () => {
  const boot = await buildDir('max', (f) => native.lsetxattr(f, 'user.big', Buffer.alloc(65_535, 7)));
  const image = openBootstrap(boot);
  const ino = image.lookup(image.rootIno, Buffer.from('f'))?.ino as number;
  assert.deepEqual(image.xattrs(ino).map((x) => [Buffer.from(x.name).toString(), x.value.length]), [['user.big', 65_535]]);
});

test('a 65,536-byte value or an overfull xattr area fails the build naming the file', async () => {
  await assert.rejects(
    buildDir('over', (f) => native.lsetxattr(f, 'user.big', Buffer.alloc(65_536, 7))),
    (e: unknown) => e instanceof FormatError && /src\/f: xattr user\.big has a 65536-byte value \(RAFS stores at most 65535\)/.test(e.message),
  );
  await assert.rejects(
    buildDir('area', (f) => {
      for (let i = 0; i < 5; i++) native.lsetxattr(f, `user.x${i}`, Buffer.alloc(60_000, i));
    }),
    (e: unknown) => e instanceof FormatError && /src\/f: \d+ bytes of xattrs do not fit one inode/.test(e.message),
  );
});
