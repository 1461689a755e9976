/**
 * `--readonly` (src/daemon/read-only-fs.ts) over the passthrough share, driven in-process through
 * the FUSE server: every request that could make or change anything on the host answers EROFS,
 * reads go through. TMPFILE and COPY_FILE_RANGE once got past it: an unnamed host file with a
 * writable handle, then host bytes copied into it, as much as the guest liked.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { readOnly } from '../../../src/daemon/read-only-fs.js';
import { PassthroughFs } from '../../../src/fs/passthrough/index.js';
import { Errno } from '../../../src/fs/types.js';
import { FuseServer, Opcode } from '../../../src/fuse/index.js';
import { cstr, exchange, initArgs, parseEntry, readArgs, request, u32Args } from '../../helpers/fuse-client.js';

test('a read-only share refuses every request that writes, TMPFILE and COPY_FILE_RANGE too, and serves reads', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'damselfly-ro-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await writeFile(join(root, 'data'), Buffer.alloc(1 << 16, 0x41));
  const fs = new PassthroughFs({ root, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics() });
  const server = new FuseServer(readOnly(fs), { log: silentLogger, metrics: new Metrics() });
  const call = (opcode: Opcode, nodeid: number, args?: Buffer) => exchange(server, request(opcode, nodeid, args).bytes);
  assert.equal((await call(Opcode.INIT, 0, initArgs())).error, 0);
  const looked = await call(Opcode.LOOKUP, 1, cstr('data'));
  assert.equal(looked.error, 0);
  const data = parseEntry(looked.payload).nodeid;
  const opened = await call(Opcode.OPEN, data, u32Args(0, 0));
  assert.equal(opened.error, 0);
  const fh = opened.payload.readBigUInt64LE(0);
  const read = await call(Opcode.READ, data, readArgs(fh, 0, 4096));
  assert.equal(read.error, 0);
  assert.deepEqual(read.payload, Buffer.alloc(4096, 0x41));

  const O_RDWR = 2;
  const copy = Buffer.alloc(56); // fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, off_out, len, flags
  copy.writeBigUInt64LE(fh, 0);
  copy.writeBigUInt64LE(BigInt(data), 16);
  copy.writeBigUInt64LE(fh, 24);
  copy.writeBigUInt64LE(1n << 16n, 32);
  copy.writeBigUInt64LE(1n << 16n, 40);
  const setattr = Buffer.alloc(88); // fuse_setattr_in with FATTR_SIZE, size 0
  setattr.writeUInt32LE(1 << 3, 0);
  const refused: Array<[string, Opcode, number, Buffer]> = [
    ['TMPFILE', Opcode.TMPFILE, 1, Buffer.concat([u32Args(O_RDWR, 0o100644, 0, 0), cstr('tmp')])],
    ['COPY_FILE_RANGE', Opcode.COPY_FILE_RANGE, data, copy],
    ['CREATE', Opcode.CREATE, 1, Buffer.concat([u32Args(O_RDWR, 0o100644, 0, 0), cstr('new')])],
    ['OPEN O_RDWR', Opcode.OPEN, data, u32Args(O_RDWR, 0)],
    ['OPEN O_TRUNC', Opcode.OPEN, data, u32Args(0o1000, 0)],
    ['MKDIR', Opcode.MKDIR, 1, Buffer.concat([u32Args(0o755, 0), cstr('d')])],
    ['SETATTR', Opcode.SETATTR, data, setattr],
    ['UNLINK', Opcode.UNLINK, 1, cstr('data')],
    ['SETXATTR', Opcode.SETXATTR, data, Buffer.concat([u32Args(1, 0, 0, 0), cstr('user.x'), Buffer.from('v')])],
  ];
  for (const [what, opcode, node, args] of refused) assert.equal((await call(opcode, node, args)).error, -Errno.EROFS, what);
  assert.deepEqual(await readdir(root), ['data']);
  assert.deepEqual(await readFile(join(root, 'data')), Buffer.alloc(1 << 16, 0x41));
});
