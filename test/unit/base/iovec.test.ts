import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gather, iovLength, sliceViews } from '../../../src/base/index.js';

test('sliceViews covers a byte range of a scatter list, reusing the views it takes whole', () => {
  const mem = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
  // A reply header, then three "pages", apart from each other.
  const iov = [mem.subarray(0, 4), mem.subarray(8, 16), mem.subarray(20, 28), mem.subarray(40, 48)];
  const whole = sliceViews(iov, 4, 24);
  assert.deepEqual(whole.map((v) => v.length), [8, 8, 8]);
  assert.equal(whole[0], iov[1], 'a view covered whole is the list’s own');
  assert.equal(whole[2], iov[3]);
  assert.ok(gather(whole).equals(Buffer.concat([iov[1], iov[2], iov[3]] as Buffer[])));
  // Cut at both ends: new views of the parts, the bytes in order.
  const cut = sliceViews(iov, 2, 13);
  assert.deepEqual(cut.map((v) => v.length), [2, 8, 3]);
  assert.notEqual(cut[0], iov[0]);
  assert.equal(cut[1], iov[1]);
  assert.ok(gather(cut).equals(Buffer.from([2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 20, 21, 22])));
  // Past the end: as much as there is; from beyond it: nothing.
  assert.equal(iovLength(sliceViews(iov, 20, 100)), 8);
  assert.deepEqual(sliceViews(iov, 28, 10), []);
  assert.deepEqual(sliceViews(iov, 0, 0), []);
});
