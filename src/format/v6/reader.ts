/**
 * RAFS v6 reader (spec §3): a `RafsImage` over an untrusted EROFS-compatible bootstrap. Inode
 * numbers are nids, as in nydusd. Chunks are resolved through the bootstrap chunk table.
 */
import { ByteReader, FormatError, UnsupportedError, compareBytes, divRoundUp } from '../../base/index.js';
import { type BlobChunkTable, CiFlag, batchLocation, zranLocation } from '../blob/meta.js';
import { CHUNK_INFO_SIZE, type ChunkInfo, decodeChunkInfo } from '../chunk-info.js';
import type { Compressor } from '../compression.js';
import { BlobFeature, ChunkFlag, type Digester, type InodeKind, S_IFMT, kindOfMode } from '../constants.js';
import type { BlobInfo, DirEntry, InodeAttr, RafsImage, Xattr } from '../image.js';
import { checkName } from '../names.js';
import { compressorOfFlags, digesterOfFlags } from '../v5/reader.js';
import {
  CHUNK_FORMAT_INDEXES,
  CHUNK_INDEX_SIZE,
  EROFS_NULL_ADDR,
  INODE_SLOT_SIZE,
  Layout,
  type RawDirent,
  type V6Inode,
  decodeDirentBlock,
  direntAt,
  direntCount,
  direntName,
  decodeV6Inode,
  decodeXattrs,
  direntTypeOfKind,
} from './inode.js';
import {
  BLOB_ENTRY_SIZE,
  BLOCK_SIZE,
  DEVICE_SLOT_SIZE,
  type V6SuperBlock,
  decodeBlobEntry,
  decodeV6SuperBlock,
} from './layout.js';

/** Blob features whose chunks are located through the blob's CI array (spec §4.3). */
const LOCATED_BY_META = BlobFeature.BATCH | BlobFeature.ZRAN;

const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

function isDotOrDotDot(name: Uint8Array): boolean {
  return (name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e);
}

/** A decoded chunk index entry of a chunk-based file (spec §3.11). */
export interface ChunkIndex {
  blobIndex: number;
  ciIndex: number;
  blkaddr: number;
}

export class RafsV6Image implements RafsImage {
  readonly version = 6 as const;
  readonly r: ByteReader;
  readonly sb: V6SuperBlock;
  readonly flags: bigint;
  readonly chunkSize: number;
  readonly digester: Digester;
  readonly compressor: Compressor;
  readonly blobs: readonly BlobInfo[];
  readonly rootIno: number;
  readonly inodeCount: number;
  readonly prefetch: readonly number[];
  readonly size: number;
  private chunkMap: Map<number, number> | undefined;
  /** CI arrays of the blobs that need them (`blobsNeedingMeta`), by blob index. */
  private readonly blobMeta = new Map<number, BlobChunkTable>();
  /** Per-directory prefix sums of child counts per dirent block, for seeking readdir. */
  private readonly blockCounts = new Map<number, number[]>();

  constructor(bootstrap: Uint8Array) {
    this.r = new ByteReader(bootstrap, 'v6 bootstrap');
    this.size = bootstrap.length;
    this.sb = decodeV6SuperBlock(this.r);
    this.flags = this.sb.flags;
    this.chunkSize = this.sb.chunkSize;
    this.compressor = compressorOfFlags(this.flags);
    this.digester = digesterOfFlags(this.flags);
    this.inodeCount = this.sb.inos;
    this.rootIno = this.sb.rootNid;
    this.blobs = this.readBlobs();
    this.prefetch = this.readPrefetch();
    const root = this.inode(this.rootIno);
    if ((root.mode & S_IFMT) !== 0o040000) throw new FormatError(`v6 bootstrap: the root nid ${this.rootIno} is not a directory`);
  }

  private readBlobs(): BlobInfo[] {
    const blobs: BlobInfo[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < this.sb.extraDevices; i++) {
      const blob = decodeBlobEntry(this.r, this.sb.blobTableOffset + i * BLOB_ENTRY_SIZE, i, this.sb);
      const slot = this.sb.devtSlotoff * DEVICE_SLOT_SIZE + i * DEVICE_SLOT_SIZE;
      const tag = this.r.paddedString(slot, 64, 'device slot tag');
      if (tag !== blob.id) throw new FormatError(`v6 device slot ${i} names ${JSON.stringify(tag)}, the blob table ${blob.id}`);
      if (seen.has(blob.id)) throw new FormatError(`v6 bootstrap: blob ${blob.id} appears twice`);
      seen.add(blob.id);
      blob.device = { blocks: this.r.u32(slot + 64), mappedBlkaddr: this.r.u32(slot + 68) };
      blobs.push(blob);
    }
    return blobs;
  }

