/** Handlers for open files: OPEN, CREATE, TMPFILE, COPY_FILE_RANGE, READ, WRITE, FLUSH, RELEASE, FSYNC, FALLOCATE, LSEEK, IOCTL. */
import { FsError, Errno } from '../../fs/types.js';
import { Opcode, Size } from '../abi.js';
import { iovLength } from '../../base/index.js';
import { BadArguments } from '../codec/header.js';
import {
  type WriteIn,
  cstring,
  decodeFhIn,
  decodeFsyncIn,
  decodeIoctlIn,
  decodeLseekIn,
  decodeOpenIn,
  decodeReadIn,
  decodeReleaseIn,
  decodeWriteIn,
  decodeWriteInHeader,
} from '../codec/in.js';
import { encodeEntryOut, encodeOpenOut, encodeU32Pair, encodeU64 } from '../codec/out.js';
import type { Handler } from './context.js';
import { need } from './entry-ops.js';

export const fileHandlers: Array<[Opcode, Handler]> = [
  [
    Opcode.OPEN,
    async (c) => {
      const { flags, openFlags } = decodeOpenIn(c.body);
      c.ok(encodeOpenOut(await need(c.fs.open).call(c.fs, c.ctx, c.nodeid, flags, openFlags)));
    },
  ],
  [
    Opcode.CREATE,
    async (c) => {
      c.body.check(0, Size.CREATE_IN, 'fuse_create_in');
      const name = cstring(c.body, Size.CREATE_IN, 'name');
      // fuse_create_in: flags, mode, umask, open_flags.
      const r = await need(c.fs.create).call(c.fs, c.creatingCtx(() => name.end), c.nodeid, name.bytes, c.body.u32(4), c.body.u32(0), c.body.u32(8), c.body.u32(12));
      c.ok(encodeEntryOut(r.entry), encodeOpenOut(r.open));
    },
  ],
  [
    // Arguments as CREATE's; the name (a placeholder the kernel makes up) is not used.
    Opcode.TMPFILE,
    async (c) => {
      c.body.check(0, Size.CREATE_IN, 'fuse_create_in');
      const ctx = c.creatingCtx(() => cstring(c.body, Size.CREATE_IN, 'name').end);
      const r = await need(c.fs.tmpfile).call(c.fs, ctx, c.nodeid, c.body.u32(4), c.body.u32(0), c.body.u32(8));
      c.ok(encodeEntryOut(r.entry), encodeOpenOut(r.open));
    },
  ],
  [
    // fuse_copy_file_range_in: fh_in, off_in, nodeid_out, fh_out, off_out, len, flags; answered as a WRITE.
    Opcode.COPY_FILE_RANGE,
    async (c) => {
      const r = c.body;
      r.check(0, Size.COPY_FILE_RANGE_IN, 'fuse_copy_file_range_in');
      const flags = r.u64n(48); // none are defined: any is EINVAL, however large
      const copy = need(c.fs.copyFileRange);
      // The reply's size is a u32: at most 4 GiB less a page a request (the kernel asks no more).
      const len = Math.min(r.u64(40, 'len'), 0xffff_f000);
      const n = await copy.call(c.fs, c.ctx, c.nodeid, r.u64n(0), r.u64(8, 'off_in'), r.u64(16, 'nodeid_out'), r.u64n(24), r.u64(32, 'off_out'), len, flags > 0xffff_ffffn ? 0xffff_ffff : Number(flags));
      c.ok(encodeU32Pair(n));
    },
  ],
  [
    Opcode.READ,
    async (c) => {
      const { fh, offset, size } = decodeReadIn(c.body);
      const read = need(c.fs.read);
      const n = Math.min(size, c.channel.capacity);
      if (n === 0) return c.ok();
      const dst = c.channel.reserve(n);
      const got = await read.call(c.fs, c.ctx, c.nodeid, fh, offset, n, dst);
      if (!Number.isInteger(got) || got < 0 || got > n) throw new FsError(Errno.EIO, `read returned ${got} of ${n}`);
      c.okInPlace(got);
    },
  ],
  [
    Opcode.WRITE,
    async (c) => {
      let w: WriteIn;
      let data: Uint8Array[];
      if (c.tail === undefined) {
        const full = decodeWriteIn(c.body);
        [w, data] = [full, [full.data]];
      } else {
        // The data stayed in guest memory: exactly `size` bytes of it must be there.
        w = decodeWriteInHeader(c.body);
        if (iovLength(c.tail) !== w.size) throw new BadArguments(`WRITE of ${w.size} bytes with ${iovLength(c.tail)} bytes of data`);
        data = c.tail;
      }
      if (w.size > c.session.maxWrite) throw new FsError(Errno.EINVAL, 'WRITE larger than max_write');
      const n = await need(c.fs.write).call(c.fs, c.ctx, c.nodeid, w.fh, w.offset, data, w.writeFlags);
      c.ok(encodeU32Pair(n));
    },
  ],
  [Opcode.FLUSH, async (c) => (await (c.fs.flush?.call(c.fs, c.ctx, c.nodeid, decodeFhIn(c.body, 'fuse_flush_in')) ?? Promise.resolve()), c.ok())],
  [
    Opcode.RELEASE,
    async (c) => {
      const r = decodeReleaseIn(c.body);
      await (c.fs.release?.call(c.fs, c.ctx, c.nodeid, r.fh, r.flags) ?? Promise.resolve());
      c.ok();
    },
  ],
  [
    Opcode.FSYNC,
    async (c) => {
      const r = decodeFsyncIn(c.body);
      await (c.fs.fsync?.call(c.fs, c.ctx, c.nodeid, r.fh, r.datasync) ?? Promise.resolve());
      c.ok();
    },
  ],
  [
    Opcode.FALLOCATE,
    async (c) => {
      c.body.check(0, Size.FALLOCATE_IN, 'fuse_fallocate_in');
      await need(c.fs.fallocate).call(c.fs, c.ctx, c.nodeid, c.body.u64n(0), c.body.u64(8, 'offset'), c.body.u64(16, 'length'), c.body.u32(24));
      c.ok();
    },
  ],
  [
    Opcode.LSEEK,
    async (c) => {
      const r = decodeLseekIn(c.body);
      c.ok(encodeU64(await need(c.fs.lseek).call(c.fs, c.ctx, c.nodeid, r.fh, r.offset, r.whence)));
    },
  ],
  [
    Opcode.IOCTL,
    async (c) => {
      const r = decodeIoctlIn(c.body);
      const out = await need(c.fs.ioctl).call(c.fs, c.ctx, c.nodeid, r.fh, r.cmd, r.arg, r.input, r.outSize);
      const header = Buffer.alloc(Size.IOCTL_OUT);
      header.writeInt32LE(out.result, 0);
      c.ok(header, out.output.subarray(0, r.outSize));
    },
  ],
];
