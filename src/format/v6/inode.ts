/**
 * RAFS v6 / EROFS inodes, inline xattrs, chunk indexes and dirents (spec §3.7–3.11).
 *
 * Compact inode, 32 bytes (spec §3.7):
 * | off | size | type | field          |
 * |-----|------|------|----------------|
 * | 0   | 2    | u16  | i_format       |
 * | 2   | 2    | u16  | i_xattr_icount |
 * | 4   | 2    | u16  | i_mode         |
 * | 6   | 2    | u16  | i_nlink        |
 * | 8   | 4    | u32  | i_size         |
 * | 12  | 4    | u32  | i_reserved     |
 * | 16  | 4    | u32  | i_u            |
 * | 20  | 4    | u32  | i_ino          |
 * | 24  | 2    | u16  | i_uid          |
 * | 26  | 2    | u16  | i_gid          |
 * | 28  | 4    | u8[4]| reserved       |
 *
 * Extended inode, 64 bytes (spec §3.7):
 * | off | size | type   | field          |
 * |-----|------|--------|----------------|
 * | 0   | 2    | u16    | i_format       |
 * | 2   | 2    | u16    | i_xattr_icount |
 * | 4   | 2    | u16    | i_mode         |
 * | 6   | 2    | u16    | reserved       |
 * | 8   | 8    | u64    | i_size         |
 * | 16  | 4    | u32    | i_u            |
 * | 20  | 4    | u32    | i_ino          |
 * | 24  | 4    | u32    | i_uid          |
 * | 28  | 4    | u32    | i_gid          |
 * | 32  | 8    | s64    | i_mtime        |
 * | 40  | 4    | u32    | i_mtime_nsec   |
 * | 44  | 4    | u32    | i_nlink        |
 * | 48  | 16   | u8[16] | reserved       |
 *
 * Xattr area (spec §3.8): header {u32 h_name_filter, u8 h_shared_count, u8[7]} then entries
 * {u8 e_name_len, u8 e_name_index, u16 e_value_size, suffix, value, pad to 4}.
 * Chunk index (spec §3.11), 8 bytes: {u16 advise, u16 device_id, u32 blkaddr}.
 * Dirent (spec §3.9), 12 bytes: {u64 e_nid, u16 e_nameoff, u8 e_file_type, u8 reserved}.
 */
import { type ByteReader, type ByteWriter, FormatError } from '../../base/index.js';
import { type InodeKind, XATTR_PREFIXES } from '../constants.js';
import type { Xattr } from '../image.js';

export const COMPACT_INODE_SIZE = 32;
export const EXTENDED_INODE_SIZE = 64;
export const INODE_SLOT_SIZE = 32;
export const XATTR_HEADER_SIZE = 12;
export const CHUNK_INDEX_SIZE = 8;
export const DIRENT_SIZE = 12;
export const EROFS_NULL_ADDR = 0xffffffff;
/** `EROFS_CHUNK_FORMAT_INDEXES`: the chunk map holds 8-byte indexes (with device ids). */
export const CHUNK_FORMAT_INDEXES = 0x20;
export const CHUNK_FORMAT_BLKBITS_MASK = 0x1f;

/** Data layouts (bits 1–3 of i_format). */
export const Layout = { FLAT_PLAIN: 0, FLAT_INLINE: 2, CHUNK_BASED: 4 } as const;

export interface V6Inode {
  nid: number;
  offset: number;
  extended: boolean;
  layout: number;
  /** Size of the inode itself (32 or 64). */
  isize: number;
  /** Size of the xattr area following the inode (0 if none). */
  xsize: number;
  mode: number;
  nlink: number;
  size: number;
  iu: number;
  ino: number;
  uid: number;
  gid: number;
  mtime: number;
  mtimeNsec: number;
}

