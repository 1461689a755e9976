/**
 * Generated source trees with every file kind RAFS carries, and an exact comparison of two trees
 * (content, type, mode, owner, mtime in nanoseconds, xattrs, hardlink groups, symlink targets,
 * device numbers). Sparse files are compared without reading their holes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type BigIntStats } from 'node:fs';
import { chmod, chown, link, lstat, mkdir, open, readdir, readlink, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { native } from '../../src/native/index.js';

export interface TreeOptions {
  /** Entries in the big directory (tens of thousands for the full test). */
  bigDirEntries?: number;
  /** Add a sparse file larger than 4 GiB. */
  hugeSparse?: boolean;
  /** Seed for the pseudo-random content (same seed, same tree). */
  seed?: number;
}

/** Deterministic pseudo-random bytes (xorshift32), so that trees are reproducible. */
export function prng(seed: number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n + 3);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out.subarray(0, n);
}

/** `n` text-like bytes (base64 of `prng`) that deflate shrinks: dynamic Huffman blocks, back references. */
export function textBytes(seed: number, n: number): Buffer {
  return Buffer.from(prng(seed, Math.ceil((n * 3) / 4)).toString('base64').slice(0, n));
}

function lutimes(path: string | Buffer, sec: number, nsec: number): void {
  native.lutimens(path, sec, nsec, sec, nsec);
}

/**
 * Makes a tree under `root` (which must not exist) with: empty, small, multi-chunk, duplicated,
 * sparse (optionally > 4 GiB) and setuid files; directories (one large); symlinks (one with a
 * 4000-byte target); hardlinks; char and block devices; a fifo; a socket; uid/gid values; mtimes
 * with nanoseconds; xattrs in user., trusted. and security. (including security.capability);
 * long (255-byte) and non-ASCII names.
 */
export async function makeTree(root: string, opts: TreeOptions = {}): Promise<void> {
  const seed = opts.seed ?? 1;
  await mkdir(root);
  const p = (...parts: string[]): string => join(root, ...parts);
  await mkdir(p('dir', 'sub', 'deeper'), { recursive: true });
  await mkdir(p('empty-dir'));
  await writeFile(p('empty'), '');
  await writeFile(p('small.txt'), 'hello, damselfly\n');
  const big = prng(seed, 3 * 1024 * 1024 + 12345);
  await writeFile(p('dir', 'multi-chunk.bin'), big);
  await writeFile(p('dir', 'sub', 'duplicate.bin'), big); // same content: chunks deduplicated
  await writeFile(p('repeated.bin'), Buffer.concat(Array.from({ length: 8 }, () => prng(seed + 1, 65536))));
  const text = Buffer.from('The quick brown fox jumps over the lazy dog.\n'.repeat(5000));
  await writeFile(p('dir', 'compressible.txt'), text);
  // Sparse files: holes at the head, middle and tail.
  await writeFile(p('sparse'), '');
  await truncate(p('sparse'), 9 * 1024 * 1024);
  {
    const fh = await open(p('sparse'), 'r+');
    await fh.write(prng(seed + 2, 5000), 0, 5000, 3 * 1024 * 1024 + 17);
    await fh.close();
  }
  if (opts.hugeSparse) {
    const size = 4.5 * 1024 ** 3 + 4097;
    await writeFile(p('huge-sparse'), '');
    await truncate(p('huge-sparse'), size);
    const fh = await open(p('huge-sparse'), 'r+');
    await fh.write(Buffer.from('data past 4 GiB'), 0, 15, 4 * 1024 ** 3 + 100);
    await fh.close();
  }
  // Modes, owners.
  await writeFile(p('setuid'), '#!/bin/sh\necho setuid\n');
  await chmod(p('setuid'), 0o4755);
  await writeFile(p('setgid-sticky'), 'x');
  await chmod(p('setgid-sticky'), 0o3711);
  await chmod(p('empty-dir'), 0o1777);
  await chown(p('small.txt'), 1000, 1001);
  await chown(p('dir', 'sub'), 65534, 65534);
  await writeFile(p('big-ids'), 'ids');
  await chown(p('big-ids'), 3_000_000, 4_000_000);
  // Symlinks.
  await symlink('../small.txt', p('dir', 'rel-link'));
  await symlink('/etc/passwd', p('abs-link'));
  await symlink('x'.repeat(4000), p('long-link'));
  await symlink('dangling-target', p('dir', 'dangling'));
  // Hardlinks (three names for one inode) and a hardlinked empty file.
  await writeFile(p('hard-a'), 'shared inode\n');
  await link(p('hard-a'), p('dir', 'hard-b'));
  await link(p('hard-a'), p('dir', 'sub', 'hard-c'));
  await writeFile(p('hard-empty'), '');
  await link(p('hard-empty'), p('hard-empty-2'));
  // Devices, fifo, socket.
  native.mknod(p('null-dev'), 0o020666, 1, 3);
  native.mknod(p('block-dev'), 0o060640, 8, 1);
  native.mknod(p('big-dev'), 0o020600, 300, 70000);
  native.mknod(p('fifo'), 0o010644, 0, 0);
  native.mknod(p('socket'), 0o140755, 0, 0);
  // Names.
  await writeFile(p('n'.repeat(255)), 'long name');
  await writeFile(p('ünïcödé-名前-🙂'), 'utf-8 name');
  await writeFile(p('-sorts-before-dot'), 'a name that sorts before "."');
  // A name that is not UTF-8 ("latin" + 0xe9): RAFS names are raw bytes.
  await writeFile(Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9])]), 'x');
  // Xattrs.
  native.lsetxattr(p('small.txt'), 'user.comment', Buffer.from('a comment'));
  native.lsetxattr(p('small.txt'), 'user.empty', Buffer.alloc(0));
  native.lsetxattr(p('dir'), 'trusted.overlay.opaque', Buffer.from('y'));
  native.lsetxattr(p('dir', 'multi-chunk.bin'), 'user.binary', Buffer.from([0, 1, 2, 255, 0, 10]));
  native.lsetxattr(p('setuid'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'));
  native.lsetxattr(p('abs-link'), 'trusted.link-xattr', Buffer.from('on a symlink'));
  native.lsetxattr(p('hard-a'), 'user.big', randomBytes(3000));
  // A big directory.
  const n = opts.bigDirEntries ?? 300;
  await mkdir(p('big-dir'));
  for (let i = 0; i < n; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, n - i) }, (_, k) => writeFile(p('big-dir', `entry-${String(i + k).padStart(6, '0')}-${'y'.repeat((i + k) % 40)}`), i + k === 0 ? 'first' : '')),
    );
  }
  // Times with nanoseconds, last (creating entries moves directory mtimes).
  let t = 1_600_000_000;
  for await (const path of walkPaths(Buffer.from(root))) {
    lutimes(path, t, (t * 7919) % 1_000_000_000);
    t += 3607;
  }
  lutimes(root, 1_700_000_000, 123_456_789);
}

