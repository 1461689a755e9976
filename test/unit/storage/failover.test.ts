/**
 * The failover backend's bookkeeping: the first healthy route serves; a route that answers with
 * bytes that fail chunk verification (reported by the chunk path) is failed over at once, so the
 * next reads go to the next route or the origin until the check interval passes; bytes the origin
 * served are not worth reading from it again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackendError, Metrics, silentLogger } from '../../../src/base/index.js';
import { FailoverBackend } from '../../../src/storage/backend/failover.js';
import type { BlobBackend } from '../../../src/storage/backend/types.js';

class Fake implements BlobBackend {
  readonly kind = 'fake';
  reads = 0;
  fail = false;
  constructor(readonly name: string) {}
  async read(_id: string, _offset: number, length: number): Promise<Buffer> {
    this.reads++;
    if (this.fail) throw new BackendError(`${this.name} is down`, { retryable: true });
    return Buffer.alloc(length, this.name.charCodeAt(0));
  }
  async size(): Promise<number> {
    return 1 << 20;
  }
  async close(): Promise<void> {}
}

test('a route that served wrong bytes is failed over at once; the origin is not asked twice', async () => {
  const proxy = new Fake('proxy');
  const origin = new Fake('origin');
  const metrics = new Metrics();
  const fb = new FailoverBackend([{ name: 'proxy', backend: proxy, checkIntervalMs: 60_000, failureLimit: 3 }], origin, silentLogger, metrics);
  const first = await fb.read('b', 0, 10);
  assert.equal(first[0], 'p'.charCodeAt(0));
  // Its chunks fail one by one: the route is failed over once, and each may be read from the origin.
  assert.equal(fb.reportCorrupt(first), true);
  assert.equal(fb.reportCorrupt(first), true);
  assert.equal(metrics.get('backend.route_corrupt.proxy'), 1);
  const second = await fb.read('b', 10, 10);
  assert.equal(second[0], 'o'.charCodeAt(0), 'the next read goes to the origin (failureLimit 3 did not apply)');
  assert.equal(proxy.reads, 1);
  assert.equal(fb.reportCorrupt(second), false, 'the origin served it: reading it again is no help');
  // A plain error still takes failureLimit answers to fail a route over.
  const mirror = new Fake('mirror');
  mirror.fail = true;
  const fb2 = new FailoverBackend([{ name: 'mirror', backend: mirror, checkIntervalMs: 60_000, failureLimit: 2 }], origin, silentLogger, new Metrics());
  await fb2.read('b', 0, 1);
  await fb2.read('b', 0, 1);
  await fb2.read('b', 0, 1);
  assert.equal(mirror.reads, 2);
});

test('a failed route without a health check is tried again by one read per interval, not by every read after the first', async () => {
  const proxy = new Fake('proxy');
  const origin = new Fake('origin');
  proxy.fail = true;
  const fb = new FailoverBackend([{ name: 'proxy', backend: proxy, checkIntervalMs: 100, failureLimit: 1 }], origin, silentLogger, new Metrics());
  for (let i = 0; i < 5; i++) assert.equal((await fb.read('b', 0, 1))[0], 'o'.charCodeAt(0));
  assert.equal(proxy.reads, 1, 'failed over after its first failure');
  for (let round = 1; round <= 2; round++) {
    await new Promise((r) => setTimeout(r, 120));
    for (let i = 0; i < 10; i++) assert.equal((await fb.read('b', 0, 1))[0], 'o'.charCodeAt(0));
    assert.equal(proxy.reads, 1 + round, `interval ${round}: one try of the dead route`);
  }
  proxy.fail = false;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal((await fb.read('b', 0, 1))[0], 'p'.charCodeAt(0), 'back once it answers');
  assert.equal((await fb.read('b', 0, 1))[0], 'p'.charCodeAt(0));
});
