/**
 * The codec's 64-bit fields: node ids, attributes and ids above 2^32 are written exactly (as two
 * u32 halves, no BigInt), node ids past 2^53 decode as -1, `unique` round-trips all 64 bits, and
 * reply buffers (cut from Node's pool) are zero where nothing is written.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Attr } from '../../../src/fs/types.js';
import { encodeAttrOut, encodeEntryOut, encodeOpenOut, encodeStatfsOut } from '../../../src/fuse/codec/out.js';
import { ByteReader } from '../../../src/base/index.js';
import { decodeBatchForget, decodeForgetIn } from '../../../src/fuse/codec/in.js';
import { Opcode, decodeRequest } from '../../../src/fuse/index.js';
import { request } from '../../helpers/fuse-client.js';

/**
 * Fills the rest of Node's current buffer pool with 0xff, so that the next small buffers cut from
 * it start dirty (a new pool is taken first when less than 512 bytes are left).
 */
function dirtyPool(): void {
  for (;;) {
    const p = Buffer.allocUnsafe(8);
    const rest = p.buffer.byteLength - (p.byteOffset + 8);
    if (rest < 512) continue;
    new Uint8Array(p.buffer, p.byteOffset + 8, rest).fill(0xff);
    return;
  }
}

test('decodeRequest: node ids up to 2^53 - 1 as numbers, beyond as -1; unique exact', () => {
  const at = (nodeid: bigint, unique: bigint) => {
    const b = request(Opcode.GETATTR, 0, Buffer.alloc(16), { unique }).bytes;
    b.writeBigUInt64LE(nodeid, 16);
    return decodeRequest(b).header;
  };
  assert.equal(at(1n, 2n).nodeid, 1);
  assert.equal(at(0x1_0000_0005n, 2n).nodeid, 0x1_0000_0005);
  assert.equal(at(2n ** 53n - 1n, 2n).nodeid, Number.MAX_SAFE_INTEGER);
  assert.equal(at(2n ** 53n, 2n).nodeid, -1);
  assert.equal(at(2n ** 64n - 1n, 2n).nodeid, -1);
  assert.equal(at(7n, 2n ** 64n - 2n).unique, 2n ** 64n - 2n);
});

test('attribute and entry replies: u64 fields above 2^32 exact, times before 1970 negative, the rest zero', () => {
  const attr: Attr = {
    ino: 2 ** 52 + 3,
    size: 2 ** 40 + 5,
    blocks: 2 ** 33,
    atime: { sec: 2 ** 32 + 1, nsec: 7 },
    mtime: { sec: -5, nsec: 0 }, // before 1970: signed, as the kernel reads it (fuse_fillattr) and as stat gives it
    ctime: { sec: 1_700_000_000, nsec: 999_999_999 },
    mode: 0o100644,
    nlink: 2,
    uid: 1000,
    gid: 1000,
    rdev: 0,
    blksize: 4096,
    flags: 0,
  };
  // Dirty the pool first: the replies must not show what was there.
  dirtyPool();
  const a = encodeAttrOut(attr, 3600.25);
  assert.equal(a.readBigUInt64LE(0), 3600n);
  assert.equal(a.readUInt32LE(8), 250_000_000);
  assert.equal(a.readUInt32LE(12), 0, 'padding');
  assert.equal(a.readBigUInt64LE(16), BigInt(2 ** 52 + 3));
  assert.equal(a.readBigUInt64LE(24), BigInt(2 ** 40 + 5));
  assert.equal(a.readBigUInt64LE(32), 2n ** 33n);
  assert.equal(a.readBigUInt64LE(40), 2n ** 32n + 1n);
  assert.equal(a.readBigInt64LE(48), -5n);
  assert.equal(encodeAttrOut({ ...attr, ctime: { sec: -(2 ** 40) - 3, nsec: 1 } }, 0).readBigInt64LE(56), -(2n ** 40n) - 3n);
  assert.equal(a.readBigUInt64LE(56), 1_700_000_000n);
  assert.equal(a.readUInt32LE(16 + 84), 0, 'attr flags');
  const e = encodeEntryOut({ nodeid: 2 ** 45 + 1, generation: 2 ** 32, attr, entryTimeout: 1.5, attrTimeout: 0 });
  assert.equal(e.readBigUInt64LE(0), 2n ** 45n + 1n);
  assert.equal(e.readBigUInt64LE(8), 2n ** 32n);
  assert.equal(e.readBigUInt64LE(16), 1n);
  assert.equal(e.readUInt32LE(32), 500_000_000);
  assert.equal(e.readBigUInt64LE(24), 0n);
  assert.equal(e.readBigUInt64LE(40 + 8), BigInt(2 ** 40 + 5));
});

test('replies with padding and spare fields: zeros there, whatever the buffer pool held', () => {
  dirtyPool();
  const o = encodeOpenOut({ fh: 2n ** 40n + 9n, flags: 3 });
  assert.equal(o.readBigUInt64LE(0), 2n ** 40n + 9n);
  assert.equal(o.readUInt32LE(8), 3);
  assert.equal(o.readUInt32LE(12), 0, 'padding');
  dirtyPool();
  const f = encodeStatfsOut({ blocks: 2 ** 40, bfree: 1, bavail: 2, files: 3, ffree: 4, bsize: 4096, namelen: 255, frsize: 4096 });
  assert.equal(f.readBigUInt64LE(0), 2n ** 40n);
  assert.equal(f.readUInt32LE(44), 255);
  assert.ok(f.subarray(52).equals(Buffer.alloc(80 - 52)), 'padding and spare');
});

test('lookup counts and offsets past 2^53 saturate instead of wrapping around', () => {
  const forget = (n: bigint): number => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(n);
    return decodeForgetIn(new ByteReader(b, 'forget'));
  };
  // FORGET's nlookup of 2^53 was read as 0 and forgot nothing.
  assert.equal(forget(2n ** 53n), Number.MAX_SAFE_INTEGER);
  assert.equal(forget(2n ** 64n - 1n), Number.MAX_SAFE_INTEGER);
  assert.equal(forget(5n), 5);
  const batch = Buffer.alloc(8 + 16);
  batch.writeUInt32LE(1, 0);
  batch.writeBigUInt64LE(7n, 8);
  batch.writeBigUInt64LE(2n ** 53n + 1n, 16);
  assert.deepEqual(decodeBatchForget(new ByteReader(batch, 'batch')), [{ nodeid: 7, nlookup: Number.MAX_SAFE_INTEGER }]);
});
