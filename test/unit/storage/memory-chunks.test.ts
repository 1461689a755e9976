/**
 * The memory cache's capacity: it starts small, stays small under a stream of chunks each stored
 * once, and grows (up to its limit, never beyond) by the size of each chunk that comes back while
 * its eviction is still remembered; every buffer it lets go is released exactly once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkKey } from '../../../src/format/chunk-info.js';
import { MemoryChunks } from '../../../src/storage/cache/blob-cache.js';

const C = 1000;

/** Key of chunk `i` of blob `blob` (only the two fields `chunkKey` reads). */
function key(i: number, blob = 0): number {
  return chunkKey({ blobIndex: blob, index: i } as Parameters<typeof chunkKey>[0]);
}

/** A cache with its buffers counted: kept and released, each exactly once. */
function counted(limit: number, initial?: number): { memory: MemoryChunks; held: Set<Uint8Array> } {
  const held = new Set<Uint8Array>();
  const memory = new MemoryChunks(
    limit,
    {
      keep: (d) => {
        assert.ok(!held.has(d), 'a buffer kept twice');
        held.add(d);
      },
      release: (d) => assert.ok(held.delete(d), 'a buffer released that was not kept'),
    },
    initial,
  );
  return { memory, held };
}

function heldBytes(held: Set<Uint8Array>): number {
  return [...held].reduce((n, d) => n + d.length, 0);
}

test('a stream of chunks each stored once keeps the starting capacity', () => {
  const { memory, held } = counted(64 * C, 8 * C);
  for (let i = 0; i < 1000; i++) memory.put(key(i), new Uint8Array(C));
  assert.equal(memory.capacity, 8 * C);
  assert.equal(held.size, 8, 'the eight chunks stored last');
  for (let i = 992; i < 1000; i++) assert.ok(memory.has(key(i)), `chunk ${i}`);
  assert.ok(!memory.has(key(991)));
});

test('a working set read again grows the cache to hold it, and no further', () => {
  const { memory, held } = counted(64 * C, 8 * C);
  // 20 chunks read round and round: at first every pass decodes them all again.
  const misses: number[] = [];
  for (let pass = 0; pass < 6; pass++) {
    let missed = 0;
    for (let i = 0; i < 20; i++) {
      if (memory.get(key(i)) !== undefined) continue;
      missed++;
      memory.put(key(i), new Uint8Array(C));
    }
    misses.push(missed);
  }
  assert.equal(misses[0], 20);
  assert.equal(misses.at(-1), 0, `misses per pass: ${misses.join(' ')}`);
  assert.equal(memory.capacity, 20 * C, 'grown by one chunk per chunk decoded again');
  assert.equal(heldBytes(held), 20 * C);
});

test('growth stops at the limit; then nothing more is remembered of evictions', () => {
  const { memory, held } = counted(16 * C, 4 * C);
  const cycle = (n: number, passes: number): void => {
    for (let pass = 0; pass < passes; pass++) for (let i = 0; i < n; i++) if (memory.get(key(i)) === undefined) memory.put(key(i), new Uint8Array(C));
  };
  cycle(16, 10);
  assert.equal(memory.capacity, 16 * C, 'grown to the limit');
  cycle(24, 10);
  assert.equal(memory.capacity, 16 * C, 'and no further');
  assert.equal(heldBytes(held), 16 * C);
});

test('a cycle longer than the limit does not grow the cache: a larger LRU cache would miss as often', () => {
  const { memory } = counted(16 * C, 4 * C);
  for (let pass = 0; pass < 10; pass++) for (let i = 0; i < 40; i++) if (memory.get(key(i)) === undefined) memory.put(key(i), new Uint8Array(C));
  assert.equal(memory.capacity, 4 * C);
});

test('a key evicted too long ago is forgotten: reading it again does not grow the cache', () => {
  // Limit 10, start 4: at most 6 chunks' worth of evictions are remembered.
  const { memory } = counted(10 * C, 4 * C);
  for (let i = 0; i < 20; i++) memory.put(key(i), new Uint8Array(C));
  memory.put(key(0), new Uint8Array(C)); // evicted 16 chunks ago
  assert.equal(memory.capacity, 4 * C);
  memory.put(key(14), new Uint8Array(C)); // evicted three stores ago, when chunk 18 came
  assert.equal(memory.capacity, 5 * C);
});

test('delete and deleteBlob release their buffers; a deleted or closed-blob chunk is no ghost', () => {
  const { memory, held } = counted(8 * C, 2 * C);
  memory.put(key(0, 0), new Uint8Array(C));
  memory.put(key(0, 1), new Uint8Array(C));
  memory.put(key(1, 1), new Uint8Array(C)); // evicts blob 0's chunk 0: a ghost
  memory.delete(key(0, 1));
  assert.equal(held.size, 1);
  memory.deleteBlob(0); // forgets the ghost
  memory.deleteBlob(1);
  assert.equal(held.size, 0);
  memory.put(key(0, 0), new Uint8Array(C));
  memory.put(key(0, 1), new Uint8Array(C));
  assert.equal(memory.capacity, 2 * C, 'neither came back from a remembered eviction');
});

test('a chunk larger than the capacity is kept: the capacity grows to hold it', () => {
  const { memory, held } = counted(64 * C, 8 * C);
  memory.put(key(0), new Uint8Array(C));
  memory.put(key(1), new Uint8Array(16 * C));
  assert.ok(memory.has(key(1)), 'kept, not evicted on arrival');
  assert.equal(memory.capacity, 16 * C);
  assert.deepEqual([...held].map((d) => d.length), [16 * C], 'the smaller one made room');
});

test('without a starting size the cache holds up to its limit from the start', () => {
  const { memory, held } = counted(5 * C);
  for (let i = 0; i < 10; i++) memory.put(key(i), new Uint8Array(C));
  assert.equal(memory.capacity, 5 * C);
  assert.equal(held.size, 5);
});
