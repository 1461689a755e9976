/**
 * Seeded mutation fuzzing of the RAFS v5 and v6 bootstrap readers. Seeds: the Nydus v5 vector, the
 * Nydus v6 vectors (plain and inlined) and a v6 image Damselfly builds in-process. Each mutant
 * (byte flips, boundary-value overwrites, truncation, garbage tails, and structure-aware overwrites
 * of superblock, table, inode, xattr, dirent, chunk-index and chunk-info fields) is opened and
 * walked through every reader method; it must succeed or throw a DamselflyError within a second.
 * Mutants run in forked workers, so that a hang is caught and named instead of stalling the suite.
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { link, mkdir, readFile, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import { DamselflyError } from '../../src/base/index.js';
import { silentLogger } from '../../src/base/log.js';
import { build } from '../../src/builder/build.js';
import { Compressor } from '../../src/format/compression.js';
import { Digester, S_IFMT, S_IFREG } from '../../src/format/constants.js';
import { pathToString } from '../../src/format/image.js';
import { openBootstrap } from '../../src/format/open.js';
import { RafsV5Image } from '../../src/format/v5/reader.js';
import { Layout } from '../../src/format/v6/inode.js';
import { RafsV6Image } from '../../src/format/v6/reader.js';
import { native, nativeCodecs } from '../../src/native/index.js';
import { readInlinedBootstrap } from '../../src/storage/open-image.js';
import { walkImage } from '../../src/tools/walk.js';
import { REPO, VECTORS, vectorsMissing, withTempDir } from '../helpers/env.js';
import { type Rng, caseRng } from '../helpers/rng.js';

const WORKER_ARG = '--bootstrap-fuzz-worker';
/** Walk items visited per mutant at most: a mutant may describe a huge (but finite) tree. */
const ENTRY_CAP = 3000;
const MUTANT_CPU_LIMIT_MS = 1000;
/** Wall time includes whatever else the machine runs: a looser bound. */
const MUTANT_WALL_LIMIT_MS = 5000;
/** A worker silent for this long is stuck in one mutant. */
const HANG_MS = 15_000;
const PEAK_MEMORY_LIMIT_MB = 768;

// Where the structures of a seed are, found with the readers on the intact seed.
type Width = 1 | 2 | 4 | 8;
type FieldSpec = ReadonlyArray<readonly [number, Width, string]>;
type Field = { off: number; width: Width; name: string };
/** `refs`: values that are valid references somewhere (inode numbers, nids, record offsets). */
type SeedMap = { fields: Field[]; refs: number[] };

