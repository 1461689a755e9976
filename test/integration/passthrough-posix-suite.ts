/**
 * Test helper (not a test file): a POSIX conformance sequence run in a directory, recording each
 * step's result or errno code, so that the same sequence on a plain directory and on the
 * passthrough mount can be compared step by step. Synchronous: the server runs in another process.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { native } from '../../src/native/index.js';

export interface Step {
  step: string;
  result: unknown;
}

const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
const S_IFSOCK = 0o140000;
const O_PATH = 0o10000000;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const RENAME_WHITEOUT = 4;

/** What must match between two directories: type, permissions, size, links, owner, device. */
export function snap(path: string): Record<string, unknown> {
  const st = fs.lstatSync(path, { bigint: true });
  const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'sock' : st.isCharacterDevice() ? 'chr' : 'blk';
  return { type, perm: Number(st.mode & 0o7777n), size: type === 'dir' ? undefined : Number(st.size), nlink: Number(st.nlink), uid: Number(st.uid), gid: Number(st.gid), rdev: Number(st.rdev) };
}

/** Deterministic pseudo-random bytes. */
export function noise(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

export function posixSuite(root: string): Step[] {
  const steps: Step[] = [];
  const p = (name: string): string => join(root, name);
  const run = (step: string, f: () => unknown): void => {
    try {
      steps.push({ step, result: f() ?? 'ok' });
    } catch (e) {
      steps.push({ step, result: (e as { code?: string }).code ?? String(e) });
    }
  };

  // Files: O_EXCL, contents, O_TRUNC, O_APPEND, truncate, fsync.
  run('create O_EXCL', () => fs.closeSync(fs.openSync(p('f'), 'wx', 0o644)));
  run('create O_EXCL again', () => fs.openSync(p('f'), 'wx'));
  run('write', () => fs.writeFileSync(p('f'), 'hello, world\n'));
  run('append', () => fs.appendFileSync(p('f'), 'more\n'));
  run('read', () => fs.readFileSync(p('f'), 'utf8'));
  run('O_TRUNC', () => (fs.closeSync(fs.openSync(p('f'), fs.constants.O_WRONLY | fs.constants.O_TRUNC)), snap(p('f'))));
  run('rewrite', () => fs.writeFileSync(p('f'), '0123456789'));
  run('truncate shorter', () => (fs.truncateSync(p('f'), 4), fs.readFileSync(p('f'), 'utf8')));
  run('truncate longer', () => (fs.truncateSync(p('f'), 10000), snap(p('f'))));
  run('fsync fdatasync', () => {
    const fd = fs.openSync(p('f'), 'r+');
    fs.writeSync(fd, 'sync', 0);
    fs.fsyncSync(fd);
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
  });
  // Attributes.
  run('chmod', () => (fs.chmodSync(p('f'), 0o4751), snap(p('f'))));
  run('chown', () => (fs.chownSync(p('f'), 1000, 1001), snap(p('f'))));
  run('utimes', () => {
    fs.utimesSync(p('f'), 1000.5, 2000.25);
    const st = fs.statSync(p('f'), { bigint: true });
    return [st.atimeNs.toString(), st.mtimeNs.toString()];
  });
  // Links.
  run('link', () => (fs.linkSync(p('f'), p('g')), snap(p('g'))));
  run('link exists', () => fs.linkSync(p('f'), p('g')));
  run('unlink link', () => (fs.unlinkSync(p('g')), snap(p('f')).nlink));
  run('symlink', () => (fs.symlinkSync('f', p('s')), fs.readlinkSync(p('s'))));
  run('symlink exists', () => fs.symlinkSync('x', p('s')));
  run('O_EXCL on a symlink', () => fs.openSync(p('s'), 'wx'));
  run('O_NOFOLLOW on a symlink', () => fs.openSync(p('s'), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW));
  run('symlink out', () => (fs.symlinkSync('/etc/hostname', p('out')), snap(p('out'))));
  run('loop', () => (fs.symlinkSync('loop2', p('loop1')), fs.symlinkSync('loop1', p('loop2')), fs.readFileSync(p('loop1'))));
  run('long name', () => fs.openSync(p('n'.repeat(256)), 'w'));
  run('long dir name', () => fs.mkdirSync(p('d'.repeat(256))));
  run('255 bytes ok', () => (fs.writeFileSync(p('m'.repeat(255)), ''), fs.unlinkSync(p('m'.repeat(255)))));
  // Directories.
  run('mkdir', () => (fs.mkdirSync(p('d'), 0o750), fs.mkdirSync(p('d/e')), snap(p('d'))));
  run('mkdir exists', () => fs.mkdirSync(p('d')));
  run('rmdir non-empty', () => fs.rmdirSync(p('d')));
  run('unlink a directory', () => fs.unlinkSync(p('d')));
  run('rmdir a file', () => fs.rmdirSync(p('f')));
  run('mkdir under a file', () => fs.mkdirSync(p('f/x')));
  run('rename file over non-empty dir', () => fs.renameSync(p('f'), p('d')));
  run('rename dir over file', () => fs.renameSync(p('d/e'), p('f')));
  run('rename dir over non-empty dir', () => (fs.mkdirSync(p('d2')), fs.writeFileSync(p('d/e/x'), 'x'), fs.renameSync(p('d2'), p('d/e'))));
  run('rename dir into itself', () => fs.renameSync(p('d'), p('d/e/inside')));
  run('rename dir over empty dir', () => (fs.mkdirSync(p('d3')), fs.renameSync(p('d2'), p('d3')), fs.readdirSync(root).sort()));
  run('rename file', () => (fs.writeFileSync(p('r'), 'r'), fs.renameSync(p('r'), p('d/r')), fs.readFileSync(p('d/r'), 'utf8')));
  // RENAME2 flags.
  run('renameat2', () => {
    fs.writeFileSync(p('a'), 'A');
    fs.writeFileSync(p('b'), 'B');
    const dir = fs.openSync(root, 'r');
    const out: unknown[] = [];
    for (const [from, to, flags] of [['a', 'b', RENAME_NOREPLACE], ['a', 'b', RENAME_EXCHANGE], ['a', 'c', RENAME_WHITEOUT], ['x', 'y', RENAME_EXCHANGE], ['b', 'c', RENAME_NOREPLACE | RENAME_EXCHANGE]] as const) {
      try {
        native.ptRenameat2(dir, from, dir, to, flags);
        out.push('ok');
      } catch (e) {
        out.push((e as { code: string }).code);
      }
    }
    fs.closeSync(dir);
    return [...out, fs.readFileSync(p('b'), 'utf8'), fs.readFileSync(p('c'), 'utf8'), snap(p('a'))];
  });
  // Special files.
  run('fifo', () => (native.mknod(p('fifo'), S_IFIFO | 0o640, 0, 0), snap(p('fifo'))));
  run('char device', () => (native.mknod(p('null'), S_IFCHR | 0o666, 1, 3), snap(p('null'))));
  run('whiteout', () => (native.mknod(p('wh'), S_IFCHR, 0, 0), snap(p('wh'))));
  run('socket', () => (native.mknod(p('sock'), S_IFSOCK | 0o755, 0, 0), snap(p('sock'))));
  run('mknod exists', () => native.mknod(p('fifo'), S_IFIFO | 0o640, 0, 0));
  // Extended attributes.
  run('xattrs', () => {
    native.lsetxattr(p('d'), 'user.a', Buffer.from('1'));
    native.lsetxattr(p('d'), 'trusted.overlay.opaque', Buffer.from('y'));
    native.lsetxattr(p('d'), 'trusted.overlay.redirect', Buffer.alloc(300, 0x61));
    native.lsetxattr(p('null'), 'trusted.overlay.x', Buffer.from([0, 1, 2]));
    const fd = fs.openSync(p('d'), O_PATH);
    native.ptRemovexattr(fd, 'user.a');
    let again: unknown = 'ok';
    try {
      native.ptRemovexattr(fd, 'user.a');
    } catch (e) {
      again = (e as { code: string }).code;
    }
    fs.closeSync(fd);
    const names = native.llistxattr(p('d')).map((n) => n.toString()).sort();
    return [names, native.lgetxattr(p('d'), 'trusted.overlay.redirect')?.length, native.lgetxattr(p('d'), 'user.none'), again, native.lgetxattr(p('null'), 'trusted.overlay.x')];
  });
  run('user xattr on a symlink', () => native.lsetxattr(p('s'), 'user.a', Buffer.from('1')));
  run('trusted xattr on a symlink', () => (native.lsetxattr(p('s'), 'trusted.a', Buffer.from('1')), native.llistxattr(p('s')).map(String)));
  // Sparse files, SEEK_DATA / SEEK_HOLE, fallocate.
  run('sparse', () => {
    const fd = fs.openSync(p('sparse'), 'w+');
    fs.writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 8 << 20);
    fs.ftruncateSync(fd, 16 << 20);
    const r = [native.seekData(fd, 0, 3), native.seekData(fd, 8 << 20, 4), native.seekData(fd, (8 << 20) + 4096, 3), snap(p('sparse')).size];
    fs.closeSync(fd);
    return r;
  });
  run('fallocate', () => {
    const fd = fs.openSync(p('sparse'), 'r+');
    native.ptFallocate(fd, 0, 0, 1 << 20);
    native.ptFallocate(fd, 0x01 | 0x02, 8 << 20, 4096);
    const r = [native.seekData(fd, 0, 4), native.seekData(fd, 1 << 20, 3), snap(p('sparse')).size];
    fs.closeSync(fd);
    return r;
  });
  // Large sequential writes and reads.
  run('large file', () => {
    const fd = fs.openSync(p('large'), 'w');
    const h = createHash('sha256');
    for (let i = 0; i < 48; i++) {
      const chunk = noise(i + 1, 1 << 20);
      h.update(chunk);
      fs.writeSync(fd, chunk);
    }
    fs.closeSync(fd);
    const back = createHash('sha256');
    const rd = fs.openSync(p('large'), 'r');
    const buf = Buffer.alloc(300_000);
    for (let n; (n = fs.readSync(rd, buf)) > 0; ) back.update(buf.subarray(0, n));
    fs.closeSync(rd);
    return [h.digest('hex') === back.digest('hex'), snap(p('large')).size];
  });
  run('listing', () => fs.readdirSync(root).sort());
  return steps;
}

