/**
 * RAFS v6 bootstrap writer (spec §3, recipe §9.2): lays out an EROFS-compatible image with a
 * RAFS extended superblock, device slots, blob table, prefetch table, extended inodes with inline
 * xattrs, packed dirent blocks, chunk indexes and the chunk table. Pure: a tree in, bytes out.
 */
import { ByteWriter, alignUp, compareBytes, divRoundUp } from '../../base/index.js';
import { CHUNK_INFO_SIZE, type ChunkInfo, encodeChunkInfo } from '../chunk-info.js';
import { Compressor } from '../compression.js';
import { BlobFeature, Digester, type InodeKind, Limits, SuperFlags, modeTypeOfKind } from '../constants.js';
import type { BlobInfo, Xattr } from '../image.js';
import {
  CHUNK_FORMAT_INDEXES,
  CHUNK_INDEX_SIZE,
  DIRENT_SIZE,
  EXTENDED_INODE_SIZE,
  INODE_SLOT_SIZE,
  Layout,
  direntTypeOfKind,
  encodeExtendedInode,
  encodeXattrs,
  splitXattrName,
  xattrAreaSize,
} from './inode.js';
import {
  BLOB_ENTRY_SIZE,
  BLOCK_SIZE,
  DEVICE_SLOT_SIZE,
  DEVT_SLOT_OFF,
  EROFS_FEATURE_COMPAT_RAFS_V6,
  EROFS_MAGIC,
  EROFS_SUPER_OFFSET,
  RAFS_V6_EXT_SUPER_OFFSET,
  RAFS_V6_INCOMPAT,
  encodeBlobEntry,
} from './layout.js';

/** One inode of the tree to write. Hardlinks are one node referenced by several entries. */
export interface BootstrapNode {
  kind: InodeKind;
  /** Permission bits (and setuid/setgid/sticky); the type bits come from `kind`. */
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Linux-encoded device number for char/block devices. */
  rdev: number;
  /** Regular files: the file size. */
  size: number;
  xattrs: Xattr[];
  symlink?: Uint8Array;
  entries?: Array<{ name: Uint8Array; node: BootstrapNode }>;
  /**
   * Regular files: chunk `i` covers file bytes from `i × chunkSize`; `blobIndex` final. An
   * undefined entry (or a missing tail) is a hole that reads as zeros. Entries may be shared.
   */
  chunks?: Array<ChunkInfo | undefined>;
}

export interface BootstrapSpec {
  root: BootstrapNode;
  chunkSize: number;
  compressor: Compressor;
  digester: Digester;
  explicitUidGid: boolean;
  blobs: BlobInfo[];
  /** Prefetch table, in order (files or directories). */
  prefetch: BootstrapNode[];
}

/** A node after numbering and layout. */
interface Placed {
  node: BootstrapNode;
  ino: number;
  nid: number;
  offset: number; // absolute
  layout: number;
  nlink: number;
  size: number;
  xattrs: Array<{ index: number; suffix: Uint8Array; value: Uint8Array }>;
  xsize: number;
  /** Directory or symlink data (dirent blocks, target); undefined for others. */
  data?: Buffer;
  /** First data block (absolute block number) of FLAT_PLAIN data or of full FLAT_INLINE blocks. */
  dataBlkaddr: number;
  dirents?: Array<{ name: Uint8Array; target: BootstrapNode | 'self' | 'parent'; kind: InodeKind }>;
  parent?: Placed;
}

const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

function compressionFlag(c: Compressor): bigint {
  switch (c) {
    case Compressor.None:
      return SuperFlags.COMPRESSION_NONE;
    case Compressor.Lz4Block:
      return SuperFlags.COMPRESSION_LZ4;
    case Compressor.Gzip:
      return SuperFlags.COMPRESSION_GZIP;
    case Compressor.Zstd:
      return SuperFlags.COMPRESSION_ZSTD;
  }
}

