/**
 * A FUSE client for tests: encodes requests as the kernel does and decodes replies, so that the
 * server (and, through virtio-fs, the whole device) can be driven in-process.
 */
import assert from 'node:assert/strict';
import { Opcode, Size } from '../../src/fuse/abi.js';
import type { ReplyChannel } from '../../src/fuse/index.js';

let nextUnique = 2n;

export interface EncodedRequest {
  bytes: Buffer;
  unique: bigint;
}

export function request(opcode: Opcode | number, nodeid: number, args: Buffer = Buffer.alloc(0), opts: { uid?: number; gid?: number; len?: number; unique?: bigint } = {}): EncodedRequest {
  const unique = opts.unique ?? nextUnique;
  nextUnique += 2n;
  const h = Buffer.alloc(Size.IN_HEADER);
  h.writeUInt32LE(opts.len ?? Size.IN_HEADER + args.length, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(unique, 8);
  h.writeBigUInt64LE(BigInt(nodeid), 16);
  h.writeUInt32LE(opts.uid ?? 0, 24);
  h.writeUInt32LE(opts.gid ?? 0, 28);
  h.writeUInt32LE(4242, 32);
  return { bytes: Buffer.concat([h, args]), unique };
}

export function cstr(s: string | Buffer): Buffer {
  return Buffer.concat([typeof s === 'string' ? Buffer.from(s) : s, Buffer.alloc(1)]);
}

export function initArgs(minor = 38, flags = 0x3bfffffbn | (0xbn << 32n), maxReadahead = 0x20000): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(7, 0);
  b.writeUInt32LE(minor, 4);
  b.writeUInt32LE(maxReadahead, 8);
  b.writeUInt32LE(Number(flags & 0xffffffffn), 12);
  b.writeUInt32LE(Number(flags >> 32n), 16);
  return b;
}

export function readArgs(fh: bigint, offset: number, size: number): Buffer {
  const b = Buffer.alloc(Size.READ_IN);
  b.writeBigUInt64LE(fh, 0);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}

export function u32Args(...xs: number[]): Buffer {
  const b = Buffer.alloc(xs.length * 4);
  xs.forEach((x, i) => b.writeUInt32LE(x, i * 4));
  return b;
}

export interface Reply {
  len: number;
  error: number;
  unique: bigint;
  payload: Buffer;
}

export function parseReply(b: Buffer): Reply {
  return { len: b.readUInt32LE(0), error: b.readInt32LE(4), unique: b.readBigUInt64LE(8), payload: b.subarray(16) };
}

export interface Attr {
  ino: number;
  size: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  mtime: number;
  mtimensec: number;
}

export function parseAttr(b: Buffer, at = 0): Attr {
  return {
    ino: Number(b.readBigUInt64LE(at)),
    size: Number(b.readBigUInt64LE(at + 8)),
    mtime: Number(b.readBigUInt64LE(at + 32)),
    mtimensec: b.readUInt32LE(at + 52),
    mode: b.readUInt32LE(at + 60),
    nlink: b.readUInt32LE(at + 64),
    uid: b.readUInt32LE(at + 68),
    gid: b.readUInt32LE(at + 72),
    rdev: b.readUInt32LE(at + 76),
  };
}

export function parseEntry(p: Buffer): { nodeid: number; attr: Attr } {
  return { nodeid: Number(p.readBigUInt64LE(0)), attr: parseAttr(p, 40) };
}

export interface Dirent {
  ino: number;
  off: number;
  type: number;
  name: string;
  entry?: { nodeid: number; attr: Attr };
}

export function parseDirents(p: Buffer, plus: boolean): Dirent[] {
  const out: Dirent[] = [];
  let pos = 0;
  while (pos < p.length) {
    const entry = plus ? parseEntry(p.subarray(pos, pos + 128)) : undefined;
    const d = plus ? pos + 128 : pos;
    const namelen = p.readUInt32LE(d + 16);
    out.push({
      ino: Number(p.readBigUInt64LE(d)),
      off: Number(p.readBigUInt64LE(d + 8)),
      type: p.readUInt32LE(d + 20),
      name: p.subarray(d + 24, d + 24 + namelen).toString('latin1'),
      ...(entry ? { entry } : {}),
    });
    pos = d + ((24 + namelen + 7) & ~7);
  }
  return out;
}

/**
 * A reply channel that keeps the one reply it gets (header and payload as one Buffer). Reserved
 * space comes in two views, to exercise scatter lists.
 */
export class CaptureReply implements ReplyChannel {
  readonly capacity: number;
  private buf: Buffer | undefined;
  reply: Buffer | undefined;
  dropped = false;
  constructor(capacity = 1 << 20) {
    this.capacity = capacity;
  }
  reserve(size: number): Uint8Array[] {
    this.buf = Buffer.alloc(size);
    const half = size >> 1;
    return half > 0 ? [this.buf.subarray(0, half), this.buf.subarray(half)] : [this.buf];
  }
  send(header: Uint8Array, payload: Uint8Array[] | number): void {
    assert.equal(this.reply, undefined, 'replied twice');
    this.reply = typeof payload === 'number' ? Buffer.concat([header, (this.buf as Buffer).subarray(0, payload)]) : Buffer.concat([header, ...payload]);
  }
  drop(): void {
    this.dropped = true;
  }
}

/**
 * Hands one request to a FUSE server in-process (`FuseServer.handle`) and parses its one reply;
 * fails the test if the server sent none.
 */
export async function exchange(server: { handle(bytes: Uint8Array, channel: ReplyChannel, tail?: Uint8Array[]): Promise<void> }, bytes: Buffer, tail?: Uint8Array[]): Promise<Reply> {
  const c = new CaptureReply();
  await server.handle(bytes, c, tail);
  assert.ok(c.reply, 'no reply');
  return parseReply(c.reply);
}
