/**
 * The passthrough filesystem driven in-process on a temp directory (no kernel mount): node ids and
 * lookup counts, credentials and umask of creating calls, open-flag masking, reads and writes from
 * scatter lists, SETATTR, xattrs (and ENOSYS when off), RENAME2 flags, SEEK_DATA/SEEK_HOLE,
 * readdir cookies over a large directory, READDIRPLUS lookup counting, submount announcement,
 * cache policies, and the session reset.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, statfsSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { IdTranslation, PassthroughFs, type PassthroughOptions, XattrMap } from '../../../src/fs/passthrough/index.js';
import { type DirEntry, type DirEntryPlus, type EntryReply, Errno, FsError } from '../../../src/fs/types.js';
import { FuseServer, Opcode } from '../../../src/fuse/index.js';
import { type NoWaitFile, native, readNoWait } from '../../../src/native/index.js';
import { AclTag, aclXattr } from '../../helpers/acl.js';
import { cstr, exchange, initArgs, parseEntry, request, u32Args } from '../../helpers/fuse-client.js';

const ROOT = 1;
const ctx = { uid: 0, gid: 0, pid: 1 };
const SUBMOUNTS = 1n << 27n;
const DIRECT_IO_ALLOW_MMAP = 1n << 36n;
const b = (s: string): Buffer => Buffer.from(s);

function makeFs(root: string, extra: Partial<PassthroughOptions> = {}): PassthroughFs {
  const fs = new PassthroughFs({ root, xattr: true, cache: 'auto', announceSubmounts: true, log: silentLogger, metrics: new Metrics(), ...extra });
  fs.init({ flags: fs.wantedInitFlags });
  return fs;
}

type NativeFn = (...args: unknown[]) => unknown;

/** Runs `f` with one addon function replaced by `wrap` of it (fault injection), then puts it back. */
async function withNative<T>(name: keyof typeof native, wrap: (orig: NativeFn) => NativeFn, f: () => Promise<T>): Promise<T> {
  const table = native as unknown as Record<string, NativeFn>;
  const orig = table[name] as NativeFn;
  table[name] = wrap(orig);
  try {
    return await f();
  } finally {
    table[name] = orig;
  }
}

async function errno(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    throw e;
  }
  return 0;
}

async function lookup(fs: PassthroughFs, path: string): Promise<EntryReply> {
  let e: EntryReply | undefined;
  let node = ROOT;
  for (const part of path.split('/')) {
    e = await fs.lookup(ctx, node, b(part));
    node = e.nodeid;
  }
  return e as EntryReply;
}

/** Every entry of a directory, reading `per` entries per READDIR and resuming at the last offset. */
async function listAll(fs: PassthroughFs, node: number, fh: bigint, per: number, start = 0): Promise<DirEntry[]> {
  const out: DirEntry[] = [];
  let offset = start;
  for (;;) {
    const got: DirEntry[] = [];
    await fs.readdir(ctx, node, fh, offset, (e) => (got.length < per ? (got.push(e), true) : false));
    if (got.length === 0) return out;
    out.push(...got);
    offset = (got[got.length - 1] as DirEntry).offset;
  }
}

