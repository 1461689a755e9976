/**
 * WRITE data left in place by the transport (virtio-fs: in guest memory): only a WRITE's headers
 * are copied (`inPlaceDataAt`), the data reaches the filesystem as the transport's own views, and
 * every length is still checked: the data must be exactly `size` bytes, only a WRITE may leave
 * data in place, and such a request has no extension headers.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { PassthroughFs } from '../../../src/fs/passthrough/index.js';
import { FuseServer, Opcode, Size, decodeRequest, inPlaceDataAt } from '../../../src/fuse/index.js';
import { cstr, exchange, initArgs, parseEntry, type Reply, request, u32Args } from '../../helpers/fuse-client.js';

function writeIn(fh: bigint, offset: number, size: number): Buffer {
  const b = Buffer.alloc(Size.WRITE_IN);
  b.writeBigUInt64LE(fh, 0);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}

test('inPlaceDataAt: a WRITE with data and no extensions, nothing else', () => {
  const write = request(Opcode.WRITE, 2, writeIn(1n, 0, 5), { len: 85 }).bytes;
  assert.equal(inPlaceDataAt(write.subarray(0, 40), 85), 80);
  assert.equal(inPlaceDataAt(write.subarray(0, 40), 80), undefined, 'no data');
  assert.equal(inPlaceDataAt(write.subarray(0, 39), 85), undefined, 'short header');
  const ext = Buffer.from(write);
  ext.writeUInt16LE(1, 36);
  assert.equal(inPlaceDataAt(ext, 93), undefined, 'extension headers follow the data');
  assert.equal(inPlaceDataAt(request(Opcode.SETXATTR, 2, Buffer.alloc(200)).bytes, 256), undefined);
  // decodeRequest takes the headers alone when told how long the rest is, and only then.
  assert.equal(decodeRequest(write.subarray(0, 80), 5).body.length, Size.WRITE_IN);
  assert.throws(() => decodeRequest(write.subarray(0, 80)), /len 85/);
  assert.throws(() => decodeRequest(write.subarray(0, 80), 4), /len 85/);
  assert.throws(() => decodeRequest(write.subarray(0, 80), 6), /does not match/);
});

describe('WRITE data in place, through the server to a passthrough file', () => {
  let dir: string;
  let server: FuseServer;
  let fh: bigint;
  let node: number;
  const send = (bytes: Buffer, tail?: Uint8Array[]): Promise<Reply> => exchange(server, bytes, tail);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'damselfly-write-in-place-'));
    const fs = new PassthroughFs({ root: dir, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics() });
    server = new FuseServer(fs, { log: silentLogger, metrics: new Metrics() });
    assert.equal((await send(request(Opcode.INIT, 0, initArgs()).bytes)).error, 0);
    const created = await send(request(Opcode.CREATE, 1, Buffer.concat([u32Args(0o2, 0o644, 0, 0), cstr('f')])).bytes);
    assert.equal(created.error, 0);
    node = parseEntry(created.payload).nodeid;
    fh = created.payload.readBigUInt64LE(128);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the views are written, at the offset, as one write', async () => {
    const data = [Buffer.from('hello, '), Buffer.from('in-place '), Buffer.from('world')];
    const size = data.reduce((n, d) => n + d.length, 0);
    const r = await send(request(Opcode.WRITE, node, writeIn(fh, 3, size), { len: 80 + size }).bytes, data);
    assert.equal(r.error, 0);
    assert.equal(r.payload.readUInt32LE(0), size);
    assert.equal(readFileSync(join(dir, 'f'), 'utf8'), '\0\0\0hello, in-place world');
  });

  test('data of another length than size, or in place for another opcode, is EINVAL', async () => {
    const before = readFileSync(join(dir, 'f'));
    // size 10, 11 bytes in place (the header's len agrees with the bytes, not with size)
    assert.equal((await send(request(Opcode.WRITE, node, writeIn(fh, 0, 10), { len: 91 }).bytes, [Buffer.alloc(11, 0x41)])).error, -22);
    // size 12, 11 bytes
    assert.equal((await send(request(Opcode.WRITE, node, writeIn(fh, 0, 12), { len: 91 }).bytes, [Buffer.alloc(11, 0x41)])).error, -22);
    // header len that does not match headers + data
    assert.equal((await send(request(Opcode.WRITE, node, writeIn(fh, 0, 4), { len: 100 }).bytes, [Buffer.alloc(4, 0x41)])).error, -22);
    // a GETATTR claiming trailing data
    assert.equal((await send(request(Opcode.GETATTR, node, Buffer.alloc(16), { len: 60 }).bytes, [Buffer.alloc(4)])).error, -22);
    assert.deepEqual(readFileSync(join(dir, 'f')), before, 'nothing was written');
    // The server still serves.
    assert.equal((await send(request(Opcode.WRITE, node, writeIn(fh, 0, 2), { len: 82 }).bytes, [Buffer.from('HE')])).error, 0);
    assert.equal(readFileSync(join(dir, 'f'), 'utf8').slice(0, 5), 'HE\0he');
  });

  test('a WRITE with its data copied (the /dev/fuse path) is unchanged', async () => {
    const r = await send(request(Opcode.WRITE, node, Buffer.concat([writeIn(fh, 0, 3), Buffer.from('abc')])).bytes);
    assert.equal(r.error, 0);
    assert.equal(readFileSync(join(dir, 'f'), 'utf8').slice(0, 6), 'abchel');
  });
});
