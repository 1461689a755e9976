/**
 * Reply payload encoders.
 *
 * `fuse_attr`, 88 bytes:
 * | off | size | type | field     |     | off | size | type | field     |
 * |-----|------|------|-----------|-----|-----|------|------|-----------|
 * | 0   | 8    | u64  | ino       |     | 60  | 4    | u32  | mode      |
 * | 8   | 8    | u64  | size      |     | 64  | 4    | u32  | nlink     |
 * | 16  | 8    | u64  | blocks    |     | 68  | 4    | u32  | uid       |
 * | 24  | 8    | u64  | atime     |     | 72  | 4    | u32  | gid       |
 * | 32  | 8    | u64  | mtime     |     | 76  | 4    | u32  | rdev      |
 * | 40  | 8    | u64  | ctime     |     | 80  | 4    | u32  | blksize   |
 * | 48  | 4    | u32  | atimensec |     | 84  | 4    | u32  | flags     |
 * | 52  | 4    | u32  | mtimensec |
 * | 56  | 4    | u32  | ctimensec |
 *
 * `fuse_entry_out`, 128: nodeid u64 @0, generation u64 @8, entry_valid u64 @16, attr_valid u64 @24,
 * entry_valid_nsec u32 @32, attr_valid_nsec u32 @36, attr @40.
 * `fuse_attr_out`, 104: attr_valid u64 @0, attr_valid_nsec u32 @8, dummy u32 @12, attr @16.
 * `fuse_open_out`, 16: fh u64 @0, open_flags u32 @8, backing_id i32 @12.
 * `fuse_kstatfs` (statfs_out), 80: blocks, bfree, bavail, files, ffree u64 @0..39; bsize @40,
 * namelen @44, frsize @48, padding @52, spare[6] @56.
 * `fuse_init_out`, 64: major @0, minor @4, max_readahead @8, flags @12, u16 max_background @16,
 * u16 congestion_threshold @18, max_write @20, time_gran @24, u16 max_pages @28,
 * u16 map_alignment @30, flags2 @32, max_stack_depth @36, unused @40.
 * `fuse_dirent`, 24 + name padded to 8: ino u64 @0, off u64 @8, namelen u32 @16, type u32 @20.
 * `fuse_direntplus`: entry_out (128) then dirent.
 */
import type { Attr, EntryReply, OpenReply, StatFs } from '../../fs/types.js';
import { Size } from '../abi.js';

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * A zeroed reply buffer, cut from Node's buffer pool: a reply of 104 or 128 bytes made with
 * Buffer.alloc has memory of its own, allocated and freed (malloc, the array buffer sweeper) for
 * every request.
 */
function zeroed(size: number): Buffer {
  return Buffer.allocUnsafe(size).fill(0);
}

/**
 * A non-negative integer as a little-endian u64, without a BigInt (one allocation per field less
 * on every reply); the attributes and ids here are safe integers.
 */
function setU64(v: DataView, at: number, x: number): void {
  v.setUint32(at, x % 0x1_0000_0000, true);
  v.setUint32(at + 4, Math.floor(x / 0x1_0000_0000), true);
}

/** A signed 64-bit value from a safe integer, two's complement: the kernel reads times as signed. */
function setI64(v: DataView, at: number, x: number): void {
  v.setUint32(at, x >>> 0, true);
  v.setInt32(at + 4, Math.floor(x / 0x1_0000_0000), true);
}

function seconds(timeout: number): { sec: number; nsec: number } {
  const t = Math.max(0, timeout);
  const sec = Math.floor(t);
  return { sec, nsec: Math.floor((t - sec) * 1e9) };
}

export function writeAttr(v: DataView, at: number, a: Attr): void {
  setU64(v, at, a.ino);
  setU64(v, at + 8, a.size);
  setU64(v, at + 16, a.blocks);
  // Times before 1970 are negative (fuse_fillattr: time64_t), as a host's stat gives them.
  setI64(v, at + 24, a.atime.sec);
  setI64(v, at + 32, a.mtime.sec);
  setI64(v, at + 40, a.ctime.sec);
  v.setUint32(at + 48, a.atime.nsec, true);
  v.setUint32(at + 52, a.mtime.nsec, true);
  v.setUint32(at + 56, a.ctime.nsec, true);
  v.setUint32(at + 60, a.mode, true);
  v.setUint32(at + 64, a.nlink, true);
  v.setUint32(at + 68, a.uid, true);
  v.setUint32(at + 72, a.gid, true);
  v.setUint32(at + 76, a.rdev, true);
  v.setUint32(at + 80, a.blksize, true);
  v.setUint32(at + 84, a.flags, true);
}

