/**
 * The Vfs mount table, driven in-process with fake backends: the pseudo tree of nydusd's virtio-fs
 * root (/containers, /rafs/<cid>/lowerdir), node id mapping (slot in the high bits, below 2^53),
 * crossing into a backend, FORGET routing, mounts and unmounts while the kernel holds node ids
 * (ESTALE, pruned pseudo dirs, slots kept until forgotten), INIT flag union and masking, ENOSYS
 * kept off the connection, READDIRPLUS emulation, submount announcement and a backend on "/".
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type DirEntry, type DirEntryPlus, Errno, FsError, type RequestContext } from '../../../src/fs/types.js';
import { INNER_SPAN, MAX_SLOT, MountError, Vfs, nodeIdOf, splitNodeId } from '../../../src/fs/vfs/index.js';
import { FakeFs } from './vfs-fake-fs.js';

const ctx: RequestContext = { uid: 0, gid: 0, pid: 1 };
const NO_OPEN = 1n << 17n;
const NO_OPENDIR = 1n << 24n;
const READDIRPLUS = 1n << 13n;
const SUBMOUNTS = 1n << 27n;
const name = (s: string): Buffer => Buffer.from(s);

async function errno(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    throw e;
  }
  assert.fail('expected an FsError');
}

async function list(vfs: Vfs, nodeid: number): Promise<DirEntry[]> {
  const out: DirEntry[] = [];
  await vfs.readdir(ctx, nodeid, 0n, 0, (e) => (out.push(e), true));
  return out;
}

async function listPlus(vfs: Vfs, nodeid: number, max = 1000): Promise<DirEntryPlus[]> {
  const out: DirEntryPlus[] = [];
  await vfs.readdirplus(ctx, nodeid, 0n, 0, (e) => (out.length < max ? (out.push(e), true) : false));
  return out;
}

async function walk(vfs: Vfs, path: string): Promise<number> {
  let id = 1;
  for (const part of path.split('/').filter(Boolean)) id = (await vfs.lookup(ctx, id, name(part))).nodeid;
  return id;
}

function kata(): { vfs: Vfs; shared: FakeFs; image: FakeFs } {
  const vfs = new Vfs();
  const shared = new FakeFs('shared', { files: { 'cid/rootfs/': '', 'cid/hostname': 'box\n' } });
  const image = new FakeFs('image', { files: { 'etc/os-release': 'ID=test\n', 'bin/sh': '#!' } });
  vfs.mount('/containers', shared);
  vfs.mount('/rafs/abc/lowerdir', image);
  return { vfs, shared, image };
}

describe('Vfs', () => {
  test('node ids: slot in the high bits, always below 2^53', () => {
    const top = nodeIdOf(MAX_SLOT, INNER_SPAN - 1);
    assert.ok(Number.isSafeInteger(top));
    assert.ok(top < 2 ** 53);
    assert.deepEqual(splitNodeId(top), { index: MAX_SLOT, inner: INNER_SPAN - 1 });
    assert.deepEqual(splitNodeId(nodeIdOf(3, 12345)), { index: 3, inner: 12345 });
  });

  test('the pseudo tree of the mount points, crossing into backends', async () => {
    const { vfs, shared } = kata();
    const root = await list(vfs, 1);
    assert.deepEqual(root.map((e) => e.name.toString()), ['.', '..', 'containers', 'rafs']);
    const containers = await vfs.lookup(ctx, 1, name('containers'));
    assert.equal(splitNodeId(containers.nodeid).inner, 1, 'a mount point is the backend root');
    assert.ok(splitNodeId(containers.nodeid).index > 0);
    assert.equal(containers.attr.ino, containers.nodeid, "st_ino is the backend's inode number in the slot's range");
    assert.equal(containers.attr.mode, 0o40755);
    assert.equal(root.find((e) => e.name.toString() === 'containers')?.ino, containers.nodeid);
    const rafs = await vfs.lookup(ctx, 1, name('rafs'));
    assert.equal(splitNodeId(rafs.nodeid).index, 0, 'pseudo directories are slot 0');
    assert.equal(rafs.attr.mode & 0o170000, 0o040000);
    const abc = await vfs.lookup(ctx, rafs.nodeid, name('abc'));
    const lower = await vfs.lookup(ctx, abc.nodeid, name('lowerdir'));
    assert.notEqual(splitNodeId(lower.nodeid).index, splitNodeId(containers.nodeid).index);
    const etc = await vfs.lookup(ctx, lower.nodeid, name('etc'));
    const osr = await vfs.lookup(ctx, etc.nodeid, name('os-release'));
    const buf = Buffer.alloc(64);
    const n = await vfs.read(ctx, osr.nodeid, 0n, 0, 64, [buf]);
    assert.equal(buf.subarray(0, n).toString(), 'ID=test\n');
    assert.equal((await vfs.getattr(ctx, osr.nodeid)).attr.ino, osr.nodeid);
    const hostname = await vfs.lookup(ctx, (await vfs.lookup(ctx, containers.nodeid, name('cid'))).nodeid, name('hostname'));
    assert.equal((await vfs.getattr(ctx, hostname.nodeid)).attr.size, 4);
    assert.equal(await errno(vfs.lookup(ctx, 1, name('nope'))), Errno.ENOENT);
    assert.equal(await errno(vfs.mkdir(ctx, 1, name('x'), 0o755, 0)), Errno.EROFS);
    assert.equal(await errno(vfs.rename(ctx, containers.nodeid, name('cid'), lower.nodeid, name('cid'), 0)), Errno.EXDEV);
    assert.equal((await vfs.lookup(ctx, lower.nodeid, name('..'))).nodeid, abc.nodeid, '".." of a mount root is its pseudo parent');
    assert.equal(shared.lookups.get(2), 1);
  });

  test('READDIRPLUS of a pseudo directory, counted references, FORGET routing', async () => {
    const { vfs, image } = kata();
    const rafs = await vfs.lookup(ctx, 1, name('rafs'));
    const abc = await vfs.lookup(ctx, rafs.nodeid, name('abc'));
    const plus = await listPlus(vfs, abc.nodeid);
    assert.deepEqual(plus.map((e) => e.name.toString()), ['.', '..', 'lowerdir']);
    assert.equal(plus[0]?.entry.nodeid, 0);
    const lower = plus[2]?.entry as DirEntryPlus['entry'];
    assert.equal(splitNodeId(lower.nodeid).inner, 1);
    assert.equal(lower.attrTimeout, 7, "the backend root's attribute timeout");
    const inside = await listPlus(vfs, lower.nodeid);
    const etc = inside.find((e) => e.name.toString() === 'etc') as DirEntryPlus;
    assert.equal(etc.entry.attr.ino, etc.entry.nodeid);
    assert.equal(etc.ino, etc.entry.nodeid);
    const inner = splitNodeId(etc.entry.nodeid).inner;
    assert.equal(image.lookups.get(inner), 1);
    vfs.forget(etc.entry.nodeid, 1);
    assert.deepEqual(image.forgets.at(-1), [inner, 1]);
    assert.equal(image.lookups.has(inner), false);
    vfs.forget(lower.nodeid, 1);
    assert.equal(image.forgets.length, 1, 'FORGET of the mount root stays in the Vfs');
    vfs.forget(1, 2);
    vfs.forget(rafs.nodeid, 1);
  });

  test('unmount while the kernel holds node ids: ESTALE, pruned pseudo dirs, slot kept until forgotten', async () => {
    const { vfs, image } = kata();
    const lower = await walk(vfs, '/rafs/abc/lowerdir');
    const bin = await vfs.lookup(ctx, lower, name('bin'));
    const abc = await walk(vfs, '/rafs/abc');
    assert.equal(vfs.umount('/rafs/abc/lowerdir/'), image);
    assert.equal(image.destroyed, 1);
    assert.equal(await errno(vfs.getattr(ctx, bin.nodeid)), Errno.ESTALE);
    assert.equal(await errno(vfs.getattr(ctx, lower)), Errno.ESTALE);
    assert.equal(await errno(vfs.getattr(ctx, abc)), Errno.ESTALE, 'the empty /rafs/abc is gone');
    assert.equal(await errno(vfs.lookup(ctx, 1, name('rafs'))), Errno.ENOENT);
    assert.deepEqual((await list(vfs, 1)).map((e) => e.name.toString()), ['.', '..', 'containers']);
    assert.equal(vfs.lingeringSlots, 1);
    vfs.forget(bin.nodeid, 1);
    assert.equal(image.forgets.length, 0, 'an unmounted backend gets no FORGET');
    vfs.forget(lower, 1);
    assert.equal(vfs.lingeringSlots, 0);
    // Mount again at the same place: new ids, the old ones stay stale.
    const again = new FakeFs('again', { files: { 'bin/sh': 'x' } });
    vfs.mount('/rafs/abc/lowerdir', again);
    const lower2 = await walk(vfs, '/rafs/abc/lowerdir');
    assert.notEqual(lower2, lower);
    assert.equal(await errno(vfs.getattr(ctx, bin.nodeid)), Errno.ESTALE);
    assert.equal((await vfs.getattr(ctx, lower2)).attr.ino, lower2);
    assert.throws(() => vfs.umount('/rafs/zzz/lowerdir'), (e: unknown) => e instanceof MountError && e.kind === 'NotFound');
  });


  test('a reply that arrives after its unmount hands out no node id', async () => {
    // The API unmounts while a LOOKUP is inside the backend (the passthrough's and the image's
    // lookups can wait on I/O). The entry must not reach the kernel: an id of a slot that is gone
    // is counted nowhere, and once the slot index is used again it would name the other mount.
    const vfs = new Vfs();
    const image = new FakeFs('image', { files: { 'bin/sh': '#!' } });
    vfs.mount('/rafs/abc/lowerdir', image);
    const abc = await walk(vfs, '/rafs/abc');
    const lower = await walk(vfs, '/rafs/abc/lowerdir');
    let open = (): void => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const { getattr, lookup } = image;
    image.getattr = async (...a) => (await gate, getattr.apply(image, a));
    image.lookup = async (...a) => (await gate, lookup.apply(image, a));
    const crossing = vfs.lookup(ctx, abc, name('lowerdir'));
    const inside = vfs.lookup(ctx, lower, name('bin'));
    vfs.umount('/rafs/abc/lowerdir');
    open();
    assert.equal(await errno(crossing), Errno.ESTALE);
    assert.equal(await errno(inside), Errno.ESTALE);
    vfs.forget(lower, 1);
    assert.equal(vfs.lingeringSlots, 0, 'the only id the kernel holds was forgotten');

    // No id held at all: the slot goes at the unmount, and its index comes back after MAX_SLOT more.
    const first = new FakeFs('first');
    const index = vfs.mount('/rafs/x/lowerdir', first);
    const x = await walk(vfs, '/rafs/x');
    let open2 = (): void => undefined;
    const gate2 = new Promise<void>((r) => (open2 = r));
    const firstGetattr = first.getattr;
    first.getattr = async (...a) => (await gate2, firstGetattr.apply(first, a));
    const late = vfs.lookup(ctx, x, name('lowerdir'));
    vfs.umount('/rafs/x/lowerdir');
    open2();
    assert.equal(await errno(late), Errno.ESTALE);
    let again = -1;
    for (let n = 0; n < MAX_SLOT && again !== index; n++) {
      again = vfs.mount('/rafs/y/lowerdir', new FakeFs('later'));
      if (again !== index) vfs.umount('/rafs/y/lowerdir');
    }
    assert.equal(again, index, 'the index was used again');
    assert.equal(vfs.lingeringSlots, 0);
  });
  test('a request failing because its mount was removed under it answers ESTALE; a failed listing counts no entry', async () => {
    const vfs = new Vfs();
    const image = new FakeFs('image', { files: { 'bin/a': 'aaaa', 'bin/b': 'b', 'bin/c': 'c' } });
    vfs.mount('/rafs/abc/lowerdir', image);
    const lower = await walk(vfs, '/rafs/abc/lowerdir');
    const bin = (await vfs.lookup(ctx, lower, name('bin'))).nodeid;
    const a = (await vfs.lookup(ctx, bin, name('a'))).nodeid;
    let open = (): void => undefined;
    const gate = new Promise<void>((r) => (open = r));
    // As the image's device does at close: a fetch under way is aborted, its reader gets an error.
    image.read = async () => {
      await gate;
      throw new Error('the device is closed');
    };
    const { readdirplus } = image;
    image.readdirplus = async (c, id, fh, off, add) => {
      await readdirplus.call(image, c, id, fh, 0, (e) => (add(e), true));
      await gate;
      throw new Error('the device is closed');
    };
    const reading = vfs.read(ctx, a, 0n, 0, 4, [Buffer.alloc(4)]);
    const listing = listPlus(vfs, bin);
    vfs.umount('/rafs/abc/lowerdir');
    open();
    assert.equal(await errno(reading), Errno.ESTALE, 'not EIO: the file is gone, not broken');
    assert.equal(await errno(listing), Errno.ESTALE);
    for (const id of [lower, bin, a]) vfs.forget(id, 1);
    assert.equal(vfs.lingeringSlots, 0, 'the entries of the failed listing were never counted');
  });

  test('mount conflicts', () => {
    const { vfs } = kata();
    const kind = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        if (e instanceof MountError) return e.kind;
        throw e;
      }
      return 'ok';
    };
    assert.equal(kind(() => vfs.mount('/containers', new FakeFs('x'))), 'AlreadyExists');
    assert.equal(kind(() => vfs.mount('//rafs/abc/lowerdir/', new FakeFs('x'))), 'AlreadyExists');
    assert.equal(kind(() => vfs.mount('/containers/inner', new FakeFs('x'))), 'Busy');
    assert.equal(kind(() => vfs.mount('/rafs', new FakeFs('x'))), 'Busy');
    assert.equal(kind(() => vfs.mount('/', new FakeFs('x'))), 'Busy');
    assert.equal(kind(() => vfs.mount('rafs/x', new FakeFs('x'))), 'InvalidPath');
    assert.equal(kind(() => vfs.mount('/rafs/../x', new FakeFs('x'))), 'InvalidPath');
    assert.equal(kind(() => vfs.mount('/rafs/def/lowerdir', new FakeFs('x'))), 'ok');
    assert.deepEqual(vfs.mounts().map((m) => m.path), ['/containers', '/rafs/abc/lowerdir', '/rafs/def/lowerdir']);
  });

  test('INIT: the union of wanted flags, connection-wide ones only for a single backend on /', async () => {
    const vfs = new Vfs({ initFlags: READDIRPLUS });
    const a = new FakeFs('a', { wanted: NO_OPEN | NO_OPENDIR | (1n << 23n) });
    const b = new FakeFs('b', { wanted: 1n << 30n });
    vfs.mount('/a', a);
    vfs.mount('/b', b);
    assert.equal(vfs.wantedInitFlags, READDIRPLUS | (1n << 23n) | (1n << 30n));
    const agreed = NO_OPEN | NO_OPENDIR | READDIRPLUS | (1n << 23n);
    vfs.init({ flags: agreed });
    assert.deepEqual(a.inits, [READDIRPLUS | (1n << 23n)], 'no-open flags are not passed to backends of a shared connection');
    const c = new FakeFs('c');
    vfs.mount('/c', c);
    assert.equal(c.inits.length, 1, 'a backend mounted during the session is initialised at once');
    vfs.destroy();
    assert.deepEqual([a.destroyed, b.destroyed, c.destroyed], [1, 1, 1]);

    const single = new Vfs();
    const r = new FakeFs('root', { wanted: NO_OPEN, files: { f: 'data' }, nosys: ['open'] });
    single.mount('/', r);
    assert.equal(single.wantedInitFlags, NO_OPEN);
    single.init({ flags: NO_OPEN });
    assert.deepEqual(r.inits, [NO_OPEN]);
    const f = await single.lookup(ctx, 1, name('f'));
    assert.equal(splitNodeId(f.nodeid).index, 1);
    assert.equal((await single.getattr(ctx, 1)).attr.ino, 1, 'the backend on / serves node id 1');
    assert.equal(await errno(single.open(ctx, f.nodeid, 0)), Errno.ENOSYS, 'a single backend answers ENOSYS itself');
    assert.throws(() => single.mount('/x', new FakeFs('x')), MountError);
  });

  test('ENOSYS of one backend does not reach a shared connection', async () => {
    const vfs = new Vfs();
    const fs = new FakeFs('n', { files: { f: 'abc' }, nosys: ['open', 'getxattr'], without: ['flush', 'readdirplus', 'statfs'] });
    vfs.mount('/n', fs);
    vfs.init({ flags: 0n });
    const f = await walk(vfs, '/n/f');
    assert.deepEqual(await vfs.open(ctx, f, 0), { fh: 0n, flags: 0 });
    assert.equal(await errno(vfs.getxattr(ctx, f, name('user.x'))), Errno.EOPNOTSUPP);
    await vfs.flush(ctx, f, 0n);
    assert.equal((await vfs.statfs(ctx, f)).bsize, 4096);
    assert.equal(await vfs.lseek(ctx, f, 0n, 1, 3), 1);
    assert.equal(await vfs.lseek(ctx, f, 0n, 1, 4), 3);
    const plus = await listPlus(vfs, await walk(vfs, '/n'));
    assert.deepEqual(plus.map((e) => [e.name.toString(), e.entry.nodeid !== 0]), [['.', false], ['..', false], ['f', true]], 'READDIRPLUS emulated');
    assert.equal(fs.lookups.get(splitNodeId(f).inner), 2);
    const cut = await listPlus(vfs, await walk(vfs, '/n'), 2);
    assert.equal(cut.length, 2);
    assert.equal(fs.lookups.get(splitNodeId(f).inner), 2, 'an entry that did not fit is forgotten again');
  });

  test('submounts announced on crossings when the kernel agreed', async () => {
    const vfs = new Vfs({ announceSubmounts: true });
    vfs.mount('/containers', new FakeFs('s'));
    assert.equal(vfs.wantedInitFlags & SUBMOUNTS, SUBMOUNTS);
    vfs.init({ flags: SUBMOUNTS });
    assert.equal((await vfs.lookup(ctx, 1, name('containers'))).attr.flags & 1, 1);
    vfs.destroy();
    vfs.init({ flags: 0n });
    assert.equal((await vfs.lookup(ctx, 1, name('containers'))).attr.flags & 1, 0);
  });

  test("inode numbers are the backends' (stable across FORGET), distinct between backends, unchanged on /", async () => {
    const vfs = new Vfs();
    const a = new FakeFs('a', { files: { f: 'x' }, inoOffset: 1000 });
    const b = new FakeFs('b', { files: { f: 'y' }, inoOffset: 1000 });
    vfs.mount('/a', a);
    vfs.mount('/b', b);
    const fa = await vfs.lookup(ctx, await walk(vfs, '/a'), name('f'));
    const fb = await vfs.lookup(ctx, await walk(vfs, '/b'), name('f'));
    assert.equal(splitNodeId(fa.attr.ino).inner, 1002, 'the host inode number, in the slot range');
    assert.notEqual(fa.attr.ino, fb.attr.ino);
    assert.equal((await vfs.getattr(ctx, fa.nodeid)).attr.ino, fa.attr.ino);
    const dirents = await list(vfs, await walk(vfs, '/a'));
    assert.equal(dirents.find((e) => e.name.toString() === 'f')?.ino, fa.attr.ino);
    assert.equal((await list(vfs, 1)).find((e) => e.name.toString() === 'a')?.ino, (await vfs.lookup(ctx, 1, name('a'))).attr.ino);
    const single = new Vfs();
    single.mount('/', new FakeFs('r', { files: { f: 'x' }, inoOffset: 1000 }));
    assert.equal((await single.lookup(ctx, 1, name('f'))).attr.ino, 1002);
    assert.equal((await single.getattr(ctx, 1)).attr.ino, 1001);
  });

  test('a backend node id of 2^40 or more is an I/O error, not a wrong id', async () => {
    const vfs = new Vfs();
    vfs.mount('/big', new FakeFs('big', { files: { f: 'x' }, firstId: INNER_SPAN }));
    const root = await walk(vfs, '/big');
    assert.equal(await errno(vfs.lookup(ctx, root, name('f'))), Errno.EIO);
  });

  test('statfs and access of pseudo directories', async () => {
    const { vfs } = kata();
    assert.equal((await vfs.statfs(ctx, 1)).namelen, 255);
    assert.equal((await vfs.statfs(ctx, await walk(vfs, '/containers'))).blocks, 100);
    await vfs.access(ctx, 1, 4);
    assert.equal(await errno(vfs.access(ctx, 1, 2)), Errno.EROFS);
    assert.deepEqual(await vfs.listxattr(ctx, 1), []);
    assert.deepEqual(await vfs.opendir(ctx, 1, 0), { fh: 0n, flags: 0 });
  });

  test('the mount table handed to another daemon: the same node ids, pseudo and backend, a lingering slot still stale, indexes not reused', async () => {
    /** A FakeFs that hands over its lookup counts. */
    class SavingFs extends FakeFs {
      restored: unknown;
      saveState(): unknown {
        return { label: this.label, lookups: [...this.lookups] };
      }
      restoreState(state: unknown): void {
        this.restored = state;
        for (const [id, n] of (state as { lookups: Array<[number, number]> }).lookups) this.lookups.set(id, n);
      }
    }
    const files = { shared: { 'cid/rootfs/': '', 'cid/hostname': 'box\n' }, image: { 'etc/os-release': 'ID=test\n', 'bin/sh': '#!' } };
    const vfs = new Vfs();
    vfs.mount('/containers', new SavingFs('shared', { files: files.shared }));
    vfs.mount('/rafs/abc/lowerdir', new SavingFs('image', { files: files.image }));
    vfs.mount('/rafs/gone/lowerdir', new SavingFs('gone', { files: files.image }));
    vfs.init({ flags: READDIRPLUS });
    const sh = (await vfs.lookup(ctx, await walk(vfs, '/rafs/abc/lowerdir/bin'), name('sh'))).nodeid;
    const hostname = await walk(vfs, '/containers/cid/hostname');
    const abc = await walk(vfs, '/rafs/abc');
    const gone = await walk(vfs, '/rafs/gone/lowerdir/etc');
    vfs.umount('/rafs/gone/lowerdir');
    assert.equal(vfs.lingeringSlots, 1);
    const before = await Promise.all([sh, hostname, abc].map(async (id) => (await vfs.getattr(ctx, id)).attr));

    const state = JSON.parse(JSON.stringify(vfs.saveMountTable())) as Parameters<Vfs['restoreMountTable']>[0];
    const next = new Vfs();
    const fresh = new Map([
      ['/containers', new SavingFs('shared', { files: files.shared })],
      ['/rafs/abc/lowerdir', new SavingFs('image', { files: files.image })],
    ]);
    next.restoreMountTable(state, (path) => fresh.get(path) as SavingFs);
    // No INIT on the new side: the session continues, the backends get its flags and their states.
    const image = fresh.get('/rafs/abc/lowerdir') as SavingFs;
    assert.deepEqual(image.inits, [READDIRPLUS]);
    assert.equal((image.restored as { label: string }).label, 'image');
    assert.deepEqual(await Promise.all([sh, hostname, abc].map(async (id) => (await next.getattr(ctx, id)).attr)), before, 'the node ids the kernel holds name the same files');
    assert.equal(await errno(next.getattr(ctx, gone)), Errno.ESTALE, 'an unmounted backend stays stale');
    assert.equal(next.lingeringSlots, 1);
    next.mount('/rafs/new/lowerdir', new SavingFs('new', { files: files.image }));
    const fresher = await walk(next, '/rafs/new/lowerdir');
    const used = new Set([sh, hostname, gone].map((id) => splitNodeId(id).index));
    assert.ok(!used.has(splitNodeId(fresher).index), 'a new mount takes a slot no held node id names');
    // The kernel's FORGET of the stale ids releases the slot, as it would have in the first daemon.
    next.forget(gone, 3);
    assert.equal(next.lingeringSlots, 0);
    // The refusals: a table in use, and a backend that cannot hand itself over.
    assert.throws(() => next.restoreMountTable(state, (path) => fresh.get(path) as SavingFs), /in use/);
    const plain = new Vfs();
    plain.mount('/containers', new FakeFs('plain'));
    assert.throws(() => plain.saveMountTable(), (e: unknown) => e instanceof MountError && /cannot be handed over/.test(e.message));
  });
});
