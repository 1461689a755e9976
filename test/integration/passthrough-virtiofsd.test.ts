/**
 * Differential test against the reference C virtiofsd (/usr/lib/qemu/virtiofsd, driven over
 * vhost-user by the in-process test frontend): the same raw FUSE requests, hostile names and
 * wrong node types included, get the same answers from `PassthroughFs` behind `FuseServer`,
 * except for the differences listed (and explained) in INTENDED.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Metrics, silentLogger } from '../../src/base/index.js';
import { PassthroughFs } from '../../src/fs/passthrough/index.js';
import { FuseServer, Opcode } from '../../src/fuse/index.js';
import { native } from '../../src/native/index.js';
import { cstr, exchange, initArgs, parseEntry, parseReply, request } from '../helpers/fuse-client.js';
import { REFERENCE_VIRTIOFSD, startVirtiofsd } from '../helpers/guest.js';
import { requireTool } from '../helpers/env.js';
import { type Ring, TestFrontend } from '../helpers/vhost-frontend.js';

type Send = (op: number, node: number, args: Buffer) => Promise<{ error: number; payload: Buffer }>;

/** Where we answer differently on purpose: case -> [ours, why]. */
const INTENDED: Record<string, [unknown, string]> = {
  'lookup ..': [1, 'the C daemon hands the root out again under a second node id; we keep FUSE_ROOT_ID'],
  'lookup .': [1, 'same'],
  'lookup d/..': [1, 'same'],
  ioctl: [-25, 'ENOTTY (no ioctl is served), as the Rust virtiofsd; the C one answers ENOSYS'],
  'access x': [-13, 'ACCESS is answered with the Rust virtiofsd rules; the C one answers ENOSYS'],
  tmpfile: ['ok', 'TMPFILE (FUSE 7.37) is served, as open(O_TMPFILE) on the host; the C virtiofsd answers ENOSYS'],
  'tmpfile read-only': [-22, "EINVAL, as the host's open(O_TMPFILE) without write access; the C virtiofsd answers ENOSYS"],
};

const u32 = (...x: number[]): Buffer => Buffer.from(new Uint32Array(x).buffer);
const u64 = (x: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(x));
  return b;
};

function makeShare(dir: string): void {
  fs.mkdirSync(join(dir, 'd', 'e'), { recursive: true });
  fs.writeFileSync(join(dir, 'f'), 'file');
  fs.symlinkSync('/etc', join(dir, 'evil'));
  native.mknod(join(dir, 'fifo'), 0o010644, 0, 0);
}