export function decodeV6Inode(r: ByteReader, offset: number, nid: number): V6Inode {
  const where = `v6 inode nid ${nid}`;
  r.check(offset, COMPACT_INODE_SIZE, where);
  const format = r.u16(offset);
  if (format & ~0xf) throw new FormatError(`${where}: unsupported i_format 0x${format.toString(16)}`);
  const extended = (format & 1) === 1;
  const layout = (format >> 1) & 7;
  if (layout !== Layout.FLAT_PLAIN && layout !== Layout.FLAT_INLINE && layout !== Layout.CHUNK_BASED) {
    throw new FormatError(`${where}: unsupported data layout ${layout} (compressed EROFS files are not RAFS)`);
  }
  const icount = r.u16(offset + 2);
  const xsize = icount === 0 ? 0 : XATTR_HEADER_SIZE + 4 * (icount - 1);
  if (extended) {
    r.check(offset, EXTENDED_INODE_SIZE, where);
    return {
      nid,
      offset,
      extended,
      layout,
      isize: EXTENDED_INODE_SIZE,
      xsize,
      mode: r.u16(offset + 4),
      size: r.u64(offset + 8, 'i_size'),
      iu: r.u32(offset + 16),
      ino: r.u32(offset + 20),
      uid: r.u32(offset + 24),
      gid: r.u32(offset + 28),
      mtime: r.i64(offset + 32, 'i_mtime'),
      mtimeNsec: r.u32(offset + 40),
      nlink: r.u32(offset + 44),
    };
  }
  return {
    nid,
    offset,
    extended,
    layout,
    isize: COMPACT_INODE_SIZE,
    xsize,
    mode: r.u16(offset + 4),
    nlink: r.u16(offset + 6),
    size: r.u32(offset + 8),
    iu: r.u32(offset + 16),
    ino: r.u32(offset + 20),
    uid: r.u16(offset + 24),
    gid: r.u16(offset + 26),
    mtime: 0,
    mtimeNsec: 0,
  };
}

export interface EncodableInode {
  layout: number;
  xattrIcount: number;
  mode: number;
  size: number;
  iu: number;
  ino: number;
  uid: number;
  gid: number;
  mtime: number;
  mtimeNsec: number;
  nlink: number;
}

/** Writes a 64-byte extended inode (the only kind Nydus and Damselfly write). */
export function encodeExtendedInode(w: ByteWriter, i: EncodableInode): void {
  w.u16(1 | (i.layout << 1)).u16(i.xattrIcount).u16(i.mode).u16(0);
  w.u64(i.size).u32(i.iu).u32(i.ino).u32(i.uid).u32(i.gid);
  w.i64(i.mtime).u32(i.mtimeNsec).u32(i.nlink).zeros(16);
}

function prefixOfIndex(index: number): { prefix: string; fullName: boolean } | undefined {
  return XATTR_PREFIXES.find((p) => p.index === index);
}

/** Decodes the inline xattr area of an inode. */
export function decodeXattrs(r: ByteReader, ino: V6Inode): Xattr[] {
  if (ino.xsize === 0) return [];
  const where = `v6 inode nid ${ino.nid} xattrs`;
  const base = ino.offset + ino.isize;
  const area = r.sub(base, ino.xsize, where);
  if (area.u8(4) !== 0) throw new FormatError(`${where}: shared xattrs are not supported`);
  const out: Xattr[] = [];
  let p = XATTR_HEADER_SIZE;
  while (p < ino.xsize) {
    const nameLen = area.u8(p, 'e_name_len');
    const index = area.u8(p + 1, 'e_name_index');
    const valueSize = area.u16(p + 2, 'e_value_size');
    const pre = prefixOfIndex(index);
    if (pre === undefined) throw new FormatError(`${where}: unknown name prefix index ${index}`);
    const suffix = area.slice(p + 4, nameLen, 'xattr name');
    const value = area.slice(p + 4 + nameLen, valueSize, 'xattr value');
    if (pre.fullName ? nameLen !== 0 : nameLen === 0) throw new FormatError(`${where}: bad name length ${nameLen} for ${pre.prefix}`);
    out.push({ name: Buffer.concat([Buffer.from(pre.prefix, 'latin1'), suffix]), value });
    p += (4 + nameLen + valueSize + 3) & ~3;
  }
  return out;
}

