/**
 * A directory source whose regular file is replaced by a FIFO between the scan and the read: the
 * open waited for a writer for ever (and kept the process from exiting); it is refused instead.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageError, silentLogger } from '../../../src/base/index.js';
import { readSmallFile, scanDirectory } from '../../../src/builder/sources/dir.js';

test('a source file turned into a FIFO after the scan is refused, not waited on', async (t) => {
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