const CHUNK_INFO: FieldSpec = [[32, 4, 'blob_index'], [36, 4, 'flags'], [40, 4, 'compressed_size'], [44, 4, 'uncompressed_size'], [48, 8, 'compressed_offset'], [56, 8, 'uncompressed_offset'], [64, 8, 'file_offset'], [72, 4, 'index']];
const V5_SUPER: FieldSpec = [[8, 4, 's_sb_size'], [12, 4, 's_block_size'], [16, 8, 's_flags'], [24, 8, 's_inodes_count'], [32, 8, 's_inode_table_offset'], [40, 8, 's_prefetch_table_offset'], [48, 8, 's_blob_table_offset'], [56, 4, 's_inode_table_entries'], [60, 4, 's_prefetch_table_entries'], [64, 4, 's_blob_table_size'], [68, 4, 's_extended_blob_table_entries'], [72, 8, 's_extended_blob_table_offset']];
const V5_INODE: FieldSpec = [[32, 8, 'i_parent'], [40, 8, 'i_ino'], [60, 4, 'i_mode'], [64, 8, 'i_size'], [72, 8, 'i_blocks'], [80, 8, 'i_flags'], [88, 4, 'i_nlink'], [92, 4, 'i_child_index'], [96, 4, 'i_child_count'], [100, 2, 'i_name_size'], [102, 2, 'i_symlink_size'], [112, 8, 'i_mtime']];
const EROFS_SUPER: FieldSpec = [[8, 4, 's_feature_compat'], [12, 1, 's_blkszbits'], [14, 2, 's_root_nid'], [16, 8, 's_inos'], [36, 4, 's_blocks'], [40, 4, 's_meta_blkaddr'], [44, 4, 's_xattr_blkaddr'], [80, 4, 's_feature_incompat'], [86, 2, 's_extra_devices'], [88, 2, 's_devt_slotoff']];
const V6_EXT_SUPER: FieldSpec = [[0, 8, 's_flags'], [8, 8, 's_blob_table_offset'], [16, 4, 's_blob_table_size'], [20, 4, 's_chunk_size'], [24, 8, 's_chunk_table_offset'], [32, 8, 's_chunk_table_size'], [40, 8, 's_prefetch_table_offset'], [48, 4, 's_prefetch_table_size']];
const V6_BLOB: FieldSpec = [[0, 1, 'blob_id[0]'], [64, 4, 'blob_index'], [68, 4, 'chunk_size'], [72, 4, 'chunk_count'], [76, 4, 'compression_algo'], [80, 4, 'digest_algo'], [84, 4, 'features'], [88, 8, 'compressed_size'], [96, 8, 'uncompressed_size'], [104, 4, 'blob_toc_size'], [108, 4, 'ci_compressor'], [112, 8, 'ci_offset'], [120, 8, 'ci_compressed_size'], [128, 8, 'ci_uncompressed_size']];
const V6_INODE: FieldSpec = [[0, 2, 'i_format'], [2, 2, 'i_xattr_icount'], [4, 2, 'i_mode'], [6, 2, 'i_nlink(compact)'], [8, 8, 'i_size'], [8, 4, 'i_size(compact)'], [16, 4, 'i_u'], [20, 4, 'i_ino'], [44, 4, 'i_nlink']];

function addFields(out: Field[], base: number, prefix: string, spec: FieldSpec): void {
  for (const [off, width, name] of spec) out.push({ off: base + off, width, name: `${prefix}.${name}` });
}

const align8 = (x: number): number => (x + 7) & ~7;

function mapV5(img: RafsV5Image): SeedMap {
  const fields: Field[] = [];
  const refs: number[] = [];
  const { sb, r } = img;
  addFields(fields, 0, 'superblock', V5_SUPER);
  for (let i = 0; i < sb.inodeTableEntries; i++) fields.push({ off: sb.inodeTableOffset + 4 * i, width: 4, name: `inode_table[${i}]` });
  for (let i = 0; i < sb.prefetchTableEntries; i++) fields.push({ off: sb.prefetchTableOffset + 4 * i, width: 4, name: `prefetch[${i}]` });
  addFields(fields, sb.blobTableOffset, 'blob_table', [[0, 4, 'readahead_offset'], [4, 4, 'readahead_size']]);
  for (let i = 0; i < sb.extBlobTableEntries; i++) {
    addFields(fields, sb.extBlobTableOffset + 64 * i, `ext_blob[${i}]`, [[0, 4, 'chunk_count'], [4, 4, 'features'], [8, 8, 'uncompressed_size'], [16, 8, 'compressed_size']]);
  }
  for (let i = 1; i <= sb.inodeTableEntries; i++) {
    const rec = img.record(i);
    refs.push(i, rec.offset / 8);
    addFields(fields, rec.offset, `inode[${i}]`, V5_INODE);
    let p = rec.offset + 128 + align8(rec.nameSize) + align8(rec.symlinkSize);
    if (rec.flags & 0x4n) {
      const size = r.u64(p);
      fields.push({ off: p, width: 8, name: `inode[${i}].xattr_size` });
      for (let q = p + 8; q < p + 8 + size; q += 4 + r.u32(q)) fields.push({ off: q, width: 4, name: `inode[${i}].xattr_pair_size` });
      p += 8 + align8(size);
    }
    if ((rec.mode & S_IFMT) === S_IFREG) {
      for (let c = 0; c < rec.childCount; c++) addFields(fields, p + 80 * c, `inode[${i}].chunk[${c}]`, CHUNK_INFO);
    }
  }
  return { fields, refs };
}

