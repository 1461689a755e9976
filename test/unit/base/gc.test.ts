import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { collectGarbage, collectGarbageSoon } from '../../../src/base/index.js';

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

  test('collectGarbageSoon: requests within the delay share one collection, a later one gets its own', async (t) => {
    // Its timer keeps no process alive (a daemon has its own handles): this test keeps it.
    const alive = setInterval(() => undefined, 1000);
    t.after(() => clearInterval(alive));
    const first = collectGarbageSoon(50);
    await new Promise((r) => setTimeout(r, 10));
    const second = collectGarbageSoon(50);
    const [a, b] = await Promise.all([first, second]);
    assert.deepEqual([a.joined, b.joined], [false, true]);
    assert.equal(a.ms, b.ms, 'the same collection');
    assert.ok(a.ms >= 0);
    const ref = new WeakRef({ data: new ArrayBuffer(1 << 20) });
    await new Promise((r) => setImmediate(r));
    const third = await collectGarbageSoon(20);
    assert.equal(third.joined, false, 'a new collection');
    assert.equal(ref.deref(), undefined, 'it collected');
  });
});
