/**
 * Every on-disk struct: its size, and encode/decode agreement, checked against the byte values the
 * spec's worked examples give (rafs-format.md, Appendix A).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ByteReader, ByteWriter } from '../../../src/base/index.js';
import { CHUNK_INFO_SIZE, decodeChunkInfo, encodeChunkInfo } from '../../../src/format/chunk-info.js';
import { BLOB_META_HEADER_SIZE, decodeBlobMetaHeader, decodeCiEntry, encodeBlobMetaHeader, encodeCiV1 } from '../../../src/format/blob/meta.js';
import { decodeTarHeader, encodeTarHeader } from '../../../src/format/blob/tar-header.js';
import { TOC_ENTRY_SIZE, decodeTocEntries, encodeTocEntry } from '../../../src/format/blob/toc.js';
import { Compressor } from '../../../src/format/compression.js';
import { decodeDev, encodeDev } from '../../../src/format/constants.js';
import { EXTENDED_INODE_SIZE, decodeV6Inode, encodeExtendedInode, encodeXattrs, splitXattrName, xattrAreaSize, decodeXattrs } from '../../../src/format/v6/inode.js';
import { BLOB_ENTRY_SIZE, encodeBlobEntry } from '../../../src/format/v6/layout.js';
import type { BlobInfo } from '../../../src/format/image.js';

const chunk = {
  digest: Buffer.alloc(32, 7),
  blobIndex: 2,
  flags: 1,
  compressedSize: 4828,
  uncompressedSize: 16931,
  compressedOffset: 1 << 33,
  uncompressedOffset: 0x5000,
  fileOffset: 3 << 20,
  index: 0xfffffe,
  crc32: 0xdeadbeef,
};

test('chunk info is 80 bytes and round-trips', () => {
  const w = new ByteWriter();
  encodeChunkInfo(w, chunk);
  const b = w.finish();
  assert.equal(b.length, CHUNK_INFO_SIZE);
  assert.deepEqual({ ...decodeChunkInfo(new ByteReader(b, 't'), 0), digest: Buffer.alloc(32, 7) }, chunk);
});

test('chunk info v1 decodes the spec vector entries and encodes them back', () => {
  // Appendix A: CI v1 @8314 of blob be7d77….
  const e0 = Buffer.from('0000000000202204' + '0000000000b02d01', 'hex');
  const e1 = Buffer.from('0050000000704503' + 'dc120000' + '00d0b900', 'hex');
  const r = new ByteReader(Buffer.concat([e0, e1]), 'ci');
  const a = decodeCiEntry(r, 0, false);
  const b = decodeCiEntry(r, 1, false);
  assert.deepEqual([a.uncompressedOffset, a.uncompressedSize, a.compressedOffset, a.compressedSize, a.compressed], [0, 0x4223, 0, 0x12dc, true]);
  assert.deepEqual([b.uncompressedOffset, b.uncompressedSize, b.compressedOffset, b.compressedSize], [0x5000, 0x3458, 0x12dc, 0xb9e]);
  const w = new ByteWriter();
  encodeCiV1(w, a);
  encodeCiV1(w, b);
  assert.deepEqual(w.finish(), Buffer.concat([e0, e1]));
  // Sizes at the 24-bit limit survive the 20+4 bit split.
  const w2 = new ByteWriter();
  encodeCiV1(w2, { uncompressedOffset: 0xfff_ffff_f000, uncompressedSize: 1 << 24, compressedOffset: 2 ** 40 - 1, compressedSize: (1 << 24) - 1 });
  const big = decodeCiEntry(new ByteReader(w2.finish(), 'ci'), 0, false);
  assert.deepEqual([big.uncompressedOffset, big.uncompressedSize, big.compressedOffset, big.compressedSize], [0xfff_ffff_f000, 1 << 24, 2 ** 40 - 1, (1 << 24) - 1]);
});

test('chunk info v2 decodes flags, sizes and data', () => {
  const w = new ByteWriter();
  w.u64((0x11n << 56n) | (4095n << 32n) | 5n).u64((1000n << 40n) | 123456n).u64(0xabcdn);
  const e = decodeCiEntry(new ByteReader(w.finish(), 'v2'), 0, true);
  assert.deepEqual([e.uncompressedOffset, e.uncompressedSize, e.compressedOffset, e.compressedSize, e.compressed, e.flags, e.data], [5 * 4096, 4096, 123456, 1000, true, 0x11, 0xabcdn]);
  const bad = new ByteWriter();
  bad.u64(0xe0n << 56n).u64(0n).u64(0n);
  assert.throws(() => decodeCiEntry(new ByteReader(bad.finish(), 'v2'), 0, true), /invalid flags/);
});

test('blob meta header is 4096 bytes with both magics', () => {
  const h = { features: 0x70000021, ciCompressor: Compressor.None, ciEntries: 2, ciOffset: 8314, ciCompressedSize: 32, ciUncompressedSize: 32, zranOffset: 0, zranSize: 0, zranCount: 0 };
  const b = encodeBlobMetaHeader(h);
  assert.equal(b.length, BLOB_META_HEADER_SIZE);
  assert.equal(b.readUInt32LE(0), 0xb10bb10b);
  assert.equal(b.readUInt32LE(4092), 0xb10bb10b);
  assert.deepEqual(decodeBlobMetaHeader(b, 'h'), h);
  b.writeUInt32LE(0, 4092);
  assert.throws(() => decodeBlobMetaHeader(b, 'h'), /magic/);
});

test('blob table entry is 256 bytes', () => {
  const blob: BlobInfo = {
    index: 0, id: 'a'.repeat(64), chunkSize: 1 << 20, chunkCount: 2, compressor: Compressor.Zstd, digester: 0, features: 0x70000021,
    compressedSize: 14554, uncompressedSize: 0x9000, meta: { compressor: Compressor.None, offset: 8314, compressedSize: 32, uncompressedSize: 32 },
    tocSize: 0x400, tocDigest: Buffer.alloc(32, 1), readahead: { offset: 0, size: 0 },
  };
  const w = new ByteWriter();
  encodeBlobEntry(w, blob);
  assert.equal(w.length, BLOB_ENTRY_SIZE);
});

test('the extended inode is 64 bytes; xattrs use EROFS prefixes', () => {
  const w = new ByteWriter();
  const xs = [
    { ...(splitXattrName(Buffer.from('user.comment')) as { index: number; suffix: Uint8Array }), value: Buffer.from('v') },
    { ...(splitXattrName(Buffer.from('security.capability')) as { index: number; suffix: Uint8Array }), value: Buffer.alloc(20, 1) },
    { ...(splitXattrName(Buffer.from('system.posix_acl_access')) as { index: number; suffix: Uint8Array }), value: Buffer.alloc(4, 2) },
  ];
  const xsize = xattrAreaSize(xs);
  encodeExtendedInode(w, { layout: 4, xattrIcount: (xsize - 12) / 4 + 1, mode: 0o100644, size: 2 ** 40, iu: 0x28, ino: 9, uid: 3_000_000, gid: 5, mtime: 1_700_000_000, mtimeNsec: 999_999_999, nlink: 3 });
  assert.equal(w.length, EXTENDED_INODE_SIZE);
  encodeXattrs(w, xs);
  const r = new ByteReader(w.finish(), 'inode');
  const ino = decodeV6Inode(r, 0, 0);
  assert.deepEqual([ino.extended, ino.layout, ino.mode, ino.size, ino.iu, ino.uid, ino.mtimeNsec, ino.nlink, ino.xsize], [true, 4, 0o100644, 2 ** 40, 0x28, 3_000_000, 999_999_999, 3, xsize]);
  const back = decodeXattrs(r, ino).map((x) => `${Buffer.from(x.name).toString()}=${Buffer.from(x.value).toString('hex')}`);
  assert.deepEqual(back, ['user.comment=76', `security.capability=${'01'.repeat(20)}`, 'system.posix_acl_access=02020202']);
  // A time before 1970: i_mtime is signed (the kernel reads it as time64_t; nydus-image writes st_mtime as is).
  const old = new ByteWriter();
  encodeExtendedInode(old, { layout: 2, xattrIcount: 0, mode: 0o40755, size: 0, iu: 0, ino: 1, uid: 0, gid: 0, mtime: -315_360_000, mtimeNsec: 5, nlink: 2 });
  const oldBytes = old.finish();
  assert.equal(oldBytes.readBigInt64LE(32), -315_360_000n);
  assert.deepEqual(((i) => [i.mtime, i.mtimeNsec])(decodeV6Inode(new ByteReader(oldBytes, 'inode'), 0, 0)), [-315_360_000, 5]);
  assert.equal(splitXattrName(Buffer.from('system.nfs4_acl')), undefined);
  assert.equal(splitXattrName(Buffer.from('user.')), undefined);
});

test('section tar headers match Nydus byte for byte and are checked', () => {
  const h = encodeTarHeader('image.blob', 7802);
  assert.deepEqual(decodeTarHeader(h, 'h'), { name: 'image.blob', size: 7802 });
  h[0] = 0x49;
  assert.throws(() => decodeTarHeader(h, 'h'), /checksum/);
});

test('ToC entries are 128 bytes; the <= 2.2 image.blob offset quirk is undone', () => {
  const w = new ByteWriter();
  encodeTocEntry(w, { name: 'image.blob', compressor: Compressor.None, digest: Buffer.alloc(32), compressedOffset: 7802, compressedSize: 7802, uncompressedSize: 36864 });
  encodeTocEntry(w, { name: 'image.boot', compressor: Compressor.Zstd, digest: Buffer.alloc(32, 3), compressedOffset: 9, compressedSize: 501, uncompressedSize: 20480 });
  const b = w.finish();
  assert.equal(b.length, 2 * TOC_ENTRY_SIZE);
  const [blob, boot] = decodeTocEntries(b, 'toc');
  assert.equal(blob?.compressedOffset, 0);
  assert.equal(boot?.compressor, Compressor.Zstd);
  assert.throws(() => decodeTocEntries(b.subarray(1), 'toc'), /multiple of 128/);
});

test('device numbers use the Linux new_encode_dev layout', () => {
  assert.equal(encodeDev(1, 3), 0x103);
  assert.equal(encodeDev(8, 1), 0x801);
  assert.deepEqual(decodeDev(encodeDev(300, 70000)), { major: 300, minor: 70000 });
});

test('section tar headers: sizes of 8 GiB and more in base-256, as GNU tar and nydus write them', () => {
  for (const size of [0, 4096, 2 ** 33 - 1, 2 ** 33, 2 ** 36, 100 * 2 ** 30, Number.MAX_SAFE_INTEGER]) {
    const h = encodeTarHeader('image.blob', size);
    assert.equal(decodeTarHeader(h, 'h').size, size, `size ${size}`);
    // GNU's base-256 form from 8 GiB on: the field's top bit set (Python's tarfile reads it back).
    assert.equal((h[124] as number) >= 0x80, size >= 2 ** 33, `size ${size}`);
  }
  // The octal field once ran into mtime from 8 GiB, and from 64 GiB lost its last digit to it.
  assert.equal(encodeTarHeader('image.blob', 2 ** 36).subarray(136, 148).toString('latin1'), '00000000000\0');
});