function mapV6Inode(img: RafsV6Image, nid: number, fields: Field[]): void {
  const ino = img.inode(nid);
  addFields(fields, ino.offset, `nid[${nid}]`, V6_INODE);
  if (ino.xsize > 0) {
    const base = ino.offset + ino.isize;
    fields.push({ off: base + 4, width: 1, name: `nid[${nid}].h_shared_count` });
    for (let p = base + 12; p < base + ino.xsize; p += (4 + img.r.u8(p) + img.r.u16(p + 2) + 3) & ~3) {
      addFields(fields, p, `nid[${nid}].xattr`, [[0, 1, 'e_name_len'], [1, 1, 'e_name_index'], [2, 2, 'e_value_size']]);
    }
  }
  const kind = (ino.mode & S_IFMT) >> 12;
  if (kind === 0o04) {
    const nb = Math.ceil(ino.size / 4096);
    for (let k = 0; k < nb; k++) {
      const at = ino.layout === Layout.FLAT_INLINE && k === nb - 1 ? ino.offset + ino.isize + ino.xsize : (ino.iu + k) * 4096;
      const n = img.r.u16(at + 8) / 12;
      for (let d = 0; d < n; d++) addFields(fields, at + 12 * d, `nid[${nid}].block[${k}].dirent[${d}]`, [[0, 8, 'e_nid'], [8, 2, 'e_nameoff'], [10, 1, 'e_file_type']]);
    }
  } else if (kind === 0o10 && ino.layout === Layout.CHUNK_BASED) {
    const base = ino.offset + align8(ino.isize + ino.xsize);
    const n = Math.ceil(ino.size / img.chunkSize);
    for (let c = 0; c < n; c++) addFields(fields, base + 8 * c, `nid[${nid}].chunk_index[${c}]`, [[0, 2, 'advise'], [2, 2, 'device_id'], [4, 4, 'blkaddr']]);
  }
}

function mapV6(img: RafsV6Image): SeedMap {
  const fields: Field[] = [];
  const { sb } = img;
  addFields(fields, 1024, 'erofs_super', EROFS_SUPER);
  addFields(fields, 1152, 'rafs_super', V6_EXT_SUPER);
  for (let i = 0; i < sb.extraDevices; i++) {
    addFields(fields, 11 * 128 + 128 * i, `device[${i}]`, [[0, 1, 'tag[0]'], [64, 4, 'blocks'], [68, 4, 'mapped_blkaddr']]);
    addFields(fields, sb.blobTableOffset + 256 * i, `blob[${i}]`, V6_BLOB);
  }
  for (let i = 0; i < sb.chunkTableSize / 80; i++) addFields(fields, sb.chunkTableOffset + 80 * i, `chunk_table[${i}]`, CHUNK_INFO);
  for (let i = 0; i < sb.prefetchTableSize / 4; i++) fields.push({ off: sb.prefetchTableOffset + 4 * i, width: 4, name: `prefetch[${i}]` });
  const nids = [img.rootIno];
  for (const item of walkImage(img)) if (item.entry !== undefined && !nids.includes(item.attr.ino)) nids.push(item.attr.ino);
  for (const nid of nids) mapV6Inode(img, nid, fields);
  return { fields, refs: nids };
}

// Mutations.
function hostileValue(rng: Rng, width: Width, len: number, refs: readonly number[], old: bigint): bigint {
  const max = (1n << BigInt(8 * width)) - 1n;
  const L = BigInt(len);
  const picks = [
    0n, 1n, 2n, 7n, 8n, 12n, 0x7fn, 0x80n, 0xffn, 0x1000n, 0x7fffn, 0xffffn, 0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn,
    0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, max, max - 1n,
    L, L - 1n, L + 1n, L / 8n, L / 8n + 1n, L / 32n, L / 32n + 1n, L / 4096n, L / 4096n + 1n,
    old + 1n, old - 1n, old * 2n, old ^ (1n << BigInt(rng.int(8 * width))), BigInt(rng.pick(refs.length > 0 ? refs : [0])),
    BigInt(rng.int(2 ** 32)) * BigInt(rng.int(2 ** 32)),
  ];
  const v = rng.pick(picks);
  return ((v % (max + 1n)) + max + 1n) % (max + 1n);
}