/** Splits a full xattr name into its EROFS prefix index and suffix; undefined if unsupported. */
export function splitXattrName(name: Uint8Array): { index: number; suffix: Uint8Array } | undefined {
  const s = Buffer.from(name.buffer, name.byteOffset, name.byteLength).toString('latin1');
  for (const p of XATTR_PREFIXES) {
    if (p.fullName ? s === p.prefix : s.startsWith(p.prefix) && s.length > p.prefix.length) {
      return { index: p.index, suffix: name.subarray(p.prefix.length) };
    }
  }
  return undefined;
}

/** Size of the encoded xattr area (0 when there are none). */
export function xattrAreaSize(xattrs: ReadonlyArray<{ suffix: Uint8Array; value: Uint8Array }>): number {
  if (xattrs.length === 0) return 0;
  let n = XATTR_HEADER_SIZE;
  for (const x of xattrs) n += (4 + x.suffix.length + x.value.length + 3) & ~3;
  return n;
}

export function encodeXattrs(
  w: ByteWriter,
  xattrs: ReadonlyArray<{ index: number; suffix: Uint8Array; value: Uint8Array }>,
): void {
  if (xattrs.length === 0) return;
  w.u32(0).u8(0).zeros(7);
  for (const x of xattrs) {
    const start = w.length;
    w.u8(x.suffix.length).u8(x.index).u16(x.value.length).bytes(x.suffix).bytes(x.value);
    w.zeros(((w.length - start + 3) & ~3) - (w.length - start));
  }
}

/** EROFS dirent file types (spec §3.9). */
export function direntTypeOfKind(kind: InodeKind): number {
  switch (kind) {
    case 'file':
      return 1;
    case 'dir':
      return 2;
    case 'char':
      return 3;
    case 'block':
      return 4;
    case 'fifo':
      return 5;
    case 'socket':
      return 6;
    case 'symlink':
      return 7;
  }
}

export interface RawDirent {
  nid: number;
  name: Uint8Array;
  fileType: number;
}

/** The number of dirents in a dirent block (spec §3.9), from the first name offset. */
export function direntCount(block: ByteReader): number {
  const first = block.u16(8, 'e_nameoff');
  if (first % DIRENT_SIZE !== 0 || first < DIRENT_SIZE || first > block.length) {
    throw new FormatError(`${block.what}: invalid first name offset ${first}`);
  }
  return first / DIRENT_SIZE;
}

/** The name of dirent `i` of the `n` in a block, its bounds checked. */
export function direntName(block: ByteReader, i: number, n: number): Uint8Array {
  const at = i * DIRENT_SIZE;
  const nameOff = block.u16(at + 8);
  const end = i + 1 < n ? block.u16(at + DIRENT_SIZE + 8) : block.length;
  if (nameOff < n * DIRENT_SIZE || end < nameOff || end > block.length) {
    throw new FormatError(`${block.what}: dirent ${i} has name bounds ${nameOff}..${end}`);
  }
  let name = block.slice(nameOff, end - nameOff);
  if (i + 1 === n) {
    const nul = name.indexOf(0);
    if (nul >= 0) name = name.subarray(0, nul);
  }
  if (name.length === 0) throw new FormatError(`${block.what}: dirent ${i} has an empty name`);
  return name;
}

/** Dirent `i` of the `n` in a block. */
export function direntAt(block: ByteReader, i: number, n: number, name = direntName(block, i, n)): RawDirent {
  const at = i * DIRENT_SIZE;
  return { nid: block.u64(at, 'e_nid'), name, fileType: block.u8(at + 10) };
}

/** Decodes one dirent block of `len` bytes (spec §3.9), checking every name offset. */
export function decodeDirentBlock(block: ByteReader): RawDirent[] {
  const n = direntCount(block);
  const out: RawDirent[] = [];
  for (let i = 0; i < n; i++) out.push(direntAt(block, i, n));
  return out;
}
