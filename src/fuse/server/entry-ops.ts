/** Handlers for inode and name operations: LOOKUP, FORGET, GETATTR, SETATTR, links, STATFS, ACCESS. */
import type { ByteReader } from '../../base/index.js';
import { FsError, Errno, type SetattrIn } from '../../fs/types.js';
import { Opcode, SetattrValid, Size } from '../abi.js';
import { decodeAccessIn, decodeBatchForget, decodeForgetIn, decodeGetattrIn, decodeName, decodeTwoNames, cstring } from '../codec/in.js';
import { encodeAttrOut, encodeEntryOut, encodeStatfsOut } from '../codec/out.js';
import type { Call, Handler } from './context.js';

function need<T>(m: T | undefined): T {
  if (m === undefined) throw new FsError(Errno.ENOSYS);
  return m;
}

const MAX_SECONDS = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * A time's seconds (a signed 64-bit count), held to what a number carries exactly: far past what
 * any filesystem stores, whose kernel clamps a time to its own range as it would the full value.
 */
function seconds(r: ByteReader, off: number): number {
  const s = BigInt.asIntN(64, r.u64n(off));
  return Number(s > MAX_SECONDS ? MAX_SECONDS : s < -MAX_SECONDS ? -MAX_SECONDS : s);
}

function decodeSetattr(call: Call): SetattrIn {
  const r = call.body;
  r.check(0, Size.SETATTR_IN, 'fuse_setattr_in');
  const valid = r.u32(0);
  const out: SetattrIn = { valid };
  if (valid & SetattrValid.FH) out.fh = r.u64n(8);
  if (valid & SetattrValid.SIZE) out.size = r.u64(16, 'size');
  if (valid & SetattrValid.ATIME) out.atime = valid & SetattrValid.ATIME_NOW ? 'now' : { sec: seconds(r, 32), nsec: r.u32(56) };
  if (valid & SetattrValid.MTIME) out.mtime = valid & SetattrValid.MTIME_NOW ? 'now' : { sec: seconds(r, 40), nsec: r.u32(60) };
  if (valid & SetattrValid.CTIME) out.ctime = { sec: seconds(r, 48), nsec: r.u32(64) };
  if (valid & SetattrValid.MODE) out.mode = r.u32(68);
  if (valid & SetattrValid.UID) out.uid = r.u32(76);
  if (valid & SetattrValid.GID) out.gid = r.u32(80);
  return out;
}

export const entryHandlers: Array<[Opcode, Handler]> = [
  [Opcode.LOOKUP, async (c) => c.ok(encodeEntryOut(await need(c.fs.lookup).call(c.fs, c.ctx, c.nodeid, decodeName(c.body))))],
  [
    Opcode.FORGET,
    (c) => {
      c.fs.forget?.(c.nodeid, decodeForgetIn(c.body));
      c.none();
    },
  ],
  [
    Opcode.BATCH_FORGET,
    (c) => {
      for (const f of decodeBatchForget(c.body)) if (f.nodeid >= 0) c.fs.forget?.(f.nodeid, f.nlookup);
      c.none();
    },
  ],
  [
    Opcode.GETATTR,
    async (c) => {
      const { flags, fh } = decodeGetattrIn(c.body);
      const r = await need(c.fs.getattr).call(c.fs, c.ctx, c.nodeid, flags & 1 ? fh : undefined);
      c.ok(encodeAttrOut(r.attr, r.timeout));
    },
  ],
  [
    Opcode.SETATTR,
    async (c) => {
      const r = await need(c.fs.setattr).call(c.fs, c.ctx, c.nodeid, decodeSetattr(c));
      c.ok(encodeAttrOut(r.attr, r.timeout));
    },
  ],
  [Opcode.READLINK, async (c) => c.ok(await need(c.fs.readlink).call(c.fs, c.ctx, c.nodeid))],
  [
    Opcode.SYMLINK,
    async (c) => {
      const name = cstring(c.body, 0, 'name');
      const target = cstring(c.body, name.end, 'target');
      c.ok(encodeEntryOut(await need(c.fs.symlink).call(c.fs, c.creatingCtx(() => target.end), c.nodeid, name.bytes, target.bytes)));
    },
  ],
  [
    Opcode.MKNOD,
    async (c) => {
      c.body.check(0, Size.MKNOD_IN, 'fuse_mknod_in');
      const name = cstring(c.body, Size.MKNOD_IN, 'name');
      c.ok(encodeEntryOut(await need(c.fs.mknod).call(c.fs, c.creatingCtx(() => name.end), c.nodeid, name.bytes, c.body.u32(0), c.body.u32(4), c.body.u32(8))));
    },
  ],
  [
    Opcode.MKDIR,
    async (c) => {
      c.body.check(0, Size.MKDIR_IN, 'fuse_mkdir_in');
      const name = cstring(c.body, Size.MKDIR_IN, 'name');
      c.ok(encodeEntryOut(await need(c.fs.mkdir).call(c.fs, c.creatingCtx(() => name.end), c.nodeid, name.bytes, c.body.u32(0), c.body.u32(4))));
    },
  ],
  [Opcode.UNLINK, async (c) => (await need(c.fs.unlink).call(c.fs, c.ctx, c.nodeid, decodeName(c.body)), c.ok())],
  [Opcode.RMDIR, async (c) => (await need(c.fs.rmdir).call(c.fs, c.ctx, c.nodeid, decodeName(c.body)), c.ok())],
  [
    Opcode.RENAME,
    async (c) => {
      c.body.check(0, Size.RENAME_IN, 'fuse_rename_in');
      const [from, to] = decodeTwoNames(c.body, Size.RENAME_IN);
      await need(c.fs.rename).call(c.fs, c.ctx, c.nodeid, from, Number(c.body.u64(0, 'newdir')), to, 0);
      c.ok();
    },
  ],
  [
    Opcode.RENAME2,
    async (c) => {
      c.body.check(0, Size.RENAME2_IN, 'fuse_rename2_in');
      const [from, to] = decodeTwoNames(c.body, Size.RENAME2_IN);
      await need(c.fs.rename).call(c.fs, c.ctx, c.nodeid, from, c.body.u64(0, 'newdir'), to, c.body.u32(8));
      c.ok();
    },
  ],
  [
    Opcode.LINK,
    async (c) => {
      c.body.check(0, Size.LINK_IN, 'fuse_link_in');
      const name = cstring(c.body, Size.LINK_IN, 'name').bytes;
      c.ok(encodeEntryOut(await need(c.fs.link).call(c.fs, c.ctx, c.body.u64(0, 'oldnodeid'), c.nodeid, name)));
    },
  ],
  [Opcode.STATFS, async (c) => c.ok(encodeStatfsOut(await need(c.fs.statfs).call(c.fs, c.ctx, c.nodeid)))],
  [Opcode.ACCESS, async (c) => (await need(c.fs.access).call(c.fs, c.ctx, c.nodeid, decodeAccessIn(c.body)), c.ok())],
  [Opcode.SYNCFS, async (c) => (await (c.fs.syncfs?.call(c.fs, c.ctx, c.nodeid) ?? Promise.resolve()), c.ok())],
];

export { need };
