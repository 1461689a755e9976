/**
 * RAFS v6 on-disk structures (spec §3): the EROFS superblock, the RAFS extended superblock,
 * device slots and the 256-byte blob table entry. Inodes, xattrs and dirents are in `inode.ts`.
 *
 * EROFS superblock at 1024 (spec §3.2), 128 bytes:
 * | off | size | type    | field              |
 * |-----|------|---------|--------------------|
 * | 0   | 4    | u32     | s_magic (0xE0F5E1E2) |
 * | 4   | 4    | u32     | s_checksum         |
 * | 8   | 4    | u32     | s_feature_compat   |
 * | 12  | 1    | u8      | s_blkszbits        |
 * | 13  | 1    | u8      | s_extslots         |
 * | 14  | 2    | u16     | s_root_nid         |
 * | 16  | 8    | u64     | s_inos             |
 * | 24  | 8    | u64     | s_build_time       |
 * | 32  | 4    | u32     | s_build_time_nsec  |
 * | 36  | 4    | u32     | s_blocks           |
 * | 40  | 4    | u32     | s_meta_blkaddr     |
 * | 44  | 4    | u32     | s_xattr_blkaddr    |
 * | 48  | 16   | u8[16]  | s_uuid             |
 * | 64  | 16   | u8[16]  | s_volume_name      |
 * | 80  | 4    | u32     | s_feature_incompat |
 * | 84  | 2    | u16     | s_u                |
 * | 86  | 2    | u16     | s_extra_devices    |
 * | 88  | 2    | u16     | s_devt_slotoff     |
 * | 90  | 38   | u8[38]  | s_reserved         |
 *
 * RAFS v6 extended superblock at 1152 (spec §3.3), 256 bytes:
 * | off | size | type    | field                   |
 * |-----|------|---------|-------------------------|
 * | 0   | 8    | u64     | s_flags                 |
 * | 8   | 8    | u64     | s_blob_table_offset     |
 * | 16  | 4    | u32     | s_blob_table_size       |
 * | 20  | 4    | u32     | s_chunk_size            |
 * | 24  | 8    | u64     | s_chunk_table_offset    |
 * | 32  | 8    | u64     | s_chunk_table_size      |
 * | 40  | 8    | u64     | s_prefetch_table_offset |
 * | 48  | 4    | u32     | s_prefetch_table_size   |
 * | 52  | 4    | u32     | s_padding               |
 * | 56  | 200  | u8[200] | s_reserved              |
 *
 * Device slot (spec §3.4), 128 bytes: blob_id u8[64] @0, blocks u32 @64, mapped_blkaddr u32 @68,
 * reserved u8[56] @72.
 *
 * Blob table entry (spec §3.5), 256 bytes:
 * | off | size | type   | field                |
 * |-----|------|--------|----------------------|
 * | 0   | 64   | u8[64] | blob_id              |
 * | 64  | 4    | u32    | blob_index           |
 * | 68  | 4    | u32    | chunk_size           |
 * | 72  | 4    | u32    | chunk_count          |
 * | 76  | 4    | u32    | compression_algo     |
 * | 80  | 4    | u32    | digest_algo          |
 * | 84  | 4    | u32    | features             |
 * | 88  | 8    | u64    | compressed_size      |
 * | 96  | 8    | u64    | uncompressed_size    |
 * | 104 | 4    | u32    | blob_toc_size        |
 * | 108 | 4    | u32    | ci_compressor        |
 * | 112 | 8    | u64    | ci_offset            |
 * | 120 | 8    | u64    | ci_compressed_size   |
 * | 128 | 8    | u64    | ci_uncompressed_size |
 * | 136 | 32   | u8[32] | blob_toc_digest      |
 * | 168 | 32   | u8[32] | blob_meta_digest     |
 * | 200 | 8    | u64    | blob_meta_size       |
 * | 208 | 8    | u8[8]  | cipher_iv            |
 * | 216 | 4    | u32    | cipher_algo          |
 * | 220 | 36   | u8[36] | reserved             |
 */
import { type ByteReader, type ByteWriter, FormatError, isPowerOfTwo } from '../../base/index.js';
import { compressorFromNumber, maxDecompressedSize } from '../compression.js';
import { type CipherContext, XTS_IV_SIZE, XTS_KEY_SIZE } from '../cipher.js';
import { BlobFeature, Cipher, Limits, SUPER_FLAGS_KNOWN, SuperFlags } from '../constants.js';
import { digesterFromNumber } from '../digest.js';
import type { BlobInfo } from '../image.js';
import { checkBlobId } from '../names.js';