/** Sorted children of a directory node (by raw name bytes). */
function sortedEntries(node: BootstrapNode): Array<{ name: Uint8Array; node: BootstrapNode }> {
  return [...(node.entries ?? [])].sort((a, b) => compareBytes(a.name, b.name));
}

/**
 * Numbers inodes as Nydus does (spec §2.10): root 1, each directory's children consecutive, then
 * depth-first into subdirectories. Returns unique nodes in index order and the index count.
 */
function number(rootNode: BootstrapNode): { order: Placed[]; byNode: Map<BootstrapNode, Placed>; inos: number } {
  const byNode = new Map<BootstrapNode, Placed>();
  const order: Placed[] = [];
  const links = new Map<BootstrapNode, number>();
  let next = 1;
  const place = (node: BootstrapNode, parent: Placed | undefined): Placed => {
    const index = next++;
    const existing = byNode.get(node);
    if (existing !== undefined) {
      if (node.kind === 'dir') throw new RangeError('a directory is linked twice');
      links.set(node, (links.get(node) ?? 1) + 1);
      return existing;
    }
    const p: Placed = { node, ino: index, nid: 0, offset: 0, layout: 0, nlink: 1, size: 0, xattrs: [], xsize: 0, dataBlkaddr: 0 };
    if (parent !== undefined) p.parent = parent;
    byNode.set(node, p);
    order.push(p);
    return p;
  };
  const walk = (dir: Placed): void => {
    const children = sortedEntries(dir.node);
    const placed = children.map((c) => place(c.node, dir));
    children.forEach((c, i) => {
      const p = placed[i] as Placed;
      if (c.node.kind === 'dir' && p.parent === dir) walk(p);
    });
  };
  walk(place(checkRoot(rootNode), undefined));
  for (const [node, n] of links) (byNode.get(node) as Placed).nlink = n;
  return { order, byNode, inos: next - 1 };
}

function checkRoot(root: BootstrapNode): BootstrapNode {
  if (root.kind !== 'dir') throw new RangeError('the root must be a directory');
  return root;
}

/** Packs sorted dirents into blocks (spec §3.9); returns the data and its exact size. */
function packDirents(entries: Array<{ name: Uint8Array; nid: number; type: number }>): Buffer {
  const blocks: Array<typeof entries> = [[]];
  let used = 0;
  for (const e of entries) {
    const need = DIRENT_SIZE + e.name.length;
    if (used + need > BLOCK_SIZE) {
      blocks.push([]);
      used = 0;
    }
    (blocks[blocks.length - 1] as typeof entries).push(e);
    used += need;
  }
  const w = new ByteWriter(blocks.length * BLOCK_SIZE);
  blocks.forEach((block, k) => {
    const start = k * BLOCK_SIZE;
    w.padTo(start);
    let nameOff = block.length * DIRENT_SIZE;
    for (const e of block) {
      w.u64(e.nid).u16(nameOff).u8(e.type).u8(0);
      nameOff += e.name.length;
    }
    for (const e of block) w.bytes(e.name);
  });
  return w.finish();
}

function prepareXattrs(p: Placed): void {
  const xs = [...p.node.xattrs].sort((a, b) => compareBytes(a.name, b.name));
  p.xattrs = xs.map((x) => {
    const split = splitXattrName(x.name);
    if (split === undefined) throw new RangeError(`xattr ${Buffer.from(x.name).toString()} has no RAFS prefix`);
    if (x.value.length > Limits.MAX_XATTR_VALUE) throw new RangeError('xattr value too large');
    return { ...split, value: x.value };
  });
  p.xsize = xattrAreaSize(p.xattrs);
  if (p.xsize > 12 + 4 * 0xfffe) throw new RangeError('xattrs too large for one inode');
}

