import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByteReader, ByteWriter, FormatError, alignUp, compareBytes, isPowerOfTwo, scatterAt } from '../../../src/base/index.js';

test('ByteReader reads little-endian fields and refuses every out-of-range access', () => {
  const w = new ByteWriter(4);
  w.u8(0xab).u16(0x1234).u32(0xdeadbeef).u64(2n ** 53n - 1n).u64(2n ** 60n);
  const r = new ByteReader(w.finish(), 'test struct');
  assert.equal(r.u8(0), 0xab);
  assert.equal(r.u16(1), 0x1234);
  assert.equal(r.u32(3), 0xdeadbeef);
  assert.equal(r.u64(7), Number.MAX_SAFE_INTEGER);
  assert.equal(r.u64n(15), 2n ** 60n);
  assert.throws(() => r.u64(15, 'big field'), (e: unknown) => e instanceof FormatError && /big field/.test(e.message));
  assert.throws(() => r.u32(r.length - 3), FormatError);
  assert.throws(() => r.slice(-1, 2), FormatError);
  assert.throws(() => r.slice(0, Number.MAX_SAFE_INTEGER), FormatError);
  assert.throws(() => r.slice(1.5, 1), FormatError);
  assert.equal(r.has(0, r.length), true);
  assert.equal(r.has(1, r.length), false);
});

test('ByteWriter grows, aligns and pads', () => {
  const w = new ByteWriter(1);
  w.bytes(Buffer.from('abc')).align(8).u32(7).padTo(32);
  const b = w.finish();
  assert.equal(b.length, 32);
  assert.equal(b.readUInt32LE(8), 7);
  assert.equal(b.subarray(3, 8).every((x) => x === 0), true);
  assert.throws(() => new ByteWriter().u32(-1), RangeError);
  assert.throws(() => new ByteWriter().u8(1).padTo(0), RangeError);
});

test('small helpers', () => {
  assert.equal(alignUp(4097, 4096), 8192);
  assert.equal(isPowerOfTwo(4096), true);
  assert.equal(isPowerOfTwo(4095), false);
  assert.equal(isPowerOfTwo(0), false);
  assert.ok(compareBytes(Buffer.from('ab'), Buffer.from('abc')) < 0);
  assert.ok(compareBytes(Buffer.from('-'), Buffer.from('.')) < 0);
});

test('scatterAt copies into a scatter list from an offset, across views, as much as fits', () => {
  const iov = [new Uint8Array(3), new Uint8Array(2), new Uint8Array(4)];
  const src = Uint8Array.from([1, 2, 3, 4, 5]);
  assert.equal(scatterAt(src, iov, 2), 5); // 1 into the first view, 2 into the second, 2 into the third
  assert.deepEqual(iov.map((v) => [...v]), [[0, 0, 1], [2, 3], [4, 5, 0, 0]]);
  assert.equal(scatterAt(src, iov, 7), 2); // only two bytes are left
  assert.deepEqual([...(iov[2] as Uint8Array)], [4, 5, 1, 2]);
  assert.equal(scatterAt(src, iov, 9), 0); // at the end
  assert.equal(scatterAt(new Uint8Array(0), iov, 0), 0);
  const whole = [new Uint8Array(8)];
  assert.equal(scatterAt(src, whole, 1), 5);
  assert.deepEqual([...(whole[0] as Uint8Array)], [0, 1, 2, 3, 4, 5, 0, 0]);
});