/** Everything a tree holds that must match: per path its snap, contents digest and xattrs. */
export function treeOf(root: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const visit = (rel: string): void => {
    const path = rel === '' ? root : join(root, rel);
    const s = snap(path);
    const xattrs = Object.fromEntries(native.llistxattr(path).map((n) => [n.toString(), native.lgetxattr(path, n)?.toString('hex')]));
    const data = s.type === 'file' ? createHash('sha256').update(fs.readFileSync(path)).digest('hex') : s.type === 'link' ? fs.readlinkSync(path) : undefined;
    out[rel || '.'] = { ...s, xattrs, data };
    if (s.type === 'dir') for (const name of fs.readdirSync(path).sort()) visit(rel === '' ? name : `${rel}/${name}`);
  };
  visit('');
  return out;
}

/** renameat2 with `flags` (1 RENAME_NOREPLACE, 2 RENAME_EXCHANGE, 4 RENAME_WHITEOUT) through the parents' fds. */
export function renameat2(from: string, to: string, flags: number): void {
  const open = (p: string): number => fs.openSync(dirname(p), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const a = open(from);
  try {
    const b = open(to);
    try {
      native.ptRenameat2(a, basename(from), b, basename(to), flags);
    } finally {
      fs.closeSync(b);
    }
  } finally {
    fs.closeSync(a);
  }
}
