/**
 * Reads requested before anyone asks (the start of a prefetch, sent with the bootstrap): a read
 * inside them waits for them (for its own bytes of a piece that streams in) and is answered from
 * them with the right bytes, without a request of its own; pieces go out in order a few at a time, one a reader waits for at once, while the
 * prefetch's background reads wait their turn; a piece all handed out is dropped; a failed piece,
 * data that failed verification or `release()` send reads to the backend itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackendError, Metrics, silentLogger } from '../../../src/base/index.js';
import { EarlyReadsBackend } from '../../../src/storage/backend/early-reads.js';
import type { BlobBackend, ReadOptions } from '../../../src/storage/backend/types.js';

/** Byte i of blob `id` is (i * 7 + id.length) & 0xff; each read waits until `open()` lets it through. */
class SlowBlobs implements BlobBackend {
  readonly kind = 'slow';
  reads: { id: string; offset: number; length: number }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failAt: number | undefined;
  private gates: (() => void)[] = [];

  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    this.reads.push({ id, offset, length });
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise<void>((resolve) => this.gates.push(resolve));
      if (opts?.signal?.aborted) throw new BackendError('aborted');
      if (offset === this.failAt) throw new BackendError('connection reset', { retryable: true });
      return expected(id, offset, length);
    } finally {
      this.inFlight--;
    }
  }
  /** Lets the reads waiting now finish (not those they lead to). */
  async openOnce(): Promise<void> {
    for (const g of this.gates.splice(0)) g();
    await new Promise((r) => setImmediate(r));
  }
  /** Lets every waiting read finish, and those that follow; resolves once none waits. */
  async open(): Promise<void> {
    while (this.gates.length > 0) {
      for (const g of this.gates.splice(0)) g();
      await new Promise((r) => setImmediate(r));
    }
  }
  async size(): Promise<number> {
    return 1 << 30;
  }
  async close(): Promise<void> {}
}

function expected(id: string, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = ((offset + i) * 7 + id.length) & 0xff;
  return b;
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test('reads inside the early ranges are answered from them, in the right bytes, without requests of their own', async () => {
  const inner = new SlowBlobs();
  const metrics = new Metrics();
  const early = new EarlyReadsBackend(
    inner,
    [
      { id: 'aa', offset: 1000, length: 10_000 },
      { id: 'bbb', offset: 0, length: 2500 },
    ],
    { pieceBytes: 1024, concurrency: 3, metrics, log: silentLogger },
  );
  await flush();
  assert.equal(inner.reads.length, 3, 'three pieces in flight at first');
  assert.deepEqual(inner.reads[0], { id: 'aa', offset: 1000, length: 1024 });
  let allocated = 0;
  const asked = [
    early.read('aa', 1000, 100), // inside the first piece
    early.read('aa', 1500, 2000, { allocate: (n) => ((allocated += n), Buffer.alloc(n)) }), // across three pieces
    early.read('aa', 10_500, 500), // the last piece, cut short at the range's end
    early.read('bbb', 2000, 500),
    early.read('aa', 10_900, 200), // runs past the range: the backend's
    early.read('cc', 0, 10), // another blob: the backend's
  ];
  for (let i = 0; i < 20; i++) {
    await inner.open();
    await flush();
  }
  const got = await Promise.all(asked);
  assert.deepEqual(got[0], expected('aa', 1000, 100));
  assert.deepEqual(got[1], expected('aa', 1500, 2000));
  assert.equal(allocated, 2000, 'the caller’s buffer is used');
  assert.deepEqual(got[2], expected('aa', 10_500, 500));
  assert.deepEqual(got[3], expected('bbb', 2000, 500));
  assert.deepEqual(got[4], expected('aa', 10_900, 200));
  assert.deepEqual(got[5], expected('cc', 0, 10));
  // 10 pieces of aa (10 000 bytes) and 3 of bbb, each once: three in order at first, then those
  // that waiting reads need (a reader does not queue behind the rest), then the rest in order.
  const outside = (r: { id: string; offset: number }): boolean => r.id === 'cc' || r.offset === 10_900;
  const piece = (r: { id: string; offset: number; length: number }): string => `${r.id}@${r.offset}+${r.length}`;
  assert.deepEqual(inner.reads.filter((r) => !outside(r)).map(piece), [
    'aa@1000+1024',
    'aa@2024+1024',
    'aa@3048+1024',
    'aa@10216+784', // wanted by the read at 10 500
    'bbb@1024+1024', // by the read at bbb 2000
    'bbb@2048+452',
    ...Array.from({ length: 6 }, (_, i) => `aa@${4072 + i * 1024}+1024`),
    'bbb@0+1024',
  ]);
  assert.equal(inner.reads.filter(outside).length, 2);
  assert.equal(inner.maxInFlight, 3 + 3 + 2, 'three queued pieces, the three readers asked for, the two reads outside');
  assert.equal(metrics.get('storage.early_read_hits'), 4);
  assert.equal(metrics.get('storage.early_read_bytes'), 12_500);
});

test('a piece streams: a read waits only until its bytes are in', async () => {
  let finish: () => void = () => undefined;
  const inner: BlobBackend = {
    kind: 'streaming',
    async read(id, offset, length, opts) {
      const out = opts?.allocate?.(length) ?? Buffer.alloc(length);
      expected(id, offset, length / 2).copy(out, 0);
      opts?.onProgress?.(length / 2);
      await new Promise<void>((r) => (finish = r));
      expected(id, offset + length / 2, length / 2).copy(out, length / 2);
      opts?.onProgress?.(length);
      return out;
    },
    size: async () => 1 << 30,
    close: async () => undefined,
  };
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 4096, length: 8192 }], { metrics: new Metrics(), log: silentLogger });
  let lateDone = false;
  const late = early.read('aa', 4096 + 4000, 200).then((b) => ((lateDone = true), b)); // across the half
  assert.deepEqual(await early.read('aa', 4096 + 100, 3000), expected('aa', 4096 + 100, 3000), 'the first half is served while the second is on its way');
  await flush();
  assert.equal(lateDone, false);
  finish();
  assert.deepEqual(await late, expected('aa', 4096 + 4000, 200));
});

