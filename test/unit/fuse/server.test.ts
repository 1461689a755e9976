/**
 * The FUSE server with the read-only image filesystem, driven in-process with encoded requests:
 * struct sizes, INIT negotiation (and a second INIT as a reset), the read-only opcode set, and
 * hostile requests (lying lengths, unknown opcodes, node ids never looked up, bad offsets) that
 * get errors while the server keeps serving.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, mkdir, writeFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { openBootstrap } from '../../../src/format/open.js';
import { type BootstrapNode, writeV6Bootstrap } from '../../../src/format/v6/writer.js';
import { ImageFs } from '../../../src/fs/image/image-fs.js';
import { FuseServer, InitFlag, Opcode, Size } from '../../../src/fuse/index.js';
import { encodeAttrOut, encodeEntryOut, encodeInitOut, encodeOpenOut, encodeStatfsOut } from '../../../src/fuse/codec/out.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import { BlobDevice } from '../../../src/storage/device.js';
import { native } from '../../../src/native/index.js';
import { CaptureReply, cstr, exchange, initArgs, parseAttr, parseDirents, parseEntry, parseReply, readArgs, type Reply, request, u32Args } from '../../helpers/fuse-client.js';

test('FUSE struct sizes', () => {
  const attr = { ino: 1, size: 0, blocks: 0, atime: { sec: 0, nsec: 0 }, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 }, mode: 0, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096, flags: 0 };
  assert.equal(Size.IN_HEADER, 40);
  assert.equal(Size.OUT_HEADER, 16);
  assert.equal(encodeAttrOut(attr, 1).length, Size.ATTR_OUT);
  assert.equal(encodeAttrOut(attr, 1).length - 16, Size.ATTR);
  assert.equal(encodeEntryOut({ nodeid: 2, generation: 0, attr, entryTimeout: 1, attrTimeout: 1 }).length, 128);
  assert.equal(encodeOpenOut({ fh: 0n, flags: 0 }).length, 16);
  assert.equal(encodeStatfsOut({ blocks: 1, bfree: 0, bavail: 0, files: 1, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 }).length, 80);
  assert.equal(encodeInitOut({ major: 7, minor: 38, maxReadahead: 0, flags: 0n, maxBackground: 0, congestionThreshold: 0, maxWrite: 0, timeGran: 1, maxPages: 0 }).length, 64);
  assert.equal(Size.DIRENTPLUS, 128 + Size.DIRENT);
});

describe('FUSE server over a RAFS image', () => {
  let work: string;
  let server: FuseServer;
  let device: BlobDevice;
  const metrics = new Metrics();
  const content = Buffer.alloc(300_000);
  for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;

  async function call(bytes: Buffer, capacity?: number): Promise<Reply & { dropped: boolean }> {
    const cap = new CaptureReply(capacity);
    await server.handle(bytes, cap);
    if (cap.dropped) return { len: 0, error: 0, unique: 0n, payload: Buffer.alloc(0), dropped: true };
    assert.ok(cap.reply, 'no reply');
    const r = parseReply(cap.reply);
    assert.equal(r.len, cap.reply.length, 'out.len must equal the reply length');
    return { ...r, dropped: false };
  }
  const op = async (opcode: Opcode, nodeid: number, args?: Buffer): Promise<Reply> => call(request(opcode, nodeid, args).bytes);
  const lookup = async (parent: number, name: string): Promise<{ nodeid: number; attr: ReturnType<typeof parseAttr> }> => {
    const r = await op(Opcode.LOOKUP, parent, cstr(name));
    assert.equal(r.error, 0, `lookup ${name}`);
    return parseEntry(r.payload);
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-fuse-unit-'));
    const src = join(work, 'src');
    await mkdir(join(src, 'dir'), { recursive: true });
    await writeFile(join(src, 'file.bin'), content);
    await writeFile(join(src, 'dir', 'small'), 'small file\n');
    await symlink('dir/small', join(src, 'link'));
    native.lsetxattr(join(src, 'file.bin'), 'user.k', Buffer.from('value'));
    for (let i = 0; i < 300; i++) await writeFile(join(src, 'dir', `e${String(i).padStart(3, '0')}`), '');
    const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
    const image = openBootstrap(r.bootstrap);
    const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
    device = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, metrics, log: silentLogger });
    server = new FuseServer(new ImageFs({ image, device, metrics, log: silentLogger }), { log: silentLogger, metrics });
  });
  after(async () => {
    await device.close();
    await rm(work, { recursive: true, force: true });
  });

  test('requests before INIT fail; INIT negotiates 7.38 and only offered, implemented flags', async () => {
    assert.equal((await op(Opcode.GETATTR, 1, Buffer.alloc(16))).error, -5);
    const r = await op(Opcode.INIT, 0, initArgs());
    assert.equal(r.error, 0);
    assert.equal(r.payload.readUInt32LE(0), 7);
    assert.equal(r.payload.readUInt32LE(4), 38);
    const flags = BigInt(r.payload.readUInt32LE(12)) | (BigInt(r.payload.readUInt32LE(32)) << 32n);
    assert.ok(flags & InitFlag.ASYNC_READ && flags & InitFlag.DO_READDIRPLUS && flags & InitFlag.MAX_PAGES);
    assert.equal(flags & (InitFlag.MAP_ALIGNMENT | InitFlag.HAS_INODE_DAX | InitFlag.WRITEBACK_CACHE | InitFlag.SECURITY_CTX), 0n);
    // Zero-message opens and ATOMIC_O_TRUNC never together: after the first OPEN's ENOSYS, an
    // O_TRUNC open would empty the kernel's view of an image file without a request.
    const noOpen = await op(Opcode.INIT, 0, initArgs(38, InitFlag.NO_OPEN_SUPPORT | InitFlag.ATOMIC_O_TRUNC | InitFlag.ASYNC_READ));
    assert.equal(BigInt(noOpen.payload.readUInt32LE(12)), InitFlag.NO_OPEN_SUPPORT | InitFlag.ASYNC_READ);
    const withOpen = await op(Opcode.INIT, 0, initArgs(38, InitFlag.ATOMIC_O_TRUNC | InitFlag.ASYNC_READ));
    assert.equal(BigInt(withOpen.payload.readUInt32LE(12)), InitFlag.ATOMIC_O_TRUNC | InitFlag.ASYNC_READ);
    // A kernel that offers fewer flags gets no more than it offered.
    const narrow = await op(Opcode.INIT, 0, initArgs(38, InitFlag.ASYNC_READ));
    assert.equal(BigInt(narrow.payload.readUInt32LE(12)), InitFlag.ASYNC_READ);
    // Without zero-message opens, OPEN is answered with a handle that keeps the page cache.
    const nf = await lookup(1, 'file.bin');
    const opened = await op(Opcode.OPEN, nf.nodeid, u32Args(0o100000, 0));
    assert.equal(opened.error, 0);
    assert.equal(opened.payload.readUInt32LE(8) & 2, 2, 'FOPEN_KEEP_CACHE');
    assert.equal(opened.payload.readUInt32LE(8) & 32, 32, 'FOPEN_NOFLUSH: a read-only image has nothing to flush at close');
    // Too old, and a newer major (answered with our major so that the kernel retries).
    assert.equal((await op(Opcode.INIT, 0, initArgs(20))).error, -71);
    const major8 = initArgs();
    major8.writeUInt32LE(8, 0);
    const m8 = await op(Opcode.INIT, 0, major8);
    assert.equal(m8.error, 0);
    assert.equal(m8.payload.readUInt32LE(0), 7);
    assert.equal((await op(Opcode.INIT, 0, initArgs())).error, 0);
  });

  test('lookup, getattr, readlink, xattrs, statfs', async () => {
    const root = await op(Opcode.GETATTR, 1, Buffer.alloc(16));
    assert.equal(root.error, 0);
    assert.equal(parseAttr(root.payload, 16).ino, 1);
    const f = await lookup(1, 'file.bin');
    assert.equal(f.attr.size, content.length);
    assert.equal(f.attr.mode & 0o170000, 0o100000);
    // An absent name: a negative entry (node id 0) the kernel may cache as long as a positive one.
    const missing = await op(Opcode.LOOKUP, 1, cstr('missing'));
    assert.equal(missing.error, 0);
    const neg = parseEntry(missing.payload);
    assert.equal(neg.nodeid, 0);
    assert.equal(missing.payload.readBigUInt64LE(16), 3600n, 'entry_valid');
    const l = await lookup(1, 'link');
    const rl = await op(Opcode.READLINK, l.nodeid);
    assert.equal(rl.payload.toString(), 'dir/small');
    const probe = await op(Opcode.GETXATTR, f.nodeid, Buffer.concat([u32Args(0, 0), cstr('user.k')]));
    assert.equal(probe.payload.readUInt32LE(0), 5);
    assert.equal((await op(Opcode.GETXATTR, f.nodeid, Buffer.concat([u32Args(2, 0), cstr('user.k')]))).error, -34);
    assert.equal((await op(Opcode.GETXATTR, f.nodeid, Buffer.concat([u32Args(100, 0), cstr('user.k')]))).payload.toString(), 'value');
    assert.equal((await op(Opcode.GETXATTR, f.nodeid, Buffer.concat([u32Args(100, 0), cstr('user.none')]))).error, -61);
    assert.equal((await op(Opcode.LISTXATTR, f.nodeid, u32Args(100, 0))).payload.toString(), 'user.k\0');
    const st = await op(Opcode.STATFS, 1);
    assert.equal(st.payload.readUInt32LE(44), 255);
  });

  test('open and read give exact bytes at any offset; writes get EROFS', async () => {
    const f = await lookup(1, 'file.bin');
    // The kernel offered zero-message opens: OPEN answers ENOSYS once and is not sent again.
    const o = await op(Opcode.OPEN, f.nodeid, u32Args(0o100000, 0));
    assert.equal(o.error, -38);
    assert.equal((await op(Opcode.OPENDIR, 1, u32Args(0o200000, 0))).error, -38);
    for (const [off, size] of [[0, 4096], [65530, 20], [131072, 131072], [299_990, 4096], [300_000, 10], [123_457, 1]] as const) {
      const r = await op(Opcode.READ, f.nodeid, readArgs(0n, off, size));
      assert.equal(r.error, 0);
      assert.deepEqual(r.payload, content.subarray(off, Math.min(content.length, off + size)), `read ${off}+${size}`);
    }
    assert.equal((await op(Opcode.OPEN, f.nodeid, u32Args(2, 0))).error, -30);
    assert.equal((await op(Opcode.MKDIR, 1, Buffer.concat([u32Args(0o755, 0), cstr('x')]))).error, -30);
    assert.equal((await op(Opcode.UNLINK, 1, cstr('file.bin'))).error, -30);
    assert.equal((await op(Opcode.SETATTR, f.nodeid, Buffer.alloc(88))).error, -30);
    const wr = Buffer.alloc(40);
    wr.writeUInt32LE(3, 16);
    assert.equal((await op(Opcode.WRITE, f.nodeid, Buffer.concat([wr, Buffer.from('abc')]))).error, -30);
    const seek = Buffer.alloc(24);
    seek.writeUInt32LE(3, 16); // SEEK_DATA
    assert.equal((await op(Opcode.LSEEK, f.nodeid, seek)).payload.readBigUInt64LE(0), 0n);
  });

  test('readdir and readdirplus resume at stable offsets across small buffers', async () => {
    const d = await lookup(1, 'dir');
    for (const plus of [false, true]) {
      const names: string[] = [];
      let off = 0;
      for (let rounds = 0; rounds < 1000; rounds++) {
        const r = await op(plus ? Opcode.READDIRPLUS : Opcode.READDIR, d.nodeid, readArgs(0n, off, 600));
        assert.equal(r.error, 0);
        const ents = parseDirents(r.payload, plus);
        if (ents.length === 0) break;
        names.push(...ents.map((e) => e.name));
        off = (ents[ents.length - 1] as { off: number }).off;
      }
      assert.equal(names.length, 303);
      assert.deepEqual(names.slice(0, 3), ['.', '..', 'e000']);
      assert.equal(names[names.length - 1], 'small');
    }
    // An offset past the end is an empty reply, not an error; so is one past 2^53, or a negative
    // loff_t (which arrives as one), as for any other offset past the end.
    assert.equal((await op(Opcode.READDIR, d.nodeid, readArgs(0n, 100_000, 4096))).payload.length, 0);
    for (const huge of [2n ** 53n, 2n ** 62n, 2n ** 64n - 1n]) {
      const args = readArgs(0n, 0, 4096);
      args.writeBigUInt64LE(huge, 8);
      const r = await op(Opcode.READDIR, d.nodeid, args);
      assert.deepEqual([r.error, r.payload.length], [0, 0], `READDIR at ${huge}`);
      const f = await lookup(1, 'file.bin');
      const read = await op(Opcode.READ, f.nodeid, args);
      assert.deepEqual([read.error, read.payload.length], [0, 0], `READ at ${huge}`);
      const seek = Buffer.alloc(24); // fuse_lseek_in: fh, offset, whence (SEEK_DATA)
      seek.writeBigUInt64LE(huge, 8);
      seek.writeUInt32LE(3, 16);
      assert.equal((await op(Opcode.LSEEK, f.nodeid, seek)).error, -6, `LSEEK SEEK_DATA at ${huge}: ENXIO`);
    }
  });

  test('hostile requests get errors and the server keeps serving', async () => {
    const f = await lookup(1, 'file.bin');
    // A header that claims more bytes than arrived.
    const lying = request(Opcode.GETATTR, 1, Buffer.alloc(16), { len: 4096 });
    const r1 = await call(lying.bytes);
    assert.equal(r1.error, -22);
    assert.equal(r1.unique, lying.unique);
    // Shorter than a header: nothing to answer.
    assert.equal((await call(Buffer.alloc(10))).dropped, true);
    // Unknown opcodes (each counted under one metric: a guest inventing opcodes cannot grow the
    // metrics), arguments that are too short, names without NUL.
    const counters = Object.keys(metrics.snapshot()).length;
    for (let opcode = 100_000; opcode < 101_000; opcode++) assert.equal((await op(opcode as Opcode, 1)).error, -38);
    assert.equal(Object.keys(metrics.snapshot()).length, counters + 1);
    assert.equal(metrics.get('fuse.requests.unknown'), 1000);
    assert.equal((await op(Opcode.READ, f.nodeid, Buffer.alloc(8))).error, -22);
    assert.equal((await op(Opcode.LOOKUP, 1, Buffer.from('no-nul'))).error, -22);
    // Node ids the kernel was never given, and one past 2^53.
    assert.equal((await op(Opcode.GETATTR, 987_654, Buffer.alloc(16))).error, -116);
    const huge = request(Opcode.GETATTR, 0, Buffer.alloc(16));
    huge.bytes.writeBigUInt64LE(2n ** 63n, 16);
    assert.notEqual((await call(huge.bytes)).error, 0);
    // BATCH_FORGET with a count beyond the request: dropped, no reply, no crash.
    assert.equal((await op(Opcode.BATCH_FORGET, 0, u32Args(1000, 0))).error, 0);
    // Still serving.
    const again = await op(Opcode.READ, f.nodeid, readArgs(0n, 0, 16));
    assert.deepEqual(again.payload, content.subarray(0, 16));
  });

  test('FORGET releases node ids; a second INIT resets the session', async () => {
    const f = await lookup(1, 'dir');
    // The kernel forgets every lookup it holds at once.
    const forget = Buffer.alloc(8);
    forget.writeBigUInt64LE(1000n, 0);
    assert.equal((await call(request(Opcode.FORGET, f.nodeid, forget).bytes)).dropped, true);
    assert.equal((await op(Opcode.GETATTR, f.nodeid, Buffer.alloc(16))).error, -116);
    const g = await lookup(1, 'dir');
    assert.equal((await op(Opcode.INIT, 0, initArgs())).error, 0);
    assert.equal((await op(Opcode.GETATTR, g.nodeid, Buffer.alloc(16))).error, -116, 'lookups do not survive a new INIT');
    assert.equal((await op(Opcode.DESTROY, 0)).error, 0);
    assert.equal((await op(Opcode.GETATTR, 1, Buffer.alloc(16))).error, -5, 'no requests after DESTROY until INIT');
    assert.equal((await op(Opcode.INIT, 0, initArgs())).error, 0);
  });

  test('a blob the storage cannot find makes a READ fail with EIO, not ENOENT', async () => {
    const image = openBootstrap(await readFile(join(work, 'boot')));
    const empty = join(work, 'no-blobs');
    await mkdir(empty);
    const m = new Metrics();
    const d = new BlobDevice({ blobs: image.blobs, backend: new LocalFsBackend({ dir: empty }), codecs: nativeCodecs, metrics: m, log: silentLogger });
    const s = new FuseServer(new ImageFs({ image, device: d, metrics: m, log: silentLogger }), { log: silentLogger, metrics: m });
    try {
      const send = (bytes: Buffer): Promise<Reply> => exchange(s, bytes);
      assert.equal((await send(request(Opcode.INIT, 0, initArgs()).bytes)).error, 0);
      const f = parseEntry((await send(request(Opcode.LOOKUP, 1, cstr('file.bin')).bytes)).payload);
      assert.equal((await send(request(Opcode.READ, f.nodeid, readArgs(0n, 0, 4096)).bytes)).error, -5);
    } finally {
      await d.close();
    }
  });

  test('onRest runs once after each busy spell, when no request came for restMs; never during one', async () => {
    const image = openBootstrap(await readFile(join(work, 'boot')));
    let rests = 0;
    const s = new FuseServer(new ImageFs({ image, device, metrics, log: silentLogger }), { log: silentLogger, metrics, restMs: 250, onRest: () => rests++ });
    const send = (bytes: Buffer): Promise<Reply> => exchange(s, bytes);
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
    await sleep(300);
    assert.equal(rests, 0, 'no rest before any request');
    assert.equal((await send(request(Opcode.INIT, 0, initArgs()).bytes)).error, 0);
    // A spell of requests 25 ms apart, longer than restMs in all.
    for (let i = 0; i < 16; i++) {
      assert.equal((await send(request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes)).error, 0);
      await sleep(25);
    }
    assert.equal(rests, 0, 'not while requests keep coming');
    await sleep(600);
    assert.equal(rests, 1, 'once after the spell');
    await sleep(600);
    assert.equal(rests, 1, 'and not again while idle');
    assert.equal((await send(request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes)).error, 0);
    await sleep(600);
    assert.equal(rests, 2, 'once more after the next spell');
  });
});

test('READLINK of a target longer than Linux reads back (RAFS v6 allows 4096 bytes) is ENAMETOOLONG, not a reply the kernel refuses; one with a NUL byte is EIO', async () => {
  const node = (kind: 'dir' | 'symlink', extra: object = {}): BootstrapNode => ({ kind, mode: 0o777, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, rdev: 0, size: 0, xattrs: [], ...extra });
  const link = (n: number): BootstrapNode => node('symlink', { symlink: Buffer.alloc(n, 0x61), size: n });
  const nul = node('symlink', { symlink: Buffer.from('/etc/passwd\0junk'), size: 16 });
  const root = node('dir', { entries: [{ name: Buffer.from('long'), node: link(4096) }, { name: Buffer.from('longest'), node: link(4095) }, { name: Buffer.from('nul'), node: nul }] });
  const image = openBootstrap(writeV6Bootstrap({ root, chunkSize: 1 << 20, compressor: Compressor.Zstd, digester: Digester.Blake3, explicitUidGid: false, blobs: [], prefetch: [] }));
  const nulIno = image.lookup(image.rootIno, Buffer.from('nul'))?.ino;
  assert.ok(nulIno !== undefined);
  assert.throws(() => image.readlink(nulIno), /holds a NUL byte/);
  const device = new BlobDevice({ blobs: image.blobs, backend: new LocalFsBackend({ dir: tmpdir() }), codecs: nativeCodecs, metrics: new Metrics(), log: silentLogger });
  const server = new FuseServer(new ImageFs({ image, device, metrics: new Metrics(), log: silentLogger }), { log: silentLogger, metrics: new Metrics() });
  const call = (op: Opcode, nodeid: number, args?: Buffer): Promise<Reply> => exchange(server, request(op, nodeid, args).bytes);
  try {
    assert.equal((await call(Opcode.INIT, 0, initArgs())).error, 0);
    const long = parseEntry((await call(Opcode.LOOKUP, 1, cstr('long'))).payload).nodeid;
    assert.equal((await call(Opcode.READLINK, long)).error, -36);
    const longest = parseEntry((await call(Opcode.LOOKUP, 1, cstr('longest'))).payload).nodeid;
    const r = await call(Opcode.READLINK, longest);
    assert.equal(r.error, 0);
    assert.deepEqual(r.payload, Buffer.alloc(4095, 0x61));
    // A target with a NUL byte is a broken image (no path holds one), not a shorter target.
    assert.equal((await call(Opcode.READLINK, parseEntry((await call(Opcode.LOOKUP, 1, cstr('nul'))).payload).nodeid)).error, -5);
  } finally {
    await device.close();
  }
});
