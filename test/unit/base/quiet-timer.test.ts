/**
 * QuietTimer: the callback comes once the component has been quiet for the whole period (touches
 * postpone it), once per quiet spell, and never after `cancel`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QuietTimer } from '../../../src/base/index.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('fires once after a quiet period; touches postpone it; a later touch starts a new spell', async () => {
  let fired = 0;
  const t = new QuietTimer(150, () => fired++);
  t.touch();
  for (let i = 0; i < 4; i++) {
    await sleep(60);
    t.touch(); // never 150 ms quiet so far
  }
  assert.equal(fired, 0, 'touched every 60 ms: not quiet yet');
  await sleep(400);
  assert.equal(fired, 1, 'quiet: called once');
  await sleep(200);
  assert.equal(fired, 1, 'not again without a touch');
  t.touch();
  await sleep(400);
  assert.equal(fired, 2, 'a new spell after the next touch');
});

test('cancel: no call', async () => {
  let fired = 0;
  const t = new QuietTimer(30, () => fired++);
  t.touch();
  t.cancel();
  await sleep(100);
  assert.equal(fired, 0);
});