export function writeV6Bootstrap(spec: BootstrapSpec): Buffer {
  const { order, byNode, inos } = number(spec.root);
  const nblobs = spec.blobs.length;
  if (nblobs > Limits.MAX_V6_BLOBS) throw new RangeError(`${nblobs} blobs exceed the RAFS v6 limit`);

  // Block 0 and the tables before the metadata area.
  const devEnd = DEVT_SLOT_OFF * DEVICE_SLOT_SIZE + nblobs * DEVICE_SLOT_SIZE;
  const blobTableOffset = alignUp(Math.max(devEnd, BLOCK_SIZE), BLOCK_SIZE);
  const prefetchOffset = blobTableOffset + nblobs * BLOB_ENTRY_SIZE;
  const prefetchSize = spec.prefetch.length * 4;
  const metaBlkaddr = alignUp(prefetchOffset + prefetchSize, BLOCK_SIZE) / BLOCK_SIZE;
  const metaBase = metaBlkaddr * BLOCK_SIZE;

  // Pass 1: sizes, layouts and inode placement (root at +4096, so nid 128).
  let cursor = BLOCK_SIZE;
  const fitInBlock = (len: number): number => {
    cursor = alignUp(cursor, INODE_SLOT_SIZE);
    if (len <= BLOCK_SIZE && (cursor % BLOCK_SIZE) + len > BLOCK_SIZE) cursor = alignUp(cursor, BLOCK_SIZE);
    if (len > BLOCK_SIZE) cursor = alignUp(cursor, BLOCK_SIZE);
    const at = cursor;
    return at;
  };
  const dataOwners: Placed[] = [];
  for (const p of order) {
    prepareXattrs(p);
    const head = EXTENDED_INODE_SIZE + p.xsize;
    const node = p.node;
    if (node.kind === 'file') {
      const n = divRoundUp(node.size, spec.chunkSize);
      p.layout = Layout.CHUNK_BASED;
      p.size = node.size;
      const at = fitInBlock(head);
      cursor = at + alignUp(head, 8) + n * CHUNK_INDEX_SIZE;
      p.offset = metaBase + at;
    } else if (node.kind === 'dir' || node.kind === 'symlink') {
      if (node.kind === 'symlink') {
        const t = node.symlink ?? new Uint8Array();
        if (t.length === 0 || t.length > Limits.MAX_V6_SYMLINK) throw new RangeError(`symlink target of ${t.length} bytes`);
        p.data = Buffer.from(t);
      }
      // Directory data is packed in pass 2, once nids are known; its size depends on names only.
      p.size = node.kind === 'dir' ? direntSize(node) : (p.data as Buffer).length;
      const nb = divRoundUp(p.size, BLOCK_SIZE);
      const tail = p.size - (nb - 1) * BLOCK_SIZE;
      if (head + tail <= BLOCK_SIZE) {
        p.layout = Layout.FLAT_INLINE;
        const at = fitInBlock(head + tail);
        cursor = at + head + tail;
        p.offset = metaBase + at;
        if (nb > 1) dataOwners.push(p);
      } else {
        p.layout = Layout.FLAT_PLAIN;
        const at = fitInBlock(head);
        cursor = at + head;
        p.offset = metaBase + at;
        dataOwners.push(p);
      }
    } else {
      p.layout = Layout.FLAT_PLAIN;
      p.size = 0;
      const at = fitInBlock(head);
      cursor = at + head;
      p.offset = metaBase + at;
    }
    p.nid = (p.offset - metaBase) / INODE_SLOT_SIZE;
  }
  // Data blocks of directories and symlinks follow the inodes.
  let block = divRoundUp(metaBase + cursor, BLOCK_SIZE);
  for (const p of dataOwners) {
    const nb = divRoundUp(p.size, BLOCK_SIZE);
    p.dataBlkaddr = block;
    block += p.layout === Layout.FLAT_INLINE ? nb - 1 : nb;
  }
  const chunkTableOffset = block * BLOCK_SIZE;
  const chunkTable = buildChunkTable(order);
  const total = alignUp(chunkTableOffset + chunkTable.length * CHUNK_INFO_SIZE, BLOCK_SIZE);

  // Pass 2: encode.
  const out = Buffer.alloc(total);
  writeSuperBlocks(out, spec, {
    inos,
    rootNid: (byNode.get(spec.root) as Placed).nid,
    metaBlkaddr,
    blobTableOffset,
    prefetchOffset,
    prefetchSize,
    chunkTableOffset,
    chunkTableSize: chunkTable.length * CHUNK_INFO_SIZE,
    hasXattr: order.some((p) => p.xsize > 0),
    bootstrapSize: total,
  });
  spec.prefetch.forEach((node, i) => {
    const p = byNode.get(node);
    if (p === undefined) throw new RangeError('a prefetch entry is not in the tree');
    out.writeUInt32LE(p.nid, prefetchOffset + i * 4);
  });
  for (const p of order) writeInode(out, p, spec, byNode);
  const w = new ByteWriter(chunkTable.length * CHUNK_INFO_SIZE);
  for (const c of chunkTable) encodeChunkInfo(w, c);
  w.finish().copy(out, chunkTableOffset);
  return out;
}

