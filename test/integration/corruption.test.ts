/**
 * Corrupted images through the CLI. (a) A byte flipped in a chunk's stored bytes makes `check` fail
 * naming the file and the chunk; a byte flipped in the blob meta (header or CI array) or the ToC
 * makes it fail naming the blob — for the Nydus vectors and Damselfly-built images (zstd,
 * lz4_block, none). (b) Truncated, garbage and hostile bootstraps make `inspect` and `check` exit
 * non-zero with a clear message, quickly, without a TypeError/RangeError stack.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cp, lstat, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ChunkInfo } from '../../src/format/chunk-info.js';
import { TAR_HEADER_SIZE } from '../../src/format/blob/tar-header.js';
import { TOC_ENTRY_SIZE } from '../../src/format/blob/toc.js';
import { BlobFeature } from '../../src/format/constants.js';
import type { BlobInfo } from '../../src/format/image.js';
import { Layout } from '../../src/format/v6/inode.js';
import { RafsV6Image } from '../../src/format/v6/reader.js';
import { nativeCodecs } from '../../src/native/index.js';
import { loadImage } from '../../src/storage/open-image.js';
import { walkImage } from '../../src/tools/walk.js';
import { type RunResult, VECTORS, damselfly, damselflyOk, vectorsMissing } from '../helpers/env.js';
import { prng } from '../helpers/tree.js';

const INLINED_BLOB = '2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca';
const COMPRESSORS = ['zstd', 'lz4_block', 'none'] as const;
const skipVectors = vectorsMissing();

/** Where an image's files are: a bootstrap and a blob directory, or one blob with an inlined bootstrap. */
interface ImageFiles {
  bootstrap?: string;
  blob?: string;
  blobDir: string;
}

function imageArgs(f: ImageFiles): string[] {
  return f.blob !== undefined ? ['--blob', f.blob] : ['--bootstrap', f.bootstrap as string, '--blob-dir', f.blobDir];
}

interface ImageCase {
  name: string;
  /** The image as found (never modified). */
  files: () => ImageFiles;
}

/** A private copy of the image's blobs in `dir`; the bootstrap file itself is only read. */
async function copyImage(f: ImageFiles, dir: string): Promise<ImageFiles> {
  const blobDir = join(dir, 'blobs');
  await cp(f.blobDir, blobDir, { recursive: true });
  return f.blob !== undefined ? { blob: join(blobDir, basename(f.blob)), blobDir } : { bootstrap: f.bootstrap as string, blobDir };
}

async function flipByte(path: string, offset: number): Promise<void> {
  const b = await readFile(path);
  assert.ok(offset >= 0 && offset < b.length, `offset ${offset} lies inside ${path}`);
  b[offset] = (b[offset] as number) ^ 0x5a;
  await writeFile(path, b);
}

interface Target {
  path: string;
  /** Position of the chunk in the file's chunk list (what check reports as "chunk N"). */
  position: number;
  chunk: ChunkInfo;
  blob: BlobInfo;
  blobFile: string;
}

/** A chunk used by exactly one file (check reports each chunk at its first use), late in its file. */
async function findChunk(f: ImageFiles): Promise<Target> {
  const loaded = await loadImage(nativeCodecs, f.blob !== undefined ? { blob: f.blob } : { bootstrap: f.bootstrap as string });
  const { image } = loaded;
  const uses = new Map<string, Array<{ path: string; position: number; chunk: ChunkInfo }>>();
  const seen = new Set<number>();
  for (const { path, attr } of walkImage(image)) {
    if (attr.kind !== 'file' || seen.has(attr.ino)) continue;
    seen.add(attr.ino);
    image.fileChunks(attr.ino).forEach((chunk, position) => {
      const key = `${chunk.blobIndex}:${chunk.index}`;
      uses.set(key, [...(uses.get(key) ?? []), { path, position, chunk }]);
    });
  }
  const single = [...uses.values()].filter((u) => u.length === 1).map((u) => u[0] as { path: string; position: number; chunk: ChunkInfo });
  single.sort((a, b) => b.position - a.position || b.chunk.compressedSize - a.chunk.compressedSize);
  const best = single[0];
  assert.ok(best !== undefined, 'the image has a chunk used by one file only');
  const blob = image.blobs[best.chunk.blobIndex] as BlobInfo;
  return { ...best, blob, blobFile: loaded.blobFiles.get(blob.id) ?? join(f.blobDir, blob.id) };
}