function readField(b: Buffer, off: number, width: Width): bigint {
  return width === 8 ? b.readBigUInt64LE(off) : BigInt(b.readUIntLE(off, width));
}

function writeField(b: Buffer, off: number, width: Width, v: bigint): void {
  if (off < 0 || off + width > b.length) return; // a field cut off by an earlier truncation
  if (width === 8) b.writeBigUInt64LE(v, off);
  else b.writeUIntLE(Number(v), off, width);
}

type Mutator = (b: Buffer, rng: Rng, map: SeedMap) => { bytes: Buffer; what: string };

const MUTATORS: Array<[number, Mutator]> = [
  [14, (b, rng) => {
    const n = 1 + rng.int(4);
    const at: number[] = [];
    for (let k = 0; k < n && b.length > 0; k++) {
      const i = rng.int(b.length);
      b[i] = rng.next() < 0.5 ? (b[i] as number) ^ (1 << rng.int(8)) : rng.int(256);
      at.push(i);
    }
    return { bytes: b, what: `flip bytes at ${at.join(',')}` };
  }],
  [14, (b, rng, map) => {
    const width = rng.pick([2, 4, 8] as const);
    const off = rng.int(Math.max(1, Math.floor(b.length / width))) * width;
    const v = off + width <= b.length ? hostileValue(rng, width, b.length, map.refs, readField(b, off, width)) : 0n;
    writeField(b, off, width, v);
    return { bytes: b, what: `u${width * 8} at ${off} = 0x${v.toString(16)}` };
  }],
  [38, (b, rng, map) => {
    const f = rng.pick(map.fields);
    const v = f.off + f.width <= b.length ? hostileValue(rng, f.width, b.length, map.refs, readField(b, f.off, f.width)) : 0n;
    writeField(b, f.off, f.width, v);
    return { bytes: b, what: `${f.name} (@${f.off}) = 0x${v.toString(16)}` };
  }],
  [10, (b, rng, map) => {
    const f = rng.pick(map.fields);
    const v = BigInt(rng.pick(map.refs.length > 0 ? map.refs : [0])) & ((1n << BigInt(8 * f.width)) - 1n);
    writeField(b, f.off, f.width, v);
    return { bytes: b, what: `${f.name} (@${f.off}) = reference ${v}` };
  }],
  [8, (b, rng) => {
    const n = rng.next() < 0.5 ? rng.int(b.length) : Math.max(0, Math.floor(b.length / 4096) - 1 - rng.int(2)) * 4096 + rng.pick([0, 0, 1, 4095]);
    return { bytes: b.subarray(0, Math.min(n, b.length)), what: `truncate to ${Math.min(n, b.length)}` };
  }],
  [6, (b, rng) => {
    const n = rng.next() < 0.5 ? 1 + rng.int(8192) : 4096 * (1 + rng.int(3));
    const fill = rng.pick(['random', 'zero', 'ff'] as const);
    const tail = fill === 'zero' ? Buffer.alloc(n) : fill === 'ff' ? Buffer.alloc(n, 0xff) : Buffer.from(Array.from({ length: n }, () => rng.int(256)));
    return { bytes: Buffer.concat([b, tail]), what: `extend by ${n} ${fill} bytes` };
  }],
  [10, (b, rng, map) => {
    // Copies a structure over another (an inode over an inode, a dirent block over a table, …).
    const src = rng.pick(map.fields).off & ~7;
    const dst = rng.pick(map.fields).off & ~7;
    const n = Math.min(8 * (1 + rng.int(32)), b.length - Math.max(src, dst));
    if (n > 0) b.copy(b, dst, src, src + n);
    return { bytes: b, what: `copy ${n} bytes ${src} -> ${dst}` };
  }],
];
/** Each mutator as many times as its weight. */
const WEIGHTED: Mutator[] = MUTATORS.flatMap(([weight, m]) => Array.from({ length: weight }, () => m));

