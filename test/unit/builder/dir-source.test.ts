/**
 * A directory source whose file shrinks between the scan (which records its size) and the read of
 * its data: the build fails naming the file, whether the read comes up short inside a chunk or
 * the file now ends exactly where a chunk starts (then no data follows: not a hole to store as
 * zeros). The truncation happens in the progress callback, after the first file's data is read and
 * before the second one's. And one replaced by a FIFO after the scan: refused, not waited on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { UsageError, silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import { readSmallFile, scanDirectory } from '../../../src/builder/sources/dir.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { prng } from '../../helpers/tree.js';

const CHUNK = 1 << 20;
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-dir-source-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

for (const [what, cut] of [
  ['inside a chunk', CHUNK + CHUNK / 2],
  ['where a chunk starts', CHUNK],
] as const) {
  test(`a file cut short ${what} while the build reads it is an error, not zeros`, async () => {
    const src = join(work, `src-${cut}`);
    await mkdir(src);
    await writeFile(join(src, 'a'), prng(1, 4096)); // stored first
    await writeFile(join(src, 'b'), prng(2, 3 * CHUNK));
    let cutDone = false;
    await assert.rejects(
      build({
        sources: [src],
        blobDir: join(work, `blobs-${cut}`),
        bootstrapPath: join(work, `boot-${cut}`),
        codecs: nativeCodecs,
        compressor: Compressor.Zstd,
        digester: Digester.Blake3,
        chunkSize: CHUNK,
        log: silentLogger,
        onProgress: () => {
          if (cutDone) return;
          cutDone = true;
          truncateSync(join(src, 'b'), cut);
        },
      }),
      (e: unknown) => e instanceof UsageError && /\/b shrank while it was read/.test(e.message),
    );
    assert.ok(cutDone, 'the file was cut during the build');
  });
}

test('a source file turned into a FIFO after the scan is refused, not waited on (the open blocked for ever)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-dir-source-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'f'), 'hello');
  const root = await scanDirectory(dir, silentLogger);
  const node = root.children?.get('f');
  assert.ok(node !== undefined);
  assert.deepEqual(await readSmallFile(node), Buffer.from('hello'));
  await unlink(join(dir, 'f'));
  execFileSync('mkfifo', [join(dir, 'f')]);
  await assert.rejects(readSmallFile(node), (e: unknown) => e instanceof UsageError && /is no longer a regular file/.test(e.message));
});
