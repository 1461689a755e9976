/**
 * RAFS v5 reader (spec §2): a `RafsImage` over an untrusted v5 bootstrap, decoding inode records
 * on demand through the inode table.
 */
import { ByteReader, FormatError, UnsupportedError, alignUp, compareBytes, divRoundUp } from '../../base/index.js';
import { CHUNK_INFO_SIZE, type ChunkInfo, chunkKey, decodeChunkInfo, sameChunk } from '../chunk-info.js';
import { Compressor } from '../compression.js';
import { Digester, type InodeKind, S_IFREG, SuperFlags, kindOfMode, S_IFMT } from '../constants.js';
import type { BlobInfo, DirEntry, InodeAttr, RafsImage, Xattr } from '../image.js';
import { checkBlobId, checkName } from '../names.js';
import {
  RAFS_V5_EXT_BLOB_ENTRY_SIZE,
  RAFS_V5_INODE_SIZE,
  RAFS_V5_SUPERBLOCK_SIZE,
  type V5InodeRecord,
  type V5SuperBlock,
  V5InodeFlag,
  decodeV5Inode,
  decodeV5SuperBlock,
} from './layout.js';

/** Compressor encoded in v5/v6 superblock flags; first match wins (spec §1.2). */
export function compressorOfFlags(flags: bigint): Compressor {
  if (flags & SuperFlags.COMPRESSION_NONE) return Compressor.None;
  if (flags & SuperFlags.COMPRESSION_LZ4) return Compressor.Lz4Block;
  if (flags & SuperFlags.COMPRESSION_GZIP) return Compressor.Gzip;
  if (flags & SuperFlags.COMPRESSION_ZSTD) return Compressor.Zstd;
  return Compressor.Lz4Block;
}

export function digesterOfFlags(flags: bigint): Digester {
  if (flags & SuperFlags.HASH_BLAKE3) return Digester.Blake3;
  if (flags & SuperFlags.HASH_SHA256) return Digester.Sha256;
  return Digester.Blake3;
}

export class RafsV5Image implements RafsImage {
  readonly version = 5 as const;
  readonly r: ByteReader;
  readonly sb: V5SuperBlock;
  readonly flags: bigint;
  readonly chunkSize: number;
  readonly digester: Digester;
  readonly compressor: Compressor;
  readonly blobs: readonly BlobInfo[];
  readonly rootIno = 1;
  readonly inodeCount: number;
  readonly prefetch: readonly number[];
  readonly size: number;
  /**
   * Each chunk key's record as first read. A v5 file carries its own copy of each chunk's record
   * (one per file that uses the chunk), and everything after the reader knows a chunk by its blob
   * and index alone: a file whose record of an index says otherwise (another offset, size or
   * digest) would be given the bytes fetched for the first, checked against the first's digest.
   */
  private readonly chunkRecords = new Map<number, ChunkInfo>();

  constructor(bootstrap: Uint8Array) {
    this.r = new ByteReader(bootstrap, 'v5 bootstrap');
    this.size = bootstrap.length;
    this.sb = decodeV5SuperBlock(this.r);
    this.flags = this.sb.flags;
    this.chunkSize = this.sb.blockSize;
    this.compressor = compressorOfFlags(this.flags);
    this.digester = digesterOfFlags(this.flags);
    this.inodeCount = this.sb.inodesCount;
    this.blobs = this.readBlobTable();
    this.prefetch = this.readPrefetchTable();
    const root = this.record(1);
    if (root.ino !== 1 || (root.mode & S_IFMT) !== 0o040000) throw new FormatError('v5 bootstrap: inode 1 is not the root directory');
  }