async function checkFails(f: ImageFiles): Promise<string> {
  const r = await damselfly(['check', ...imageArgs(f)]);
  assert.notEqual(r.code, 0, `check must fail:\n${r.stdout}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /TypeError|RangeError|internal error/);
  assert.match(r.stdout, /\nFAILED\n$/);
  return r.stdout;
}

describe('check reports corrupted blobs', () => {
  let work: string;
  const cases: ImageCase[] = [];
  if (skipVectors === undefined) {
    for (const v of ['v5-sha256-uncompressed', 'v6-blake3-zstd']) {
      cases.push({ name: `Nydus ${v}`, files: () => ({ bootstrap: join(VECTORS, v, 'image.boot'), blobDir: join(VECTORS, v, 'blobs') }) });
    }
    const dir = join(VECTORS, 'v6-inlined-bootstrap');
    cases.push({ name: 'Nydus v6-inlined-bootstrap', files: () => ({ blob: join(dir, INLINED_BLOB), blobDir: dir }) });
  }
  for (const c of COMPRESSORS) {
    cases.push({ name: `Damselfly ${c}`, files: () => ({ bootstrap: join(work, c, 'boot'), blobDir: join(work, c, 'blobs') }) });
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-corruption-'));
    await makeSource(join(work, 'src'));
    for (const c of COMPRESSORS) {
      await damselflyOk(['build', '--compressor', c, '--chunk-size', '4K', '--bootstrap', join(work, c, 'boot'), '--blob-dir', join(work, c, 'blobs'), join(work, 'src')]);
    }
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  for (const c of cases) {
    test(`${c.name}: a flipped chunk byte names the file and the chunk`, async () => {
      const dir = await mkdtemp(join(work, 'case-'));
      const f = await copyImage(c.files(), dir);
      assert.match((await damselfly(['check', ...imageArgs(f)])).stdout, /\nOK\n$/, 'the intact copy passes');
      const t = await findChunk(f);
      await flipByte(t.blobFile, t.chunk.compressedOffset + Math.floor(t.chunk.compressedSize / 2));
      const out = await checkFails(f);
      assert.ok(out.includes(`PROBLEM (${t.path}, blob ${t.blob.id}, chunk ${t.position}): file ${t.path} chunk ${t.position}`), `names ${t.path} chunk ${t.position}:\n${out}`);
      assert.match(out, /digest .* does not match|CRC-32C|corrupt|decompressed to/);
    });

    test(`${c.name}: export and unpack of an image with a flipped chunk byte fail and leave no partial file`, async () => {
      const dir = await mkdtemp(join(work, 'case-'));
      const f = await copyImage(c.files(), dir);
      const t = await findChunk(f);
      await flipByte(t.blobFile, t.chunk.compressedOffset + Math.floor(t.chunk.compressedSize / 2));
      const views = join(dir, 'views');
      await mkdir(views);
      const r = await damselfly(['export', ...imageArgs(f), '--blob-views', views]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^damselfly: .*(digest|CRC-32C|corrupt|decompress)/m);
      assert.deepEqual(await readdir(views), [], 'no view, whole or partial, and no temporary file');
      // unpack: the file with the bad chunk is not there (the others written before it may be).
      const tree = join(dir, 'tree');
      const u = await damselfly(['unpack', ...imageArgs(f), '--output', tree]);
      assert.equal(u.code, 1, u.stderr);
      assert.match(u.stderr, /^damselfly: .*(digest|CRC-32C|corrupt|decompress)/m);
      await assert.rejects(lstat(join(tree, t.path)), { code: 'ENOENT' }, `${t.path} must not be left with a hole`);
      const tar = join(dir, 'tree.tar');
      const a = await damselfly(['unpack', ...imageArgs(f), '--tar', tar]);
      assert.equal(a.code, 1, a.stderr);
      await assert.rejects(lstat(tar), { code: 'ENOENT' }, 'no truncated archive');
      if (!t.blob.device?.mappedBlkaddr) return; // no block image of it (v5, or v6 before nydus 2.2)
      // A block image already there stays as it was.
      const block = join(dir, 'out', 'image.erofs');
      await mkdir(join(dir, 'out'));
      await writeFile(block, 'the previous export');
      const b = await damselfly(['export', ...imageArgs(f), '--block', block]);
      assert.equal(b.code, 1, b.stderr);
      assert.match(b.stderr, /^damselfly: .*(digest|CRC-32C|corrupt|decompress)/m);
      assert.equal(await readFile(block, 'utf8'), 'the previous export');
      assert.deepEqual(await readdir(join(dir, 'out')), ['image.erofs']);
    });

    test(`${c.name}: a flipped blob meta or ToC byte (v5: any blob byte) names the blob`, async () => {
      const dir = await mkdtemp(join(work, 'case-'));
      const f = await copyImage(c.files(), dir);
      const { image, blobFiles } = await loadImage(nativeCodecs, f.blob !== undefined ? { blob: f.blob } : { bootstrap: f.bootstrap as string });
      const blob = image.blobs[0] as BlobInfo;
      const file = blobFiles.get(blob.id) ?? join(f.blobDir, blob.id);
      const pristine = await readFile(file);
      const corrupt = async (offset: number, expected: RegExp): Promise<void> => {
        await flipByte(file, offset);
        const out = await checkFails(f);
        assert.match(out, new RegExp(`PROBLEM \\([^)]*blob ${blob.id}[^)]*\\): .*${expected.source}`), `offset ${offset}:\n${out}`);
        await writeFile(file, pristine);
      };
      if (image.version === 5) {
        // v5 blobs have neither blob meta nor ToC: the blob id (its SHA-256) is what guards them.
        await corrupt(pristine.length - 1, /blob content hashes to/);
        return;
      }
      const m = blob.meta;
      assert.ok(m.uncompressedSize > 0, 'the blob has blob meta');
      await corrupt(m.offset + m.compressedSize, /bad blob meta magic/);
      await corrupt(m.offset + m.compressedSize + 12, /blob meta header disagrees/); // s_ci_entries
      // Byte 9 of CI entry 0 holds bits 8–15 of the chunk's compressed offset.
      await corrupt(m.offset + (m.compressor === 0 ? 9 : Math.floor(m.compressedSize / 2)), /blob meta entry \d+ disagrees|corrupt|decompressed to|chunk info/);
      if (blob.features & BlobFeature.HAS_TOC && f.blob === undefined) {
        const tocStart = pristine.length - blob.tocSize;
        await corrupt(tocStart + 24, /the ToC does not match/); // the first entry's digest
        await corrupt(pristine.length - TAR_HEADER_SIZE + 124, /ToC|tar header/); // the header's size field
      }
    });
  }
});

/** Files with several chunks (compressible and not), a subdirectory chain and a symlink. */
async function makeSource(root: string): Promise<void> {
  await mkdir(join(root, 'a', 'b', 'c'), { recursive: true });
  await writeFile(join(root, 'a', 'text'), 'a line of compressible text\n'.repeat(1000));
  await writeFile(join(root, 'a', 'b', 'random'), randomBytes(3 * 4096 + 77));
  await writeFile(join(root, 'small'), 'small\n');
  await symlink('a/text', join(root, 'link'));
}

// ---------------------------------------------------------------------------------------------
// (b) Hostile bootstraps.

interface Hostile {
  name: string;
  bytes: Buffer;
  /** Blobs for `check` (the intact image's). */
  blobDir: string;
  /** What the error must say. */
  expect: RegExp;
  /** The bootstrap is sound and only the blobs disagree with it: inspect succeeds, check fails. */
  blobsOnly?: boolean;
}

function patch(b: Buffer, edits: Array<[offset: number, width: 1 | 2 | 4 | 8, value: number | bigint]>): Buffer {
  const out = Buffer.from(b);
  for (const [off, width, v] of edits) {
    if (width === 1) out.writeUInt8(Number(v), off);
    else if (width === 2) out.writeUInt16LE(Number(v), off);
    else if (width === 4) out.writeUInt32LE(Number(v), off);
    else out.writeBigUInt64LE(BigInt(v), off);
  }
  return out;
}

/** Offset of the dirent named `name` in directory `dirNid` of a v6 bootstrap. */
function direntOffset(img: RafsV6Image, dirNid: number, name: string): number {
  const dir = img.inode(dirNid);
  const nb = Math.ceil(dir.size / 4096);
  for (let k = 0; k < nb; k++) {
    const at = dir.layout === Layout.FLAT_INLINE && k === nb - 1 ? dir.offset + dir.isize + dir.xsize : (dir.iu + k) * 4096;
    const len = k < nb - 1 ? 4096 : dir.size - k * 4096;
    const n = img.r.u16(at + 8) / 12;
    for (let d = 0; d < n; d++) {
      const start = img.r.u16(at + 12 * d + 8);
      const end = d + 1 < n ? img.r.u16(at + 12 * (d + 1) + 8) : len;
      if (Buffer.from(img.r.slice(at + start, end - start)).toString().replace(/\0+$/, '') === name) return at + 12 * d;
    }
  }
  throw new Error(`no entry ${name} in nid ${dirNid}`);
}

function v6Cases(boot: Buffer, blobDir: string): Hostile[] {
  const img = new RafsV6Image(boot);
  const L = boot.length;
  const a = img.lookup(img.rootIno, Buffer.from('a'))?.ino as number;
  const b = img.lookup(a, Buffer.from('b'))?.ino as number;
  const root = img.inode(img.rootIno);
  const bt = img.sb.blobTableOffset;
  const ct = img.sb.chunkTableOffset;
  const c = (name: string, bytes: Buffer, expect: RegExp): Hostile => ({ name: `v6 ${name}`, bytes, blobDir, expect });
  return [
    c('truncated inside the superblock', boot.subarray(0, 1100), /v6 superblock|outside/),
    c('truncated to one block', boot.subarray(0, 4096), /outside|misplaced|past the end/),
    c('truncated by one block', boot.subarray(0, L - 4096), /outside|misplaced|past the end/),
    c('truncated by one byte', boot.subarray(0, L - 1), /multiple of the 4096-byte block/),
    c('magic on garbage', patch(prng(7, 16384), [[1024, 4, 0xe0f5e1e2], [1032, 4, 0x4000_0000]]), /v6 bootstrap: /),
    c('magic on zeros', patch(Buffer.alloc(16384), [[1024, 4, 0xe0f5e1e2], [1032, 4, 0x4000_0000]]), /v6 bootstrap: /),
    c('s_inos = 2^64-1', patch(boot, [[1040, 8, 2n ** 64n - 1n]]), /s_inos .* too large/),
    c('s_meta_blkaddr past the end', patch(boot, [[1064, 4, 0xffff_ffff]]), /s_meta_blkaddr .* past the end/),
    c('s_root_nid past the end', patch(boot, [[1038, 2, 0xffff]]), /nid 65535|outside/),
    c('s_extra_devices = 0xffff', patch(boot, [[1110, 2, 0xffff]]), /devices exceed/),
    c('s_blob_table_offset past the end', patch(boot, [[1160, 8, L]]), /blob table .* misplaced/),
    c('s_chunk_table_size huge', patch(boot, [[1184, 8, 80 * 2 ** 40]]), /chunk table .* misplaced/),
    c('s_chunk_table_offset past the end', patch(boot, [[1176, 8, L + 4096]]), /chunk table .* misplaced/),
    c('s_prefetch_table_size = 0xfffffffc', patch(boot, [[1200, 4, 0xffff_fffc]]), /prefetch table .* misplaced/),
    c('a directory loop (a/b -> /)', patch(boot, [[direntOffset(img, a, 'b'), 8, img.rootIno]]), /reached twice \(a loop\)/),
    c('a directory loop (a/b -> a)', patch(boot, [[direntOffset(img, a, 'b'), 8, a]]), /reached twice \(a loop\)/),
    c('a dirent nid past the end', patch(boot, [[direntOffset(img, b, 'c'), 8, 2 ** 40]]), /outside/),
    c('the root i_size = 2^40', patch(boot, [[root.offset + 8, 8, 2 ** 40]]), /outside|data block|name offset|name bounds/),
    c('the root i_format unknown', patch(boot, [[root.offset, 2, 0xffff]]), /unsupported i_format/),
    c('the root i_xattr_icount = 0xffff', patch(boot, [[root.offset + 2, 2, 0xffff]]), /outside/),
    c('a chunk-dict blob with ci_uncompressed_size = 2^40', patch(boot, [[bt + 84, 4, (img.blobs[0] as BlobInfo).features | 0x200], [bt + 128, 8, 2 ** 40]]), /chunk info cannot come from/),
    c('a chunk-dict blob with ci_uncompressed_size = 2 GiB', patch(boot, [[bt + 84, 4, (img.blobs[0] as BlobInfo).features | 0x200], [bt + 128, 8, 2 ** 31]]), /chunk info cannot come from/),
    c('the blob chunk_count = 2^24', patch(boot, [[bt + 72, 4, 2 ** 24]]), /bytes of chunk info for 16777216 chunks/),
    { ...c('blob ci_offset past the blob', patch(boot, [[bt + 112, 8, 2 ** 40]]), /outside blob/), blobsOnly: true },
    { ...c('blob compressed_size wrong', patch(boot, [[bt + 88, 8, 12345]]), /the blob table says 12345/), blobsOnly: true },
    { ...c('blob_toc_size wrong', patch(boot, [[bt + 104, 4, 512]]), /the ToC does not match/), blobsOnly: true },
    { ...c('a chunk stored past the blob', patch(boot, [[ct + 48, 8, 2 ** 40]]), /outside blob/), blobsOnly: true },
    { ...c('a chunk of compressed_size 0xffffffff', patch(boot, [[ct + 40, 4, 0xffff_ffff]]), /outside blob/), blobsOnly: true },
  ];
}

function v5Cases(boot: Buffer, blobDir: string): Hostile[] {
  const L = boot.length;
  const rootRec = boot.readUInt32LE(boot.readUInt32LE(32)) * 8; // inode table entry 1
  const c = (name: string, bytes: Buffer, expect: RegExp): Hostile => ({ name: `v5 ${name}`, bytes, blobDir, expect });
  return [
    c('truncated inside the superblock', boot.subarray(0, 100), /too small/),
    c('truncated after the superblock', boot.subarray(0, 8200), /misplaced|outside/),
    c('truncated by one byte', boot.subarray(0, L - 1), /outside|misplaced/),
    c('magic on garbage', patch(prng(5, 16384), [[0, 4, 0x52414653], [4, 4, 0x500]]), /v5 s_sb_size/),
    c('magic and s_sb_size on garbage', patch(prng(6, 16384), [[0, 4, 0x52414653], [4, 4, 0x500], [8, 4, 8192]]), /v5 bootstrap: /),
    c('s_inode_table_entries = 0xffffffff', patch(boot, [[56, 4, 0xffff_ffff]]), /inode table .* misplaced/),
    c('s_inodes_count = 2^53', patch(boot, [[24, 8, 2 ** 53]]), /s_inodes_count .* too large/),
    c('s_inode_table_offset past the end', patch(boot, [[32, 8, L + 8]]), /inode table .* misplaced/),
    c('s_blob_table_offset past the end', patch(boot, [[48, 8, L]]), /blob table .* misplaced/),
    c('s_prefetch_table_entries = 0xffffffff', patch(boot, [[60, 4, 0xffff_ffff]]), /prefetch table .* misplaced/),
    c('inode table entry 1 past the end', patch(boot, [[boot.readUInt32LE(32), 4, 0x1fff_ffff]]), /outside|invalid offset/),
    c('root i_child_count = 0xffffffff', patch(boot, [[rootRec + 96, 4, 0xffff_ffff]]), /out of range/),
    c('root i_child_index = 0xfffffff0', patch(boot, [[rootRec + 92, 4, 0xffff_fff0]]), /out of range/),
  ];
}

function genericCases(blobDir: string): Hostile[] {
  return [
    { name: 'an empty file', bytes: Buffer.alloc(0), blobDir, expect: /not a RAFS bootstrap/ },
    { name: '16 KiB of random bytes', bytes: prng(3, 16384), blobDir, expect: /not a RAFS bootstrap/ },
    { name: '16 KiB of zeros', bytes: Buffer.alloc(16384), blobDir, expect: /not a RAFS bootstrap/ },
  ];
}

/** What is wrong with one run of `command` on a hostile case (nothing, normally). */
function judge(h: Hostile, command: string, r: RunResult, ms: number, limitMs: number): string[] {
  const what = `${h.name}: ${command}`;
  const out = `${r.stdout}\n${r.stderr}`;
  const bad: string[] = [];
  if (ms > limitMs) bad.push(`${what} took ${ms.toFixed(0)} ms (limit ${limitMs.toFixed(0)} ms)`);
  if (h.blobsOnly === true && command === 'inspect') {
    if (r.code !== 0) bad.push(`${what} must succeed, the bootstrap is sound:\n${r.stderr}`);
    return bad;
  }
  if (r.code === 0) bad.push(`${what} exited 0`);
  if (r.code > 2) bad.push(`${what} exited ${r.code} (a crash or a signal)`);
  if (/TypeError|RangeError|internal error|\n\s+at /.test(r.stderr)) bad.push(`${what} crashed:\n${r.stderr}`);
  // check turns every error into a problem line: JavaScript's own messages there mean a reader bug.
  if (/is out of range|Cannot read propert|is not a function|is not iterable|Invalid array length|call stack/.test(out)) {
    bad.push(`${what}: a JavaScript error:\n${out}`);
  }
  if (!h.expect.test(out)) bad.push(`${what}: the message does not match ${h.expect}:\n${out.trim()}`);
  if (!/^damselfly: \S/m.test(r.stderr) && !/^PROBLEM/m.test(r.stdout)) bad.push(`${what}: no error message`);
  return bad;
}

test('export refuses chunks that overlap in the uncompressed view (the last one written won: one file read the other\'s bytes)', async () => {
  const work = await mkdtemp(join(tmpdir(), 'damselfly-overlap-'));
  try {
    await mkdir(join(work, 'src'));
    await writeFile(join(work, 'src', 'a'), Buffer.alloc(4096, 0x41));
    await writeFile(join(work, 'src', 'b'), Buffer.alloc(4096, 0x42));
    const boot = join(work, 'image.boot');
    await damselflyOk(['build', '--compressor', 'none', '--bootstrap', boot, '--blob-dir', join(work, 'blobs'), join(work, 'src')]);
    const bytes = Buffer.from(await readFile(boot));
    const image = new RafsV6Image(bytes);
    const inoOf = (name: string): number => {
      for (const it of walkImage(image)) if (it.path === `/${name}`) return it.attr.ino;
      throw new Error(`no /${name}`);
    };
    const [a, b] = [inoOf('a'), inoOf('b')];
    const ca = image.fileChunks(a)[0] as ChunkInfo;
    const cb = image.fileChunks(b)[0] as ChunkInfo;
    // b's chunk claims a's slot of the view: in the chunk table, and in b's inode's block address.
    for (let i = 0; i < image.sb.chunkTableSize / 80; i++) {
      const at = image.sb.chunkTableOffset + i * 80;
      if (bytes.readUInt32LE(at + 72) === cb.index) bytes.writeBigUInt64LE(BigInt(ca.uncompressedOffset), at + 56);
    }
    const { ino } = image.chunkIndexes(b);
    bytes.writeUInt32LE(ca.uncompressedOffset / 4096, ino.offset + ((ino.isize + ino.xsize + 7) & ~7) + 4);
    await writeFile(boot, bytes);
    await mkdir(join(work, 'views'));
    const e = await damselfly(['export', boot, '--blob-dir', join(work, 'blobs'), '--blob-views', join(work, 'views')]);
    assert.equal(e.code, 1, e.stderr);
    assert.match(e.stderr, /overlaps another in the uncompressed view/);
    assert.deepEqual(await readdir(join(work, 'views')), [], 'no view left');
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

describe('hostile bootstraps fail inspect and check quickly, with a clear message', () => {
  let work: string;
  let limitMs = 0;
  const cases: Hostile[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-hostile-'));
    await makeSource(join(work, 'src'));
    await damselflyOk(['build', '--chunk-size', '4K', '--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), join(work, 'src')]);
    cases.push(...genericCases(join(work, 'blobs')), ...v6Cases(await readFile(join(work, 'boot')), join(work, 'blobs')));
    if (skipVectors === undefined) {
      const v5 = join(VECTORS, 'v5-sha256-uncompressed');
      cases.push(...v5Cases(await readFile(join(v5, 'image.boot')), join(v5, 'blobs')));
    }
    // A second of work at most, on top of a generous allowance for starting the process.
    let startup = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await damselfly(['--help']);
      startup = Math.max(startup, performance.now() - t0);
    }
    limitMs = 1000 + 3 * startup;
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('every case: non-zero exit, the expected message, no crash, within the time limit', async (t) => {
    assert.ok(cases.length >= (skipVectors === undefined ? 44 : 31), `${cases.length} cases`);
    const failures: string[] = [];
    for (const [i, h] of cases.entries()) {
      const file = join(work, `hostile-${i}.boot`);
      await writeFile(file, h.bytes);
      for (const args of [['inspect', '--bootstrap', file], ['check', '--bootstrap', file, '--blob-dir', h.blobDir]]) {
        const t0 = performance.now();
        const r = await damselfly(args, { timeoutMs: 30_000 });
        const ms = performance.now() - t0;
        failures.push(...judge(h, args[0] as string, r, ms, limitMs));
        t.diagnostic(`${h.name}: ${args[0] as string}: exit ${r.code} in ${ms.toFixed(0)} ms: ${(r.stderr.split('\n')[0] || r.stdout.split('\n').find((l) => l.startsWith('PROBLEM'))) ?? ''}`);
      }
    }
    assert.deepEqual(failures, []);
  });

  test('an inlined bootstrap whose ToC entry claims 2 GiB is refused before any allocation', { skip: skipVectors }, async () => {
    const blob = await readFile(join(VECTORS, 'v6-inlined-bootstrap', INLINED_BLOB));
    const tocSize = Number.parseInt(blob.subarray(blob.length - TAR_HEADER_SIZE + 124, blob.length - TAR_HEADER_SIZE + 136).toString(), 8);
    const toc = blob.length - TAR_HEADER_SIZE - tocSize;
    let entry = -1;
    for (let at = toc; at < toc + tocSize; at += TOC_ENTRY_SIZE) if (blob.subarray(at + 8, at + 18).toString() === 'image.boot') entry = at;
    assert.ok(entry >= 0, 'the ToC lists image.boot');
    const file = join(work, INLINED_BLOB);
    await writeFile(file, patch(blob, [[entry + 72, 8, 2 ** 31 - 1]])); // uncompressed_size
    for (const command of ['inspect', 'check']) {
      const t0 = performance.now();
      const r = await damselfly([command, '--blob', file], { timeoutMs: 30_000 });
      assert.deepEqual(judge({ name: 'inlined 2 GiB', bytes: blob, blobDir: work, expect: /image.boot: 2147483647 bytes cannot come from \d+ stored bytes/ }, command, r, performance.now() - t0, limitMs), []);
    }
  });
});