/** The request sequence; returns [case, node id or errno or 'ok'] pairs. */
async function script(send: Send): Promise<Array<[string, unknown]>> {
  const out: Array<[string, unknown]> = [];
  const look = async (node: number, name: string): Promise<number> => {
    const r = await send(Opcode.LOOKUP, node, cstr(name));
    return r.error !== 0 ? r.error : parseEntry(r.payload).nodeid;
  };
  const rec = async (label: string, op: number, node: number, args: Buffer): Promise<void> => {
    const r = await send(op, node, args);
    out.push([label, r.error === 0 ? 'ok' : r.error]);
  };
  assert.equal((await send(Opcode.INIT, 0, initArgs())).error, 0);
  out.push(['lookup ..', await look(1, '..')], ['lookup .', await look(1, '.')], ['lookup a/b', await look(1, 'd/e')], ['lookup empty', await look(1, '')]);
  const [evil, d, f, fifo] = [await look(1, 'evil'), await look(1, 'd'), await look(1, 'f'), await look(1, 'fifo')];
  assert.ok(evil > 0 && d > 0 && f > 0 && fifo > 0);
  out.push(['lookup d/..', (await look(d, '..')) > 0 ? 1 : 'error'], ['lookup symlink/x', await look(evil, 'x')], ['lookup file/x', await look(f, 'x')]);
  const mk = (name: string): Buffer => Buffer.concat([u32(0o755, 0), cstr(name)]);
  await rec('mkdir ..', Opcode.MKDIR, 1, mk('..'));
  await rec('mkdir .', Opcode.MKDIR, 1, mk('.'));
  await rec('mkdir x/y', Opcode.MKDIR, 1, mk('x/y'));
  await rec('mkdir in a symlink', Opcode.MKDIR, evil, mk('x'));
  await rec('mkdir in a file', Opcode.MKDIR, f, mk('x'));
  await rec('mknod x/y', Opcode.MKNOD, 1, Buffer.concat([u32(0o10644, 0, 0, 0), cstr('x/y')]));
  await rec('symlink ..', Opcode.SYMLINK, 1, Buffer.concat([cstr('..'), cstr('t')]));
  await rec('unlink ..', Opcode.UNLINK, 1, cstr('..'));
  await rec('unlink a/b', Opcode.UNLINK, 1, cstr('d/e'));
  await rec('unlink a directory', Opcode.UNLINK, 1, cstr('d'));
  await rec('rmdir .', Opcode.RMDIR, 1, cstr('.'));
  await rec('rmdir non-empty', Opcode.RMDIR, 1, cstr('d'));
  await rec('rename to ../x', Opcode.RENAME, 1, Buffer.concat([u64(1), cstr('f'), cstr('../x')]));
  await rec('rename2 bad flags', Opcode.RENAME2, 1, Buffer.concat([u64(1), u32(8, 0), cstr('f'), cstr('g')]));
  await rec('rename2 noreplace', Opcode.RENAME2, 1, Buffer.concat([u64(1), u32(1, 0), cstr('f'), cstr('d')]));
  await rec('link to ..', Opcode.LINK, 1, Buffer.concat([u64(f), cstr('..')]));
  await rec('link a directory', Opcode.LINK, 1, Buffer.concat([u64(d), cstr('dlink')]));
  await rec('link into a symlink', Opcode.LINK, evil, Buffer.concat([u64(f), cstr('x')]));
  await rec('create ..', Opcode.CREATE, 1, Buffer.concat([u32(0o101, 0o644, 0, 0), cstr('..')]));
  await rec('create exclusive existing', Opcode.CREATE, 1, Buffer.concat([u32(0o301, 0o644, 0, 0), cstr('f')]));
  await rec('open symlink', Opcode.OPEN, evil, u32(0, 0));
  await rec('open fifo', Opcode.OPEN, fifo, u32(0, 0));
  await rec('open dir', Opcode.OPEN, d, u32(0, 0));
  await rec('opendir file', Opcode.OPENDIR, f, u32(0, 0));
  await rec('opendir symlink', Opcode.OPENDIR, evil, u32(0, 0));
  await rec('readlink file', Opcode.READLINK, f, Buffer.alloc(0));
  await rec('getattr unknown node', Opcode.GETATTR, 999, Buffer.alloc(16));
  await rec('getxattr symlink', Opcode.GETXATTR, evil, Buffer.concat([u32(0, 0), cstr('trusted.x')]));
  await rec('setxattr symlink trusted', Opcode.SETXATTR, evil, Buffer.concat([u32(1, 0), cstr('trusted.x'), Buffer.from('y')]));
  await rec('getxattr fifo', Opcode.GETXATTR, fifo, Buffer.concat([u32(0, 0), cstr('user.x')]));
  await rec('listxattr symlink', Opcode.LISTXATTR, evil, u32(0, 0));
  await rec('ioctl', Opcode.IOCTL, f, Buffer.alloc(32));
  const size0 = Buffer.alloc(88);
  size0.writeUInt32LE(1 << 3, 0);
  await rec('truncate symlink', Opcode.SETATTR, evil, size0);
  await rec('truncate dir', Opcode.SETATTR, d, size0);
  const mode = Buffer.alloc(88);
  mode.writeUInt32LE(1 << 0, 0);
  mode.writeUInt32LE(0o777, 68);
  await rec('chmod symlink', Opcode.SETATTR, evil, mode);
  await rec('statfs symlink', Opcode.STATFS, evil, Buffer.alloc(0));
  await rec('access x', Opcode.ACCESS, f, u32(1, 0));
  // fuse_create_in: flags, mode, umask, open_flags; then a name the daemon ignores.
  await rec('tmpfile', Opcode.TMPFILE, 1, Buffer.concat([u32(0o2, 0o100644, 0, 0), cstr('t')]));
  await rec('tmpfile read-only', Opcode.TMPFILE, 1, Buffer.concat([u32(0, 0o100644, 0, 0), cstr('t')]));
  const opened = await send(Opcode.OPEN, f, u32(0o2, 0));
  const fh = opened.error === 0 ? Number(opened.payload.readBigUInt64LE(0)) : 0;
  // fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, off_out, len, flags (within one file).
  await rec('copy_file_range', Opcode.COPY_FILE_RANGE, f, Buffer.concat([u64(fh), u64(0), u64(f), u64(fh), u64(100), u64(4), u64(0)]));
  return out;
}

requireTool(existsSync(REFERENCE_VIRTIOFSD) ? undefined : `${REFERENCE_VIRTIOFSD} is absent (qemu-system-common)`);

describe('passthrough answers as the reference C virtiofsd', () => {
  const work = fs.mkdtempSync(join(tmpdir(), 'damselfly-pt-vfsd-'));
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  test('the same raw requests get the same errnos', async () => {
    makeShare(join(work, 'ours'));
    makeShare(join(work, 'theirs'));
    const pfs = new PassthroughFs({ root: join(work, 'ours'), xattr: true, cache: 'auto', announceSubmounts: true, log: silentLogger, metrics: new Metrics() });
    const server = new FuseServer(pfs, { log: silentLogger, metrics: new Metrics() });
    const ours = await script((op, node, args) => exchange(server, request(op, node, args).bytes));
    pfs.close();
    const vfsd = await startVirtiofsd({ source: join(work, 'theirs'), socket: join(work, 'vfsd.sock'), xattr: true, args: ['-o', 'modcaps=+sys_admin'] });
    const f = TestFrontend.connect(join(work, 'vfsd.sock'));
    let theirs: Array<[string, unknown]>;
    try {
      await f.start({ queues: 2, size: 256 });
      theirs = await script(async (op, node, args) => parseReply(await f.fuse(f.rings[1] as Ring, request(op, node, args).bytes, 8192)));
    } finally {
      f.close();
      await vfsd.stop();
    }
    assert.equal(ours.length, theirs.length);
    for (let i = 0; i < ours.length; i++) {
      const [label, mine] = ours[i] as [string, unknown];
      const intended = INTENDED[label];
      if (intended !== undefined) assert.equal(mine, intended[0], `${label}: ${intended[1]}`);
      else assert.equal(mine, (theirs[i] as [string, unknown])[1], `${label}: ours ${String(mine)}, virtiofsd ${String((theirs[i] as [string, unknown])[1])}`);
    }
  });
});