  private readBlobTable(): BlobInfo[] {
    const { blobTableOffset: off, blobTableSize: size, extBlobTableOffset, extBlobTableEntries } = this.sb;
    const ids: Array<{ id: string; ra: { offset: number; size: number } }> = [];
    const t = this.r.slice(off, size, 'blob table');
    let p = 0;
    while (t.length - p > 8) {
      const ra = { offset: this.r.u32(off + p), size: this.r.u32(off + p + 4) };
      p += 8;
      let end = t.indexOf(0, p);
      if (end < 0) end = t.length;
      const id = Buffer.from(t.subarray(p, end)).toString('latin1');
      p = end + 1;
      if (id.length === 0) break; // zero padding after the last entry
      ids.push({ id: checkBlobId(id, `v5 blob table entry ${ids.length}`), ra });
    }
    if (extBlobTableEntries > 0 && extBlobTableEntries < ids.length) {
      throw new FormatError(`v5 bootstrap: ${extBlobTableEntries} extended blob entries for ${ids.length} blobs`);
    }
    return ids.map(({ id, ra }, index) => {
      const ext = index < extBlobTableEntries ? extBlobTableOffset + index * RAFS_V5_EXT_BLOB_ENTRY_SIZE : -1;
      return {
        index,
        id,
        chunkSize: this.chunkSize,
        chunkCount: ext >= 0 ? this.r.u32(ext) : 0,
        compressor: this.compressor,
        digester: this.digester,
        features: ext >= 0 ? this.r.u32(ext + 4) & 0x7fff_ffff : 0,
        uncompressedSize: ext >= 0 ? this.r.u64(ext + 8, 'blob uncompressed_size') : 0,
        compressedSize: ext >= 0 ? this.r.u64(ext + 16, 'blob compressed_size') : 0,
        meta: { compressor: Compressor.None, offset: 0, compressedSize: 0, uncompressedSize: 0 },
        tocSize: 0,
        tocDigest: new Uint8Array(32),
        readahead: ra,
      };
    });
  }

