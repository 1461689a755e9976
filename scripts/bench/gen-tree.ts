/**
 * Deterministic (seeded) benchmark tree for scripts/bench/build.sh: many small files (1–64 KiB,
 * text-like and binary), some large files (10–200 MiB, a mixture of random, text-like, low-entropy
 * binary, repetitive records and zeros, so that compression ratios are realistic), exact copies of
 * some large files and of some directories of small files, and near-duplicates of large files (a
 * copy with 1 MiB-aligned regions rewritten and data appended). About 20% of the bytes repeat.
 *
 * Usage: node --import tsx scripts/bench/gen-tree.ts OUT_DIR SIZE_MB SEED
 *
 * Writes OUT_DIR/tree/ and then OUT_DIR/manifest.json; when the manifest already names the same
 * size, seed and generator version the tree is reused as it is. Prints the manifest on stdout.
 * Bulk random bytes come from AES-128-CTR keyed by the seed (fast and reproducible); the
 * decisions (sizes, kinds, names) from a seeded xoshiro128**.
 */
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

/** Bump when the generated content changes: a tree of another version is regenerated. */
const GENERATOR_VERSION = 1;
const KiB = 1024;
const MiB = 1024 * 1024;
/** Fixed mtime for every file and directory (2024-01-01T00:00:00Z). */
const MTIME = 1_704_067_200;

interface Manifest {
  generatorVersion: number;
  sizeMb: number;
  seed: number;
  files: number;
  dirs: number;
  bytes: number;
  smallFiles: number;
  smallBytes: number;
  largeFiles: number;
  largeBytes: number;
  /** Bytes of exact copies of files that are elsewhere in the tree. */
  exactDuplicateBytes: number;
  /** Bytes of near-duplicates that equal the original at the same offset. */
  nearDuplicateSharedBytes: number;
  duplicateFraction: number;
}

/** xoshiro128** — small, fast, seedable. */
class Rng {
  private s: Uint32Array;

  constructor(seed: string) {
    const h = createHash('sha256').update(seed).digest();
    this.s = new Uint32Array([h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12) | 1]);
  }

  u32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1] as number, 5), 7), 9) >>> 0;
    const t = (s[1] as number) << 9;
    s[2] = (s[2] as number) ^ (s[0] as number);
    s[3] = (s[3] as number) ^ (s[1] as number);
    s[1] = (s[1] as number) ^ (s[2] as number);
    s[0] = (s[0] as number) ^ (s[3] as number);
    s[2] = (s[2] as number) ^ t;
    s[3] = rotl(s[3] as number, 11);
    return r;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)] as T;
  }

  /** Picks a key with probability proportional to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as Array<[K, number]>;
    let total = 0;
    for (const [, w] of entries) total += w;
    let x = this.float() * total;
    for (const [k, w] of entries) {
      x -= w;
      if (x < 0) return k;
    }
    return (entries[entries.length - 1] as [K, number])[0];
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** An AES-128-CTR keystream: incompressible, reproducible, a few GB/s. */
class RandomStream {
  private readonly cipher;
  private static zeros = Buffer.alloc(4 * MiB);

  constructor(seed: string) {
    const key = createHash('sha256').update(`damselfly-bench:${seed}`).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  }

  bytes(n: number): Buffer {
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const k = Math.min(left, RandomStream.zeros.length);
      parts.push(this.cipher.update(RandomStream.zeros.subarray(0, k)));
      left -= k;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n);
  }
}

/** A pool of text-like bytes (prose, log lines, code-ish lines) to slice text files from. */
function makeTextPool(rng: Rng, size: number): Buffer {
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const vocab: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const len = rng.int(2, 11);
    let w = '';
    // Skewed letter frequencies, like natural language.
    for (let j = 0; j < len; j++) w += letters[Math.floor(letters.length * rng.float() ** 2)];
    vocab.push(w);
  }
  // Zipf-like word choice: a few words are very common.
  const word = (): string => vocab[Math.floor(vocab.length * rng.float() ** 3)] as string;
  const lines: string[] = [];
  let bytes = 0;
  let t = 1_700_000_000;
  while (bytes < size) {
    const kind = rng.weighted({ prose: 5, log: 3, code: 2 });
    let line: string;
    if (kind === 'prose') {
      const n = rng.int(6, 16);
      const ws: string[] = [];
      for (let i = 0; i < n; i++) ws.push(word());
      line = `${ws.join(' ')}${rng.pick(['.', '.', ',', ';', '?'])}`;
    } else if (kind === 'log') {
      t += rng.int(0, 5000);
      const level = rng.pick(['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR']);
      line = `${new Date(t * 1000).toISOString()} ${level} [${word()}-${rng.int(1, 16)}] ${word()} ${word()} id=${rng.u32().toString(16)} took=${rng.int(0, 9999)}ms`;
    } else {
      const indent = ' '.repeat(2 * rng.int(0, 4));
      line = `${indent}${rng.pick(['const', 'let', 'if (', 'return', 'for (const'])} ${word()}_${word()} = ${word()}(${word()}, ${rng.int(0, 4096)});`;
    }
    lines.push(line);
    bytes += line.length + 1;
  }
  return Buffer.from(`${lines.join('\n')}\n`, 'latin1');
}