export const EROFS_MAGIC = 0xe0f5e1e2;
export const EROFS_SUPER_OFFSET = 1024;
export const RAFS_V6_EXT_SUPER_OFFSET = 1152;
export const EROFS_FEATURE_COMPAT_RAFS_V6 = 0x4000_0000;
export const EROFS_FEATURE_INCOMPAT_CHUNKED_FILE = 0x4;
export const EROFS_FEATURE_INCOMPAT_DEVICE_TABLE = 0x8;
export const RAFS_V6_INCOMPAT = EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE;
export const DEVT_SLOT_OFF = 11;
export const DEVICE_SLOT_SIZE = 128;
export const BLOB_ENTRY_SIZE = 256;
export const BLOCK_BITS = 12;
export const BLOCK_SIZE = 4096;

export interface V6SuperBlock {
  blkszbits: number;
  rootNid: number;
  inos: number;
  blocks: number;
  metaBlkaddr: number;
  featureIncompat: number;
  extraDevices: number;
  devtSlotoff: number;
  flags: bigint;
  blobTableOffset: number;
  blobTableSize: number;
  chunkSize: number;
  chunkTableOffset: number;
  chunkTableSize: number;
  prefetchTableOffset: number;
  prefetchTableSize: number;
}

export function isV6(r: ByteReader): boolean {
  return (
    r.has(EROFS_SUPER_OFFSET, 12) &&
    r.u32(EROFS_SUPER_OFFSET) === EROFS_MAGIC &&
    (r.u32(EROFS_SUPER_OFFSET + 8) & EROFS_FEATURE_COMPAT_RAFS_V6) !== 0
  );
}

function countBits(x: bigint): number {
  let n = 0;
  for (; x; x &= x - 1n) n++;
  return n;
}

export function decodeV6SuperBlock(r: ByteReader): V6SuperBlock {
  const s = EROFS_SUPER_OFFSET;
  const e = RAFS_V6_EXT_SUPER_OFFSET;
  r.check(0, 4096, 'v6 superblock block');
  const sb: V6SuperBlock = {
    blkszbits: r.u8(s + 12),
    rootNid: r.u16(s + 14),
    inos: r.u64(s + 16, 's_inos'),
    blocks: r.u32(s + 36),
    metaBlkaddr: r.u32(s + 40),
    featureIncompat: r.u32(s + 80),
    extraDevices: r.u16(s + 86),
    devtSlotoff: r.u16(s + 88),
    flags: r.u64n(e),
    blobTableOffset: r.u64(e + 8, 's_blob_table_offset'),
    blobTableSize: r.u32(e + 16),
    chunkSize: r.u32(e + 20),
    chunkTableOffset: r.u64(e + 24, 's_chunk_table_offset'),
    chunkTableSize: r.u64(e + 32, 's_chunk_table_size'),
    prefetchTableOffset: r.u64(e + 40, 's_prefetch_table_offset'),
    prefetchTableSize: r.u32(e + 48),
  };
  const bad = (m: string): never => {
    throw new FormatError(`${r.what}: ${m}`);
  };
  if (r.u32(s + 4) !== 0) bad('s_checksum must be 0');
  if (sb.blkszbits !== BLOCK_BITS) {
    if (sb.blkszbits === 9 && sb.flags & SuperFlags.TARTFS_MODE) bad('TARFS-mode images (512-byte blocks) are not supported');
    bad(`unsupported block size 2^${sb.blkszbits}`);
  }
  if (r.length % BLOCK_SIZE !== 0) bad(`size ${r.length} is not a multiple of the 4096-byte block`);
  if (sb.inos === 0) bad('s_inos is 0');
  if (r.u32(s + 44) !== 0) bad('shared xattrs (s_xattr_blkaddr) are not supported by RAFS v6');
  if (sb.featureIncompat !== RAFS_V6_INCOMPAT) bad(`s_feature_incompat is 0x${sb.featureIncompat.toString(16)}, not 0xc`);
  if (sb.devtSlotoff !== DEVT_SLOT_OFF) bad(`s_devt_slotoff is ${sb.devtSlotoff}, not 11`);
  if (sb.metaBlkaddr * BLOCK_SIZE > r.length) bad(`s_meta_blkaddr ${sb.metaBlkaddr} lies past the end`);
  if ((sb.flags & ~SUPER_FLAGS_KNOWN) !== 0n) bad(`unknown superblock flags 0x${sb.flags.toString(16)}`);
  const comp = SuperFlags.COMPRESSION_NONE | SuperFlags.COMPRESSION_LZ4 | SuperFlags.COMPRESSION_GZIP | SuperFlags.COMPRESSION_ZSTD;
  if (countBits(sb.flags & comp) !== 1) bad('superblock flags must name exactly one compressor');
  if (countBits(sb.flags & (SuperFlags.HASH_BLAKE3 | SuperFlags.HASH_SHA256)) !== 1) bad('superblock flags must name exactly one digester');
  if (!isPowerOfTwo(sb.chunkSize) || sb.chunkSize < Limits.MIN_CHUNK_SIZE || sb.chunkSize > Limits.MAX_CHUNK_SIZE) {
    bad(`invalid chunk size ${sb.chunkSize}`);
  }
  if (sb.extraDevices > Limits.MAX_V6_BLOBS) bad(`${sb.extraDevices} devices exceed the limit of ${Limits.MAX_V6_BLOBS}`);
  const devEnd = sb.devtSlotoff * DEVICE_SLOT_SIZE + sb.extraDevices * DEVICE_SLOT_SIZE;
  if (sb.blobTableSize !== sb.extraDevices * BLOB_ENTRY_SIZE) {
    bad(`blob table of ${sb.blobTableSize} bytes for ${sb.extraDevices} devices`);
  }
  const tables: Array<[string, number, number]> = [
    ['blob table', sb.blobTableOffset, sb.blobTableSize],
    ['chunk table', sb.chunkTableOffset, sb.chunkTableSize],
    ['prefetch table', sb.prefetchTableOffset, sb.prefetchTableSize],
  ];
  for (const [name, off, size] of tables) {
    if (size === 0) continue;
    if (off < BLOCK_SIZE || off < devEnd || off + size > r.length) bad(`the ${name} (offset ${off}, ${size} bytes) is misplaced`);
  }
  if (sb.blobTableSize > 0 && sb.blobTableOffset % BLOCK_SIZE !== 0) bad('the blob table is not block aligned');
  if (sb.chunkTableSize % 80 !== 0) bad(`chunk table size ${sb.chunkTableSize} is not a multiple of 80`);
  if (sb.prefetchTableSize % 4 !== 0) bad(`prefetch table size ${sb.prefetchTableSize} is not a multiple of 4`);
  for (let i = 0; i < tables.length; i++) {
    for (let j = i + 1; j < tables.length; j++) {
      const [na, oa, sa] = tables[i] as [string, number, number];
      const [nb, ob, sz] = tables[j] as [string, number, number];
      if (sa > 0 && sz > 0 && oa < ob + sz && ob < oa + sa) bad(`the ${na} overlaps the ${nb}`);
    }
  }
  return sb;
}