async function* walkPaths(root: Buffer): AsyncGenerator<Buffer> {
  const names = (await readdir(root, { encoding: 'buffer' })) as Buffer[];
  for (const n of names.sort(Buffer.compare)) {
    const path = Buffer.concat([root, Buffer.from('/'), n]);
    if ((await lstat(path)).isDirectory()) yield* walkPaths(path);
    yield path;
  }
}

export interface Entry {
  path: string;
  st: BigIntStats;
  target?: string;
  xattrs: string[];
}

/** Lists a tree (relative latin1 paths of the raw names) with stats, targets and xattrs. */
export async function listTree(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const visit = async (dir: Buffer, rel: string): Promise<void> => {
    for (const n of ((await readdir(dir, { encoding: 'buffer' })) as Buffer[]).sort(Buffer.compare)) {
      const abs = Buffer.concat([dir, Buffer.from('/'), n]);
      const r = `${rel}/${n.toString('latin1')}`;
      const st = await lstat(abs, { bigint: true });
      const xattrs = native
        .llistxattr(abs)
        .map((name) => `${name.toString('latin1')}=${native.lgetxattr(abs, name)?.toString('hex') ?? ''}`)
        .filter((x) => !x.startsWith('security.selinux'))
        .sort();
      const e: Entry = { path: r, st, xattrs };
      if (st.isSymbolicLink()) e.target = ((await readlink(abs, { encoding: 'buffer' })) as Buffer).toString('latin1');
      out.set(r, e);
      if (st.isDirectory()) await visit(abs, r);
    }
  };
  const st = await lstat(root, { bigint: true });
  const rootX = native.llistxattr(root).map((name) => `${name.toString('latin1')}=${native.lgetxattr(root, name)?.toString('hex') ?? ''}`).sort();
  out.set('/', { path: '/', st, xattrs: rootX });
  await visit(Buffer.from(root), '');
  return out;
}

const SEEK_DATA = 3;