type Kind = 'random' | 'text' | 'lowent' | 'records' | 'zeros';

class ContentMaker {
  constructor(
    private readonly rng: Rng,
    private readonly rand: RandomStream,
    private readonly text: Buffer,
  ) {}

  make(kind: Kind, n: number): Buffer {
    switch (kind) {
      case 'random':
        return this.rand.bytes(n);
      case 'text': {
        if (n >= this.text.length) return Buffer.concat([this.text, this.make('text', n - this.text.length)]);
        const off = this.rng.int(0, this.text.length - n - 1);
        return Buffer.from(this.text.subarray(off, off + n));
      }
      case 'lowent': {
        // Random bytes with a per-segment bit mask: 3–6 bits of entropy per byte.
        const b = Buffer.from(this.rand.bytes(n));
        const mask = this.rng.pick([0x07, 0x0f, 0x0f, 0x1f, 0x3f]);
        const m32 = (mask * 0x01010101) >>> 0;
        const words = Math.floor(b.byteOffset % 4 === 0 ? n / 4 : 0);
        const u32 = new Uint32Array(b.buffer, b.byteOffset, words);
        for (let i = 0; i < words; i++) u32[i] = (u32[i] as number) & m32;
        for (let i = words * 4; i < n; i++) b[i] = (b[i] as number) & mask;
        return b;
      }
      case 'records': {
        // A repeated record (like a table or an array of structs) with a counter and a random field.
        const len = this.rng.int(48, 512);
        const template = this.make('lowent', len);
        const b = Buffer.alloc(n);
        b.fill(template);
        const noise = this.rand.bytes(Math.ceil(n / len) * 4);
        let i = 0;
        for (let off = 0; off + 12 <= n; off += len, i++) {
          b.writeUInt32LE(i, off);
          noise.copy(b, off + 8, i * 4, i * 4 + 4);
        }
        return b;
      }
      case 'zeros':
        return Buffer.alloc(n);
    }
  }
}

const LARGE_MIX: Record<Kind, number> = { random: 25, text: 35, lowent: 20, records: 15, zeros: 5 };
const SMALL_MIX: Record<Kind, number> = { text: 55, lowent: 22, random: 10, records: 13, zeros: 0 };

/** Regular files under `dir`, and their bytes (what the manifest counts). */
function regularFiles(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    files++;
    bytes += statSync(join(e.parentPath, e.name)).size; // parentPath: `path` is its deprecated alias
  }
  return { files, bytes };
}

/** Splits `budget` bytes into files of [min, max] bytes (fewer bytes than `min` when the budget is). */
function splitBudget(rng: Rng, budget: number, min: number, max: number): number[] {
  // Callers keep max >= 2 × min, so that a remainder of at least `min` is always possible.
  const out: number[] = [];
  let left = budget;
  while (left > 0) {
    if (left <= max && (left < 2 * min || rng.float() < 0.3)) {
      out.push(left);
      break;
    }
    const size = rng.int(min, Math.min(max, left - min));
    out.push(size);
    left -= size;
  }
  return out;
}

