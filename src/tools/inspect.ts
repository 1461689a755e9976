/**
 * `inspect`: a description of an image for people (text) and machines (JSON): superblock,
 * blobs, prefetch table, the tree, or the chunks of one file.
 */
import { UsageError, toHex } from '../base/index.js';
import { compressorName } from '../format/compression.js';
import { BlobFeature, ChunkFlag, SuperFlags } from '../format/constants.js';
import { digesterName } from '../format/digest.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import { paxTimeText } from '../format/tar.js';
import { resolvePath, walkImage } from './walk.js';

function flagNames(bits: bigint | number, table: Record<string, bigint | number>): string[] {
  const b = BigInt(bits);
  return Object.entries(table)
    .filter(([name, v]) => !name.endsWith('MASK') && (b & BigInt(v)) !== 0n)
    .map(([name]) => name);
}

export function describeBlob(b: BlobInfo): Record<string, unknown> {
  return {
    index: b.index,
    id: b.id,
    chunkCount: b.chunkCount,
    compressedSize: b.compressedSize,
    uncompressedSize: b.uncompressedSize,
    compressor: compressorName(b.compressor),
    digester: digesterName(b.digester),
    features: flagNames(b.features, BlobFeature),
    meta: { ...b.meta, compressor: compressorName(b.meta.compressor) },
    toc: b.tocSize > 0 ? { size: b.tocSize, digest: toHex(b.tocDigest) } : null,
    // The key is in the bootstrap for anyone who has it; a listing need not repeat it.
    cipher: b.cipher !== undefined ? 'aes-128-xts' : null,
    // A ZRan blob (an original gzip layer): the blob holding its chunk info.
    ...(b.separateMeta !== undefined ? { metaBlob: { id: toHex(b.separateMeta.digest), size: b.separateMeta.size } } : {}),
  };
}

export interface InspectSummary {
  version: number;
  flags: string[];
  chunkSize: number;
  compressor: string;
  digester: string;
  inodes: number;
  bootstrapSize: number;
  blobs: Array<Record<string, unknown>>;
  prefetch: number[];
  tree?: Array<Record<string, unknown>>;
}

export function inspectImage(image: RafsImage, withTree: boolean): InspectSummary {
  const summary: InspectSummary = {
    version: image.version,
    flags: flagNames(image.flags, SuperFlags),
    chunkSize: image.chunkSize,
    compressor: compressorName(image.compressor),
    digester: digesterName(image.digester),
    inodes: image.inodeCount,
    bootstrapSize: image.size,
    blobs: image.blobs.map(describeBlob),
    prefetch: [...image.prefetch],
  };
  if (withTree) {
    summary.tree = [...walkImage(image)].map(({ path, attr }) => ({
      path,
      kind: attr.kind,
      mode: attr.mode.toString(8),
      uid: attr.uid,
      gid: attr.gid,
      size: attr.size,
      nlink: attr.nlink,
      mtime: paxTimeText(attr.mtimeSec, attr.mtimeNsec),
      ino: attr.ino,
      ...(attr.kind === 'symlink' ? { target: Buffer.from(image.readlink(attr.ino)).toString() } : {}),
      ...(attr.kind === 'char' || attr.kind === 'block' ? { rdev: attr.rdev } : {}),
    }));
  }
  return summary;
}

export function inspectPath(image: RafsImage, path: string): Record<string, unknown> {
  const ino = resolvePath(image, path);
  if (ino === undefined) throw new UsageError(`${path}: no such file in the image`);
  const attr = image.getAttr(ino);
  const out: Record<string, unknown> = { path, ...attr, mode: attr.mode.toString(8) };
  if (attr.hasXattrs) {
    out.xattrs = image.xattrs(ino).map((x) => ({ name: Buffer.from(x.name).toString(), value: Buffer.from(x.value).toString('base64') }));
  }
  if (attr.kind === 'file') {
    out.chunks = image.fileChunks(ino).map((c) => ({
      fileOffset: c.fileOffset,
      blob: image.blobs[c.blobIndex]?.id,
      blobIndex: c.blobIndex,
      index: c.index,
      compressed: (c.flags & ChunkFlag.COMPRESSED) !== 0,
      ...(c.flags & ChunkFlag.ENCRYPTED ? { encrypted: true } : {}),
      compressedOffset: c.compressedOffset,
      compressedSize: c.compressedSize,
      ...(c.batch !== undefined ? { batch: c.batch } : {}),
      ...(c.zran !== undefined ? { zran: { offset: c.zran.offset, size: c.zran.size, dictionary: c.zran.at.dict.length, bits: c.zran.at.bits } } : {}),
      uncompressedOffset: c.uncompressedOffset,
      uncompressedSize: c.uncompressedSize,
      digest: toHex(c.digest),
    }));
  }
  return out;
}

/** The text rendering of `inspectImage`. */
export function formatSummary(s: InspectSummary): string {
  const lines = [
    `RAFS v${s.version}, chunk size ${s.chunkSize}, ${s.compressor}, ${s.digester}, ${s.inodes} inodes, bootstrap ${s.bootstrapSize} bytes`,
    `flags: ${s.flags.join(' ')}`,
    `blobs (${s.blobs.length}):`,
  ];
  for (const b of s.blobs) {
    lines.push(`  [${String(b.index)}] ${String(b.id)}  chunks ${String(b.chunkCount)}  compressed ${String(b.compressedSize)}  uncompressed ${String(b.uncompressedSize)}  ${String(b.compressor)}  ${(b.features as string[]).join(',')}`);
    const meta = b.metaBlob as { id: string; size: number } | undefined;
    if (meta !== undefined) lines.push(`      chunk info in meta blob ${meta.id} (${meta.size} bytes)`);
  }
  if (s.prefetch.length > 0) lines.push(`prefetch table: ${s.prefetch.join(' ')}`);
  if (s.tree !== undefined) {
    lines.push('tree:');
    for (const t of s.tree) {
      const extra = t.target !== undefined ? ` -> ${String(t.target)}` : '';
      lines.push(`  ${String(t.mode).padStart(7)} ${String(t.uid)}:${String(t.gid)} ${String(t.size).padStart(10)} ${String(t.path)}${extra}`);
    }
  }
  return lines.join('\n');
}
