/** Handlers for directories: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR. */
import { Opcode } from '../abi.js';
import { decodeFhIn, decodeFsyncIn, decodeOpenIn, decodeReadIn } from '../codec/in.js';
import { DirentPacker, encodeOpenOut } from '../codec/out.js';
import type { Handler } from './context.js';
import { need } from './entry-ops.js';

export const dirHandlers: Array<[Opcode, Handler]> = [
  [
    Opcode.OPENDIR,
    async (c) => {
      const { flags } = decodeOpenIn(c.body);
      c.ok(encodeOpenOut(c.fs.opendir ? await c.fs.opendir(c.ctx, c.nodeid, flags) : { fh: 0n, flags: 0 }));
    },
  ],
  [
    Opcode.READDIR,
    async (c) => {
      const { fh, offset, size } = decodeReadIn(c.body);
      const packer = new DirentPacker(Math.min(size, c.channel.capacity));
      await need(c.fs.readdir).call(c.fs, c.ctx, c.nodeid, fh, offset, (e) => packer.add(e.ino, e.offset, e.type, e.name));
      c.ok(packer.bytes());
    },
  ],
  [
    Opcode.READDIRPLUS,
    async (c) => {
      const { fh, offset, size } = decodeReadIn(c.body);
      const packer = new DirentPacker(Math.min(size, c.channel.capacity));
      await need(c.fs.readdirplus).call(c.fs, c.ctx, c.nodeid, fh, offset, (e) => packer.addPlus(e.entry, e.ino, e.offset, e.type, e.name));
      c.ok(packer.bytes());
    },
  ],
  [Opcode.RELEASEDIR, async (c) => (await (c.fs.releasedir?.call(c.fs, c.ctx, c.nodeid, decodeFhIn(c.body, 'fuse_release_in')) ?? Promise.resolve()), c.ok())],
  [
    Opcode.FSYNCDIR,
    async (c) => {
      const r = decodeFsyncIn(c.body);
      await (c.fs.fsyncdir?.call(c.fs, c.ctx, c.nodeid, r.fh, r.datasync) ?? Promise.resolve());
      c.ok();
    },
  ],
];