describe('passthrough filesystem (in-process)', () => {
  let dir: string;
  let share: string;
  let fs: PassthroughFs;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'damselfly-pt-unit-'));
    share = join(dir, 'share');
    mkdirSync(share);
    writeFileSync(join(share, 'file'), 'hello world\n');
    linkSync(join(share, 'file'), join(share, 'hardlink'));
    mkdirSync(join(share, 'sub'));
    symlinkSync('/etc', join(share, 'link'));
    fs = makeFs(share);
  });
  after(() => {
    fs.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('one node id per host inode, counted lookups, FORGET closes', async () => {
    const before = fs.counts.inodes;
    const a = await lookup(fs, 'file');
    const h = await lookup(fs, 'hardlink');
    assert.equal(a.nodeid, h.nodeid);
    assert.ok(a.nodeid > 1 && a.nodeid < 2 ** 40);
    assert.equal(a.attr.size, 12);
    assert.equal(a.attr.ino, Number(statSync(join(share, 'file')).ino));
    assert.equal(fs.counts.inodes, before + 1);
    fs.forget(a.nodeid, 1);
    assert.equal((await fs.getattr(ctx, a.nodeid)).attr.size, 12);
    fs.forget(a.nodeid, 1);
    assert.equal(fs.counts.inodes, before);
    assert.equal(await errno(fs.getattr(ctx, a.nodeid)), Errno.EBADF);
    // "." is the parent, ".." of the root is the root, FORGET of the root is harmless.
    assert.equal((await fs.lookup(ctx, ROOT, b('.'))).nodeid, ROOT);
    assert.equal((await fs.lookup(ctx, ROOT, b('..'))).nodeid, ROOT);
    fs.forget(ROOT, 100);
    assert.equal((await fs.getattr(ctx, ROOT)).attr.ino, Number(statSync(share).ino));
    const sub = await lookup(fs, 'sub');
    assert.equal((await fs.lookup(ctx, sub.nodeid, b('..'))).nodeid, ROOT);
    const link = await lookup(fs, 'link');
    assert.equal(link.attr.mode & 0o170000, 0o120000);
    assert.equal(Buffer.from(await fs.readlink(ctx, link.nodeid)).toString(), '/etc');
    assert.equal(await errno(fs.lookup(ctx, ROOT, b('missing'))), Errno.ENOENT);
  });

  test('creating calls run as the guest user, with the mode the kernel sent', async () => {
    const old = process.umask(0o077);
    try {
      const guest = { uid: 1234, gid: 5678, pid: 1 };
      const writable = await fs.mkdir(ctx, ROOT, b('open'), 0o777, 0o022);
      const d = await fs.mkdir(guest, writable.nodeid, b('d'), 0o750, 0o022);
      assert.deepEqual([d.attr.uid, d.attr.gid, d.attr.mode & 0o7777], [1234, 5678, 0o750]);
      const c = await fs.create(guest, writable.nodeid, b('c'), 0o664, 0o2 | 0o100, 0o022);
      assert.deepEqual([c.entry.attr.uid, c.entry.attr.gid, c.entry.attr.mode & 0o7777], [1234, 5678, 0o664]);
      const s = await fs.symlink(guest, writable.nodeid, b('s'), b('../../outside'));
      assert.equal(lstatSync(join(share, 'open', 's')).uid, 1234);
      assert.equal(s.attr.size, 13);
      const fifo = await fs.mknod(guest, writable.nodeid, b('fifo'), 0o010644, 0, 0);
      assert.equal(fifo.attr.mode, 0o010644);
      // Under FUSE_DONT_MASK (the kernel left it to us) the request's umask applies.
      const masking = makeFs(share);
      masking.init({ flags: 1n << 6n });
      const open = await masking.lookup(ctx, ROOT, b('open'));
      const m = await masking.mkdir(guest, open.nodeid, b('masked'), 0o777, 0o027);
      assert.equal(m.attr.mode & 0o7777, 0o750);
      masking.close();
      // Permission is the host's verdict for that user: no write access to the root (0755, root's).
      assert.equal(await errno(fs.mkdir(guest, ROOT, b('denied'), 0o755, 0)), Errno.EACCES);
      assert.equal(statSync(join(share, 'open')).uid, 0);
      await fs.release(ctx, c.entry.nodeid, c.open.fh, 0);
    } finally {
      process.umask(old);
    }
  });

  test('a guest user creates with its own groups only, never the daemon\'s (CVE-2022-0358 in virtiofsd)', async (t) => {
    // A daemon started with a supplementary group G, and a setgid directory only G may write: a
    // guest user in no such group must be refused, as on the host.
    const [getgroups, setgroups] = [process.getgroups, process.setgroups] as [() => number[], (g: number[]) => void];
    const before = getgroups();
    const own = 4321;
    setgroups([own]);
    t.after(() => setgroups(before.filter((g) => g !== process.getegid?.())));
    const daemon = getgroups();
    mkdirSync(join(share, 'setgid-dir'));
    chownSync(join(share, 'setgid-dir'), 0, own);
    chmodSync(join(share, 'setgid-dir'), 0o2770);
    const g = await fs.lookup(ctx, ROOT, b('setgid-dir'));
    const guest = { uid: 1000, gid: 1000, pid: 1 };
    assert.equal(await errno(fs.create(guest, g.nodeid, b('f'), 0o102755, 0o1, 0)), Errno.EACCES);
    assert.equal(await errno(fs.mkdir(guest, g.nodeid, b('d'), 0o755, 0)), Errno.EACCES);
    assert.equal(await errno(fs.mknod(guest, g.nodeid, b('p'), 0o010644, 0, 0)), Errno.EACCES);
    assert.equal(await errno(fs.symlink(guest, g.nodeid, b('s'), b('t'))), Errno.EACCES);
    assert.deepEqual(readdirSync(join(share, 'setgid-dir')), []);
    // With the group in the request (FUSE_CREATE_SUPP_GROUP), it is the user's: allowed.
    const member = { ...guest, groups: [own] };
    const c = await fs.create(member, g.nodeid, b('f'), 0o100644, 0o1, 0);
    assert.equal(statSync(join(share, 'setgid-dir', 'f')).gid, own);
    await fs.release(ctx, c.entry.nodeid, c.open.fh, 0);
    // The daemon's own groups are back after each call.
    assert.deepEqual(getgroups(), daemon);
  });

  test('names with "/" and creating "." or ".." are EINVAL', async () => {
    for (const bad of ['a/b', '../x', '/etc', 'sub/..']) {
      assert.equal(await errno(fs.lookup(ctx, ROOT, b(bad))), Errno.EINVAL, bad);
      assert.equal(await errno(fs.mkdir(ctx, ROOT, b(bad), 0o755, 0)), Errno.EINVAL, bad);
    }
    for (const dot of ['.', '..']) {
      assert.equal(await errno(fs.mkdir(ctx, ROOT, b(dot), 0o755, 0)), Errno.EINVAL);
      assert.equal(await errno(fs.unlink(ctx, ROOT, b(dot))), Errno.EINVAL);
      assert.equal(await errno(fs.rename(ctx, ROOT, b('file'), ROOT, b(dot), 0)), Errno.EINVAL);
    }
  });

  test('open masks kernel-internal flags, honours O_TRUNC, opens only regular files and directories', async () => {
    writeFileSync(join(share, 'exec'), 'abc');
    const e = await lookup(fs, 'exec');
    const o = await fs.open(ctx, e.nodeid, 0o100000 | 0x20); // O_LARGEFILE | __FMODE_EXEC
    const dst = Buffer.alloc(8);
    assert.equal(await fs.read(ctx, e.nodeid, o.fh, 0, 8, [dst.subarray(0, 1), dst.subarray(1)]), 3);
    assert.equal(dst.subarray(0, 3).toString(), 'abc');
    await fs.flush(ctx, e.nodeid, o.fh);
    await fs.release(ctx, e.nodeid, o.fh, 0);
    const t = await fs.open(ctx, e.nodeid, 0o1 | 0o1000); // O_WRONLY | O_TRUNC
    assert.equal(statSync(join(share, 'exec')).size, 0);
    assert.equal(await errno(fs.read(ctx, e.nodeid, t.fh, 0, 8, [dst])), Errno.EBADF);
    await fs.release(ctx, e.nodeid, t.fh, 0);
    assert.equal(await errno(fs.open(ctx, (await lookup(fs, 'link')).nodeid, 0)), Errno.EBADF);
    const sub = await lookup(fs, 'sub');
    const dirOpen = await fs.open(ctx, sub.nodeid, 0); // a directory opens, as in virtiofsd
    assert.equal(await errno(fs.read(ctx, sub.nodeid, dirOpen.fh, 0, 8, [dst])), Errno.EISDIR);
    await fs.release(ctx, sub.nodeid, dirOpen.fh, 0);
    assert.equal(await errno(fs.read(ctx, e.nodeid, 999n, 0, 8, [dst])), Errno.EBADF);
  });

  test('CREATE of a name that exists: a regular file is opened (one more lookup); anything else there is ESTALE, nothing left counted', async () => {
    writeFileSync(join(share, 'existing'), 'old');
    const before = fs.counts.inodes;
    const c = await fs.create(ctx, ROOT, b('existing'), 0o644, 0o1 | 0o1000, 0); // O_WRONLY | O_TRUNC
    assert.equal(c.entry.attr.ino, Number(statSync(join(share, 'existing')).ino));
    assert.equal(statSync(join(share, 'existing')).size, 0);
    await fs.release(ctx, c.entry.nodeid, c.open.fh, 0);
    fs.forget(c.entry.nodeid, 1);
    assert.equal(fs.counts.inodes, before);
    // Put there after the kernel saw the name absent (it sends CREATE only then): the kernel looks
    // the name up again on ESTALE and opens by the VFS's rules (follows the symlink, EISDIR, …).
    mkdirSync(join(share, 'now-a-dir'));
    symlinkSync('file', join(share, 'now-a-link'));
    execFileSync('mkfifo', [join(share, 'now-a-fifo')]);
    for (const name of ['now-a-dir', 'now-a-link', 'now-a-fifo']) {
      assert.equal(await errno(fs.create(ctx, ROOT, b(name), 0o644, 0o1, 0)), Errno.ESTALE, name);
      assert.equal(await errno(fs.create(ctx, ROOT, b(name), 0o644, 0o1 | 0o200, 0)), Errno.EEXIST, `${name} with O_EXCL`);
    }
    assert.equal(fs.counts.inodes, before);
    assert.equal(readFileSync(join(share, 'file'), 'utf8'), 'hello world\n', 'the symlink was not followed on the host');
    // A new file's entry is the file its fd opened.
    const n = await fs.create(ctx, ROOT, b('new'), 0o640, 0o2, 0);
    assert.equal(n.entry.attr.ino, Number(statSync(join(share, 'new')).ino));
    assert.equal(n.entry.attr.mode, 0o100640);
    await fs.release(ctx, n.entry.nodeid, n.open.fh, 0);
    fs.forget(n.entry.nodeid, 1);
    assert.equal(fs.counts.inodes, before);
  });

  test('the guest\'s O_NOATIME reaches the host only with preserveNoatime (virtiofsd --preserve-noatime)', async () => {
    const O_NOATIME = 0o1000000;
    const O_PATH = 0o10000000;
    const path = join(share, 'file');
    /** The open flags of this process's fds on `path` other than O_PATH ones (the inode table's), from fdinfo. */
    const hostFlags = (): number[] =>
      readdirSync('/proc/self/fd').flatMap((fd) => {
        try {
          if (readlinkSync(`/proc/self/fd/${fd}`) !== path) return [];
          const flags = parseInt(/^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '', 8);
          return (flags & O_PATH) !== 0 ? [] : [flags];
        } catch {
          return []; // closed meanwhile (readdirSync's own fd)
        }
      });
    for (const preserve of [false, true]) {
      const f = makeFs(share, preserve ? { preserveNoatime: true } : {});
      try {
        const e = await lookup(f, 'file');
        assert.deepEqual(hostFlags(), [], 'no file of it open yet');
        const o = await f.open(ctx, e.nodeid, O_NOATIME); // O_RDONLY | O_NOATIME
        const opened = hostFlags();
        assert.equal(opened.length, 1, `one host fd: ${opened.map((fl) => fl.toString(8)).join(', ')}`);
        assert.equal((opened[0] as number) & O_NOATIME, preserve ? O_NOATIME : 0, preserve ? 'kept' : 'dropped, as virtiofsd drops it');
        const dst = Buffer.alloc(5);
        assert.equal(await f.read(ctx, e.nodeid, o.fh, 0, 5, [dst]), 5);
        assert.equal(dst.toString(), 'hello');
        await f.release(ctx, e.nodeid, o.fh, 0);
        assert.deepEqual(hostFlags(), [], 'released');
      } finally {
        f.close();
      }
    }
  });

  test('writes from scatter lists; O_APPEND; page-cache writes in place; unaligned O_DIRECT', async () => {
    const c = await fs.create(ctx, ROOT, b('w'), 0o644, 0o2, 0);
    const n = c.entry.nodeid;
    assert.equal(await fs.write(ctx, n, c.open.fh, 0, [b('hello '), b('world')], 0), 11);
    assert.equal(await fs.write(ctx, n, c.open.fh, 6, [b('W')], 0), 1);
    await fs.fsync(ctx, n, c.open.fh, false);
    await fs.fsync(ctx, n, c.open.fh, true);
    await fs.release(ctx, n, c.open.fh, 0);
    assert.equal(readFileSync(join(share, 'w'), 'utf8'), 'hello World');
    const a = await fs.open(ctx, n, 0o1 | 0o2000); // O_WRONLY | O_APPEND
    await fs.write(ctx, n, a.fh, 0, [b('!')], 0);
    await fs.write(ctx, n, a.fh, 0, [b('H')], 1); // FUSE_WRITE_CACHE: at offset 0
    await fs.release(ctx, n, a.fh, 0);
    assert.equal(readFileSync(join(share, 'w'), 'utf8'), 'Hello World!');
    const d = await fs.open(ctx, n, 0o2 | 0o40000); // O_RDWR | O_DIRECT
    const dst = Buffer.alloc(5);
    assert.equal(await fs.read(ctx, n, d.fh, 1, 5, [dst]), 5);
    assert.equal(dst.toString(), 'ello ');
    await fs.release(ctx, n, d.fh, 0);
  });

  test('a handle opened with O_TRUNC truncates once: its second fd (page-cache writes of O_APPEND, unaligned O_DIRECT) does not truncate again', async () => {
    const n = (await fs.create(ctx, ROOT, b('trunc'), 0o644, 0o2, 0)).entry.nodeid;
    // O_RDWR | O_APPEND | O_TRUNC: an append, then a page-cache write (mmap) at 0.
    const a = await fs.open(ctx, n, 0o2 | 0o2000 | 0o1000);
    await fs.write(ctx, n, a.fh, 0, [b('hello world')], 0);
    await fs.write(ctx, n, a.fh, 0, [b('H')], 1); // FUSE_WRITE_CACHE
    await fs.release(ctx, n, a.fh, 0);
    assert.equal(readFileSync(join(share, 'trunc'), 'utf8'), 'Hello world', 'the append survives the page-cache write');
    // O_RDWR | O_TRUNC | O_DIRECT: an aligned write through the direct fd, then an unaligned read.
    const big = Buffer.alloc(1 << 20, 0x41);
    const probe = openSync(join(dir, 'probe'), constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT);
    let aligned: Buffer | undefined;
    for (let o = 0; o < 8192 && aligned === undefined; o += 16) {
      try {
        writeSync(probe, big, o, 8192, 0);
        aligned = big.subarray(o, o + 8192);
      } catch {
        // not aligned for O_DIRECT here
      }
    }
    closeSync(probe);
    assert.ok(aligned !== undefined, 'an aligned buffer for O_DIRECT');
    const d = await fs.open(ctx, n, 0o2 | 0o1000 | 0o40000);
    assert.equal(await fs.write(ctx, n, d.fh, 0, [aligned], 0), 8192);
    const dst = Buffer.alloc(100);
    assert.equal(await fs.read(ctx, n, d.fh, 1, 100, [dst]), 100);
    assert.ok(dst.equals(Buffer.alloc(100, 0x41)));
    await fs.release(ctx, n, d.fh, 0);
    assert.equal(statSync(join(share, 'trunc')).size, 8192, 'the direct write survives the unaligned read');
  });

  test('reads: exact bytes at any offset, short at the end of the file, 0 past it', async () => {
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >> 9)) & 0xff;
    writeFileSync(join(share, 'r'), data);
    const e = await lookup(fs, 'r');
    const o = await fs.open(ctx, e.nodeid, 0);
    for (const [off, size] of [[0, 4096], [1, 131072], [65530, 20], [299_990, 4096], [300_000, 10], [400_000, 10], [0, 300_000]] as const) {
      const dst = Buffer.alloc(size);
      // Three pieces, as guest buffers come.
      const views = [dst.subarray(0, size >> 2), dst.subarray(size >> 2, size >> 1), dst.subarray(size >> 1)];
      const n = await fs.read(ctx, e.nodeid, o.fh, off, size, views);
      const want = data.subarray(Math.min(off, data.length), Math.min(data.length, off + size));
      assert.equal(n, want.length, `read ${off}+${size}`);
      assert.deepEqual(dst.subarray(0, n), want, `read ${off}+${size}`);
    }
    await fs.release(ctx, e.nodeid, o.fh, 0);
    fs.forget(e.nodeid, 1);
  });

  const TMPFS_MAGIC = 0x01021994;

  test('on a memory file system (tmpfs refuses RWF_NOWAIT) reads still take the event loop thread, exact', () => {
    // Kata's shared directory lives under /run, a tmpfs: without this every READ took the thread
    // pool; and until a read found it out once, each read was a refused preadv2, an fstatfs and a preadv.
    const shm = mkdtempSync(join('/dev/shm', 'damselfly-pt-nowait-'));
    try {
      const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff));
      writeFileSync(join(shm, 'f'), data);
      const fd = openSync(join(shm, 'f'), 'r');
      try {
        assert.equal(native.preadvNoWait(fd, [Buffer.alloc(10)], 0), -2, 'tmpfs: RWF_NOWAIT refused, nothing read');
        const file: NoWaitFile = { fd };
        const a = Buffer.alloc(100_000);
        const c = Buffer.alloc(50_000);
        assert.equal(readNoWait(file, [a, c], 1234), 150_000);
        assert.ok(Buffer.concat([a, c]).equals(data.subarray(1234, 151_234)));
        assert.equal(file.inMemory, true, 'found out by the first read');
        assert.equal(native.preadvNoWait(fd, [Buffer.alloc(10)], 300_000, true), 0, 'end of file');
        const d = Buffer.alloc(5);
        assert.equal(readNoWait(file, [d], 7), 5);
        assert.ok(d.equals(data.subarray(7, 12)));
        // A file on another file system is not taken for one (this test file; its checkout is on disk).
        const here = fileURLToPath(import.meta.url);
        const disk: NoWaitFile = { fd: openSync(here, 'r') };
        try {
          const onTmpfs = statfsSync(here).type === TMPFS_MAGIC;
          assert.equal(readNoWait(disk, [Buffer.alloc(10)], 0) === -2, false);
          assert.equal(disk.inMemory, onTmpfs ? true : undefined);
        } finally {
          closeSync(disk.fd);
        }
      } finally {
        closeSync(fd);
      }
    } finally {
      rmSync(shm, { recursive: true, force: true });
    }
  });

  test('FORGET closes at once, but the last fd of a large unlinked file on the thread pool', async () => {
    mkdirSync(join(share, 'fd-dir'));
    writeFileSync(join(share, 'fd-file'), 'x');
    writeFileSync(join(share, 'fd-gone'), 'y');
    writeFileSync(join(share, 'fd-big'), Buffer.alloc(9 << 20, 1)); // past BACKGROUND_CLOSE
    const fdsTo = (path: string): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === path;
        } catch {
          return false;
        }
      }).length;
    const nodes = await Promise.all(['fd-dir', 'fd-file', 'fd-gone', 'fd-big'].map((n) => lookup(fs, n)));
    for (const n of ['fd-dir', 'fd-file', 'fd-gone', 'fd-big']) assert.equal(fdsTo(join(share, n)), 1, n);
    rmSync(join(share, 'fd-gone'));
    rmSync(join(share, 'fd-big'));
    for (const n of nodes) fs.forget(n.nodeid, 1);
    assert.equal(fdsTo(join(share, 'fd-dir')), 0, 'a directory: closed at once');
    assert.equal(fdsTo(join(share, 'fd-file')), 0, 'a file with a name: closed at once');
    assert.equal(fdsTo(`${join(share, 'fd-gone')} (deleted)`), 0, 'a small unlinked file: closed at once');
    for (const n of nodes) assert.equal(await errno(fs.getattr(ctx, n.nodeid)), Errno.EBADF, 'the node id is gone at once');
    const big = `${join(share, 'fd-big')} (deleted)`;
    for (let i = 0; i < 100 && fdsTo(big) > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(fdsTo(big), 0, 'a large unlinked file: closed soon after');
  });

  test('creating calls leave the process umask alone, whichever thread runs them', async () => {
    const old = process.umask(0o022);
    try {
      const guest = { uid: 4321, gid: 8765, pid: 1 };
      const open = await fs.mkdir(ctx, ROOT, b('umask'), 0o777, 0);
      // Modes the process umask (022) would not change run on the calling thread; the others
      // (group or other write) on the credential thread. Both give the mode the kernel sent.
      const cases: Array<[string, number]> = [['f644', 0o644], ['f666', 0o666], ['f600', 0o600], ['f620', 0o620]];
      for (const [name, mode] of cases) {
        const c = await fs.create(guest, open.nodeid, b(name), mode, 0o1, 0);
        assert.deepEqual([c.entry.attr.uid, c.entry.attr.gid, c.entry.attr.mode & 0o7777], [4321, 8765, mode], name);
        await fs.release(guest, c.entry.nodeid, c.open.fh, 0);
      }
      for (const [name, mode] of [['d755', 0o755], ['d777', 0o777], ['d1755', 0o1755], ['d1777', 0o1777]] as const) {
        const d = await fs.mkdir(guest, open.nodeid, b(name), mode, 0);
        assert.deepEqual([d.attr.uid, d.attr.mode & 0o7777], [4321, mode], name);
      }
      const n = await fs.mknod(guest, open.nodeid, b('p666'), 0o010666, 0, 0);
      assert.equal(n.attr.mode, 0o010666);
      const w = await fs.mknod(ctx, open.nodeid, b('wh'), 0o020000, 0, 0);
      assert.deepEqual([w.attr.mode, w.attr.rdev], [0o020000, 0]);
      assert.equal(process.umask(), 0o022, 'the process umask is untouched');
    } finally {
      process.umask(old);
    }
  });

  test('a process umask changed after it was read still gives the modes the kernel sent', async () => {
    // The addon reads the process umask once and again only when a node comes out with other bits
    // than it predicts: here the first creates read 022, the next ones run under 077.
    const old = process.umask(0o022);
    try {
      const guest = { uid: 2468, gid: 1357, pid: 1 };
      const open = await fs.mkdir(ctx, ROOT, b('umask-change'), 0o777, 0);
      const first = await fs.create(guest, open.nodeid, b('before'), 0o644, 0o1, 0);
      assert.equal(first.entry.attr.mode & 0o7777, 0o644);
      await fs.release(guest, first.entry.nodeid, first.open.fh, 0);
      process.umask(0o077);
      for (const name of ['after', 'again']) {
        const c = await fs.create(guest, open.nodeid, b(name), 0o644, 0o1, 0);
        assert.deepEqual([c.entry.attr.uid, c.entry.attr.mode & 0o7777], [2468, 0o644], name);
        await fs.release(guest, c.entry.nodeid, c.open.fh, 0);
      }
      const d = await fs.mkdir(guest, open.nodeid, b('dir'), 0o755, 0);
      assert.equal(d.attr.mode & 0o7777, 0o755);
      const n = await fs.mknod(guest, open.nodeid, b('fifo'), 0o010644, 0, 0);
      assert.equal(n.attr.mode, 0o010644);
      assert.deepEqual(readdirSync(join(share, 'umask-change')).sort(), ['after', 'again', 'before', 'dir', 'fifo'], 'no node left twice or half-made');
      assert.equal(statSync(join(share, 'umask-change', 'after')).mode & 0o7777, 0o644);
      assert.equal(process.umask(), 0o077, 'the process umask is untouched');
    } finally {
      process.umask(old);
    }
  });

  test('COPY_FILE_RANGE copies between open files on the host; flags and foreign handles are refused', async () => {
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    writeFileSync(join(share, 'cfr-src'), data);
    writeFileSync(join(share, 'cfr-dst'), 'head');
    const a = await lookup(fs, 'cfr-src');
    const z = await lookup(fs, 'cfr-dst');
    const ha = await fs.open(ctx, a.nodeid, 0);
    const hz = await fs.open(ctx, z.nodeid, 0o2);
    assert.equal(await fs.copyFileRange(ctx, a.nodeid, ha.fh, 1000, z.nodeid, hz.fh, 4, 200_000, 0), 200_000);
    assert.ok(readFileSync(join(share, 'cfr-dst')).equals(Buffer.concat([Buffer.from('head'), data.subarray(1000, 201_000)])));
    assert.equal(await fs.copyFileRange(ctx, a.nodeid, ha.fh, 400_000, z.nodeid, hz.fh, 0, 10, 0), 0, 'past the end: nothing');
    assert.equal(await errno(fs.copyFileRange(ctx, a.nodeid, ha.fh, 0, z.nodeid, hz.fh, 0, 10, 1)), Errno.EINVAL);
    assert.equal(await errno(fs.copyFileRange(ctx, a.nodeid, hz.fh, 0, z.nodeid, hz.fh, 0, 10, 0)), Errno.EBADF, "another node's handle");
    await fs.release(ctx, a.nodeid, ha.fh, 0);
    await fs.release(ctx, z.nodeid, hz.fh, 0);
  });

  test('TMPFILE: an unnamed file of the guest user, named later by LINK unless made with O_EXCL', async () => {
    const user = { uid: 1000, gid: 1000, pid: 1 };
    mkdirSync(join(share, 'tmpdir'), { mode: 0o777 });
    chmodSync(join(share, 'tmpdir'), 0o777);
    const dir = await lookup(fs, 'tmpdir');
    const t = await fs.tmpfile(user, dir.nodeid, 0o100640, 0o2 /* O_RDWR */, 0o022);
    assert.equal(t.entry.attr.nlink, 0);
    assert.deepEqual([t.entry.attr.uid, t.entry.attr.gid, t.entry.attr.mode], [1000, 1000, 0o100640]);
    assert.equal(await fs.write(user, t.entry.nodeid, t.open.fh, 0, [b('unnamed')], 0), 7);
    assert.deepEqual(readdirSync(join(share, 'tmpdir')), [], 'no name yet');
    const named = await fs.link(user, t.entry.nodeid, dir.nodeid, b('named'));
    assert.equal(named.attr.nlink, 1);
    assert.equal(readFileSync(join(share, 'tmpdir', 'named'), 'utf8'), 'unnamed');
    await fs.release(user, t.entry.nodeid, t.open.fh, 0);
    const x = await fs.tmpfile(user, dir.nodeid, 0o100600, 0o2 | 0o200 /* O_EXCL */, 0);
    assert.equal(await errno(fs.link(user, x.entry.nodeid, dir.nodeid, b('never'))), Errno.ENOENT, 'O_EXCL: never linked');
    await fs.release(user, x.entry.nodeid, x.open.fh, 0);
    const f = await lookup(fs, 'tmpdir/named');
    assert.equal(await errno(fs.tmpfile(user, f.nodeid, 0o100600, 0o2, 0)), Errno.ENOTDIR);
  });

  test('--translate-uid/--translate-gid: what the guest creates or chowns gets host ids, attributes show guest ids', async () => {
    const translateUid = IdTranslation.parse(['squash-guest:0:1001:65536', 'host:1001:1000:1', 'forbid-guest:70000:10'], '--translate-uid');
    const translateGid = IdTranslation.parse(['map:0:2000:100'], '--translate-gid');
    const t = makeFs(share, { translateUid, translateGid });
    // Creating calls run as the translated ids: a directory they may write to.
    mkdirSync(join(share, 'xl'));
    chmodSync(join(share, 'xl'), 0o777);
    const owner = (name: string): number[] => {
      const st = lstatSync(join(share, 'xl', name));
      return [st.uid, st.gid];
    };
    try {
      const XL = (await lookup(t, 'xl')).nodeid;
      const guest = { uid: 0, gid: 5, pid: 1 };
      const c = await t.create(guest, XL, b('xl-file'), 0o100644, 0o2, 0);
      await t.release(guest, c.entry.nodeid, c.open.fh, 0);
      assert.deepEqual(owner('xl-file'), [1001, 2005], 'created as the translated ids');
      assert.deepEqual([c.entry.attr.uid, c.entry.attr.gid], [1000, 5], 'shown back translated');
      const d = await t.mkdir({ uid: 7, gid: 7, pid: 1 }, XL, b('xl-dir'), 0o755, 0);
      assert.deepEqual(owner('xl-dir'), [1001, 2007]);
      assert.deepEqual([d.attr.uid, d.attr.gid], [1000, 7]);
      await t.symlink({ uid: 8, gid: 200, pid: 1 }, XL, b('xl-link'), b('xl-file'));
      assert.deepEqual(owner('xl-link'), [1001, 200], 'a gid outside every rule is kept');
      // CHOWN: ids outside the squash pass as they are, in both directions.
      const a = await t.setattr(guest, c.entry.nodeid, { valid: 0, uid: 65536, gid: 99 });
      assert.deepEqual(owner('xl-file'), [65536, 2099]);
      assert.deepEqual([a.attr.uid, a.attr.gid], [65536, 99]);
      // A forbidden id changes nothing, not even the mode asked for with it.
      assert.equal(await errno(t.setattr(guest, c.entry.nodeid, { valid: 0, uid: 70005, mode: 0o600 })), Errno.EPERM);
      assert.deepEqual(owner('xl-file'), [65536, 2099]);
      assert.equal(lstatSync(join(share, 'xl', 'xl-file')).mode & 0o7777, 0o644);
      assert.equal(await errno(t.create({ uid: 70000, gid: 0, pid: 1 }, XL, b('xl-never'), 0o100644, 0o2, 0)), Errno.EPERM);
      assert.equal(existsSync(join(share, 'xl', 'xl-never')), false);
      // A host file of the daemon's user is the guest user's: GETATTR and ACCESS agree.
      writeFileSync(join(share, 'xl', 'xl-own'), 'mine');
      chownSync(join(share, 'xl', 'xl-own'), 1001, 2000);
      chmodSync(join(share, 'xl', 'xl-own'), 0o600);
      const own = await lookup(t, 'xl/xl-own');
      assert.deepEqual([own.attr.uid, own.attr.gid], [1000, 0]);
      assert.deepEqual([(await t.getattr(guest, own.nodeid)).attr.uid], [1000]);
      await t.access({ uid: 1000, gid: 1000, pid: 1 }, own.nodeid, 4 | 2);
      assert.equal(await errno(t.access({ uid: 1001, gid: 1001, pid: 1 }, own.nodeid, 4)), Errno.EACCES, 'host id 1001 is not the guest\'s 1001');
    } finally {
      t.close();
    }
  });

  test('a truncating open by anyone but root drops setuid and setgid with group execute, as a local truncate', async () => {
    const user = { uid: 1000, gid: 1000, pid: 1 };
    const cases = [
      { name: 'suid', mode: 0o4755, as: user, after: 0o755 },
      { name: 'sgid-x', mode: 0o2775, as: user, after: 0o775 },
      { name: 'sgid-nox', mode: 0o2664, as: user, after: 0o2664 }, // a locking mark, not setgid: kept
      { name: 'root-keeps', mode: 0o6755, as: ctx, after: 0o6755 }, // root has CAP_FSETID
    ];
    for (const c of cases) {
      const path = join(share, `kill-${c.name}`);
      writeFileSync(path, 'data');
      chownSync(path, 1000, 1000);
      chmodSync(path, c.mode);
      native.lsetxattr(path, 'security.capability', Buffer.from('0000000200000000000000000000000000000000', 'hex'));
      const e = await lookup(fs, `kill-${c.name}`);
      const o = await fs.open(c.as, e.nodeid, 0o1 | 0o1000); // O_WRONLY | O_TRUNC
      await fs.release(c.as, e.nodeid, o.fh, 0);
      assert.equal(statSync(path).mode & 0o7777, c.after, c.name);
      assert.equal(statSync(path).size, 0, c.name);
      assert.equal(native.lgetxattr(path, 'security.capability'), null, `${c.name}: file capabilities go, whoever truncates`);
    }
  });

  test('--killpriv-v2: agreed only when offered; a write flagged by the guest (agreed or not), a truncate it flags, or a copy_file_range or fallocate by anyone but root, drops setuid and setgid-with-exec', async () => {
    const KILLPRIV_V2 = 1n << 28n;
    const WRITE_KILL_SUIDGID = 1 << 2;
    const FATTR_SIZE = 1 << 3;
    const FATTR_KILL_SUIDGID = 1 << 11;
    const k = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics(), killprivV2: true });
    assert.notEqual(k.wantedInitFlags & KILLPRIV_V2, 0n);
    assert.equal(fs.wantedInitFlags & KILLPRIV_V2, 0n, 'not unless asked for');
    const mode = (name: string): number => lstatSync(join(share, name)).mode & 0o7777;
    const setup = (name: string, m: number): void => {
      writeFileSync(join(share, name), 'data');
      chmodSync(join(share, name), m);
    };
    try {
      // A kernel that did not offer it flags a direct I/O write by such a caller all the same
      // (its page cache path drops the bits itself): the flag is honoured, as the C virtiofsd does.
      k.init({ flags: 0n });
      setup('kp-off', 0o4755);
      const off = await lookup(k, 'kp-off');
      const o0 = await k.open(ctx, off.nodeid, 0o2);
      await k.write(ctx, off.nodeid, o0.fh, 0, [b('x')], 0);
      assert.equal(mode('kp-off'), 0o4755, 'unflagged: kept');
      await k.write(ctx, off.nodeid, o0.fh, 0, [b('x')], WRITE_KILL_SUIDGID);
      await k.release(ctx, off.nodeid, o0.fh, 0);
      assert.equal(mode('kp-off'), 0o755, 'flagged without KILLPRIV_V2: dropped');
      k.init({ flags: KILLPRIV_V2 });
      setup('kp-w', 0o6775);
      setup('kp-plain', 0o4755);
      const w = await lookup(k, 'kp-w');
      const plain = await lookup(k, 'kp-plain');
      const o = await k.open(ctx, w.nodeid, 0o2);
      const p = await k.open(ctx, plain.nodeid, 0o2);
      await k.write(ctx, plain.nodeid, p.fh, 0, [b('x')], 0); // the writer has CAP_FSETID: no flag
      assert.equal(mode('kp-plain'), 0o4755, 'unflagged: kept');
      await k.write(ctx, w.nodeid, o.fh, 0, [b('x')], WRITE_KILL_SUIDGID);
      assert.equal(mode('kp-w'), 0o775, 'setuid and setgid (group execute) dropped');
      await k.release(ctx, w.nodeid, o.fh, 0);
      await k.release(ctx, plain.nodeid, p.fh, 0);
      setup('kp-t', 0o2664); // setgid without group execute: a locking mark, kept
      setup('kp-t2', 0o4711);
      const t = await lookup(k, 'kp-t');
      const t2 = await lookup(k, 'kp-t2');
      await k.setattr(ctx, t.nodeid, { valid: FATTR_SIZE | FATTR_KILL_SUIDGID, size: 1 });
      await k.setattr(ctx, t2.nodeid, { valid: FATTR_SIZE | FATTR_KILL_SUIDGID, size: 1 });
      assert.deepEqual([mode('kp-t'), mode('kp-t2'), statSync(join(share, 'kp-t2')).size], [0o2664, 0o711, 1]);
      mkdirSync(join(share, 'kp-dir'));
      chmodSync(join(share, 'kp-dir'), 0o2775);
      const dir = await lookup(k, 'kp-dir');
      await k.setattr(ctx, dir.nodeid, { valid: FATTR_KILL_SUIDGID, uid: 0 });
      assert.equal(mode('kp-dir'), 0o2775, 'a directory\'s setgid (inherit the group) stays');
      // A truncating OPEN (or a CREATE that finds the file): the kernel's flag decides, not the uid.
      // It flags root without CAP_FSETID (a container whose capabilities were dropped), not a user
      // with it.
      const OPEN_KILL_SUIDGID = 1 << 0;
      const O_TRUNC = 0o1000;
      const user = { uid: 1000, gid: 1000, pid: 1 };
      for (const [name, who, openFlags, after] of [['kp-o-root', ctx, OPEN_KILL_SUIDGID, 0o755], ['kp-o-user', user, 0, 0o4755]] as const) {
        setup(name, 0o4755);
        const e = await lookup(k, name);
        const o = await k.open(who, e.nodeid, 0o1 | O_TRUNC, openFlags);
        await k.release(who, e.nodeid, o.fh, 0);
        assert.deepEqual([mode(name), statSync(join(share, name)).size], [after, 0], `truncating open by uid ${who.uid}, open_flags ${openFlags}`);
        setup(name, 0o4755);
        const c = await k.create(who, ROOT, b(name), 0o644, 0o100 | 0o1 | O_TRUNC, 0o022, openFlags); // O_CREAT, the file is there
        await k.release(who, c.entry.nodeid, c.open.fh, 0);
        k.forget(c.entry.nodeid, 1);
        assert.deepEqual([mode(name), statSync(join(share, name)).size], [after, 0], `truncating create by uid ${who.uid}, open_flags ${openFlags}`);
      }
      // COPY_FILE_RANGE carries no flag: a caller other than root is taken to lack CAP_FSETID.
      setup('kp-src', 0o644);
      const src = await lookup(k, 'kp-src');
      const si = await k.open(ctx, src.nodeid, 0);
      for (const [name, who, after] of [['kp-cu', user, 0o755], ['kp-cr', ctx, 0o6755]] as const) {
        setup(name, 0o6755);
        const out = await lookup(k, name);
        const so = await k.open(who, out.nodeid, 0o2);
        assert.equal(await k.copyFileRange(who, src.nodeid, si.fh, 0, out.nodeid, so.fh, 0, 4, 0), 4);
        await k.release(who, out.nodeid, so.fh, 0);
        assert.equal(mode(name), after, `copy_file_range by uid ${who.uid}`);
        setup(name, 0o6755);
        const fo = await k.open(who, out.nodeid, 0o2);
        await k.fallocate(who, out.nodeid, fo.fh, 0, 8192, 1); // FALLOC_FL_KEEP_SIZE
        await k.release(who, out.nodeid, fo.fh, 0);
        assert.equal(mode(name), after, `fallocate by uid ${who.uid}`);
      }
      await k.release(ctx, src.nodeid, si.fh, 0);
    } finally {
      k.close();
    }
  });

  test('--posix-acl: agreed with DONT_MASK and SETXATTR_EXT; ACLs reach the host, default ACLs override the umask, KILL_SGID clears setgid', async () => {
    const POSIX_ACL = 1n << 20n;
    const DONT_MASK = 1n << 6n;
    const SETXATTR_EXT = 1n << 29n;
    const ACL_KILL_SGID = 1;
    const acl = aclXattr;
    const { USER_OBJ, USER, GROUP_OBJ, MASK, OTHER } = AclTag;
    const access = acl([USER_OBJ, 6], [USER, 6, 2000], [GROUP_OBJ, 4], [MASK, 6], [OTHER, 0]);
    const mode = (name: string): number => lstatSync(join(share, name)).mode & 0o7777;
    const k = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics(), posixAcl: true });
    assert.equal(k.wantedInitFlags & (POSIX_ACL | DONT_MASK | SETXATTR_EXT), POSIX_ACL | DONT_MASK | SETXATTR_EXT);
    assert.equal(fs.wantedInitFlags & (POSIX_ACL | DONT_MASK | SETXATTR_EXT), 0n, 'not unless asked for');
    try {
      writeFileSync(join(share, 'acl-f'), 'x');
      chmodSync(join(share, 'acl-f'), 0o644);
      // A kernel that does not agree: the names stay refused.
      k.init({ flags: 0n });
      const f = await lookup(k, 'acl-f');
      assert.equal(await errno(k.setxattr(ctx, f.nodeid, b('system.posix_acl_access'), access, 0, 0)), Errno.EOPNOTSUPP);
      k.init({ flags: POSIX_ACL | DONT_MASK | SETXATTR_EXT });
      await k.setxattr(ctx, f.nodeid, b('system.posix_acl_access'), access, 0, 0);
      assert.deepEqual(native.lgetxattr(join(share, 'acl-f'), 'system.posix_acl_access'), access, 'the host holds the ACL');
      assert.equal(mode('acl-f'), 0o660, "the host rewrote the mode's group bits from the mask, as a local setfacl");
      assert.ok((await k.listxattr(ctx, f.nodeid)).some((n) => Buffer.from(n).toString() === 'system.posix_acl_access'));
      assert.deepEqual(Buffer.from(await k.getxattr(ctx, f.nodeid, b('system.posix_acl_access'))), access);
      // setgid: kept when the caller may keep it, cleared when the kernel says it may not.
      for (const [name, flags, want] of [['acl-keep', 0, 0o2660], ['acl-kill', ACL_KILL_SGID, 0o660]] as const) {
        writeFileSync(join(share, name), '');
        chmodSync(join(share, name), 0o2644);
        const e = await lookup(k, name);
        await k.setxattr(ctx, e.nodeid, b('system.posix_acl_access'), access, 0, flags);
        assert.equal(mode(name), want, name);
      }
      // A default ACL: what is created below it takes its mode from the ACL, not the umask.
      mkdirSync(join(share, 'acl-d'));
      mkdirSync(join(share, 'acl-plain'));
      const d = await lookup(k, 'acl-d');
      await k.setxattr(ctx, d.nodeid, b('system.posix_acl_default'), acl([USER_OBJ, 7], [USER, 7, 2000], [GROUP_OBJ, 5], [MASK, 7], [OTHER, 5]), 0, 0);
      const plain = await lookup(k, 'acl-plain');
      const UMASK = 0o077;
      for (const parent of [d, plain]) {
        const c = await k.create(ctx, parent.nodeid, b('new'), 0o100666, 0o101, UMASK);
        await k.release(ctx, c.entry.nodeid, c.open.fh, 0);
        await k.mkdir(ctx, parent.nodeid, b('sub'), 0o40777, UMASK);
      }
      assert.deepEqual([mode('acl-d/new'), mode('acl-d/sub')], [0o664, 0o775], 'modes from the default ACL, the umask ignored');
      assert.deepEqual(native.lgetxattr(join(share, 'acl-d/new'), 'system.posix_acl_access'), acl([USER_OBJ, 6], [USER, 7, 2000], [GROUP_OBJ, 5], [MASK, 6], [OTHER, 4]), 'inherited, masked by the mode asked for');
      assert.notEqual(native.lgetxattr(join(share, 'acl-d/sub'), 'system.posix_acl_default'), null, 'a new directory inherits the default ACL');
      assert.deepEqual([mode('acl-plain/new'), mode('acl-plain/sub')], [0o600, 0o700], 'without one, the umask the request carried');
      assert.equal(process.umask(), 0o022, 'the process umask untouched');
    } finally {
      k.close();
    }
  });

  test('--posix-acl through the FUSE server: INIT agrees the three flags; the long SETXATTR form carries KILL_SGID', async () => {
    const ACL_FLAGS = (1n << 20n) | (1n << 6n) | (1n << 29n);
    const k = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics(), posixAcl: true });
    const server = new FuseServer(k, { log: silentLogger, metrics: new Metrics() });
    try {
      const init = await exchange(server, request(Opcode.INIT, 0, initArgs()).bytes);
      assert.equal(init.error, 0);
      const agreed = BigInt(init.payload.readUInt32LE(12)) | (BigInt(init.payload.readUInt32LE(32)) << 32n);
      assert.equal(agreed & ACL_FLAGS, ACL_FLAGS);
      writeFileSync(join(share, 'acl-raw'), '');
      chmodSync(join(share, 'acl-raw'), 0o2755);
      const e = await exchange(server, request(Opcode.LOOKUP, ROOT, cstr('acl-raw')).bytes);
      const node = parseEntry(e.payload).nodeid;
      // USER_OBJ rwx, GROUP_OBJ r-x, OTHER r-x: the ACL of mode 0755.
      const value = Buffer.from('02000000010007000000000004000500000000002000050000000000', 'hex');
      // fuse_setxattr_in under SETXATTR_EXT: size, flags, setxattr_flags (ACL_KILL_SGID), padding.
      const r = await exchange(server, request(Opcode.SETXATTR, node, Buffer.concat([u32Args(value.length, 0, 1, 0), cstr('system.posix_acl_access'), value])).bytes);
      assert.equal(r.error, 0);
      assert.equal(lstatSync(join(share, 'acl-raw')).mode & 0o7777, 0o755, 'setgid cleared');
    } finally {
      k.close();
    }
  });

  test('--security-label: the context a creating request carries (7.37 after the names, 7.38 as an extension) labels the new node', async () => {
    const INIT_EXT = 1n << 30n;
    const SECURITY_CTX = 1n << 32n;
    const LABEL = 'security.selinux';
    const context = (value: string): Buffer => Buffer.from(`system_u:object_r:${value}:s0\0`);
    // fuse_secctx_header (size, nr), fuse_secctx (size, padding), name, value; padded to 8.
    const block = (name: string, value: Buffer, nr = 1): Buffer => {
      const rec = Buffer.concat([u32Args(value.length, 0), cstr(name), value]);
      const padded = Buffer.concat([rec, Buffer.alloc((8 - (rec.length % 8)) % 8)]);
      return Buffer.concat([u32Args(8 + padded.length, nr), padded]);
    };
    const none = u32Args(8, 0);
    const label = (path: string): string | undefined => native.lgetxattr(join(share, path), LABEL)?.toString();
    // A server on a fresh filesystem; `send` makes the request in directory sl.
    const serve = async (minor: number, opts: Partial<PassthroughOptions>): Promise<{ send: (op: Opcode, args: Buffer, ext?: Buffer) => Promise<number>; close: () => void }> => {
      const k = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics(), ...opts });
      const server = new FuseServer(k, { log: silentLogger, metrics: new Metrics() });
      assert.equal((await exchange(server, request(Opcode.INIT, 0, initArgs(minor, 0x3bfffffbn | INIT_EXT | SECURITY_CTX)).bytes)).error, 0);
      const sl = parseEntry((await exchange(server, request(Opcode.LOOKUP, ROOT, cstr('sl')).bytes)).payload).nodeid;
      const send = async (op: Opcode, args: Buffer, ext?: Buffer): Promise<number> => {
        const r = request(op, sl, ext === undefined ? args : Buffer.concat([args, ext]));
        if (ext !== undefined) r.bytes.writeUInt16LE(ext.length / 8, 36); // total_extlen
        const reply = await exchange(server, r.bytes);
        if (reply.error === 0 && op === Opcode.CREATE) await k.release(ctx, parseEntry(reply.payload).nodeid, reply.payload.readBigUInt64LE(128), 0);
        return reply.error;
      };
      return { send, close: () => k.close() };
    };
    mkdirSync(join(share, 'sl'));
    const mkdirIn = (name: string): Buffer => Buffer.concat([u32Args(0o755, 0), cstr(name)]);
    const createIn = (name: string): Buffer => Buffer.concat([u32Args(0o101, 0o644, 0, 0), cstr(name)]);
    const mknodIn = (name: string): Buffer => Buffer.concat([u32Args(0o10644, 0, 0, 0), cstr(name)]);
    const old = await serve(37, { securityLabel: true });
    try {
      assert.equal(await old.send(Opcode.MKDIR, Buffer.concat([mkdirIn('d'), block(LABEL, context('dir_t'))])), 0);
      assert.equal(await old.send(Opcode.CREATE, Buffer.concat([createIn('f'), block(LABEL, context('file_t'))])), 0);
      assert.equal(await old.send(Opcode.SYMLINK, Buffer.concat([cstr('s'), cstr('/etc/passwd'), block(LABEL, context('link_t'))])), 0);
      assert.equal(await old.send(Opcode.MKNOD, Buffer.concat([mknodIn('p'), none])), 0, 'no LSM: nothing to set');
      assert.deepEqual([label('sl/d'), label('sl/f'), label('sl/s'), label('sl/p')], [context('dir_t').toString(), context('file_t').toString(), context('link_t').toString(), undefined]);
      assert.equal(native.lgetxattr('/etc/passwd', LABEL), null, "the symlink itself, never its target");
      // Lying blocks are refused before anything is made.
      assert.equal(await old.send(Opcode.MKDIR, Buffer.concat([mkdirIn('two'), block(LABEL, context('x'), 2)])), -Errno.EINVAL);
      const lying = block(LABEL, context('x'));
      lying.writeUInt32LE(1000, 8); // a value longer than the block
      assert.equal(await old.send(Opcode.MKDIR, Buffer.concat([mkdirIn('long'), lying])), -Errno.EINVAL);
      assert.equal(await old.send(Opcode.MKDIR, Buffer.concat([mkdirIn('short'), Buffer.from([9, 0, 0])])), -Errno.EINVAL);
      assert.deepEqual(['two', 'long', 'short'].filter((n) => existsSync(join(share, 'sl', n))), []);
    } finally {
      old.close();
    }
    const cur = await serve(38, { securityLabel: true });
    try {
      assert.equal(await cur.send(Opcode.CREATE, createIn('g'), block(LABEL, context('ext_t'))), 0);
      // Another extension first (FUSE_EXT_GROUPS, 32), then the context.
      const groups = Buffer.concat([u32Args(16, 32), u32Args(1, 50)]);
      assert.equal(await cur.send(Opcode.MKNOD, mknodIn('q'), Buffer.concat([groups, block(LABEL, context('fifo_t'))])), 0);
      assert.deepEqual([label('sl/g'), label('sl/q')], [context('ext_t').toString(), context('fifo_t').toString()]);
    } finally {
      cur.close();
    }
    // A label the xattr map refuses: the node is removed again and the guest gets the error.
    const refused = await serve(38, { securityLabel: true, xattrmap: XattrMap.parse(':bad:client:security.:::ok:all:::') });
    try {
      assert.equal(await refused.send(Opcode.MKDIR, mkdirIn('nolabel'), block(LABEL, context('x'))), -Errno.EPERM);
      assert.equal(await refused.send(Opcode.CREATE, createIn('nolabel-f'), block(LABEL, context('x'))), -Errno.EPERM);
      assert.deepEqual(['nolabel', 'nolabel-f'].filter((n) => existsSync(join(share, 'sl', n))), []);
    } finally {
      refused.close();
    }
    // Without --security-label the flag is not agreed and the trailing bytes mean nothing.
    const off = await serve(37, {});
    try {
      assert.equal(await off.send(Opcode.MKDIR, Buffer.concat([mkdirIn('plain'), block(LABEL, context('x'))])), 0);
      assert.equal(label('sl/plain'), undefined);
    } finally {
      off.close();
    }
  });

  test('FUSE_CREATE_SUPP_GROUP through the FUSE server: the group the kernel vouches for lets a member create; lying extensions are EINVAL', async () => {
    const INIT_EXT = 1n << 30n;
    const CREATE_SUPP_GROUP = 1n << 34n;
    const k = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: false, log: silentLogger, metrics: new Metrics() });
    const server = new FuseServer(k, { log: silentLogger, metrics: new Metrics() });
    try {
      const init = await exchange(server, request(Opcode.INIT, 0, initArgs(38, 0x3bfffffbn | INIT_EXT | CREATE_SUPP_GROUP)).bytes);
      assert.notEqual(BigInt(init.payload.readUInt32LE(32)) & (CREATE_SUPP_GROUP >> 32n), 0n, 'agreed');
      mkdirSync(join(share, 'grp'));
      chownSync(join(share, 'grp'), 0, 3000);
      chmodSync(join(share, 'grp'), 0o775);
      const grp = parseEntry((await exchange(server, request(Opcode.LOOKUP, ROOT, cstr('grp')).bytes)).payload).nodeid;
      // fuse_ext_header (size, type FUSE_EXT_GROUPS 32), fuse_supp_groups (nr_groups, gids), padded.
      const groups = (nr: number, ...gids: number[]): Buffer => {
        const body = u32Args(nr, ...gids);
        const size = Math.ceil((8 + body.length) / 8) * 8;
        return Buffer.concat([u32Args(size, 32), body, Buffer.alloc(size - 8 - body.length)]);
      };
      const mkdir = async (name: string, ext?: Buffer): Promise<number> => {
        const r = request(Opcode.MKDIR, grp, Buffer.concat([u32Args(0o755, 0), cstr(name), ext ?? Buffer.alloc(0)]), { uid: 2000, gid: 2000 });
        if (ext !== undefined) r.bytes.writeUInt16LE(ext.length / 8, 36); // total_extlen
        return (await exchange(server, r.bytes)).error;
      };
      assert.equal(await mkdir('alone'), -Errno.EACCES, 'without the group the host refuses');
      assert.equal(await mkdir('member', groups(1, 3000)), 0);
      assert.deepEqual([lstatSync(join(share, 'grp', 'member')).uid, lstatSync(join(share, 'grp', 'member')).gid], [2000, 2000]);
      assert.equal(await mkdir('other', groups(1, 4000)), -Errno.EACCES, 'a group that does not own the directory gives nothing');
      const lying = groups(1, 3000);
      lying.writeUInt32LE(9, 8); // nine groups in a 16-byte extension
      assert.equal(await mkdir('lying', lying), -Errno.EINVAL);
      const short = groups(1, 3000);
      short.writeUInt32LE(24, 0); // an extension longer than the bytes sent
      assert.equal(await mkdir('short', short), -Errno.EINVAL);
      assert.deepEqual(readdirSync(join(share, 'grp')), ['member']);
      assert.equal((process.getgroups as () => number[])().includes(3000), false, "the daemon's own groups untouched");
    } finally {
      k.close();
    }
  });

  test('setattr: mode, owner, size by path and by handle, times', async () => {
    writeFileSync(join(share, 'attr'), '0123456789');
    const e = await lookup(fs, 'attr');
    let r = await fs.setattr(ctx, e.nodeid, { valid: 0, mode: 0o100600, uid: 42, gid: 43 });
    assert.deepEqual([r.attr.mode, r.attr.uid, r.attr.gid], [0o100600, 42, 43]);
    r = await fs.setattr(ctx, e.nodeid, { valid: 0, size: 4 });
    assert.equal(r.attr.size, 4);
    const o = await fs.open(ctx, e.nodeid, 0o2);
    r = await fs.setattr(ctx, e.nodeid, { valid: 0, fh: o.fh, size: 2 });
    assert.equal(readFileSync(join(share, 'attr'), 'utf8'), '01');
    await fs.release(ctx, e.nodeid, o.fh, 0);
    r = await fs.setattr(ctx, e.nodeid, { valid: 0, atime: { sec: 1000, nsec: 5 }, mtime: { sec: 2000, nsec: 123456789 } });
    assert.deepEqual([r.attr.atime, r.attr.mtime], [{ sec: 1000, nsec: 5 }, { sec: 2000, nsec: 123456789 }]);
    r = await fs.setattr(ctx, e.nodeid, { valid: 0, mtime: 'now' });
    assert.equal(r.attr.atime.sec, 1000);
    assert.ok(Math.abs(r.attr.mtime.sec - Date.now() / 1000) < 60);
    const link = await lookup(fs, 'link');
    assert.equal(await errno(fs.setattr(ctx, link.nodeid, { valid: 0, size: 0 })), Errno.EBADF);
    assert.equal(await errno(fs.setattr(ctx, (await lookup(fs, 'sub')).nodeid, { valid: 0, size: 0 })), Errno.EISDIR);
  });

  test('xattrs: user and trusted.overlay, ERANGE-free values, ENODATA, ACLs hidden', async () => {
    const e = await lookup(fs, 'sub');
    await fs.setxattr(ctx, e.nodeid, b('user.k'), b('v'), 0);
    await fs.setxattr(ctx, e.nodeid, b('trusted.overlay.opaque'), b('y'), 0);
    assert.equal(Buffer.from(await fs.getxattr(ctx, e.nodeid, b('trusted.overlay.opaque'))).toString(), 'y');
    assert.deepEqual((await fs.listxattr(ctx, e.nodeid)).map((n) => Buffer.from(n).toString()).sort(), ['trusted.overlay.opaque', 'user.k']);
    assert.equal(await errno(fs.setxattr(ctx, e.nodeid, b('user.k'), b('w'), 1)), Errno.EEXIST); // XATTR_CREATE
    assert.equal(await errno(fs.setxattr(ctx, e.nodeid, b('user.none'), b('w'), 2)), Errno.ENODATA); // XATTR_REPLACE
    await fs.removexattr(ctx, e.nodeid, b('user.k'));
    assert.equal(await errno(fs.getxattr(ctx, e.nodeid, b('user.k'))), Errno.ENODATA);
    assert.equal(await errno(fs.getxattr(ctx, e.nodeid, b('system.posix_acl_access'))), Errno.EOPNOTSUPP);
    // A symlink's own xattrs (trusted.* is allowed there), never its target's.
    const link = await lookup(fs, 'link');
    await fs.setxattr(ctx, link.nodeid, b('trusted.t'), b('1'), 0);
    assert.equal(native.lgetxattr(join(share, 'link'), 'trusted.t')?.toString(), '1');
    assert.equal(native.lgetxattr('/etc', 'trusted.t'), null);
    const off = makeFs(share, { xattr: false });
    try {
      assert.equal(await errno(off.getxattr(ctx, ROOT, b('security.capability'))), Errno.ENOSYS);
      assert.equal(await errno(off.listxattr(ctx, ROOT)), Errno.ENOSYS);
      assert.equal(await errno(off.setxattr(ctx, ROOT, b('user.x'), b(''), 0)), Errno.ENOSYS);
    } finally {
      off.close();
    }
  });

  test('--xattrmap: the guest\'s trusted.* kept as user.virtiofs.trusted.* on the host, the host\'s own names apart', async () => {
    mkdirSync(join(share, 'xm'));
    const m = makeFs(share, { xattrmap: XattrMap.parse('/map/trusted./user.virtiofs./') });
    try {
      const e = await lookup(m, 'xm');
      await m.setxattr(ctx, e.nodeid, b('trusted.overlay.opaque'), b('y'), 0);
      await m.setxattr(ctx, e.nodeid, b('user.k'), b('v'), 0);
      assert.equal(native.lgetxattr(join(share, 'xm'), 'user.virtiofs.trusted.overlay.opaque')?.toString(), 'y', 'stored under the prefix');
      assert.equal(native.lgetxattr(join(share, 'xm'), 'trusted.overlay.opaque'), null, 'not as itself');
      assert.equal(Buffer.from(await m.getxattr(ctx, e.nodeid, b('trusted.overlay.opaque'))).toString(), 'y');
      // The host's own trusted.* stays out of the guest's sight and reach.
      native.lsetxattr(join(share, 'xm'), 'trusted.host', b('h'));
      const names = (await m.listxattr(ctx, e.nodeid)).map((n) => Buffer.from(n).toString()).sort();
      assert.deepEqual(names, ['trusted.overlay.opaque', 'user.k']);
      assert.equal(await errno(m.getxattr(ctx, e.nodeid, b('user.virtiofs.trusted.overlay.opaque'))), Errno.EPERM, 'the prefix cannot be used directly');
      await m.removexattr(ctx, e.nodeid, b('trusted.overlay.opaque'));
      assert.equal(native.lgetxattr(join(share, 'xm'), 'user.virtiofs.trusted.overlay.opaque'), null);
      assert.equal(native.lgetxattr(join(share, 'xm'), 'trusted.host')?.toString(), 'h', 'untouched');
      assert.equal(await errno(m.getxattr(ctx, e.nodeid, b('system.posix_acl_access'))), Errno.EOPNOTSUPP, 'ACL names as before');
    } finally {
      m.close();
    }
  });

  test('RENAME2 flags: NOREPLACE, EXCHANGE, WHITEOUT (the whiteout the renaming user\'s); unknown flags', async () => {
    writeFileSync(join(share, 'r1'), '1');
    writeFileSync(join(share, 'r2'), '2');
    assert.equal(await errno(fs.rename(ctx, ROOT, b('r1'), ROOT, b('r2'), 1)), Errno.EEXIST);
    await fs.rename(ctx, ROOT, b('r1'), ROOT, b('r2'), 2);
    assert.equal(readFileSync(join(share, 'r1'), 'utf8'), '2');
    await fs.rename(ctx, ROOT, b('r1'), ROOT, b('r3'), 4);
    const wh = lstatSync(join(share, 'r1'));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0);
    assert.equal(wh.uid, 0);
    assert.equal(await errno(fs.rename(ctx, ROOT, b('r2'), ROOT, b('r4'), 8)), Errno.EINVAL);
    // A user's whiteout is the user's, as a local renameat2 makes it; and the host checks the
    // rename as that user.
    mkdirSync(join(share, 'rw'));
    chownSync(join(share, 'rw'), 1000, 1000);
    writeFileSync(join(share, 'rw', 'f'), 'f');
    const dir = await lookup(fs, 'rw');
    const user = { uid: 1000, gid: 1000, pid: 1 };
    await fs.rename(user, dir.nodeid, b('f'), dir.nodeid, b('g'), 4);
    const uw = lstatSync(join(share, 'rw', 'f'));
    assert.deepEqual([uw.isCharacterDevice(), uw.rdev, uw.uid, uw.gid], [true, 0, 1000, 1000]);
    assert.equal(await errno(fs.rename(user, ROOT, b('r2'), ROOT, b('r5'), 4)), Errno.EACCES, 'the root directory is not theirs');
  });

  test('sparse files: SEEK_DATA / SEEK_HOLE / ENXIO, fallocate punch hole, statfs', async () => {
    const c = await fs.create(ctx, ROOT, b('sparse'), 0o644, 0o2, 0);
    const n = c.entry.nodeid;
    await fs.write(ctx, n, c.open.fh, 1 << 20, [Buffer.alloc(4096, 1)], 0);
    assert.equal(await fs.lseek(ctx, n, c.open.fh, 0, 3), 1 << 20);
    assert.equal(await fs.lseek(ctx, n, c.open.fh, 1 << 20, 4), (1 << 20) + 4096);
    assert.equal(await errno(fs.lseek(ctx, n, c.open.fh, 2 << 20, 3)), Errno.ENXIO);
    await fs.fallocate(ctx, n, c.open.fh, 1 << 20, 4096, 0x01 | 0x02); // KEEP_SIZE | PUNCH_HOLE
    assert.equal(await errno(fs.lseek(ctx, n, c.open.fh, 0, 3)), Errno.ENXIO);
    await fs.release(ctx, n, c.open.fh, 0);
    const s = await fs.statfs(ctx, ROOT);
    assert.ok(s.blocks > 0 && s.bsize > 0 && s.namelen === 255);
    await fs.syncfs(ctx, ROOT);
    await fs.syncfs(ctx, n);
  });

  test('access follows virtiofsd: owner/group/other bits, root reads all, executes only with an x bit', async () => {
    const guest = { uid: 1234, gid: 1234, pid: 1 };
    writeFileSync(join(share, 'acc'), '');
    const e = await lookup(fs, 'acc'); // 0644 root:root
    await fs.access(guest, e.nodeid, 4);
    assert.equal(await errno(fs.access(guest, e.nodeid, 2)), Errno.EACCES);
    await fs.access(ctx, e.nodeid, 6);
    assert.equal(await errno(fs.access(ctx, e.nodeid, 1)), Errno.EACCES);
    await fs.setattr(ctx, e.nodeid, { valid: 0, mode: 0o100744 });
    await fs.access(ctx, e.nodeid, 1);
    assert.equal(await errno(fs.access(guest, e.nodeid, 1)), Errno.EACCES);
  });

  test('readdir: stable small offsets over a large directory, resumable anywhere', async () => {
    mkdirSync(join(share, 'big'));
    const names = Array.from({ length: 3000 }, (_, i) => `entry-${i}-${'x'.repeat(i % 40)}`);
    for (const name of names) writeFileSync(join(share, 'big', name), '');
    const d = await lookup(fs, 'big');
    const o = await fs.opendir(ctx, d.nodeid, 0);
    const all = await listAll(fs, d.nodeid, o.fh, 7);
    assert.deepEqual(all.map((e) => e.name.toString()).sort(), [...names, '.', '..'].sort());
    assert.ok(all.every((e, i) => e.offset === i + 1));
    // Resume at an offset from long ago (outside the window: counted again) and a recent one.
    assert.deepEqual((await listAll(fs, d.nodeid, o.fh, 50, 10)).map((e) => e.name.toString()), all.slice(10).map((e) => e.name.toString()));
    assert.deepEqual((await listAll(fs, d.nodeid, o.fh, 3, 2990)).map((e) => e.name.toString()), all.slice(2990).map((e) => e.name.toString()));
    await fs.releasedir(ctx, d.nodeid, o.fh);
  });

  test('readdir: an old offset far into a large directory counts from the nearest checkpoint, not from the start', async () => {
    mkdirSync(join(share, 'huge'));
    const N = 12_000;
    for (let i = 0; i < N; i++) writeFileSync(join(share, 'huge', `e${i}`), '');
    const d = await lookup(fs, 'huge');
    const o = await fs.opendir(ctx, d.nodeid, 0);
    const all = await listAll(fs, d.nodeid, o.fh, 100);
    assert.equal(all.length, N + 2);
    let scanned = 0;
    const counting = (orig: NativeFn): NativeFn => (...args) => {
      const batch = orig(...args) as unknown[];
      scanned += batch.length;
      return batch;
    };
    /** One READDIR of up to 5 entries at `offset`. */
    const readAt = (offset: number): Promise<DirEntry[]> =>
      withNative('ptGetdents', counting, async () => {
        const got: DirEntry[] = [];
        await fs.readdir(ctx, d.nodeid, o.fh, offset, (e) => (got.length < 5 ? (got.push(e), true) : false));
        return got;
      });
    // 6000 is long out of the window of recent cookies (the last 4096 of 12,002).
    const got = await readAt(6000);
    assert.deepEqual(got.map((e) => e.name.toString()), all.slice(6000, 6005).map((e) => e.name.toString()));
    assert.ok(scanned < 2048, `${scanned} entries read to resume at 6000 (from the start: over 6000)`);
    // An offset past the end, however large, reads the rest of the directory once at most.
    scanned = 0;
    assert.deepEqual(await readAt(2 ** 52), []);
    assert.ok(scanned <= N + 2, `${scanned} entries read for an offset past the end`);
    await fs.releasedir(ctx, d.nodeid, o.fh);
  });

  test('readdirplus counts a lookup only for entries in the reply', async () => {
    const d = await lookup(fs, 'big');
    const o = await fs.opendir(ctx, d.nodeid, 0);
    const before = fs.counts.inodes;
    const got: DirEntryPlus[] = [];
    await fs.readdirplus(ctx, d.nodeid, o.fh, 0, (e) => (got.length < 10 ? (got.push(e), true) : false));
    const dots = got.filter((e) => e.name.toString() === '.' || e.name.toString() === '..');
    assert.ok(dots.every((e) => e.entry.nodeid === 0));
    assert.equal(fs.counts.inodes, before + got.length - dots.length);
    for (const e of got) if (e.entry.nodeid !== 0) fs.forget(e.entry.nodeid, 1);
    assert.equal(fs.counts.inodes, before);
    await fs.releasedir(ctx, d.nodeid, o.fh);
  });

  test('readdirplus: a name that fails its lookup (not ENOENT) goes out unlooked (node id 0), the others counted', async () => {
    mkdirSync(join(share, 'plus'));
    for (const n of ['p1', 'p2', 'p3']) writeFileSync(join(share, 'plus', n), n);
    const d = await lookup(fs, 'plus');
    const o = await fs.opendir(ctx, d.nodeid, 0);
    const before = fs.counts.inodes;
    const got: DirEntryPlus[] = [];
    // An error a lookup may meet (here ELOOP, injected for one name), as a racing host could cause.
    await withNative('ptOpenat2', (orig) => (dirfd, name, ...rest) => (String(name) === 'p2' ? -40 : orig(dirfd, name, ...rest)), () =>
      fs.readdirplus(ctx, d.nodeid, o.fh, 0, (e) => (got.push(e), true)),
    );
    const byName = new Map(got.map((e) => [e.name.toString(), e.entry]));
    assert.deepEqual([...byName.keys()].sort(), ['.', '..', 'p1', 'p2', 'p3']);
    assert.equal(byName.get('p2')?.nodeid, 0);
    assert.equal(byName.get('p2')?.attr.mode, 0o100000, 'the type getdents gave');
    assert.ok((byName.get('p1')?.nodeid ?? 0) > 1 && (byName.get('p3')?.nodeid ?? 0) > 1);
    assert.equal(fs.counts.inodes, before + 2);
    for (const e of got) if (e.entry.nodeid !== 0) fs.forget(e.entry.nodeid, 1);
    assert.equal(fs.counts.inodes, before);
    await fs.releasedir(ctx, d.nodeid, o.fh);
  });

  test('a name made and then replaced or removed by the host before its lookup: ESTALE (the kernel retries), nothing left counted', async () => {
    mkdirSync(join(share, 'made'));
    const made = await lookup(fs, 'made');
    writeFileSync(join(share, 'made', 'other'), 'x');
    writeFileSync(join(share, 'made', 'src'), 'y');
    const src = await lookup(fs, 'made/src');
    const before = fs.counts.inodes;
    const at = (n: string): string => join(share, 'made', n);
    // What the host does right after each creating call.
    const cases: Array<{ call: string; patch: 'ptMkdirat' | 'ptSymlinkat' | 'ptMknodat' | 'ptLinkat'; host: (n: string) => void; run: (n: string) => Promise<unknown> }> = [
      { call: 'mkdir, a file renamed over it', patch: 'ptMkdirat', host: (n) => (rmSync(at(n), { recursive: true }), linkSync(at('other'), at(n))), run: (n) => fs.mkdir(ctx, made.nodeid, b(n), 0o755, 0) },
      { call: 'symlink, removed', patch: 'ptSymlinkat', host: (n) => rmSync(at(n)), run: (n) => fs.symlink(ctx, made.nodeid, b(n), b('t')) },
      { call: 'mknod, a directory put there', patch: 'ptMknodat', host: (n) => (rmSync(at(n)), mkdirSync(at(n))), run: (n) => fs.mknod(ctx, made.nodeid, b(n), 0o10644, 0, 0) },
      { call: 'link, another file renamed over it', patch: 'ptLinkat', host: (n) => (rmSync(at(n)), linkSync(at('other'), at(n))), run: (n) => fs.link(ctx, src.nodeid, made.nodeid, b(n)) },
    ];
    for (const [i, c] of cases.entries()) {
      const name = `n${i}`;
      const after = (orig: NativeFn): NativeFn => (...args) => {
        const r = orig(...args);
        c.host(name);
        return r;
      };
      assert.equal(await withNative(c.patch, after, () => errno(c.run(name))), Errno.ESTALE, c.call);
      assert.equal(fs.counts.inodes, before, `${c.call}: no lookup left counted`);
    }
    // Undisturbed, each makes its entry as before.
    const d = await fs.mkdir(ctx, made.nodeid, b('plain'), 0o755, 0);
    assert.equal(d.attr.ino, Number(statSync(at('plain')).ino));
    fs.forget(d.nodeid, 1);
    const l = await fs.link(ctx, src.nodeid, made.nodeid, b('plain-link'));
    assert.equal(l.nodeid, src.nodeid);
    fs.forget(l.nodeid, 1);
    assert.equal(fs.counts.inodes, before);
  });

  test('RMDIR, or a RENAME over a directory, of a directory the kernel never looked up: ESTALE, nothing removed; known ones go', async () => {
    // The host made these after the kernel's entry for the name (it names another inode, which the
    // kernel would mark dead on success).
    mkdirSync(join(share, 'unseen'));
    mkdirSync(join(share, 'unseen-target'));
    mkdirSync(join(share, 'moving'));
    assert.equal(await errno(fs.rmdir(ctx, ROOT, b('unseen'))), Errno.ESTALE);
    assert.equal(await errno(fs.rename(ctx, ROOT, b('moving'), ROOT, b('unseen-target'), 0)), Errno.ESTALE);
    assert.ok(statSync(join(share, 'unseen')).isDirectory() && statSync(join(share, 'unseen-target')).isDirectory() && statSync(join(share, 'moving')).isDirectory());
    // Once looked up (the VFS's retry), they go; a file or nothing at the name is the host's answer.
    const u = await lookup(fs, 'unseen');
    await fs.rmdir(ctx, ROOT, b('unseen'));
    fs.forget(u.nodeid, 1);
    const t = await lookup(fs, 'unseen-target');
    await fs.rename(ctx, ROOT, b('moving'), ROOT, b('unseen-target'), 0);
    fs.forget(t.nodeid, 1);
    assert.ok(statSync(join(share, 'unseen-target')).isDirectory());
    assert.equal(await errno(fs.rmdir(ctx, ROOT, b('unseen'))), Errno.ENOENT);
    writeFileSync(join(share, 'plain-file'), '');
    assert.equal(await errno(fs.rmdir(ctx, ROOT, b('plain-file'))), Errno.ENOTDIR);
    await fs.rename(ctx, ROOT, b('unseen-target'), ROOT, b('moved'), 0); // to a free name: nothing to check
    rmSync(join(share, 'moved'), { recursive: true });
    rmSync(join(share, 'plain-file'));
  });

  test('submounts are announced only when asked and agreed; FORGET unpins them', async () => {
    const mnt = join(share, 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    const bind = join(share, 'bind');
    mkdirSync(bind);
    execFileSync('mount', ['--bind', join(share, 'sub'), bind]);
    const quiet = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: true, log: silentLogger, metrics: new Metrics() });
    quiet.init({ flags: 0n }); // the kernel did not offer FUSE_SUBMOUNTS
    try {
      const m = await lookup(fs, 'mnt');
      const bd = await lookup(fs, 'bind');
      const sub = await lookup(fs, 'sub');
      assert.equal(m.attr.flags, 1);
      assert.equal(bd.attr.flags, 1); // same st_dev, another mount
      assert.equal(sub.attr.flags, 0);
      assert.notEqual(bd.nodeid, sub.nodeid); // one inode, two mounts: two nodes
      const q = await quiet.lookup(ctx, ROOT, b('mnt'));
      assert.equal(q.attr.flags, 0);
      // The fds pin the mounts until the guest forgets the nodes.
      assert.throws(() => execFileSync('umount', [mnt], { stdio: 'ignore' }));
      fs.forget(m.nodeid, 1);
      fs.forget(bd.nodeid, 1);
      fs.forget(sub.nodeid, 1);
      quiet.forget(q.nodeid, 1);
    } finally {
      quiet.close();
      execFileSync('umount', [mnt]);
      execFileSync('umount', [bind]);
    }
  });

  test('cache policies set timeouts, open flags and INIT wishes as virtiofsd; --no-readdirplus, --allow-mmap', async () => {
    const DIRECT_IO = 1;
    const KEEP_CACHE = 2;
    const CACHE_DIR = 8;
    const cases = [
      { cache: 'never', timeout: 0, open: DIRECT_IO, dir: 0, plus: false },
      { cache: 'metadata', timeout: 86400, open: DIRECT_IO, dir: KEEP_CACHE, plus: true },
      { cache: 'auto', timeout: 1, open: 0, dir: 0, plus: true },
      { cache: 'always', timeout: 86400, open: KEEP_CACHE, dir: KEEP_CACHE | CACHE_DIR, plus: true },
    ] as const;
    for (const c of cases) {
      const p = makeFs(share, { cache: c.cache, announceSubmounts: false });
      try {
        const e = await p.lookup(ctx, ROOT, b('file'));
        assert.deepEqual([e.entryTimeout, e.attrTimeout], [c.timeout, c.timeout], c.cache);
        const o = await p.open(ctx, e.nodeid, 0);
        assert.equal(o.flags, c.open, c.cache);
        await p.release(ctx, e.nodeid, o.fh, 0);
        const d = await p.opendir(ctx, ROOT, 0);
        assert.equal(d.flags, c.dir, c.cache);
        await p.releasedir(ctx, ROOT, d.fh);
        assert.equal((p.wantedInitFlags & (1n << 13n)) !== 0n, c.plus, c.cache);
        assert.equal(p.wantedInitFlags & SUBMOUNTS, 0n);
        assert.equal(p.wantedInitFlags & DIRECT_IO_ALLOW_MMAP, 0n, 'not unless --allow-mmap');
      } finally {
        p.close();
      }
    }
    assert.notEqual(fs.wantedInitFlags & SUBMOUNTS, 0n);
    const q = makeFs(share, { cache: 'metadata', readdirplus: false, allowMmap: true });
    try {
      assert.equal(q.wantedInitFlags & (1n << 13n), 0n, '--no-readdirplus');
      assert.notEqual(q.wantedInitFlags & DIRECT_IO_ALLOW_MMAP, 0n, '--allow-mmap');
    } finally {
      q.close();
    }
  });

  test('DESTROY releases every node and handle; a read in flight finishes first', async () => {
    const p = makeFs(share);
    const e = await p.lookup(ctx, ROOT, b('file'));
    // O_DIRECT: the read goes to the thread pool (page-cache data would be read at once).
    const o = await p.open(ctx, e.nodeid, 0o40000);
    const reading = p.read(ctx, e.nodeid, o.fh, 0, 5, [Buffer.alloc(5)]);
    await p.release(ctx, e.nodeid, o.fh, 0);
    assert.equal(await reading, 5);
    await p.opendir(ctx, ROOT, 0);
    p.destroy();
    assert.deepEqual(p.counts, { inodes: 1, handles: 0 });
    assert.equal(await errno(p.getattr(ctx, e.nodeid)), Errno.EBADF);
    p.close();
  });
});