/** Size of a directory's dirent data, by the packing rule (names only). */
function direntSize(node: BootstrapNode): number {
  const names = [DOT, DOTDOT, ...(node.entries ?? []).map((e) => e.name)].sort(compareBytes);
  let blocks = 0;
  let used = 0;
  for (const n of names) {
    const need = DIRENT_SIZE + n.length;
    if (used + need > BLOCK_SIZE) {
      blocks++;
      used = 0;
    }
    used += need;
  }
  return blocks * BLOCK_SIZE + used;
}

function buildChunkTable(order: Placed[]): ChunkInfo[] {
  const seen = new Map<string, ChunkInfo>();
  const objects = new Set<ChunkInfo>();
  for (const p of order) {
    for (const c of p.node.chunks ?? []) {
      if (c === undefined || objects.has(c)) continue;
      objects.add(c);
      const key = `${c.blobIndex}:${c.index}`;
      if (!seen.has(key)) seen.set(key, c);
    }
  }
  return [...seen.values()].sort((a, b) => compareBytes(a.digest, b.digest) || a.blobIndex - b.blobIndex || a.index - b.index);
}

interface SuperLayout {
  inos: number;
  rootNid: number;
  metaBlkaddr: number;
  blobTableOffset: number;
  prefetchOffset: number;
  prefetchSize: number;
  chunkTableOffset: number;
  chunkTableSize: number;
  hasXattr: boolean;
  bootstrapSize: number;
}

