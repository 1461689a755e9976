/** Handlers for extended attributes: GETXATTR, LISTXATTR (with the size-0 probe and ERANGE), SETXATTR, REMOVEXATTR. */
import { FsError, Errno } from '../../fs/types.js';
import { InitFlag, Opcode } from '../abi.js';
import { decodeGetxattrIn, decodeListxattrIn, decodeName, decodeSetxattrIn } from '../codec/in.js';
import { encodeU32Pair } from '../codec/out.js';
import type { Call, Handler } from './context.js';
import { need } from './entry-ops.js';

/** Answers a size probe (size 0) with the length, a short buffer with ERANGE, else the bytes. */
function sized(c: Call, size: number, value: Uint8Array): void {
  if (size === 0) return c.ok(encodeU32Pair(value.length));
  if (value.length > size) throw new FsError(Errno.ERANGE);
  c.ok(value);
}

export const xattrHandlers: Array<[Opcode, Handler]> = [
  [
    Opcode.GETXATTR,
    async (c) => {
      const { size, name } = decodeGetxattrIn(c.body);
      sized(c, size, await need(c.fs.getxattr).call(c.fs, c.ctx, c.nodeid, name));
    },
  ],
  [
    Opcode.LISTXATTR,
    async (c) => {
      const size = decodeListxattrIn(c.body);
      const names = await need(c.fs.listxattr).call(c.fs, c.ctx, c.nodeid);
      sized(c, size, Buffer.concat(names.flatMap((n) => [n, Buffer.alloc(1)])));
    },
  ],
  [
    Opcode.SETXATTR,
    async (c) => {
      const r = decodeSetxattrIn(c.body, (c.session.flags & InitFlag.SETXATTR_EXT) !== 0n);
      await need(c.fs.setxattr).call(c.fs, c.ctx, c.nodeid, r.name, r.value, r.flags, r.setxattrFlags);
      c.ok();
    },
  ],
  [Opcode.REMOVEXATTR, async (c) => (await need(c.fs.removexattr).call(c.fs, c.ctx, c.nodeid, decodeName(c.body)), c.ok())],
];