test('a piece all handed out is dropped: a later read of its bytes goes to the backend', async () => {
  const inner = new SlowBlobs();
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 0, length: 2048 }], { pieceBytes: 1024, concurrency: 2, metrics: new Metrics(), log: silentLogger });
  const first = [early.read('aa', 0, 512, { background: true }), early.read('aa', 512, 512, { background: true }), early.read('aa', 1024, 100, { background: true })];
  await inner.open();
  const got = await Promise.all(first);
  assert.deepEqual(got[0], expected('aa', 0, 512));
  assert.deepEqual(got[1], expected('aa', 512, 512));
  assert.equal(inner.reads.length, 2, 'the two pieces');
  const again = early.read('aa', 100, 10); // piece 0 was all handed out
  const rest = early.read('aa', 1200, 10); // piece 1 was not
  await inner.open();
  assert.deepEqual(await again, expected('aa', 100, 10));
  assert.deepEqual(await rest, expected('aa', 1200, 10));
  assert.deepEqual(inner.reads.slice(2), [{ id: 'aa', offset: 100, length: 10 }], 'only the spent piece’s bytes are read again');
});

test('a failed piece sends its reads to the backend', async () => {
  const inner = new SlowBlobs();
  inner.failAt = 2048;
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 0, length: 8192 }], { pieceBytes: 1024, concurrency: 1, metrics: new Metrics(), log: silentLogger });
  const across = early.read('aa', 2000, 100); // pieces 1 and 2; 2 fails
  await inner.open();
  assert.deepEqual(await across, expected('aa', 2000, 100));
  assert.deepEqual(
    inner.reads.filter((r) => r.offset === 2000),
    [{ id: 'aa', offset: 2000, length: 100 }],
    'read from the backend after the piece failed',
  );
  assert.equal(inner.reads.filter((r) => r.length === 1024).length, 8, 'the other pieces went on');
});

test('a backend that throws instead of rejecting fails its piece like a rejection: the queue goes on, the process does not end', async () => {
  const inner = new SlowBlobs();
  const throwing: BlobBackend = {
    kind: 'throwing',
    read: (id, offset, length, opts) => {
      if (offset === 1024) throw new BackendError('thrown, not rejected');
      return inner.read(id, offset, length, opts);
    },
    size: async () => 1 << 30,
    close: async () => undefined,
  };
  const early = new EarlyReadsBackend(throwing, [{ id: 'aa', offset: 0, length: 4096 }], { pieceBytes: 1024, concurrency: 1, metrics: new Metrics(), log: silentLogger });
  await inner.open();
  // Piece 1 failed (a throw from the queue's next step used to be an unhandled rejection); 2 and 3 went on.
  assert.deepEqual(
    inner.reads.map((r) => r.offset),
    [0, 2048, 3072],
  );
  let done = false;
  const across = early.read('aa', 1000, 100).finally(() => (done = true)); // across the failed piece: from the backend
  while (!done) {
    await inner.open();
    await flush();
  }
  assert.deepEqual(await across, expected('aa', 1000, 100));
});

