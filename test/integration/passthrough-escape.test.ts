/**
 * Nothing outside the shared directory is reached, whatever the guest sends. Hostile requests go
 * straight to `PassthroughFs` (and a few as raw FUSE requests through the server): names with "/"
 * and "..", symlinks used as parents (absolute and relative targets pointing out), ".." at the
 * root, LINK to names outside, a directory renamed in and out of the share by another process
 * while lookups run through it. A few more go through the kernel. A sentinel tree outside the
 * share (atimes set in the past, so that any read would move them) must stay exactly as it was,
 * and no fd of the daemon may point into it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Metrics, silentLogger } from '../../src/base/index.js';
import { PassthroughFs } from '../../src/fs/passthrough/index.js';
import { Errno, FsError } from '../../src/fs/types.js';
import { FuseServer, Opcode } from '../../src/fuse/index.js';
import { native } from '../../src/native/index.js';
import { cstr, exchange, initArgs, parseEntry, type Reply, request } from '../helpers/fuse-client.js';
import { type PassthroughMount, startPassthrough } from './passthrough-mount.js';

const ROOT = 1;
const ctx = { uid: 0, gid: 0, pid: 1 };
const b = (s: string): Buffer => Buffer.from(s);
const OLD = 946684800; // 2000-01-01: relatime moves an atime this old on any read

async function errno(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    throw e;
  }
  return 0;
}

/** Names in a directory, listed with O_NOATIME so that looking does not move its atime. */
function names(dir: string): string[] {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOATIME);
  try {
    return native.ptGetdents(fd, 0n, 1 << 16).map((d) => d.name.toString()).filter((n) => n !== '.' && n !== '..');
  } finally {
    fs.closeSync(fd);
  }
}

/** Metadata of every entry of a tree, atimes included, read without reading any content. */
function snapshot(root: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const visit = (path: string): void => {
    const st = fs.lstatSync(path, { bigint: true });
    out[path] = [st.mode, st.size, st.nlink, st.uid, st.atimeNs, st.mtimeNs, st.ctimeNs, native.llistxattr(path).map(String)];
    if (st.isDirectory()) for (const n of names(path).sort()) visit(join(path, n));
  };
  visit(root);
  return out;
}

/** Targets of this process's fds (the in-process filesystem's O_PATH fds among them). */
function fdTargets(): string[] {
  return fs.readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [fs.readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return [];
    }
  });
}