function writeEntry(v: DataView, at: number, e: EntryReply): void {
  const ev = seconds(e.entryTimeout);
  const av = seconds(e.attrTimeout);
  setU64(v, at, e.nodeid);
  setU64(v, at + 8, e.generation);
  setU64(v, at + 16, ev.sec);
  setU64(v, at + 24, av.sec);
  v.setUint32(at + 32, ev.nsec, true);
  v.setUint32(at + 36, av.nsec, true);
  writeAttr(v, at + 40, e.attr);
}

export function encodeEntryOut(e: EntryReply): Buffer {
  const b = zeroed(Size.ENTRY_OUT);
  writeEntry(view(b), 0, e);
  return b;
}

export function encodeAttrOut(attr: Attr, timeout: number): Buffer {
  const b = zeroed(Size.ATTR_OUT);
  const v = view(b);
  const t = seconds(timeout);
  setU64(v, 0, t.sec);
  v.setUint32(8, t.nsec, true);
  writeAttr(v, 16, attr);
  return b;
}

export function encodeOpenOut(o: OpenReply): Buffer {
  const b = zeroed(Size.OPEN_OUT);
  const v = view(b);
  v.setBigUint64(0, o.fh, true);
  v.setUint32(8, o.flags, true);
  return b;
}

export function encodeStatfsOut(s: StatFs): Buffer {
  const b = zeroed(Size.STATFS_OUT);
  const v = view(b);
  [s.blocks, s.bfree, s.bavail, s.files, s.ffree].forEach((x, i) => setU64(v, i * 8, x));
  v.setUint32(40, s.bsize, true);
  v.setUint32(44, s.namelen, true);
  v.setUint32(48, s.frsize, true);
  return b;
}

export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: bigint;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
}

export function encodeInitOut(o: InitOut): Buffer {
  const b = Buffer.alloc(Size.INIT_OUT);
  const v = view(b);
  v.setUint32(0, o.major, true);
  v.setUint32(4, o.minor, true);
  v.setUint32(8, o.maxReadahead, true);
  v.setUint32(12, Number(o.flags & 0xffffffffn), true);
  v.setUint16(16, o.maxBackground, true);
  v.setUint16(18, o.congestionThreshold, true);
  v.setUint32(20, o.maxWrite, true);
  v.setUint32(24, o.timeGran, true);
  v.setUint16(28, o.maxPages, true);
  v.setUint32(32, Number(o.flags >> 32n), true);
  return b;
}

export function encodeU32Pair(a: number, b = 0): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32LE(a, 0);
  out.writeUInt32LE(b, 4);
  return out;
}

export function encodeU64(x: number | bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(x), 0);
  return out;
}

function direntSize(nameLen: number): number {
  return (Size.DIRENT + nameLen + 7) & ~7;
}

/** Packs READDIR / READDIRPLUS entries into a reply buffer of a fixed size. */
export class DirentPacker {
  private readonly buf: Buffer;
  private readonly v: DataView;
  private pos = 0;

  constructor(capacity: number) {
    this.buf = Buffer.alloc(Math.max(0, capacity));
    this.v = view(this.buf);
  }

  private dirent(at: number, ino: number, off: number, type: number, name: Uint8Array): void {
    setU64(this.v, at, ino);
    setU64(this.v, at + 8, off);
    this.v.setUint32(at + 16, name.length, true);
    this.v.setUint32(at + 20, type, true);
    this.buf.set(name, at + Size.DIRENT);
  }

  /** Adds a READDIR entry; false when it does not fit. */
  add(ino: number, off: number, type: number, name: Uint8Array): boolean {
    const need = direntSize(name.length);
    if (this.pos + need > this.buf.length) return false;
    this.dirent(this.pos, ino, off, type, name);
    this.pos += need;
    return true;
  }

  /** Adds a READDIRPLUS entry; false when it does not fit. */
  addPlus(entry: EntryReply, ino: number, off: number, type: number, name: Uint8Array): boolean {
    const need = Size.ENTRY_OUT + direntSize(name.length);
    if (this.pos + need > this.buf.length) return false;
    writeEntry(this.v, this.pos, entry);
    this.dirent(this.pos + Size.ENTRY_OUT, ino, off, type, name);
    this.pos += need;
    return true;
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