test('release() stops the pieces not yet requested; later reads go to the backend', async () => {
  const inner = new SlowBlobs();
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 0, length: 8192 }], { pieceBytes: 1024, concurrency: 2, metrics: new Metrics(), log: silentLogger });
  const waiting = early.read('aa', 0, 10); // waits for the first piece
  await flush();
  assert.equal(inner.reads.length, 2);
  early.release();
  await inner.open();
  assert.deepEqual(await waiting, expected('aa', 0, 10), 'its piece was stopped: the backend answered');
  assert.deepEqual(
    inner.reads.map((r) => `${r.offset}+${r.length}`),
    ['0+1024', '1024+1024', '0+10'],
  );
});

test('a read waiting for a piece gives up when its signal fires (the device closing), and nothing else goes out', async () => {
  const inner = new SlowBlobs();
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 0, length: 4096 }], { pieceBytes: 4096, concurrency: 1, metrics: new Metrics(), log: silentLogger });
  const closing = new AbortController();
  const waiting = early.read('aa', 100, 10, { signal: closing.signal }); // the piece never comes
  await flush();
  const reason = new Error('the device is closed');
  closing.abort(reason);
  await assert.rejects(waiting, (e) => e === reason);
  // Already aborted: refused at once.
  await assert.rejects(early.read('aa', 200, 10, { signal: closing.signal }), (e) => e === reason);
  assert.deepEqual(
    inner.reads.map((r) => `${r.offset}+${r.length}`),
    ['0+4096'],
    'only the piece itself was requested',
  );
  early.release();
  await inner.open();
});

test('background reads (the prefetch) wait their turn; a reader waiting for one expedites it; release() lets them go', async () => {
  const inner = new SlowBlobs();
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 0, length: 8192 }], { pieceBytes: 1024, concurrency: 1, metrics: new Metrics(), log: silentLogger });
  const late = early.read('aa', 5000, 100, { background: true }); // piece 4
  const later = early.read('aa', 7000, 100, { background: true }); // piece 6
  await flush();
  assert.deepEqual(inner.reads.map((r) => r.offset), [0], 'the background reads started nothing');
  early.expedite('aa', 5000, 100);
  await flush();
  assert.deepEqual(inner.reads.map((r) => r.offset), [0, 4096], 'the piece a reader waits for is requested');
  await inner.openOnce(); // pieces 0 and 4; the queue goes on with piece 1
  assert.deepEqual(await late, expected('aa', 5000, 100));
  early.release();
  await inner.open();
  assert.deepEqual(await later, expected('aa', 7000, 100), 'released before its piece was requested: read from the backend');
  assert.ok(!inner.reads.some((r) => r.offset === 6144), 'piece 6 was never requested');
  assert.deepEqual(inner.reads.at(-1), { id: 'aa', offset: 7000, length: 100 });
});

test('data from the early reads that failed verification: dropped, and read again from the backend', async () => {
  const inner = new SlowBlobs();
  const early = new EarlyReadsBackend(inner, [{ id: 'aa', offset: 0, length: 4096 }], { pieceBytes: 4096, metrics: new Metrics(), log: silentLogger });
  const p = early.read('aa', 0, 100);
  await inner.open();
  const served = await p;
  assert.equal(inner.reads.length, 1);
  assert.equal(early.reportCorrupt(served), true, 'worth reading again');
  const again = early.readOrigin('aa', 0, 100);
  await inner.open();
  assert.deepEqual(await again, expected('aa', 0, 100));
  assert.equal(inner.reads.length, 2);
  // Later reads go to the backend; a backend without routes cannot do better than it did.
  const later = early.read('aa', 100, 100);
  await inner.open();
  const fromBackend = await later;
  assert.equal(inner.reads.length, 3);
  assert.equal(early.reportCorrupt(fromBackend), false);
});
