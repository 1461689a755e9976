/**
 * RAFS v5 on-disk structures (spec §2): the 8192-byte superblock, blob tables and the 128-byte
 * inode record. Decoders check every range against the bootstrap.
 *
 * Superblock (spec §2.2):
 * | off | size | type | field                          |
 * |-----|------|------|--------------------------------|
 * | 0   | 4    | u32  | s_magic (0x52414653)           |
 * | 4   | 4    | u32  | s_fs_version (0x500)           |
 * | 8   | 4    | u32  | s_sb_size (8192)               |
 * | 12  | 4    | u32  | s_block_size (chunk size)      |
 * | 16  | 8    | u64  | s_flags                        |
 * | 24  | 8    | u64  | s_inodes_count                 |
 * | 32  | 8    | u64  | s_inode_table_offset           |
 * | 40  | 8    | u64  | s_prefetch_table_offset        |
 * | 48  | 8    | u64  | s_blob_table_offset            |
 * | 56  | 4    | u32  | s_inode_table_entries          |
 * | 60  | 4    | u32  | s_prefetch_table_entries       |
 * | 64  | 4    | u32  | s_blob_table_size              |
 * | 68  | 4    | u32  | s_extended_blob_table_entries  |
 * | 72  | 8    | u64  | s_extended_blob_table_offset   |
 * | 80  | 8112 | u8[] | s_reserved                     |
 *
 * Inode record (spec §2.7), `RafsV5Inode`, 128 bytes:
 * | off | size | type   | field          |
 * |-----|------|--------|----------------|
 * | 0   | 32   | u8[32] | i_digest       |
 * | 32  | 8    | u64    | i_parent       |
 * | 40  | 8    | u64    | i_ino          |
 * | 48  | 4    | u32    | i_uid          |
 * | 52  | 4    | u32    | i_gid          |
 * | 56  | 4    | u32    | i_projid       |
 * | 60  | 4    | u32    | i_mode         |
 * | 64  | 8    | u64    | i_size         |
 * | 72  | 8    | u64    | i_blocks       |
 * | 80  | 8    | u64    | i_flags        |
 * | 88  | 4    | u32    | i_nlink        |
 * | 92  | 4    | u32    | i_child_index  |
 * | 96  | 4    | u32    | i_child_count  |
 * | 100 | 2    | u16    | i_name_size    |
 * | 102 | 2    | u16    | i_symlink_size |
 * | 104 | 4    | u32    | i_rdev         |
 * | 108 | 4    | u32    | i_mtime_nsec   |
 * | 112 | 8    | s64    | i_mtime        |
 * | 120 | 8    | u8[8]  | i_reserved     |
 */
import { type ByteReader, FormatError, isPowerOfTwo } from '../../base/index.js';
import { Limits, SUPER_FLAGS_KNOWN } from '../constants.js';

export const RAFS_V5_MAGIC = 0x52414653;
export const RAFS_V5_VERSION = 0x500;
export const RAFS_V5_SUPERBLOCK_SIZE = 8192;
export const RAFS_V5_INODE_SIZE = 128;
export const RAFS_V5_EXT_BLOB_ENTRY_SIZE = 64;

/** `RafsInodeFlags` (spec §2.7). */
export const V5InodeFlag = { SYMLINK: 0x1n, HARDLINK: 0x2n, XATTR: 0x4n, HAS_HOLE: 0x8n } as const;

export interface V5SuperBlock {
  blockSize: number;
  flags: bigint;
  inodesCount: number;
  inodeTableOffset: number;
  inodeTableEntries: number;
  prefetchTableOffset: number;
  prefetchTableEntries: number;
  blobTableOffset: number;
  blobTableSize: number;
  extBlobTableOffset: number;
  extBlobTableEntries: number;
}

export function isV5(r: ByteReader): boolean {
  return r.has(0, 8) && r.u32(0) === RAFS_V5_MAGIC && r.u32(4) === RAFS_V5_VERSION;
}