describe('the passthrough filesystem never reaches outside the shared directory', () => {
  let work: string;
  let share: string;
  let sentinel: string;
  let pfs: PassthroughFs;
  let before0: Record<string, unknown>;

  before(() => {
    work = fs.mkdtempSync(join(tmpdir(), 'damselfly-pt-escape-'));
    share = join(work, 'share');
    sentinel = join(work, 'outside', 'sentinel-dir');
    fs.mkdirSync(join(sentinel, 'sub'), { recursive: true });
    fs.mkdirSync(join(share, 'd', 'inner'), { recursive: true });
    fs.writeFileSync(join(sentinel, 'secret'), 'outside secret\n');
    fs.writeFileSync(join(sentinel, 'sub', 'deeper'), 'deeper\n');
    fs.writeFileSync(join(work, 'outside', 'victim'), 'shared by a hardlink\n');
    fs.linkSync(join(work, 'outside', 'victim'), join(share, 'hl'));
    fs.symlinkSync(sentinel, join(share, 'evil'));
    fs.symlinkSync('../outside/sentinel-dir', join(share, 'evil-rel'));
    fs.writeFileSync(join(share, 'd', 'file'), 'inside\n');
    for (const p of [sentinel, join(sentinel, 'secret'), join(sentinel, 'sub'), join(sentinel, 'sub', 'deeper')]) fs.utimesSync(p, OLD, Date.now() / 1000);
    before0 = snapshot(sentinel);
    pfs = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: true, log: silentLogger, metrics: new Metrics() });
    pfs.init({ flags: pfs.wantedInitFlags });
  });
  after(() => {
    pfs.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const untouched = (): void => {
    assert.deepEqual(snapshot(sentinel), before0, 'the sentinel tree changed');
    assert.deepEqual(fdTargets().filter((t) => t.startsWith(sentinel)), [], 'an fd points outside');
  };

  test('names: "/" anywhere is EINVAL, ".." of the root is the root', async () => {
    for (const name of ['../outside', 'evil/secret', 'evil/../x', '/etc/passwd', 'd/../../outside', '..//x']) {
      assert.equal(await errno(pfs.lookup(ctx, ROOT, b(name))), Errno.EINVAL, name);
      assert.equal(await errno(pfs.create(ctx, ROOT, b(name), 0o644, 0o1, 0)), Errno.EINVAL, name);
      assert.equal(await errno(pfs.symlink(ctx, ROOT, b(name), b('x'))), Errno.EINVAL, name);
      assert.equal(await errno(pfs.rename(ctx, ROOT, b('d'), ROOT, b(name), 0)), Errno.EINVAL, name);
    }
    assert.equal((await pfs.lookup(ctx, ROOT, b('..'))).nodeid, ROOT);
    const d = await pfs.lookup(ctx, ROOT, b('d'));
    const inner = await pfs.lookup(ctx, d.nodeid, b('inner'));
    assert.equal((await pfs.lookup(ctx, inner.nodeid, b('..'))).nodeid, d.nodeid);
    assert.equal((await pfs.lookup(ctx, d.nodeid, b('..'))).nodeid, ROOT);
    assert.equal((await pfs.lookup(ctx, ROOT, b('..'))).nodeid, ROOT);
    untouched();
  });

  test('symlinks pointing out are data: never parents, never followed', async () => {
    for (const link of ['evil', 'evil-rel']) {
      const e = await pfs.lookup(ctx, ROOT, b(link));
      assert.equal(e.attr.mode & 0o170000, 0o120000, link);
      const n = e.nodeid;
      assert.equal(await errno(pfs.lookup(ctx, n, b('secret'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.lookup(ctx, n, b('..'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.lookup(ctx, n, b('.'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.create(ctx, n, b('pwn'), 0o644, 0o1, 0)), Errno.ENOTDIR);
      assert.equal(await errno(pfs.mkdir(ctx, n, b('pwn'), 0o755, 0)), Errno.ENOTDIR);
      assert.equal(await errno(pfs.mknod(ctx, n, b('pwn'), 0o010644, 0, 0)), Errno.ENOTDIR);
      assert.equal(await errno(pfs.symlink(ctx, n, b('pwn'), b('/'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.unlink(ctx, n, b('secret'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.rmdir(ctx, n, b('sub'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.rename(ctx, n, b('secret'), ROOT, b('stolen'), 0)), Errno.ENOTDIR);
      assert.equal(await errno(pfs.rename(ctx, ROOT, b('hl'), n, b('planted'), 0)), Errno.ENOTDIR);
      assert.equal(await errno(pfs.link(ctx, (await pfs.lookup(ctx, ROOT, b('hl'))).nodeid, n, b('planted'))), Errno.ENOTDIR);
      assert.equal(await errno(pfs.opendir(ctx, n, 0)), Errno.ENOTDIR);
      assert.equal(await errno(pfs.open(ctx, n, 0)), Errno.EBADF);
      assert.equal(await errno(pfs.open(ctx, n, 0o1 | 0o1000)), Errno.EBADF);
      assert.equal(await errno(pfs.setattr(ctx, n, { valid: 0, size: 0 })), Errno.EBADF);
      assert.equal(await errno(pfs.setattr(ctx, n, { valid: 0, mode: 0o777 })), Errno.EOPNOTSUPP);
      // Owner, times and xattrs change the link itself (lchown, utimensat NOFOLLOW semantics).
      await pfs.setattr(ctx, n, { valid: 0, uid: 7, gid: 7, atime: { sec: 5, nsec: 0 }, mtime: { sec: 5, nsec: 0 } });
      assert.equal(fs.lstatSync(join(share, link)).uid, 7);
      await pfs.setxattr(ctx, n, b('trusted.overlay.opaque'), b('y'), 0);
      assert.deepEqual((await pfs.listxattr(ctx, n)).map(String), ['trusted.overlay.opaque']);
      await pfs.removexattr(ctx, n, b('trusted.overlay.opaque'));
      assert.equal(await errno(pfs.getxattr(ctx, n, b('user.x'))), Errno.ENODATA);
      assert.equal(Buffer.from(await pfs.readlink(ctx, n)).toString(), fs.readlinkSync(join(share, link)));
      await pfs.statfs(ctx, n);
      await pfs.getattr(ctx, n);
      // A second name for the symlink itself, inside the share.
      await pfs.link(ctx, n, ROOT, b(`${link}-2`));
      assert.ok(fs.lstatSync(join(share, `${link}-2`)).isSymbolicLink());
    }
    untouched();
  });

  test('hardlinks: one made on the host may be read; LINK never names anything outside', async () => {
    const hl = await pfs.lookup(ctx, ROOT, b('hl'));
    const o = await pfs.open(ctx, hl.nodeid, 0);
    const buf = Buffer.alloc(64);
    const n = await pfs.read(ctx, hl.nodeid, o.fh, 0, 64, [buf]);
    assert.equal(buf.subarray(0, n).toString(), 'shared by a hardlink\n');
    await pfs.release(ctx, hl.nodeid, o.fh, 0);
    for (const name of ['../outside/x', '../../x', 'd/../../x']) assert.equal(await errno(pfs.link(ctx, hl.nodeid, ROOT, b(name))), Errno.EINVAL);
    assert.deepEqual(names(join(work, 'outside')).sort(), ['sentinel-dir', 'victim']);
    untouched();
  });

  test('node ids never handed out, or forgotten, are refused', async () => {
    assert.equal(await errno(pfs.getattr(ctx, 424242)), Errno.EBADF);
    assert.equal(await errno(pfs.lookup(ctx, 2 ** 40, b('x'))), Errno.EBADF);
    const e = await pfs.lookup(ctx, ROOT, b('d'));
    pfs.forget(e.nodeid, 1000);
    assert.equal(await errno(pfs.mkdir(ctx, e.nodeid, b('x'), 0o755, 0)), Errno.EBADF);
    pfs.forget(999999, 1);
  });

  test('raw FUSE requests through the server get the same answers', async () => {
    const server = new FuseServer(pfs, { log: silentLogger, metrics: new Metrics() });
    const send = (bytes: Buffer): Promise<Reply> => exchange(server, bytes);
    const init = await send(request(Opcode.INIT, 0, initArgs()).bytes);
    assert.equal(init.error, 0);
    const flags = BigInt(init.payload.readUInt32LE(12)) | (BigInt(init.payload.readUInt32LE(32)) << 32n);
    assert.notEqual(flags & (1n << 27n), 0n, 'FUSE_SUBMOUNTS agreed');
    assert.notEqual(flags & (1n << 13n), 0n, 'FUSE_DO_READDIRPLUS agreed');
    assert.equal(parseEntry((await send(request(Opcode.LOOKUP, ROOT, cstr('..')).bytes)).payload).nodeid, ROOT);
    assert.equal((await send(request(Opcode.LOOKUP, ROOT, cstr('evil/secret')).bytes)).error, -Errno.EINVAL);
    const evil = parseEntry((await send(request(Opcode.LOOKUP, ROOT, cstr('evil')).bytes)).payload).nodeid;
    assert.equal((await send(request(Opcode.LOOKUP, evil, cstr('secret')).bytes)).error, -Errno.ENOTDIR);
    const mkdirIn = Buffer.concat([Buffer.from(new Uint32Array([0o755, 0]).buffer), cstr('pwn')]);
    assert.equal((await send(request(Opcode.MKDIR, evil, mkdirIn).bytes)).error, -Errno.ENOTDIR);
    assert.equal((await send(request(Opcode.MKDIR, ROOT, Buffer.concat([mkdirIn.subarray(0, 8), cstr('../pwn')])).bytes)).error, -Errno.EINVAL);
    assert.equal((await send(request(Opcode.IOCTL, ROOT, Buffer.alloc(32)).bytes)).error, -Errno.ENOTTY);
    untouched();
  });

  test('a directory renamed in and out of the share while lookups run through it', async () => {
    const race = join(share, 'race');
    const away = join(work, 'outside', 'race');
    fs.mkdirSync(join(race, 'deep'), { recursive: true });
    const script = `const fs=require('fs');const end=Date.now()+3000;let n=0;while(Date.now()<end){fs.renameSync(${JSON.stringify(race)},${JSON.stringify(away)});fs.renameSync(${JSON.stringify(away)},${JSON.stringify(race)});n++}console.log(n)`;
    const racer = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let rounds = '';
    racer.stdout.on('data', (d: Buffer) => (rounds += d.toString()));
    const done = once(racer, 'exit');
    let escapes = 0;
    let tries = 0;
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      tries++;
      try {
        const r = await pfs.lookup(ctx, ROOT, b('race'));
        const deep = await pfs.lookup(ctx, r.nodeid, b('deep'));
        for (const [node, parent] of [[r.nodeid, ROOT], [deep.nodeid, r.nodeid]] as const) {
          const up = await pfs.lookup(ctx, node, b('..')).catch((e: unknown) => e);
          if (up instanceof FsError) assert.equal(up.errno, Errno.ENOENT);
          else if ((up as { nodeid: number }).nodeid !== parent) escapes++;
          else pfs.forget(parent, 1);
          // Sibling names of the outside parent must never resolve through the moved directory.
          assert.equal(await errno(pfs.lookup(ctx, node, b('sentinel-dir'))), Errno.ENOENT);
        }
        pfs.forget(deep.nodeid, 1);
        pfs.forget(r.nodeid, 1);
      } catch (e) {
        if (!(e instanceof FsError && e.errno === Errno.ENOENT)) throw e;
      }
      await new Promise((r) => setImmediate(r));
    }
    await done;
    assert.equal(escapes, 0);
    assert.ok(Number(rounds) > 10 && tries > 10, `racer ${rounds} rounds, ${tries} lookups`);
    assert.ok(fs.existsSync(race));
    assert.deepEqual(names(join(work, 'outside')).sort(), ['sentinel-dir', 'victim']);
    untouched();
  });

  describe('through the kernel', () => {
    let mnt: string;
    let m: PassthroughMount;
    before(async () => {
      mnt = join(work, 'mnt');
      fs.mkdirSync(mnt);
      m = await startPassthrough(share, mnt);
    });
    after(async () => m?.stop());

    test('symlinks out are only read as links; ".." stays in the mount; hardlinks read', () => {
      assert.equal(fs.readlinkSync(join(mnt, 'evil')), sentinel);
      assert.ok(fs.lstatSync(join(mnt, 'evil-rel')).isSymbolicLink());
      assert.throws(() => fs.openSync(join(mnt, 'evil'), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW), { code: 'ELOOP' });
      assert.throws(() => fs.mkdirSync(join(mnt, 'evil')), { code: 'EEXIST' });
      assert.throws(() => fs.openSync(join(mnt, 'evil'), 'wx'), { code: 'EEXIST' });
      assert.equal(fs.realpathSync(join(mnt, 'd', 'inner', '..', '..')), mnt);
      assert.deepEqual(fs.readdirSync(join(mnt, '..')).sort(), fs.readdirSync(work).sort());
      assert.equal(fs.readFileSync(join(mnt, 'hl'), 'utf8'), 'shared by a hardlink\n');
      fs.writeFileSync(join(mnt, 'd', 'made-through-mount'), 'x');
      fs.renameSync(join(mnt, 'd', 'made-through-mount'), join(mnt, 'made'));
      fs.unlinkSync(join(mnt, 'evil-rel')); // removes the link only
      assert.ok(fs.existsSync(sentinel));
      assert.equal(fs.readFileSync(join(share, 'made'), 'utf8'), 'x');
      untouched();
    });
  });
});
