import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collectGarbage } from '../../../src/base/index.js';

describe('collectGarbage', () => {
  test('collects what nothing refers to any more, and leaves no gc global behind', async () => {
    const hadGc = 'gc' in globalThis;
    const refs = Array.from({ length: 4 }, () => new WeakRef({ data: new ArrayBuffer(1 << 20) }));
    // A WeakRef's target stays alive until the job that made it ends.
    await new Promise((r) => setImmediate(r));
    collectGarbage();
    assert.deepEqual(
      refs.map((r) => r.deref()),
      [undefined, undefined, undefined, undefined],
    );
    collectGarbage(); // again: the collector is kept
    assert.equal('gc' in globalThis, hadGc, 'the main context did not get a gc global');
  });
});
