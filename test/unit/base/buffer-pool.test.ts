/**
 * The buffer pool: a released buffer is reused, but only from a later turn of the event loop (a
 * reader that took a reference in this turn still sees its bytes); views and sizes map to
 * power-of-two classes; what the pool did not lend is ignored; idle buffers are bounded and
 * dropped after a quiet period, or by `trim()`, and their memory is handed back at once (the
 * chunk pool's `discardPages`) where the garbage collector would have kept it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BufferPool } from '../../../src/base/index.js';
import { native } from '../../../src/native/index.js';
import { chunkBufferPool } from '../../../src/storage/device.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a released buffer comes back for a request of its class, from the next turn on', async () => {
  const pool = new BufferPool({ minSize: 4096 });
  const a = pool.acquire(100_000);
  assert.equal(a.length, 100_000);
  assert.equal(a.buffer.byteLength, 131072, 'rounded up to a power of two');
  assert.equal(pool.release(a.subarray(10, 20)), true, 'any view on it will do');
  const b = pool.acquire(120_000);
  assert.notEqual(b.buffer, a.buffer, 'not within the turn it was released in');
  await turn();
  const c = pool.acquire(70_000);
  assert.equal(c.buffer, a.buffer, 'reused from the next turn');
  assert.equal(c.length, 70_000);
  assert.equal(pool.created, 2);
});

test('what the pool did not lend, or lent and got back already, is ignored', async () => {
  const pool = new BufferPool({ minSize: 4096 });
  assert.equal(pool.release(Buffer.alloc(8192)), false);
  const small = pool.acquire(100);
  assert.equal(small.length, 100);
  assert.equal(pool.release(small), false, 'below minSize: a plain allocation');
  const a = pool.acquire(8192);
  assert.equal(pool.release(a), true);
  assert.equal(pool.release(a), false, 'a second release');
  await turn();
  assert.equal(pool.idleSize, 8192);
  const b = pool.acquire(8192);
  const c = pool.acquire(8192);
  assert.notEqual(b.buffer, c.buffer, 'one buffer is never lent twice');
});

test('idle buffers are bounded, and dropped after a quiet period', async () => {
  const pool = new BufferPool({ minSize: 4096, maxIdleBytes: 3 * 65536, trimAfterMs: 50 });
  const lent = Array.from({ length: 5 }, () => pool.acquire(65536));
  for (const b of lent) pool.release(b);
  await turn();
  assert.equal(pool.idleSize, 3 * 65536, 'the rest is left to the garbage collector');
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(pool.idleSize, 0);
  const again = pool.acquire(65536);
  assert.equal(again.length, 65536);
  assert.equal(pool.created, 6);
});

test('dropped idle buffers are discarded; buffers released in this turn are not touched', async () => {
  const discarded: ArrayBuffer[] = [];
  const pool = new BufferPool({ minSize: 4096, maxIdleBytes: 65536, discard: (ab) => discarded.push(ab) });
  const [a, b, c] = [pool.acquire(65536), pool.acquire(65536), pool.acquire(65536)];
  pool.release(a);
  pool.release(b);
  await turn();
  assert.deepEqual(discarded, [b.buffer], 'beyond maxIdleBytes: discarded at once');
  pool.release(c);
  pool.trim();
  assert.deepEqual(discarded, [b.buffer, a.buffer], 'trim: the idle one');
  await turn();
  assert.equal(pool.idleSize, 65536, 'the one released in the trimming turn became idle afterwards');
  assert.equal(pool.acquire(65536).buffer, c.buffer);
});

test('the chunk buffer pool hands idle memory back to the kernel: the pages read as zeros afterwards', async () => {
  const pool = chunkBufferPool();
  const a = pool.acquire(256 << 10);
  a.fill(0x5a);
  pool.release(a);
  await turn();
  pool.trim();
  const again = new Uint8Array(a.buffer);
  assert.ok(
    again.every((x) => x === 0),
    'MADV_DONTNEED dropped the pages',
  );
  assert.equal(native.discardPages(new ArrayBuffer(100)), false, 'less than a page: nothing to hand back');
  assert.throws(() => native.discardPages(a as unknown as ArrayBuffer), /ArrayBuffer is required/);
});