function main(): void {
  const [outDir, sizeArg, seedArg] = process.argv.slice(2);
  if (outDir === undefined || sizeArg === undefined) {
    process.stderr.write('usage: gen-tree.ts OUT_DIR SIZE_MB [SEED]\n');
    process.exit(2);
  }
  const sizeMb = Number(sizeArg);
  const seed = Number(seedArg ?? '1');
  if (!Number.isInteger(sizeMb) || sizeMb < 16) throw new Error(`SIZE_MB must be an integer >= 16, not ${sizeArg}`);
  if (!Number.isInteger(seed)) throw new Error(`SEED must be an integer, not ${seedArg}`);

  const manifestPath = join(outDir, 'manifest.json');
  const treeDir = join(outDir, 'tree');
  if (existsSync(manifestPath) && existsSync(treeDir)) {
    const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
    if (m.generatorVersion === GENERATOR_VERSION && m.sizeMb === sizeMb && m.seed === seed) {
      const found = regularFiles(treeDir);
      if (found.files === m.files && found.bytes === m.bytes) {
        process.stderr.write(`gen-tree: reusing ${treeDir}\n`);
        process.stdout.write(`${JSON.stringify(m)}\n`);
        return;
      }
      // Something wrote into the tree (a profiler's log from a process started inside it): the
      // images would no longer match each other's trees.
      process.stderr.write(`gen-tree: ${treeDir} holds ${found.files} files of ${found.bytes} bytes, not ${m.files} of ${m.bytes}: generating it again\n`);
    }
  }
  rmSync(manifestPath, { force: true });
  rmSync(treeDir, { recursive: true, force: true });
  const tmpDir = join(outDir, `tree.tmp-${process.pid}`);
  rmSync(tmpDir, { recursive: true, force: true });
  mkdirSync(tmpDir, { recursive: true });
  const started = Date.now();

  const rng = new Rng(`decisions:${seed}`);
  const rand = new RandomStream(`bytes:${seed}`);
  const text = makeTextPool(rng, 16 * MiB);
  const maker = new ContentMaker(rng, rand, text);
  const total = sizeMb * MiB;
  const dirs = new Set<string>();
  const mkdirp = (d: string): void => {
    if (dirs.has(d)) return;
    mkdirSync(join(tmpDir, d), { recursive: true });
    for (let p = d; p !== '.' && p !== ''; p = dirname(p)) dirs.add(p);
  };
  const m: Manifest = {
    generatorVersion: GENERATOR_VERSION,
    sizeMb,
    seed,
    files: 0,
    dirs: 0,
    bytes: 0,
    smallFiles: 0,
    smallBytes: 0,
    largeFiles: 0,
    largeBytes: 0,
    exactDuplicateBytes: 0,
    nearDuplicateSharedBytes: 0,
    duplicateFraction: 0,
  };

  // Byte budgets: small unique 22%, large unique 58% (of which some are then copied), exact
  // copies of large files 12%, copies of small-file directories 3%, near-duplicates 5%.
  const smallBudget = Math.round(total * 0.22);
  const largeCopyBudget = Math.round(total * 0.12);
  const smallCopyBudget = Math.round(total * 0.03);
  const nearBudget = Math.round(total * 0.05);
  const largeBudget = total - smallBudget - largeCopyBudget - smallCopyBudget - nearBudget;
  const maxLarge = Math.min(200 * MiB, Math.max(2 * MiB, Math.floor(total * 0.3)));
  const minLarge = Math.min(10 * MiB, Math.floor(maxLarge / 2));

  // --- small files: directories of 20–150 files, two levels deep ---
  const files: string[] = [];
  const smallDirs: Array<{ dir: string; bytes: number; names: string[] }> = [];
  {
    let left = smallBudget;
    let d = 0;
    while (left > 0) {
      const top = `${rng.pick(['usr/lib', 'usr/share', 'opt/app', 'srv/www', 'var/lib'])}/pkg${String(Math.floor(d / 8)).padStart(3, '0')}`;
      const dir = `${top}/${rng.pick(['src', 'lib', 'doc', 'assets', 'data', 'conf'])}${d % 8}`;
      mkdirp(dir);
      const count = rng.int(20, 150);
      let dirBytes = 0;
      const names: string[] = [];
      for (let i = 0; i < count && left > 0; i++) {
        const size = Math.min(left, Math.round(KiB * 64 ** rng.float()));
        const kind = rng.weighted(SMALL_MIX);
        const ext = kind === 'text' ? rng.pick(['.txt', '.js', '.py', '.conf', '.md', '.log']) : rng.pick(['.bin', '.dat', '.so', '.png', '.db']);
        const fname = `f${String(i).padStart(4, '0')}${ext}`;
        writeFileSync(join(tmpDir, dir, fname), maker.make(kind, size));
        names.push(fname);
        files.push(`${dir}/${fname}`);
        m.files++;
        m.smallFiles++;
        m.smallBytes += size;
        dirBytes += size;
        left -= size;
      }
      smallDirs.push({ dir, bytes: dirBytes, names });
      d++;
    }
  }

  // --- large files ---
  const writeLarge = (rel: string, size: number): void => {
    const fd = openSync(join(tmpDir, rel), 'w');
    try {
      let off = 0;
      while (off < size) {
        const n = Math.min(size - off, rng.int(256 * KiB, 4 * MiB));
        const buf = maker.make(rng.weighted(LARGE_MIX), n);
        let done = 0;
        while (done < n) done += writeSync(fd, buf, done, n - done, off + done);
        off += n;
      }
    } finally {
      closeSync(fd);
    }
    files.push(rel);
    m.files++;
    m.largeFiles++;
    m.largeBytes += size;
  };
  mkdirp('data/large');
  const withTail = (s: number): number => (s >= 2 * MiB ? s - rng.int(0, MiB - 1) : s);
  // Files that will be copied, sized by the copy budget; the near-duplicate's original; the rest.
  const copySizes = splitBudget(rng, largeCopyBudget, minLarge, maxLarge).map(withTail);
  const nearAppend = Math.round(nearBudget * 0.05);
  const nearSizes = splitBudget(rng, nearBudget - nearAppend, minLarge, maxLarge).map(withTail);
  const usedByThose = [...copySizes, ...nearSizes].reduce((a, b) => a + b, 0);
  const restSizes = splitBudget(rng, Math.max(0, largeBudget - usedByThose), minLarge, maxLarge).map(withTail);
  const name = (i: number, ext: string): string => `data/large/blob-${String(i).padStart(2, '0')}${ext}`;
  let li = 0;
  const copySources: Array<{ rel: string; size: number }> = [];
  const nearSources: Array<{ rel: string; size: number }> = [];
  for (const s of copySizes) {
    const rel = name(li++, rng.pick(['.img', '.tar', '.pack']));
    writeLarge(rel, s);
    copySources.push({ rel, size: s });
  }
  for (const s of nearSizes) {
    const rel = name(li++, '.db');
    writeLarge(rel, s);
    nearSources.push({ rel, size: s });
  }
  for (const s of restSizes) writeLarge(name(li++, rng.pick(['.img', '.tar', '.pack', '.db', '.bin'])), s);

  // --- exact copies of large files (other directories) ---
  for (const [i, src] of copySources.entries()) {
    const dir = `${rng.pick(['backup', 'mirror', 'cache'])}/large${i}`;
    mkdirp(dir);
    const rel = `${dir}/${src.rel.split('/').pop() as string}`;
    copyFileSync(join(tmpDir, src.rel), join(tmpDir, rel));
    files.push(rel);
    m.files++;
    m.exactDuplicateBytes += src.size;
  }
  // --- exact copies of whole small-file directories (vendored copies) ---
  {
    let left = smallCopyBudget;
    const order = smallDirs.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    for (const idx of order) {
      if (left <= 0) break;
      const src = smallDirs[idx] as { dir: string; bytes: number; names: string[] };
      if (src.bytes > left * 1.5) continue;
      const dst = `vendor/copy-${idx}/${src.dir}`;
      mkdirp(dst);
      for (const f of src.names) {
        copyFileSync(join(tmpDir, src.dir, f), join(tmpDir, dst, f));
        files.push(`${dst}/${f}`);
        m.files++;
      }
      m.exactDuplicateBytes += src.bytes;
      left -= src.bytes;
    }
  }
  // --- near-duplicates: a new version with some 1 MiB-aligned regions rewritten and data appended ---
  for (const [i, src] of nearSources.entries()) {
    const rel = `data/large/blob-v2-${i}.db`;
    copyFileSync(join(tmpDir, src.rel), join(tmpDir, rel));
    const fd = openSync(join(tmpDir, rel), 'r+');
    let changed = 0;
    try {
      const regions = Math.floor(src.size / MiB);
      for (let r = 0; r < regions; r++) {
        if (rng.float() >= 0.1) continue;
        const buf = maker.make(rng.weighted(LARGE_MIX), MiB);
        writeSync(fd, buf, 0, MiB, r * MiB);
        changed += MiB;
      }
      const append = Math.round(nearAppend / nearSources.length);
      writeSync(fd, maker.make('text', append), 0, append, src.size);
      m.nearDuplicateSharedBytes += src.size - changed;
      m.largeBytes += src.size + append;
    } finally {
      closeSync(fd);
    }
    files.push(rel);
    m.files++;
    m.largeFiles++;
  }

  // Fixed mtimes: files, then directories deepest first so that their times stay set.
  for (const f of files) utimesSync(join(tmpDir, f), MTIME, MTIME);
  // Directories deepest paths first so that directory times stay set.
  const allDirs = [...dirs].sort((a, b) => b.split('/').length - a.split('/').length);
  m.dirs = allDirs.length + 1;
  for (const d of allDirs) utimesSync(join(tmpDir, d), MTIME, MTIME);
  utimesSync(tmpDir, MTIME, MTIME);
  m.bytes = m.smallBytes + m.largeBytes + m.exactDuplicateBytes;
  m.duplicateFraction = Math.round(((m.exactDuplicateBytes + m.nearDuplicateSharedBytes) / m.bytes) * 1000) / 1000;
  renameSync(tmpDir, treeDir);
  writeFileSync(manifestPath, `${JSON.stringify(m, null, 2)}\n`);
  process.stderr.write(`gen-tree: wrote ${m.files} files, ${m.bytes} bytes in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.stdout.write(`${JSON.stringify(m)}\n`);
}

main();