function makeMutant(seed: Uint8Array, map: SeedMap, seedName: string, index: number): { bytes: Buffer; what: string } {
  const rng = caseRng(seedName, index);
  let bytes: Buffer = Buffer.from(seed);
  const what: string[] = [];
  const rounds = rng.next() < 0.7 ? 1 : 2 + rng.int(2);
  for (let k = 0; k < rounds; k++) {
    const out = rng.pick(WEIGHTED)(bytes, rng, map);
    bytes = out.bytes;
    what.push(out.what);
  }
  return { bytes, what: what.join('; ') };
}

// Exercising one image through every reader method.
/** The DamselflyErrors raised by reader methods: none when the image is fully accepted. */
type Outcome = { errors: number; codes: string[] };

/** Runs `fn`; a DamselflyError is recorded, anything else propagates (and fails the test). */
function guard(o: Outcome, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof DamselflyError)) throw e;
    o.errors++;
    o.codes.push(e.code);
  }
}

function exercise(bytes: Uint8Array): Outcome {
  const o: Outcome = { errors: 0, codes: [] };
  guard(o, () => {
    const img = openBootstrap(bytes);
    for (const ino of img.prefetch.slice(0, 16)) guard(o, () => img.getAttr(ino));
    const dirs = new Map<string, number>();
    let visited = 0;
    for (const { components, path, entry, attr } of walkImage(img)) {
      if (++visited > ENTRY_CAP) break;
      const ino = attr.ino;
      guard(o, () => img.getAttr(ino));
      guard(o, () => img.xattrs(ino));
      if (attr.kind === 'symlink') guard(o, () => img.readlink(ino));
      if (attr.kind === 'file') guard(o, () => img.fileChunks(ino));
      if (attr.kind === 'dir') {
        dirs.set(path, ino);
        guard(o, () => img.childCount(ino));
        guard(o, () => img.parent(ino));
        guard(o, () => img.lookup(ino, Buffer.from('~no such entry~')));
        guard(o, () => {
          let n = 0;
          for (const _ of img.readdir(ino, 1)) if (++n >= 64) break;
        });
        if (img instanceof RafsV6Image) guard(o, () => img.dotEntries(ino));
      }
      const parentIno = entry === undefined ? undefined : dirs.get(pathToString(components.slice(0, -1)));
      if (entry !== undefined && parentIno !== undefined) guard(o, () => img.lookup(parentIno, entry.name));
    }
  });
  return o;
}

// The worker: runs `count` mutants of one seed and reports the tallies.
type Job = { name: string; seed: Uint8Array; count: number };

interface Report {
  name: string;
  count: number;
  accepted: number;
  rejected: number;
  codes: Record<string, number>;
  /** Errors the unmutated seed raised (must be none). */
  seedErrors: number;
  /** Mutants that threw something other than a DamselflyError; mutants that took too long. */
  failures: string[];
  slow: string[];
  /** CPU time of the slowest mutant (not inflated by load on the machine); the longest wall time. */
  maxCpuMs: number;
  maxWallMs: number;
  slowest: string;
  totalMs: number;
  peakMb: number;
}

function mapSeed(seed: Uint8Array): SeedMap {
  const img = openBootstrap(seed);
  return img instanceof RafsV5Image ? mapV5(img) : mapV6(img);
}