/** True when two regular files hold the same bytes; ranges that are holes on both sides are skipped. */
export async function sameContent(a: string | Buffer, b: string | Buffer, size: number): Promise<boolean> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    const bufA = Buffer.alloc(1 << 20);
    const bufB = Buffer.alloc(1 << 20);
    let off = 0;
    while (off < size) {
      const da = native.seekData(fa.fd, off, SEEK_DATA);
      const db = native.seekData(fb.fd, off, SEEK_DATA);
      const next = Math.min(da < 0 ? size : da, db < 0 ? size : db);
      if (next >= size) break; // holes up to the end on both sides
      off = Math.max(off, next - (next % 4096));
      const n = Math.min(bufA.length, size - off);
      const [ra, rb] = await Promise.all([fa.read(bufA, 0, n, off), fb.read(bufB, 0, n, off)]);
      if (ra.bytesRead !== n || rb.bytesRead !== n || bufA.compare(bufB, 0, n, 0, n) !== 0) return false;
      off += n;
    }
    return true;
  } finally {
    await fa.close();
    await fb.close();
  }
}

export async function fileSha256(path: string | Buffer): Promise<string> {
  const fh = await open(path, 'r');
  const h = createHash('sha256');
  try {
    for await (const chunk of fh.createReadStream()) h.update(chunk as Buffer);
  } finally {
    await fh.close().catch(() => undefined);
  }
  return h.digest('hex');
}

export interface CompareOptions {
  /** Also compare directory sizes (never equal across filesystems; off by default). */
  dirSizes?: boolean;
  /** Compare mtimes (on by default). */
  mtimes?: boolean;
  /** Paths to leave out (relative, as listed). */
  ignore?: (path: string) => boolean;
  /** A listing of `a` made earlier with listTree (the source of many comparisons). */
  leftListing?: Map<string, Entry>;
}

/** Compares two trees exactly; returns human-readable differences (empty when identical). */
export async function compareTrees(a: string, b: string, opts: CompareOptions = {}): Promise<string[]> {
  const [la, lb] = await Promise.all([opts.leftListing ?? listTree(a), listTree(b)]);
  const diffs: string[] = [];
  const ignore = opts.ignore ?? (() => false);
  for (const path of new Set([...la.keys(), ...lb.keys()])) {
    if (ignore(path)) continue;
    const x = la.get(path);
    const y = lb.get(path);
    if (x === undefined || y === undefined) {
      diffs.push(`${path}: only in ${x ? a : b}`);
      continue;
    }
    const fields: Array<[string, unknown, unknown]> = [
      ['mode', x.st.mode, y.st.mode],
      ['uid', x.st.uid, y.st.uid],
      ['gid', x.st.gid, y.st.gid],
      ['nlink', x.st.nlink, y.st.nlink],
      ['rdev', x.st.isCharacterDevice() || x.st.isBlockDevice() ? x.st.rdev : 0n, y.st.isCharacterDevice() || y.st.isBlockDevice() ? y.st.rdev : 0n],
      ['target', x.target, y.target],
      ['xattrs', x.xattrs.join(','), y.xattrs.join(',')],
    ];
    if (!x.st.isDirectory() || opts.dirSizes) fields.push(['size', x.st.size, y.st.size]);
    if (opts.mtimes !== false) fields.push(['mtime', x.st.mtimeNs, y.st.mtimeNs]);
    for (const [name, u, v] of fields) if (u !== v) diffs.push(`${path}: ${name} ${String(u)} != ${String(v)}`);
    if (x.st.isFile() && y.st.isFile() && x.st.size === y.st.size && x.st.size > 0n) {
      const pa = Buffer.concat([Buffer.from(a), Buffer.from(path === '/' ? '' : path, 'latin1')]);
      const pb = Buffer.concat([Buffer.from(b), Buffer.from(path === '/' ? '' : path, 'latin1')]);
      if (!(await sameContent(pa, pb, Number(x.st.size)))) diffs.push(`${path}: content differs`);
    }
  }
  // Hardlink groups: the same paths share an inode on both sides.
  const groups = (l: Map<string, Entry>): Map<string, string> => {
    const byIno = new Map<bigint, string[]>();
    for (const e of l.values()) if (e.st.isFile() && e.st.nlink > 1n) byIno.set(e.st.ino, [...(byIno.get(e.st.ino) ?? []), e.path]);
    const m = new Map<string, string>();
    for (const paths of byIno.values()) for (const p of paths) m.set(p, paths.sort().join('|'));
    return m;
  };
  const ga = groups(la);
  const gb = groups(lb);
  for (const path of new Set([...ga.keys(), ...gb.keys()])) {
    if (ignore(path)) continue;
    if (ga.get(path) !== gb.get(path)) diffs.push(`${path}: hardlink group ${ga.get(path)} != ${gb.get(path)}`);
  }
  return diffs;
}