function writeSuperBlocks(out: Buffer, spec: BootstrapSpec, l: SuperLayout): void {
  if (l.rootNid > 0xffff) throw new RangeError('root nid does not fit s_root_nid');
  // Device slots and the flattened block view (spec §3.4, §3.14): 512 KiB aligned mappings.
  let pos = l.bootstrapSize;
  let sBlocks = 0;
  spec.blobs.forEach((b, i) => {
    // At least one block (spec §3.4, and nydusd refuses a slot of none): a blob that holds no chunk
    // (an inlined bootstrap's, when the top layer adds no data) still has its device.
    const blocks = Math.max(1, Math.floor(b.uncompressedSize / BLOCK_SIZE));
    const mapped = alignUp(pos, 512 * 1024) / BLOCK_SIZE;
    pos = (mapped + blocks) * BLOCK_SIZE;
    sBlocks += blocks;
    const slot = DEVT_SLOT_OFF * DEVICE_SLOT_SIZE + i * DEVICE_SLOT_SIZE;
    out.write(b.id, slot, 'latin1');
    out.writeUInt32LE(blocks, slot + 64);
    out.writeUInt32LE(mapped, slot + 68);
  });
  const s = EROFS_SUPER_OFFSET;
  out.writeUInt32LE(EROFS_MAGIC, s);
  out.writeUInt32LE(EROFS_FEATURE_COMPAT_RAFS_V6, s + 8);
  out.writeUInt8(12, s + 12);
  out.writeUInt16LE(l.rootNid, s + 14);
  out.writeBigUInt64LE(BigInt(l.inos), s + 16);
  out.writeUInt32LE(sBlocks >>> 0, s + 36);
  out.writeUInt32LE(l.metaBlkaddr, s + 40);
  out.writeUInt32LE(RAFS_V6_INCOMPAT, s + 80);
  out.writeUInt16LE(spec.blobs.length, s + 86);
  out.writeUInt16LE(DEVT_SLOT_OFF, s + 88);

  let flags = compressionFlag(spec.compressor);
  flags |= spec.digester === Digester.Sha256 ? SuperFlags.HASH_SHA256 : SuperFlags.HASH_BLAKE3;
  if (spec.explicitUidGid) flags |= SuperFlags.EXPLICIT_UID_GID;
  if (l.hasXattr) flags |= SuperFlags.HAS_XATTR;
  if (spec.blobs.length > 0 && spec.blobs.every((b) => b.features & BlobFeature.INLINED_CHUNK_DIGEST)) {
    flags |= SuperFlags.INLINED_CHUNK_DIGEST;
  }
  if (spec.blobs.some((b) => b.cipher !== undefined)) flags |= SuperFlags.ENCRYPTION_ASE_128_XTS;
  const e = RAFS_V6_EXT_SUPER_OFFSET;
  out.writeBigUInt64LE(flags, e);
  out.writeBigUInt64LE(BigInt(l.blobTableOffset), e + 8);
  out.writeUInt32LE(spec.blobs.length * BLOB_ENTRY_SIZE, e + 16);
  out.writeUInt32LE(spec.chunkSize, e + 20);
  out.writeBigUInt64LE(BigInt(l.chunkTableOffset), e + 24);
  out.writeBigUInt64LE(BigInt(l.chunkTableSize), e + 32);
  out.writeBigUInt64LE(BigInt(l.prefetchSize > 0 ? l.prefetchOffset : 0), e + 40);
  out.writeUInt32LE(l.prefetchSize, e + 48);

  const w = new ByteWriter(spec.blobs.length * BLOB_ENTRY_SIZE);
  for (const b of spec.blobs) encodeBlobEntry(w, b);
  w.finish().copy(out, l.blobTableOffset);
}