async function runWorker({ name, seed, count }: Job): Promise<Report> {
  const map = mapSeed(seed);
  const r: Report = { name, count, accepted: 0, rejected: 0, codes: {}, seedErrors: exercise(seed).errors, failures: [], slow: [], maxCpuMs: 0, maxWallMs: 0, slowest: '', totalMs: 0, peakMb: 0 };
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const { bytes, what } = makeMutant(seed, map, name, i);
    process.send?.({ type: 'progress', index: i });
    if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve)); // lets the messages out
    const [wall, cpu] = [performance.now(), process.cpuUsage()];
    try {
      const o = exercise(bytes);
      if (o.errors === 0) r.accepted++;
      else r.rejected++;
      for (const c of o.codes) r.codes[c] = (r.codes[c] ?? 0) + 1;
    } catch (e) {
      if (r.failures.length < 10) r.failures.push(`mutant ${i} (${what}): ${(e as Error).stack ?? String(e)}`);
    }
    const used = process.cpuUsage(cpu);
    const cpuMs = (used.user + used.system) / 1000;
    const wallMs = performance.now() - wall;
    if (cpuMs > r.maxCpuMs) [r.maxCpuMs, r.slowest] = [cpuMs, `mutant ${i} (${what})`];
    r.maxWallMs = Math.max(r.maxWallMs, wallMs);
    if ((cpuMs > MUTANT_CPU_LIMIT_MS || wallMs > MUTANT_WALL_LIMIT_MS) && r.slow.length < 10) {
      r.slow.push(`mutant ${i} (${what}): ${cpuMs.toFixed(0)} ms CPU, ${wallMs.toFixed(0)} ms wall`);
    }
    const mem = process.memoryUsage();
    r.peakMb = Math.max(r.peakMb, (mem.heapUsed + mem.arrayBuffers) / 2 ** 20);
  }
  r.totalMs = performance.now() - t0;
  return r;
}

const IS_WORKER = process.argv.includes(WORKER_ARG);
if (IS_WORKER) {
  process.once('message', (job: Job) => {
    void runWorker(job).then((report) => process.send?.({ type: 'done', report }, () => process.exit(0)));
  });
}

/** Runs a job in a forked worker; a worker that stops reporting progress is killed as hung. */
function runJob(job: Job): Promise<Report> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT; // the worker is no test process
    const child = fork(fileURLToPath(import.meta.url), [WORKER_ARG], {
      cwd: REPO,
      env,
      execArgv: ['--import', 'tsx', '--max-old-space-size=512'],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let last = -1;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        const what = last < 0 ? 'before the first mutant' : makeMutant(job.seed, mapSeed(job.seed), job.name, last).what;
        reject(new Error(`${job.name}: the worker hung at mutant ${last} (${what})`));
      }, HANG_MS);
    };
    child.on('message', (m: { type: string; index?: number; report?: Report }) => {
      if (m.type === 'progress') last = m.index as number;
      if (m.type === 'done') {
        done = true;
        clearTimeout(timer);
        resolve(m.report as Report);
      } else arm();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (!done) reject(new Error(`${job.name}: the worker died (${code ?? signal}) at mutant ${last}; out of memory?`));
    });
    child.on('error', reject);
    arm();
    child.send(job);
  });
}

// Seeds and the tests.
/** A small tree with every structure the v6 writer emits: nested and multi-block directories,
 * inline and block directories, multi-chunk and sparse files, symlinks, xattrs, hardlinks. */
async function makeSmallTree(root: string): Promise<void> {
  await mkdir(join(root, 'a', 'b', 'c'), { recursive: true });
  await mkdir(join(root, 'wide'));
  // 100 entries with long names: two dirent blocks (one in a data block, one inline).
  for (let i = 0; i < 100; i++) await writeFile(join(root, 'wide', `entry-${String(i).padStart(3, '0')}-${'n'.repeat(40)}`), i % 7 === 0 ? `#${i}` : '');
  await writeFile(join(root, 'small'), 'hello\n');
  await writeFile(join(root, 'a', 'multi'), Buffer.from(Array.from({ length: 5 * 4096 + 100 }, (_, i) => (i * 31) % 251)));
  await writeFile(join(root, 'a', 'b', 'sparse'), 'x');
  await truncate(join(root, 'a', 'b', 'sparse'), 6 * 4096);
  await symlink('../small', join(root, 'a', 'up'));
  await symlink('t'.repeat(1500), join(root, 'long-link'));
  await link(join(root, 'small'), join(root, 'a', 'b', 'c', 'hard'));
  native.lsetxattr(join(root, 'small'), 'user.one', Buffer.from('1'));
  native.lsetxattr(join(root, 'small'), 'trusted.two', Buffer.from('two'));
  native.lsetxattr(join(root, 'a'), 'user.dir-attr', Buffer.alloc(300, 1));
  native.mknod(join(root, 'fifo'), 0o010644, 0, 0);
}