  private readPrefetchTable(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.sb.prefetchTableEntries; i++) {
      const ino = this.r.u32(this.sb.prefetchTableOffset + i * 4);
      if (ino === 0) break;
      if (ino > this.sb.inodeTableEntries) throw new FormatError(`v5 prefetch table: inode ${ino} does not exist`);
      out.push(ino);
    }
    return out;
  }

  /** The record at inode index `index` (1-based), with its name range checked. */
  record(index: number): V5InodeRecord {
    if (!Number.isInteger(index) || index < 1 || index > this.sb.inodeTableEntries) {
      throw new FormatError(`v5 bootstrap: inode index ${index} is outside 1..${this.sb.inodeTableEntries}`);
    }
    const v = this.r.u32(this.sb.inodeTableOffset + (index - 1) * 4, 'inode table entry');
    if (v <= RAFS_V5_SUPERBLOCK_SIZE / 8 || v >= 2 ** 29) {
      throw new FormatError(`v5 bootstrap: inode table entry ${index} holds the invalid offset ${v * 8}`);
    }
    const rec = decodeV5Inode(this.r, v * 8);
    if (rec.ino === 0 || rec.ino > this.sb.inodeTableEntries) {
      throw new FormatError(`v5 inode index ${index}: i_ino ${rec.ino} is out of range`);
    }
    if (rec.nameSize === 0 || rec.nameSize > 256) throw new FormatError(`v5 inode index ${index}: name size ${rec.nameSize}`);
    this.r.check(rec.offset + RAFS_V5_INODE_SIZE, alignUp(rec.nameSize, 8) + alignUp(rec.symlinkSize, 8), 'v5 inode name');
    return rec;
  }

  name(rec: V5InodeRecord): Uint8Array {
    return this.r.slice(rec.offset + RAFS_V5_INODE_SIZE, rec.nameSize);
  }

  private kind(rec: V5InodeRecord): InodeKind {
    const k = kindOfMode(rec.mode);
    if (k === undefined) throw new FormatError(`v5 inode ${rec.ino}: unknown file type in mode 0o${rec.mode.toString(8)}`);
    return k;
  }

  private isHardlink(rec: V5InodeRecord): boolean {
    return (rec.mode & S_IFMT) === S_IFREG && rec.nlink > 1;
  }

  /** The record of inode number `ino` (for hardlinks: the first link's record). */
  inodeRecord(ino: number): V5InodeRecord {
    const rec = this.record(ino);
    if (rec.ino !== ino) throw new FormatError(`v5 inode ${ino}: its record says i_ino ${rec.ino}`);
    return rec;
  }

  getAttr(ino: number): InodeAttr {
    const rec = this.inodeRecord(ino);
    const kind = this.kind(rec);
    if (rec.nlink === 0) throw new FormatError(`v5 inode ${ino}: nlink is 0`);
    return {
      ino,
      kind,
      mode: rec.mode,
      uid: rec.uid,
      gid: rec.gid,
      size: rec.size,
      nlink: rec.nlink,
      mtimeSec: rec.mtime,
      mtimeNsec: rec.mtimeNsec,
      rdev: kind === 'char' || kind === 'block' ? rec.rdev : 0,
      blocks: rec.blocks,
      hasXattrs: (rec.flags & V5InodeFlag.XATTR) !== 0n,
    };
  }

  private dirRecord(dirIno: number): V5InodeRecord {
    const rec = this.inodeRecord(dirIno);
    if (this.kind(rec) !== 'dir') throw new FormatError(`v5 inode ${dirIno} is not a directory`);
    if (rec.childCount > 0) {
      const last = rec.childIndex + rec.childCount - 1;
      if (rec.childIndex <= dirIno || last > this.sb.inodeTableEntries) {
        throw new FormatError(`v5 directory ${dirIno}: children ${rec.childIndex}..${last} are out of range`);
      }
    }
    return rec;
  }

  /** The entry for child index `index` of directory `dirIno`, validated. */
  private childEntry(dirIno: number, index: number): DirEntry {
    const rec = this.record(index);
    const where = `v5 inode index ${index}`;
    if (rec.parent !== dirIno) throw new FormatError(`${where}: parent is ${rec.parent}, expected ${dirIno}`);
    if (rec.ino !== index && !this.isHardlink(rec)) throw new FormatError(`${where}: i_ino ${rec.ino} differs from its index`);
    const name = this.name(rec);
    checkName(name, where);
    return { name, ino: rec.ino, kind: this.kind(rec) };
  }

  childCount(dirIno: number): number {
    return this.dirRecord(dirIno).childCount;
  }

  *readdir(dirIno: number, start = 0): Iterable<DirEntry> {
    const dir = this.dirRecord(dirIno);
    for (let k = Math.max(0, start); k < dir.childCount; k++) yield this.childEntry(dirIno, dir.childIndex + k);
  }

  lookup(dirIno: number, name: Uint8Array): DirEntry | undefined {
    const dir = this.dirRecord(dirIno);
    let lo = 0;
    let hi = dir.childCount - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const index = dir.childIndex + mid;
      const c = compareBytes(this.name(this.record(index)), name);
      if (c === 0) return this.childEntry(dirIno, index);
      if (c < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  parent(dirIno: number): number {
    const rec = this.dirRecord(dirIno);
    return dirIno === this.rootIno ? dirIno : rec.parent;
  }

  readlink(ino: number): Uint8Array {
    const rec = this.inodeRecord(ino);
    if (this.kind(rec) !== 'symlink' || rec.symlinkSize === 0) throw new FormatError(`v5 inode ${ino} is not a symlink`);
    const target = this.r.slice(rec.offset + RAFS_V5_INODE_SIZE + alignUp(rec.nameSize, 8), rec.symlinkSize, 'symlink target');
    // No path holds a NUL: symlink(2) would take the target cut there, a tar header the same.
    if (target.includes(0)) throw new FormatError(`v5 inode ${ino}: the symlink target holds a NUL byte`);
    return target;
  }

  /** Offset just past name and symlink target: the xattr table, if any. */
  private afterNames(rec: V5InodeRecord): number {
    return rec.offset + RAFS_V5_INODE_SIZE + alignUp(rec.nameSize, 8) + alignUp(rec.symlinkSize, 8);
  }

  xattrs(ino: number): Xattr[] {
    const rec = this.inodeRecord(ino);
    if ((rec.flags & V5InodeFlag.XATTR) === 0n) return [];
    const base = this.afterNames(rec);
    const size = this.r.u64(base, 'xattr table size');
    const t = this.r.sub(base + 8, size, `v5 inode ${ino} xattr table`);
    const out: Xattr[] = [];
    for (let p = 0; p < size; ) {
      const pairSize = t.u32(p, 'xattr pair size');
      const pair = t.slice(p + 4, pairSize, 'xattr pair');
      const nul = pair.indexOf(0);
      if (nul <= 0) throw new FormatError(`v5 inode ${ino}: xattr pair without a name`);
      out.push({ name: pair.subarray(0, nul), value: pair.subarray(nul + 1) });
      p += 4 + pairSize;
    }
    return out;
  }

  /** Offset of the chunk infos of a regular file record. */
  private chunkArea(rec: V5InodeRecord): number {
    let off = this.afterNames(rec);
    if (rec.flags & V5InodeFlag.XATTR) off += 8 + alignUp(this.r.u64(off, 'xattr table size'), 8);
    return off;
  }

  /** v5 has no batch chunks: its chunk records say where every chunk is stored. */
  blobsNeedingMeta(): readonly BlobInfo[] {
    return [];
  }

  attachBlobMeta(blobIndex: number): void {
    throw new UnsupportedError(`blob ${blobIndex}: a RAFS v5 image locates chunks without blob meta`);
  }

  fileChunks(ino: number): ChunkInfo[] {
    const rec = this.inodeRecord(ino);
    if (this.kind(rec) !== 'file') throw new FormatError(`v5 inode ${ino} is not a regular file`);
    const hasHole = (rec.flags & V5InodeFlag.HAS_HOLE) !== 0n;
    const expected = divRoundUp(rec.size, this.chunkSize);
    if (!hasHole && rec.childCount !== expected) {
      throw new FormatError(`v5 inode ${ino}: ${rec.childCount} chunks for a ${rec.size}-byte file (expected ${expected})`);
    }
    if (rec.childCount > expected) throw new FormatError(`v5 inode ${ino}: ${rec.childCount} chunks exceed its size`);
    const base = this.chunkArea(rec);
    this.r.check(base, rec.childCount * CHUNK_INFO_SIZE, `v5 inode ${ino} chunk infos`);
    const chunks: ChunkInfo[] = [];
    let end = 0;
    for (let i = 0; i < rec.childCount; i++) {
      const c = decodeChunkInfo(this.r, base + i * CHUNK_INFO_SIZE);
      const where = `v5 inode ${ino} chunk ${i}`;
      if (c.blobIndex >= this.blobs.length) throw new FormatError(`${where}: blob index ${c.blobIndex} does not exist`);
      if (c.uncompressedSize === 0 || c.uncompressedSize > this.chunkSize) {
        throw new FormatError(`${where}: uncompressed size ${c.uncompressedSize}`);
      }
      if (!hasHole && c.fileOffset !== i * this.chunkSize) throw new FormatError(`${where}: file offset ${c.fileOffset}`);
      if (c.fileOffset < end || c.fileOffset + c.uncompressedSize > rec.size) {
        throw new FormatError(`${where}: range ${c.fileOffset}+${c.uncompressedSize} overlaps or exceeds the file`);
      }
      end = c.fileOffset + c.uncompressedSize;
      const first = this.chunkRecords.get(chunkKey(c));
      if (first === undefined) this.chunkRecords.set(chunkKey(c), c);
      else if (!sameChunk(first, c)) throw new FormatError(`${where}: chunk ${c.index} of blob ${c.blobIndex} is described otherwise by another file`);
      chunks.push(c);
    }
    return chunks;
  }
}
