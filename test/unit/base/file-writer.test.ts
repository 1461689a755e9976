/**
 * FileWriter: sequential writes of any sizes through its buffer reach the file in order; opening
 * a file that exists (`wx`) or in a missing directory rejects like any other call; `abort` closes
 * without writing what is buffered.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileWriter } from '../../../src/base/index.js';

describe('FileWriter', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-file-writer-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('writes of every size, buffered and direct, land in order', async () => {
    const parts = [1, 4095, 1 << 20, 7, (1 << 20) - 3, 3 << 20, 0, 12345].map((n) => randomBytes(n));
    const w = await FileWriter.create(join(dir, 'a'));
    for (const p of parts) await w.write(p);
    assert.equal(w.bytes, parts.reduce((s, p) => s + p.length, 0));
    await w.close();
    assert.ok((await readFile(join(dir, 'a'))).equals(Buffer.concat(parts)));
  });

  test("'wx' refuses a file that exists, 'w' replaces it; a missing directory rejects", async () => {
    await writeFile(join(dir, 'b'), 'old');
    await assert.rejects(FileWriter.create(join(dir, 'b')), { code: 'EEXIST' });
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'old');
    const w = await FileWriter.create(join(dir, 'b'), 'w');
    await w.write(Buffer.from('new'));
    await w.close();
    assert.equal(await readFile(join(dir, 'b'), 'utf8'), 'new');
    await assert.rejects(FileWriter.create(join(dir, 'no', 'c')), { code: 'ENOENT' });
  });

  test('abort closes without writing the buffered bytes', async () => {
    const w = await FileWriter.create(join(dir, 'd'));
    await w.write(Buffer.from('buffered'));
    await w.abort();
    assert.equal((await readFile(join(dir, 'd'))).length, 0);
  });
});