function writeInode(out: Buffer, p: Placed, spec: BootstrapSpec, byNode: Map<BootstrapNode, Placed>): void {
  const node = p.node;
  const w = new ByteWriter(256);
  let iu = 0;
  let nlink = p.nlink;
  if (node.kind === 'dir') {
    const entries = sortedEntries(node).map((e) => {
      const c = byNode.get(e.node) as Placed;
      return { name: e.name, nid: c.nid, type: direntTypeOfKind(e.node.kind) };
    });
    const parent = p.parent ?? p;
    entries.push({ name: DOT, nid: p.nid, type: 2 }, { name: DOTDOT, nid: parent.nid, type: 2 });
    entries.sort((a, b) => compareBytes(a.name, b.name));
    p.data = packDirents(entries);
    if (p.data.length !== p.size) throw new RangeError('directory size changed between passes');
    nlink = 2 + (node.entries ?? []).filter((e) => e.node.kind === 'dir').length;
  }
  if (node.kind === 'file') {
    iu = CHUNK_FORMAT_INDEXES | (Math.log2(spec.chunkSize) - 12);
  } else if (node.kind === 'char' || node.kind === 'block') {
    iu = node.rdev >>> 0;
  } else if (p.data !== undefined && p.dataBlkaddr > 0) {
    iu = p.dataBlkaddr;
  }
  encodeExtendedInode(w, {
    layout: p.layout,
    xattrIcount: p.xsize === 0 ? 0 : (p.xsize - 12) / 4 + 1,
    mode: (modeTypeOfKind(node.kind) | (node.mode & 0o7777)) & 0xffff,
    size: p.size,
    iu,
    ino: p.ino,
    uid: spec.explicitUidGid ? node.uid : 0,
    gid: spec.explicitUidGid ? node.gid : 0,
    mtime: node.mtimeSec,
    mtimeNsec: node.mtimeNsec,
    nlink,
  });
  encodeXattrs(w, p.xattrs);
  const head = w.finish();
  head.copy(out, p.offset);
  const headEnd = p.offset + head.length;
  if (node.kind === 'file') {
    writeChunkIndexes(out, p.offset + alignUp(head.length, 8), node, spec.chunkSize);
  } else if (p.data !== undefined) {
    const nb = divRoundUp(p.size, BLOCK_SIZE);
    if (p.layout === Layout.FLAT_INLINE) {
      p.data.copy(out, headEnd, (nb - 1) * BLOCK_SIZE);
      if (nb > 1) p.data.copy(out, p.dataBlkaddr * BLOCK_SIZE, 0, (nb - 1) * BLOCK_SIZE);
    } else {
      p.data.copy(out, p.dataBlkaddr * BLOCK_SIZE);
    }
  }
}

function writeChunkIndexes(out: Buffer, at: number, node: BootstrapNode, chunkSize: number): void {
  const n = divRoundUp(node.size, chunkSize);
  const chunks = node.chunks ?? [];
  if (chunks.length > n) throw new RangeError(`${chunks.length} chunks for a ${node.size}-byte file`);
  for (let i = 0; i < n; i++) {
    const c = chunks[i];
    const off = at + i * CHUNK_INDEX_SIZE;
    if (c === undefined) {
      // A hole (EROFS_NULL_ADDR), read as zeros.
      out.writeUInt16LE(0, off);
      out.writeUInt16LE(0, off + 2);
      out.writeUInt32LE(0xffffffff, off + 4);
      continue;
    }
    if (c.uncompressedOffset % BLOCK_SIZE !== 0) throw new RangeError('v6 chunks need 4 KiB aligned offsets');
    out.writeUInt16LE(c.index & 0xffff, off);
    out.writeUInt16LE(((c.blobIndex + 1) & 0xff) | (((c.index >>> 16) & 0xff) << 8), off + 2);
    out.writeUInt32LE(c.uncompressedOffset / BLOCK_SIZE, off + 4);
  }
}

/**
 * Renames blobs in a finished v6 bootstrap (blob table and device slots), as
 * `nydus-image merge --blob-digests` does when blobs are pushed to a registry under the SHA-256 of
 * their whole content (their RAFS blob id leaves out the chunk-digest array, spec §5.10).
 */
export function renameBlobs(bootstrap: Buffer, renames: ReadonlyMap<string, string>): Buffer {
  const out = Buffer.from(bootstrap);
  const count = out.readUInt16LE(EROFS_SUPER_OFFSET + 86);
  const tableOffset = Number(out.readBigUInt64LE(RAFS_V6_EXT_SUPER_OFFSET + 8));
  for (let i = 0; i < count; i++) {
    for (const at of [tableOffset + i * BLOB_ENTRY_SIZE, DEVT_SLOT_OFF * DEVICE_SLOT_SIZE + i * DEVICE_SLOT_SIZE]) {
      const id = out.subarray(at, at + 64).toString('latin1').replace(/\0+$/, '');
      const next = renames.get(id);
      if (next === undefined) continue;
      if (next.length === 0 || next.length > Limits.MAX_BLOB_ID) throw new RangeError(`invalid blob id ${next}`);
      out.fill(0, at, at + 64);
      out.write(next, at, 'latin1');
    }
  }
  return out;
}