  private readPrefetch(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.sb.prefetchTableSize / 4; i++) {
      const nid = this.r.u32(this.sb.prefetchTableOffset + i * 4);
      if (nid === 0) break;
      out.push(nid);
    }
    return out;
  }

  /** Decodes the inode at `nid`, with its xattr area bounds checked. */
  inode(nid: number): V6Inode {
    if (!Number.isSafeInteger(nid) || nid < 0) throw new FormatError(`v6 bootstrap: invalid nid ${nid}`);
    const offset = this.sb.metaBlkaddr * BLOCK_SIZE + nid * INODE_SLOT_SIZE;
    const ino = decodeV6Inode(this.r, offset, nid);
    this.r.check(offset, ino.isize + ino.xsize, `v6 inode nid ${nid}`);
    if (kindOfMode(ino.mode) === undefined) throw new FormatError(`v6 inode nid ${nid}: unknown file type in mode 0o${ino.mode.toString(8)}`);
    if (ino.nlink === 0) throw new FormatError(`v6 inode nid ${nid}: nlink is 0`);
    return ino;
  }

  private kindOf(ino: V6Inode): InodeKind {
    return kindOfMode(ino.mode) as InodeKind;
  }

  getAttr(nid: number): InodeAttr {
    const ino = this.inode(nid);
    const kind = this.kindOf(ino);
    return {
      ino: nid,
      kind,
      mode: ino.mode,
      uid: ino.uid,
      gid: ino.gid,
      size: kind === 'file' || kind === 'dir' || kind === 'symlink' ? ino.size : 0,
      nlink: ino.nlink,
      mtimeSec: ino.mtime,
      mtimeNsec: ino.mtimeNsec,
      rdev: kind === 'char' || kind === 'block' ? ino.iu : 0,
      blocks: divRoundUp(ino.size, 512),
      hasXattrs: ino.xsize > 0,
    };
  }

  /** Logical data block `k` of a flat (directory or symlink) inode, as a checked reader. */
  private dataBlock(ino: V6Inode, k: number): ByteReader {
    const nb = divRoundUp(ino.size, BLOCK_SIZE);
    const len = k < nb - 1 ? BLOCK_SIZE : ino.size - k * BLOCK_SIZE;
    const where = `v6 inode nid ${ino.nid} data block ${k}`;
    if (ino.layout === Layout.FLAT_INLINE && k === nb - 1) {
      return this.r.sub(ino.offset + ino.isize + ino.xsize, len, where);
    }
    if (ino.layout !== Layout.FLAT_PLAIN && ino.layout !== Layout.FLAT_INLINE) {
      throw new FormatError(`v6 inode nid ${ino.nid}: a directory or symlink must use a flat layout`);
    }
    return this.r.sub((ino.iu + k) * BLOCK_SIZE, len, where);
  }

  private dirInode(nid: number): V6Inode {
    const ino = this.inode(nid);
    if (this.kindOf(ino) !== 'dir') throw new FormatError(`v6 nid ${nid} is not a directory`);
    if (ino.size === 0) throw new FormatError(`v6 directory nid ${nid} is empty (it lacks '.' and '..')`);
    return ino;
  }

  private dirBlock(dir: V6Inode, k: number): RawDirent[] {
    return decodeDirentBlock(this.dataBlock(dir, k));
  }

  private toEntry(dir: V6Inode, d: RawDirent): DirEntry {
    checkName(d.name, `v6 directory nid ${dir.nid}`);
    if (!Number.isSafeInteger(d.nid)) throw new FormatError(`v6 directory nid ${dir.nid}: invalid child nid`);
    const kind = fileTypeKind(d.fileType);
    if (kind === undefined) throw new FormatError(`v6 directory nid ${dir.nid}: unknown dirent type ${d.fileType}`);
    return { name: d.name, ino: d.nid, kind };
  }

  private counts(dir: V6Inode): number[] {
    let c = this.blockCounts.get(dir.nid);
    if (c === undefined) {
      const nb = divRoundUp(dir.size, BLOCK_SIZE);
      c = [0];
      for (let k = 0; k < nb; k++) {
        const n = this.dirBlock(dir, k).filter((d) => !isDotOrDotDot(d.name)).length;
        c.push((c[k] as number) + n);
      }
      if (this.blockCounts.size >= 256) this.blockCounts.delete(this.blockCounts.keys().next().value as number);
      this.blockCounts.set(dir.nid, c);
    }
    return c;
  }

  childCount(dirNid: number): number {
    const c = this.counts(this.dirInode(dirNid));
    return c[c.length - 1] as number;
  }

  *readdir(dirNid: number, start = 0): Iterable<DirEntry> {
    const dir = this.dirInode(dirNid);
    const nb = divRoundUp(dir.size, BLOCK_SIZE);
    let k = 0;
    let skip = Math.max(0, start);
    if (skip > 0) {
      const c = this.counts(dir);
      while (k < nb && (c[k + 1] as number) <= skip) k++;
      skip -= c[k] as number;
    }
    for (; k < nb; k++) {
      for (const d of this.dirBlock(dir, k)) {
        if (isDotOrDotDot(d.name)) continue;
        if (skip > 0) {
          skip--;
          continue;
        }
        yield this.toEntry(dir, d);
      }
    }
  }

  /**
   * Raw lookup including `.` and `..`: a binary search over the blocks by their first names, then
   * over the names of the one block, decoding only the names it compares (a lookup in a
   * directory of 200,000 entries decoded some 2,000 dirents when whole blocks were decoded).
   */
  private find(dir: V6Inode, name: Uint8Array): RawDirent | undefined {
    const nb = divRoundUp(dir.size, BLOCK_SIZE);
    // Find the last block whose first name is <= name, then search inside it.
    let lo = 0;
    let hi = nb - 1;
    let found: { block: ByteReader; n: number } | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const block = this.dataBlock(dir, mid);
      const n = direntCount(block);
      if (compareBytes(direntName(block, 0, n), name) <= 0) {
        found = { block, n };
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found === undefined) return undefined;
    const { block, n } = found;
    let a = 0;
    let b = n - 1;
    while (a <= b) {
      const mid = (a + b) >>> 1;
      const e = direntName(block, mid, n);
      const c = compareBytes(e, name);
      if (c === 0) return direntAt(block, mid, n, e);
      if (c < 0) a = mid + 1;
      else b = mid - 1;
    }
    return undefined;
  }

  lookup(dirNid: number, name: Uint8Array): DirEntry | undefined {
    if (isDotOrDotDot(name)) return undefined;
    const dir = this.dirInode(dirNid);
    const d = this.find(dir, name);
    return d === undefined ? undefined : this.toEntry(dir, d);
  }

  parent(dirNid: number): number {
    const dir = this.dirInode(dirNid);
    if (dirNid === this.rootIno) return dirNid;
    const d = this.find(dir, DOTDOT);
    if (d === undefined) throw new FormatError(`v6 directory nid ${dirNid} has no '..' entry`);
    return d.nid;
  }

  /** Checks the `.` and `..` entries of a directory (used by `check`). */
  dotEntries(dirNid: number): { self: number | undefined; parent: number | undefined } {
    const dir = this.dirInode(dirNid);
    return { self: this.find(dir, DOT)?.nid, parent: this.find(dir, DOTDOT)?.nid };
  }

  readlink(nid: number): Uint8Array {
    const ino = this.inode(nid);
    if (this.kindOf(ino) !== 'symlink') throw new FormatError(`v6 nid ${nid} is not a symlink`);
    if (ino.size === 0 || ino.size > BLOCK_SIZE) throw new FormatError(`v6 symlink nid ${nid}: target size ${ino.size}`);
    const target = this.dataBlock(ino, 0).bytes;
    // No path holds a NUL: symlink(2) would take the target cut there, a tar header the same.
    if (target.includes(0)) throw new FormatError(`v6 symlink nid ${nid}: the target holds a NUL byte`);
    return target;
  }

  xattrs(nid: number): Xattr[] {
    return decodeXattrs(this.r, this.inode(nid));
  }

  /** The raw chunk indexes of a regular file (spec §3.11); holes have blkaddr EROFS_NULL_ADDR. */
  chunkIndexes(nid: number): { ino: V6Inode; indexes: ChunkIndex[] } {
    const ino = this.inode(nid);
    if (this.kindOf(ino) !== 'file') throw new FormatError(`v6 nid ${nid} is not a regular file`);
    const n = divRoundUp(ino.size, this.chunkSize);
    if (n === 0) return { ino, indexes: [] };
    if (ino.layout !== Layout.CHUNK_BASED) {
      throw new UnsupportedError(`v6 nid ${nid}: file data inside the bootstrap (layout ${ino.layout}) is not RAFS`);
    }
    if ((ino.iu & CHUNK_FORMAT_INDEXES) === 0) throw new FormatError(`v6 nid ${nid}: chunk map without device indexes`);
    const base = ino.offset + ((ino.isize + ino.xsize + 7) & ~7);
    this.r.check(base, n * CHUNK_INDEX_SIZE, `v6 nid ${nid} chunk indexes`);
    const indexes: ChunkIndex[] = [];
    for (let i = 0; i < n; i++) {
      const at = base + i * CHUNK_INDEX_SIZE;
      const advise = this.r.u16(at);
      const device = this.r.u16(at + 2);
      indexes.push({ blobIndex: (device & 0xff) - 1, ciIndex: ((device >> 8) << 16) | advise, blkaddr: this.r.u32(at + 4) });
    }
    return { ino, indexes };
  }

  prepare(): void {
    this.chunkTableEntry(0, 0);
  }

  /** Chunk-table position of (blob, chunk index), built on first use (or by `prepare`). */
  private chunkTableEntry(blobIndex: number, ciIndex: number): number | undefined {
    // Keyed by blob * 2^32 + index, a number: built in the first read's path unless prepared,
    // where string keys cost 10 ms for 6500 chunks (a cold start's CPU profile).
    if (this.chunkMap === undefined) {
      const map = new Map<number, number>();
      const n = this.sb.chunkTableSize / CHUNK_INFO_SIZE;
      for (let i = 0; i < n; i++) {
        const at = this.sb.chunkTableOffset + i * CHUNK_INFO_SIZE;
        const blob = this.r.u32(at + 32);
        if (blob < 256) map.set(blob * 2 ** 32 + this.r.u32(at + 72), at); // a chunk index names blobs 0-254 only
      }
      this.chunkMap = map;
    }
    return this.chunkMap.get(blobIndex * 2 ** 32 + ciIndex);
  }

  allChunks(): ChunkInfo[] {
    const n = this.sb.chunkTableSize / CHUNK_INFO_SIZE;
    const out: ChunkInfo[] = [];
    for (let i = 0; i < n; i++) {
      const c = this.chunkTableEntryAt(i);
      if (c.blobIndex < this.blobs.length) out.push(this.located(c, `chunk table entry ${i}`));
    }
    return out;
  }

  blobsNeedingMeta(): readonly BlobInfo[] {
    return this.blobs.filter((b) => (b.features & LOCATED_BY_META) !== 0 && b.chunkCount > 0 && !this.blobMeta.has(b.index));
  }

  attachBlobMeta(blobIndex: number, table: BlobChunkTable): void {
    const blob = this.blobs[blobIndex];
    if (blob === undefined) throw new RangeError(`blob ${blobIndex} does not exist`);
    if (table.entries.length !== blob.chunkCount) {
      throw new FormatError(`blob ${blob.id}: its blob meta lists ${table.entries.length} chunks, the blob table ${blob.chunkCount}`);
    }
    this.blobMeta.set(blobIndex, table);
  }

  /**
   * A chunk-table entry with its stored location from the blob's CI array where the blob needs
   * one (spec §4.3): the bootstrap does not say where a batch member or a ZRan chunk is stored.
   */
  private located(c: ChunkInfo, where: string): ChunkInfo {
    const blob = this.blobs[c.blobIndex] as BlobInfo;
    if ((blob.features & LOCATED_BY_META) === 0) return c;
    const table = this.blobMeta.get(c.blobIndex);
    if (table === undefined) throw new UnsupportedError(`${where}: blob ${blob.id} has batch or ZRan chunks, and its blob meta is not loaded`);
    const e = table.entries[c.index];
    if (e === undefined) throw new FormatError(`${where}: blob ${blob.id} has no chunk ${c.index}`);
    if (e.uncompressedOffset !== c.uncompressedOffset || e.uncompressedSize !== c.uncompressedSize) {
      throw new FormatError(`${where}: blob ${blob.id} chunk ${c.index}: the blob meta and the chunk table disagree on its place`);
    }
    if (e.flags & CiFlag.ZRAN) {
      const at = zranLocation(e);
      const z = table.zran[at.index] as BlobChunkTable['zran'][number]; // checked when decoded
      return {
        ...c,
        flags: (c.flags & ~(ChunkFlag.BATCH | ChunkFlag.ENCRYPTED)) | ChunkFlag.COMPRESSED,
        compressedOffset: z.inOffset,
        compressedSize: z.inLen,
        zran: { offset: at.offset, size: z.outLen, at: z.at },
      };
    }
    if ((e.flags & CiFlag.BATCH) === 0) return c;
    const at = batchLocation(e);
    const b = table.batches[at.index] as BlobChunkTable['batches'][number]; // checked when decoded
    // The stored batch is compressed unless compression did not shrink it (then it is raw); of an
    // encrypted one that is known once it is decrypted (the decoder tells).
    const encrypted = e.flags & CiFlag.ENCRYPTED ? ChunkFlag.ENCRYPTED : 0;
    const compressed = encrypted === 0 && b.compressedSize !== b.uncompressedSize ? ChunkFlag.COMPRESSED : 0;
    return {
      ...c,
      flags: (c.flags & ~(ChunkFlag.COMPRESSED | ChunkFlag.HAS_CRC32 | ChunkFlag.ENCRYPTED)) | ChunkFlag.BATCH | compressed | encrypted,
      compressedOffset: e.compressedOffset,
      compressedSize: b.compressedSize,
      batch: { offset: at.offset, size: b.uncompressedSize },
    };
  }

  /** Entry `i` of the bootstrap chunk table. */
  chunkTableEntryAt(i: number): ChunkInfo {
    if (!Number.isInteger(i) || i < 0 || i >= this.sb.chunkTableSize / CHUNK_INFO_SIZE) throw new RangeError(`chunk table entry ${i}`);
    return decodeChunkInfo(this.r, this.sb.chunkTableOffset + i * CHUNK_INFO_SIZE);
  }

  fileChunks(nid: number): ChunkInfo[] {
    const { ino, indexes } = this.chunkIndexes(nid);
    const out: ChunkInfo[] = [];
    for (let i = 0; i < indexes.length; i++) {
      const x = indexes[i] as ChunkIndex;
      if (x.blkaddr === EROFS_NULL_ADDR) continue; // a hole: reads as zeros
      const where = `v6 nid ${nid} chunk ${i}`;
      if (x.blobIndex < 0 || x.blobIndex >= this.blobs.length) throw new FormatError(`${where}: device ${x.blobIndex + 1} does not exist`);
      if (this.sb.chunkTableSize === 0) {
        throw new UnsupportedError(`${where}: the image has no chunk table (reading through blob meta only is not supported)`);
      }
      const at = this.chunkTableEntry(x.blobIndex, x.ciIndex);
      if (at === undefined) throw new FormatError(`${where}: blob ${x.blobIndex} chunk ${x.ciIndex} is not in the chunk table`);
      const c = this.located(decodeChunkInfo(this.r, at), where);
      const fileOffset = i * this.chunkSize;
      const size = Math.min(this.chunkSize, ino.size - fileOffset);
      if (c.uncompressedOffset !== x.blkaddr * BLOCK_SIZE) {
        throw new FormatError(`${where}: block address ${x.blkaddr} disagrees with the chunk table`);
      }
      if (c.uncompressedSize !== size) throw new FormatError(`${where}: chunk of ${c.uncompressedSize} bytes for ${size} file bytes`);
      out.push({ ...c, fileOffset });
    }
    return out;
  }
}

function fileTypeKind(t: number): InodeKind | undefined {
  const kinds: InodeKind[] = ['file', 'dir', 'char', 'block', 'fifo', 'socket', 'symlink'];
  return kinds.find((k) => direntTypeOfKind(k) === t);
}