export function decodeBlobEntry(r: ByteReader, off: number, index: number, sb: V6SuperBlock): BlobInfo {
  const where = `v6 blob table entry ${index}`;
  r.check(off, BLOB_ENTRY_SIZE, where);
  const id = checkBlobId(r.paddedString(off, 64), where);
  if (r.u32(off + 64) !== index) throw new FormatError(`${where}: blob_index is ${r.u32(off + 64)}`);
  const chunkSize = r.u32(off + 68);
  if (chunkSize !== sb.chunkSize) throw new FormatError(`${where}: chunk size ${chunkSize} differs from the superblock's`);
  const features = r.u32(off + 84);
  if ((features & 0xffff & ~0x0fff) !== 0 || (features & BlobFeature.V5_NO_EXT_BLOB_TABLE) !== 0) {
    throw new FormatError(`${where}: unknown incompatible blob features 0x${features.toString(16)}`);
  }
  const chunkCount = r.u32(off + 72);
  if (chunkCount > Limits.MAX_CHUNKS_PER_BLOB + 1) throw new FormatError(`${where}: ${chunkCount} chunks exceed the limit`);
  const meta = {
    compressor: compressorFromNumber(r.u32(off + 108), where),
    offset: r.u64(off + 112, 'ci_offset'),
    compressedSize: r.u64(off + 120, 'ci_compressed_size'),
    uncompressedSize: r.u64(off + 128, 'ci_uncompressed_size'),
  };
  if (meta.compressedSize > meta.uncompressedSize) throw new FormatError(`${where}: ci_compressed_size exceeds ci_uncompressed_size`);
  if (meta.uncompressedSize > maxDecompressedSize(meta.compressor, meta.compressedSize)) {
    throw new FormatError(`${where}: ${meta.uncompressedSize} bytes of chunk info cannot come from ${meta.compressedSize} stored bytes`);
  }
  const v2 = (features & BlobFeature.CHUNK_INFO_V2) !== 0;
  const special = (features & (BlobFeature.BATCH | BlobFeature.ZRAN | BlobFeature.ENCRYPTED)) !== 0;
  const generated = (features & (BlobFeature.IS_CHUNKDICT_GENERATED | BlobFeature.TARFS)) !== 0;
  if (meta.uncompressedSize > 0 && !generated) {
    if (special && !v2) throw new FormatError(`${where}: batch, zran or encrypted blobs need chunk info v2`);
    const entry = v2 ? 24 : 16;
    if (special ? meta.uncompressedSize < chunkCount * entry : meta.uncompressedSize !== chunkCount * entry) {
      throw new FormatError(`${where}: ${meta.uncompressedSize} bytes of chunk info for ${chunkCount} chunks`);
    }
  }
  let cipher: CipherContext | undefined;
  if (features & BlobFeature.ENCRYPTED) {
    const algo = r.u32(off + 216);
    if (algo !== Cipher.Aes128Xts) throw new FormatError(`${where}: an encrypted blob with cipher ${algo} (only ${Cipher.Aes128Xts}, AES-128-XTS, is defined)`);
    // The key in blob_meta_digest; the tweak in blob_meta_size (its 8 bytes as stored) and cipher_iv.
    cipher = { key: r.slice(off + 168, XTS_KEY_SIZE), iv: r.slice(off + 200, XTS_IV_SIZE) };
  }
  let separateMeta: BlobInfo['separateMeta'];
  if (features & BlobFeature.SEPARATE) {
    if (cipher !== undefined) throw new FormatError(`${where}: an encrypted blob with a separate blob meta`);
    separateMeta = { digest: r.slice(off + 168, 32), size: r.u64(off + 200, 'blob_meta_size') };
  }
  return {
    index,
    id,
    chunkSize,
    chunkCount,
    compressor: compressorFromNumber(r.u32(off + 76), where),
    digester: digesterFromNumber(r.u32(off + 80), where),
    features,
    compressedSize: r.u64(off + 88, 'blob compressed_size'),
    uncompressedSize: r.u64(off + 96, 'blob uncompressed_size'),
    meta,
    tocSize: r.u32(off + 104),
    tocDigest: r.slice(off + 136, 32),
    readahead: { offset: 0, size: 0 },
    ...(cipher !== undefined ? { cipher } : {}),
    ...(separateMeta !== undefined ? { separateMeta } : {}),
  };
}