const skipVectors = vectorsMissing();

// The worker process loads this file too, but runs no tests.
if (!IS_WORKER) describe('bootstrap mutation fuzzing', () => {
  const reports = new Map<string, Promise<Report>>();

  before(async () => {
    const seeds: Job[] = [];
    await withTempDir('fuzz-seed', async (dir) => {
      await makeSmallTree(join(dir, 'src'));
      const { bootstrap } = await build({ sources: [join(dir, 'src')], blobDir: join(dir, 'blobs'), bootstrapPath: join(dir, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 4096, log: silentLogger });
      seeds.push({ name: 'v6-damselfly', seed: bootstrap, count: 10_000 });
    });
    if (skipVectors === undefined) {
      seeds.push({ name: 'v5-nydus', seed: await readFile(join(VECTORS, 'v5-sha256-uncompressed', 'image.boot')), count: 10_000 });
      seeds.push({ name: 'v6-nydus', seed: await readFile(join(VECTORS, 'v6-blake3-zstd', 'image.boot')), count: 4_000 });
      const blob = join(VECTORS, 'v6-inlined-bootstrap', '2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca');
      seeds.push({ name: 'v6-nydus-inlined', seed: await readInlinedBootstrap(nativeCodecs, blob), count: 2_000 });
    }
    // Two workers at a time; each test then waits for the reports of its seeds.
    const lanes: Array<Promise<unknown>> = [Promise.resolve(), Promise.resolve()];
    seeds.forEach((job, i) => {
      const report = (lanes[i % 2] as Promise<unknown>).then(() => runJob(job));
      lanes[i % 2] = report.catch(() => undefined); // the test awaits (and reports) the failure
      reports.set(job.name, report);
    });
  });

  const check = async (t: { diagnostic(m: string): void }, names: string[]): Promise<void> => {
    let accepted = 0;
    let rejected = 0;
    for (const name of names) {
      const r = await (reports.get(name) as Promise<Report>);
      t.diagnostic(`${name}: ${r.count} mutants, ${r.accepted} accepted, ${r.rejected} rejected (${JSON.stringify(r.codes)} errors) in ${(r.totalMs / 1000).toFixed(1)} s; slowest ${r.maxCpuMs.toFixed(1)} ms CPU (${r.slowest}), ${r.maxWallMs.toFixed(1)} ms wall; peak ${r.peakMb.toFixed(0)} MiB`);
      assert.equal(r.seedErrors, 0, `${name}: the unmutated seed must be read without errors`);
      assert.deepEqual(r.failures, [], `${name}: mutants raised errors other than DamselflyError`);
      assert.deepEqual(r.slow, [], `${name}: mutants took longer than ${MUTANT_CPU_LIMIT_MS} ms of CPU or ${MUTANT_WALL_LIMIT_MS} ms`);
      assert.ok(r.peakMb < PEAK_MEMORY_LIMIT_MB, `${name}: ${r.peakMb} MiB in use at the peak`);
      accepted += r.accepted;
      rejected += r.rejected;
    }
    const total = accepted + rejected;
    assert.ok(total >= 10_000, `${total} mutants`);
    // Both outcomes must be common, or the fuzzer tests nothing (all rejected at the magic) or
    // mutates nothing that matters (all accepted).
    assert.ok(accepted >= total * 0.1, `only ${accepted} of ${total} mutants were accepted`);
    assert.ok(rejected >= total * 0.3, `only ${rejected} of ${total} mutants were rejected`);
  };

  test('RAFS v6: 10,000 mutants of a Damselfly-built bootstrap, 6,000 of the Nydus ones', async (t) => {
    await check(t, skipVectors === undefined ? ['v6-damselfly', 'v6-nydus', 'v6-nydus-inlined'] : ['v6-damselfly']);
  });

  test('RAFS v5: 10,000 mutants of the Nydus bootstrap', { skip: skipVectors }, async (t) => {
    await check(t, ['v5-nydus']);
  });
});