export function decodeV5SuperBlock(r: ByteReader): V5SuperBlock {
  if (r.length <= RAFS_V5_SUPERBLOCK_SIZE) {
    throw new FormatError(`${r.what}: ${r.length} bytes is too small for a RAFS v5 bootstrap`);
  }
  if (r.u32(8) !== RAFS_V5_SUPERBLOCK_SIZE) throw new FormatError(`${r.what}: v5 s_sb_size is ${r.u32(8)}, not 8192`);
  const sb: V5SuperBlock = {
    blockSize: r.u32(12),
    flags: r.u64n(16),
    inodesCount: r.u64(24, 's_inodes_count'),
    inodeTableOffset: r.u64(32, 's_inode_table_offset'),
    prefetchTableOffset: r.u64(40, 's_prefetch_table_offset'),
    blobTableOffset: r.u64(48, 's_blob_table_offset'),
    inodeTableEntries: r.u32(56),
    prefetchTableEntries: r.u32(60),
    blobTableSize: r.u32(64),
    extBlobTableEntries: r.u32(68),
    extBlobTableOffset: r.u64(72, 's_extended_blob_table_offset'),
  };
  if (!isPowerOfTwo(sb.blockSize) || sb.blockSize < Limits.MIN_CHUNK_SIZE || sb.blockSize > Limits.MAX_CHUNK_SIZE) {
    throw new FormatError(`${r.what}: invalid v5 chunk size ${sb.blockSize}`);
  }
  if ((sb.flags & ~SUPER_FLAGS_KNOWN) !== 0n) {
    throw new FormatError(`${r.what}: unknown superblock flags 0x${sb.flags.toString(16)}`);
  }
  if (sb.inodeTableEntries === 0) throw new FormatError(`${r.what}: the inode table is empty`);
  if (sb.inodesCount > sb.inodeTableEntries) {
    throw new FormatError(`${r.what}: s_inodes_count ${sb.inodesCount} exceeds the ${sb.inodeTableEntries} inode table entries`);
  }
  const tables: Array<[string, number, number]> = [
    ['inode table', sb.inodeTableOffset, sb.inodeTableEntries * 4],
    ['prefetch table', sb.prefetchTableOffset, sb.prefetchTableEntries * 4],
    ['blob table', sb.blobTableOffset, sb.blobTableSize],
    ['extended blob table', sb.extBlobTableOffset, sb.extBlobTableEntries * RAFS_V5_EXT_BLOB_ENTRY_SIZE],
  ];
  for (const [name, off, size] of tables) {
    if (size === 0) continue;
    if (off % 8 !== 0 || off < RAFS_V5_SUPERBLOCK_SIZE || off + size > r.length) {
      throw new FormatError(`${r.what}: the ${name} (offset ${off}, ${size} bytes) is misplaced in ${r.length} bytes`);
    }
  }
  for (let i = 0; i < tables.length; i++) {
    for (let j = i + 1; j < tables.length; j++) {
      const [na, oa, sa] = tables[i] as [string, number, number];
      const [nb, ob, sbz] = tables[j] as [string, number, number];
      if (sa > 0 && sbz > 0 && oa < ob + sbz && ob < oa + sa) {
        throw new FormatError(`${r.what}: the ${na} overlaps the ${nb}`);
      }
    }
  }
  return sb;
}

export interface V5InodeRecord {
  /** Byte offset of the record in the bootstrap. */
  offset: number;
  digest: Uint8Array;
  parent: number;
  ino: number;
  uid: number;
  gid: number;
  mode: number;
  size: number;
  blocks: number;
  flags: bigint;
  nlink: number;
  childIndex: number;
  childCount: number;
  nameSize: number;
  symlinkSize: number;
  rdev: number;
  mtimeNsec: number;
  mtime: number;
}

export function decodeV5Inode(r: ByteReader, off: number): V5InodeRecord {
  r.check(off, RAFS_V5_INODE_SIZE, 'v5 inode record');
  return {
    offset: off,
    digest: r.slice(off, 32),
    parent: r.u64(off + 32, 'i_parent'),
    ino: r.u64(off + 40, 'i_ino'),
    uid: r.u32(off + 48),
    gid: r.u32(off + 52),
    mode: r.u32(off + 60),
    size: r.u64(off + 64, 'i_size'),
    blocks: r.u64(off + 72, 'i_blocks'),
    flags: r.u64n(off + 80),
    nlink: r.u32(off + 88),
    childIndex: r.u32(off + 92),
    childCount: r.u32(off + 96),
    nameSize: r.u16(off + 100),
    symlinkSize: r.u16(off + 102),
    rdev: r.u32(off + 104),
    mtimeNsec: r.u32(off + 108),
    mtime: r.i64(off + 112, 'i_mtime'),
  };
}