export function encodeBlobEntry(w: ByteWriter, b: BlobInfo): void {
  const start = w.length;
  const id = Buffer.from(b.id, 'latin1');
  if (id.length === 0 || id.length > Limits.MAX_BLOB_ID) throw new RangeError(`invalid blob id ${b.id}`);
  w.bytes(id).zeros(64 - id.length);
  w.u32(b.index).u32(b.chunkSize).u32(b.chunkCount).u32(b.compressor).u32(b.digester).u32(b.features);
  w.u64(b.compressedSize).u64(b.uncompressedSize).u32(b.tocSize).u32(b.meta.compressor);
  w.u64(b.meta.offset).u64(b.meta.compressedSize).u64(b.meta.uncompressedSize);
  w.bytes(b.tocDigest.length === 32 ? b.tocDigest : new Uint8Array(32));
  if (b.cipher !== undefined) {
    if (!(b.features & BlobFeature.ENCRYPTED)) throw new RangeError(`blob ${b.id}: a cipher without the ENCRYPTED feature`);
    // blob_meta_digest, blob_meta_size ‖ cipher_iv (the tweak's 16 bytes in order), cipher_algo
    w.bytes(b.cipher.key).bytes(b.cipher.iv).u32(Cipher.Aes128Xts).zeros(36);
  } else if (b.separateMeta !== undefined) {
    if (!(b.features & BlobFeature.SEPARATE) || b.separateMeta.digest.length !== 32) throw new RangeError(`blob ${b.id}: an invalid separate blob meta`);
    w.bytes(b.separateMeta.digest).u64(b.separateMeta.size).zeros(8 + 4 + 36); // cipher_iv, cipher_algo, reserved
  } else {
    if (b.features & BlobFeature.ENCRYPTED) throw new RangeError(`blob ${b.id}: ENCRYPTED without a cipher`);
    w.zeros(32 + 8 + 8 + 4 + 36); // blob_meta_digest, blob_meta_size, cipher_iv, cipher_algo, reserved
  }
  if (w.length - start !== BLOB_ENTRY_SIZE) throw new Error('blob entry size mismatch');
}
