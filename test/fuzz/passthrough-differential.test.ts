/**
 * Differential fuzzing of the passthrough share through the kernel: the same seeded sequence of
 * file system calls (create, write, append, truncate, ftruncate, read, mkdir, rmdir, unlink, rename
 * and its RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT forms, link, symlink, readlink,
 * chmod (setuid, setgid, sticky), chown, utimensat (times before 1970 too), stat, readdir, open
 * with O_EXCL / O_TRUNC / O_APPEND / O_DIRECTORY / O_NOFOLLOW / O_TMPFILE (and O_NONBLOCK, for
 * FIFOs), writes of 2 MiB at an offset, O_DIRECT writes, copy_file_range, fallocate (punching holes
 * too), SEEK_DATA / SEEK_HOLE, mknod of a FIFO and of a whiteout (a 0:0 character device), user.*
 * and trusted.* xattrs set (also with XATTR_CREATE / XATTR_REPLACE), read, listed and removed, file
 * capabilities set (security.capability); fchmod, fchown, futimes, touch (UTIME_NOW, UTIME_OMIT),
 * chown of the group alone; calls on an open file after its name was unlinked or renamed over;
 * with --posix-acl also access and default ACLs, valid and not) runs on a `damselfly passthrough`
 * FUSE mount of one directory and directly on another of the same filesystem (with Kata's cache
 * policy, and with the kernel's writeback cache), as root, as an unprivileged user (who keeps the
 * test process's supplementary groups: root's group, which owns the roots) and as one in no group
 * but its own. Each call must end the same way on both (its value, or its errno), and at the end
 * the two trees must be equal: names, types, sizes, modes, owners, link counts, contents, link
 * targets and xattrs. A case where the kernel's FUSE client itself answers differently from the
 * host filesystem is listed in ALLOWED with its reason.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { native } from '../../src/native/index.js';
import { startPassthrough } from '../integration/passthrough-mount.js';
import { renameat2, treeOf } from '../integration/passthrough-posix-suite.js';
import { AclTag, aclXattr } from '../helpers/acl.js';
import { privateTmpfs } from '../helpers/mount.js';
import { type Rng, caseRng } from '../helpers/rng.js';

const SEQUENCES = 12;
const CALLS = 250;
const NAMES = ['a', 'b', 'c', 'd', 'd/x', 'd/y', 'd/e', 'd/e/z', 'f/../a', 'l'];
const XATTRS = ['user.k', 'user.other', 'trusted.overlay.opaque'];
/** A file capability (vfs_cap_data revision 2, no capabilities): what a write or chown must drop. */
const CAPABILITY = Buffer.from('0000000200000000000000000000000000000000', 'hex');

type Call = { what: string; run: (root: string) => unknown };

/** ACLs: a named user with a mask, a minimal one, a named group, an invalid one (a named user without a mask). */
const { USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER } = AclTag;
const ACLS = [
  aclXattr([USER_OBJ, 6], [USER, 6, 1000], [GROUP_OBJ, 4], [MASK, 6], [OTHER, 4]),
  aclXattr([USER_OBJ, 7], [GROUP_OBJ, 0], [OTHER, 0]),
  aclXattr([USER_OBJ, 6], [GROUP_OBJ, 4], [GROUP, 7, 65534], [MASK, 7], [OTHER, 0]),
  aclXattr([USER_OBJ, 6], [USER, 6, 1000], [GROUP_OBJ, 4], [OTHER, 4]),
];
const ACL_NAMES = ['system.posix_acl_access', 'system.posix_acl_default'];

/**
 * One call, as a closure over a root, from the generator's next draws (the same for both roots);
 * with `acl`, POSIX ACLs set, read and removed among them (default ACLs, on directories, then
 * decide the modes of what the other calls create below).
 */
function call(rng: Rng, acl: boolean): Call {
  const n1 = rng.pick(NAMES);
  const n2 = rng.pick(NAMES);
  const size = rng.pick([0, 1, 100, 4096, 5000, 70_000]);
  const byte = rng.int(256);
  const mode = rng.pick([0o644, 0o600, 0o755, 0o000, 0o4755, 0o1777, 0o2775, 0o2664]);
  const id = rng.pick([0, 1000, 65534]);
  const x = rng.pick(XATTRS);
  // Times long past, before 1970 too (negative: the guest's kernel reads FUSE times as signed).
  const when = rng.pick([2_000_000 + size, -(2_000_000 + size), -2, 0]);
  const fallocMode = rng.pick([0, 1, 3]); // allocate; FALLOC_FL_KEEP_SIZE; with FALLOC_FL_PUNCH_HOLE
  const touchArgs = rng.pick([[], ['-m'], ['-a', '-d', `@${when}`]]);
  const p = (root: string, n: string): string => join(root, n);
  const C = fs.constants;
  const calls: Call[] = [
    { what: `write ${n1} ${size}`, run: (r) => withFd(p(r, n1), C.O_WRONLY | C.O_CREAT | C.O_TRUNC, (fd) => fs.writeSync(fd, Buffer.alloc(size, byte)), 0o644) },
    { what: `append ${n1} ${size}`, run: (r) => withFd(p(r, n1), C.O_WRONLY | C.O_CREAT | C.O_APPEND, (fd) => fs.writeSync(fd, Buffer.alloc(size, byte)), 0o644) },
    { what: `truncate ${n1} ${size}`, run: (r) => fs.truncateSync(p(r, n1), size) },
    { what: `read ${n1}`, run: (r) => withFd(p(r, n1), C.O_RDONLY, (fd) => readAll(fd)) },
    { what: `mkdir ${n1}`, run: (r) => fs.mkdirSync(p(r, n1), { mode }) },
    { what: `rmdir ${n1}`, run: (r) => fs.rmdirSync(p(r, n1)) },
    { what: `unlink ${n1}`, run: (r) => fs.unlinkSync(p(r, n1)) },
    { what: `rename ${n1} ${n2}`, run: (r) => fs.renameSync(p(r, n1), p(r, n2)) },
    { what: `rename-noreplace ${n1} ${n2}`, run: (r) => renameat2(p(r, n1), p(r, n2), 1) },
    { what: `link ${n1} ${n2}`, run: (r) => fs.linkSync(p(r, n1), p(r, n2)) },
    { what: `symlink ${n2} ${n1}`, run: (r) => fs.symlinkSync(n2, p(r, n1)) },
    { what: `readlink ${n1}`, run: (r) => fs.readlinkSync(p(r, n1)) },
    { what: `chmod ${n1} ${mode.toString(8)}`, run: (r) => fs.chmodSync(p(r, n1), mode) },
    { what: `lchown ${n1} ${id}`, run: (r) => fs.lchownSync(p(r, n1), id, id) },
    // The addon's utimensat: Node's utimes takes a negative time for "now".
    { what: `lutimens ${n1} ${when}`, run: (r) => native.lutimens(p(r, n1), when + 1, 0, when, 250_000_000) },
    { what: `lstat ${n1}`, run: (r) => statOf(p(r, n1)) },
    { what: `stat ${n1}`, run: (r) => statOf(p(r, n1), true) },
    { what: `readdir ${n1}`, run: (r) => fs.readdirSync(p(r, n1)).sort().join(',') },
    { what: `open-excl ${n1}`, run: (r) => withFd(p(r, n1), C.O_CREAT | C.O_EXCL | C.O_WRONLY, () => undefined, mode) },
    { what: `open-trunc ${n1}`, run: (r) => withFd(p(r, n1), C.O_TRUNC | C.O_WRONLY, () => undefined) },
    { what: `open-directory ${n1}`, run: (r) => withFd(p(r, n1), C.O_DIRECTORY | C.O_RDONLY, () => undefined) },
    { what: `open-nofollow ${n1}`, run: (r) => withFd(p(r, n1), C.O_NOFOLLOW | C.O_RDONLY, () => undefined) },
    { what: `mkfifo ${n1}`, run: (r) => native.mknod(p(r, n1), 0o010644, 0, 0) },
    // overlayfs's whiteouts in an upper directory on the share: a 0:0 character device, made or left by a rename
    { what: `mknod-whiteout ${n1}`, run: (r) => native.mknod(p(r, n1), 0o020000, 0, 0) },
    { what: `rename-whiteout ${n1} ${n2}`, run: (r) => renameat2(p(r, n1), p(r, n2), 4) },
    { what: `setxattr ${n1} ${x}`, run: (r) => native.lsetxattr(p(r, n1), x, Buffer.alloc(1 + (size % 300), byte)) },
    { what: `getxattr ${n1} ${x}`, run: (r) => native.lgetxattr(p(r, n1), x)?.toString('hex') ?? 'none' },
    { what: `listxattr ${n1}`, run: (r) => native.llistxattr(p(r, n1)).map(String).sort().join(',') },
    { what: `access-w ${n1}`, run: (r) => fs.accessSync(p(r, n1), fs.constants.W_OK) },
    { what: `removexattr ${n1} ${x}`, run: (r) => withFd(p(r, n1), C.O_RDONLY | C.O_NOFOLLOW, (fd) => native.ptRemovexattr(fd, x)) },
    // copy_file_range; never from or to a FIFO, whose blocking open would wait for a peer forever
    { what: `copyfile ${n1} ${n2}`, run: (r) => ([n1, n2].some((n) => isFifo(p(r, n))) ? 'fifo' : fs.copyFileSync(p(r, n1), p(r, n2))) },
    { what: `rename-exchange ${n1} ${n2}`, run: (r) => renameat2(p(r, n1), p(r, n2), 2) },
    { what: `write-big ${n1}`, run: (r) => withFd(p(r, n1), C.O_WRONLY | C.O_CREAT, (fd) => fs.writeSync(fd, Buffer.alloc(2 << 20, byte), 0, 2 << 20, size), 0o644) },
    { what: `seek-data ${n1} ${size}`, run: (r) => withFd(p(r, n1), C.O_RDONLY, (fd) => `${native.seekData(fd, size, 3)} ${native.seekData(fd, size, 4)}`) },
    { what: `write-direct ${n1} ${size}`, run: (r) => withFd(p(r, n1), C.O_WRONLY | C.O_CREAT | C.O_DIRECT, (fd) => fs.writeSync(fd, Buffer.alloc(size, byte), 0, size, size >> 1), 0o644) },
    { what: `ftruncate ${n1} ${size}`, run: (r) => withFd(p(r, n1), C.O_WRONLY, (fd) => fs.ftruncateSync(fd, size)) },
    { what: `setcap ${n1}`, run: (r) => native.lsetxattr(p(r, n1), 'security.capability', CAPABILITY) },
    { what: `fallocate ${n1} ${fallocMode} ${size}`, run: (r) => withFd(p(r, n1), C.O_WRONLY, (fd) => native.ptFallocate(fd, fallocMode, size >> 1, size)) },
    { what: `tmpfile ${n1}`, run: (r) => withFd(p(r, n1), O_TMPFILE | C.O_RDWR, (fd) => fs.writeSync(fd, Buffer.alloc(size, byte)), 0o600) },
    // Calls on an open file whose name is gone, or was renamed over: they reach the daemon by
    // node id or handle, not by name (SETATTR and GETATTR with and without FATTR_FH / GETATTR_FH).
    {
      what: `unlinked-open ${n1} ${size} ${mode.toString(8)}`,
      run: (r) => withFd(p(r, n1), C.O_RDWR, (fd) => (fs.unlinkSync(p(r, n1)), fs.writeSync(fd, Buffer.alloc(size, byte), 0, size, 0), fs.fchmodSync(fd, mode), fs.ftruncateSync(fd, size >> 1), `${fstatOf(fd)} ${readAll(fd)}`)),
    },
    { what: `renamed-over-open ${n1} ${n2}`, run: (r) => withFd(p(r, n2), C.O_RDONLY, (fd) => (fs.renameSync(p(r, n1), p(r, n2)), fs.fchmodSync(fd, mode), `${fstatOf(fd)} ${readAll(fd)}`)) },
    { what: `fchmod ${n1} ${mode.toString(8)}`, run: (r) => withFd(p(r, n1), C.O_RDONLY, (fd) => fs.fchmodSync(fd, mode)) },
    { what: `fchown ${n1} ${id}`, run: (r) => withFd(p(r, n1), C.O_RDONLY, (fd) => fs.fchownSync(fd, id, id)) },
    { what: `lchown-group ${n1} ${id}`, run: (r) => fs.lchownSync(p(r, n1), -1, id) },
    { what: `futimes ${n1} ${when}`, run: (r) => withFd(p(r, n1), C.O_RDONLY, (fd) => fs.futimesSync(fd, Math.abs(when), Math.abs(when))) },
    // UTIME_NOW for both times (a writer who is not the owner may), mtime only (the owner only), an
    // atime leaving the mtime (UTIME_OMIT); through touch(1), as Node sends explicit times only
    // (one entry: a process each, so drawn a third as often as the others).
    { what: `touch ${touchArgs.join(' ')} ${n1}`, run: (r) => touch(r, ['-c', '-h', ...touchArgs, n1]) },
    { what: `setxattr-create ${n1} ${x}`, run: (r) => withFd(p(r, n1), C.O_RDONLY | C.O_NOFOLLOW, (fd) => native.ptSetxattr(fd, x, Buffer.alloc(1 + (size % 300), byte), 1)) },
    { what: `setxattr-replace ${n1} ${x}`, run: (r) => withFd(p(r, n1), C.O_RDONLY | C.O_NOFOLLOW, (fd) => native.ptSetxattr(fd, x, Buffer.alloc(1 + (size % 300), byte), 2)) },
  ];
  if (acl) {
    const a = rng.int(ACLS.length);
    const name = rng.pick(ACL_NAMES);
    calls.push(
      { what: `setacl ${n1} ${name} ${a}`, run: (r) => native.lsetxattr(p(r, n1), name, ACLS[a] as Buffer) },
      { what: `getacl ${n1} ${name}`, run: (r) => native.lgetxattr(p(r, n1), name)?.toString('hex') ?? 'none' },
      { what: `removeacl ${n1} ${name}`, run: (r) => withFd(p(r, n1), C.O_RDONLY | C.O_NOFOLLOW, (fd) => native.ptRemovexattr(fd, name)) },
    );
  }
  return rng.pick(calls);
}

/** Runs `f` on `path` opened with `flags` and O_NONBLOCK (a FIFO must not wait for a peer). */
function withFd(path: string, flags: number, f: (fd: number) => unknown, mode?: number): unknown {
  const fd = fs.openSync(path, flags | fs.constants.O_NONBLOCK, mode);
  try {
    return f(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function readAll(fd: number): string {
  const parts: Buffer[] = [];
  for (let b = Buffer.alloc(65536), n; (n = fs.readSync(fd, b)) > 0; b = Buffer.alloc(65536)) parts.push(b.subarray(0, n));
  const all = Buffer.concat(parts);
  return `${all.length} ${all.subarray(0, 32).toString('hex')}`;
}

/** Whether a name among a call's arguments (`what` after its verb) is a device node under `root`, followed as an open follows it. */
function namesDevice(root: string, what: string): boolean {
  return what
    .split(' ')
    .slice(1)
    .some((n) => {
      try {
        const s = fs.statSync(join(root, n));
        return s.isCharacterDevice() || s.isBlockDevice();
      } catch {
        return false;
      }
    });
}

function isFifo(path: string): boolean {
  try {
    return fs.statSync(path).isFIFO();
  } catch {
    return false;
  }
}

/** O_TMPFILE (with O_DIRECTORY, as the kernel defines it): an unnamed file in a directory. */
const O_TMPFILE = 0o20200000;


/** touch(1) in `root` with `args`: its message on failure (the names in it relative). */
function touch(root: string, args: string[]): void {
  try {
    execFileSync('touch', args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (e) {
    // "touch: setting times of 'a': Permission denied": the reason, as for the other calls.
    throw new Error(`touch: ${String((e as { stderr?: string }).stderr).trim().replace(/^.*: /, '')}`);
  }
}

function fstatOf(fd: number): string {
  return describeStat(fs.fstatSync(fd));
}

function statOf(path: string, follow = false): string {
  return describeStat(follow ? fs.statSync(path) : fs.lstatSync(path));
}

function describeStat(s: fs.Stats): string {
  const type = s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'link' : s.isFIFO() ? 'fifo' : 'other';
  // An mtime set by utimes (long past) must agree; one a write set is the clock's, which may tick
  // between the two calls.
  const mtime = type !== 'file' ? '' : s.mtimeMs < 1e12 ? String(Math.floor(s.mtimeMs / 1000)) : 'recent';
  return `${type} ${(s.mode & 0o7777).toString(8)} ${type === 'dir' ? '' : s.size} ${s.nlink} ${s.uid}:${s.gid} ${mtime}`;
}

function outcome(f: () => unknown): string {
  try {
    const v = f();
    return v === undefined || v === null ? 'ok' : `ok ${String(v)}`;
  } catch (e) {
    return `error ${(e as { code?: string }).code ?? (e as Error).message}`;
  }
}

/**
 * Answers the kernel's FUSE client gives itself, differently from the host filesystem (the daemon
 * never sees the call). Each entry: the call, the two outcomes, why.
 */
const ALLOWED: Array<{ call: RegExp; mount: RegExp; direct: RegExp; device?: true; why: string }> = [
  {
    call: /^seek-data /,
    mount: /^ok -?\d+ -?\d+$/,
    direct: /^error EINVAL$/,
    why: 'SEEK_DATA / SEEK_HOLE on a directory: FUSE seeks directories with generic_file_llseek (data up to the size, ENXIO past it); tmpfs refuses (EINVAL)',
  },
  {
    call: /./,
    mount: /^error EACCES$/,
    direct: /^error ENXIO$/,
    device: true, // only where a name the call opens is a device node
    why: 'opening a device node (a whiteout, 0:0): the passthrough mount is nodev, as FUSE mounts of libfuse are, so the VFS refuses it before the daemon hears of it; directly, no driver has device 0:0',
  },
];

let work: string;
let share: string;
let direct: string;
let tmpfs: string;
let unmountTmpfs = (): void => undefined;

before(async () => {
  work = fs.mkdtempSync(join(tmpdir(), 'damselfly-pt-diff-'));
  fs.chmodSync(work, 0o755); // the unprivileged user must reach both roots
  // Both directories on one private tmpfs: the same filesystem answers for both sides.
  tmpfs = join(work, 'fs');
  fs.mkdirSync(tmpfs);
  unmountTmpfs = privateTmpfs(tmpfs, 'damselfly-diff', 256);
  share = join(tmpfs, 'share');
  direct = join(tmpfs, 'direct');
  fs.mkdirSync(share);
  fs.mkdirSync(direct);
  fs.mkdirSync(join(work, 'mnt'));
});

after(() => {
  unmountTmpfs();
  fs.rmSync(work, { recursive: true, force: true });
});

const seteuid = process.seteuid as (id: number) => void;
const setegid = process.setegid as (id: number) => void;

/**
 * Kata's default; the kernel's writeback cache (which handles O_APPEND and sizes itself); and
 * virtiofsd's metadata policy (long entry and attribute timeouts, file data by direct I/O); and
 * KILLPRIV_V2 (the daemon drops setuid and setgid where the kernel tells it to); and POSIX ACLs
 * (the kernel checks permissions against them; the process umask reaches the daemon, which the
 * host then applies or, below a default ACL, ignores); and no cache at all (every lookup and
 * attribute asked for, file data by direct I/O).
 */
const MODES = [['--cache', 'auto'], ['--cache', 'always', '--writeback'], ['--cache', 'metadata', '--killpriv-v2'], ['--cache', 'auto', '--posix-acl'], ['--cache', 'never']];

for (const mode of MODES) {
for (const user of ['root', 'an unprivileged user', 'a user in no other group'] as const) {
test(`random call sequences (${SEQUENCES} of ${CALLS}) as ${user}, ${mode.join(' ')}: the same through the passthrough mount and directly`, async (t) => {
  const mount = await startPassthrough(share, join(work, 'mnt'), mode);
  try {
    run(t, mount.mountpoint, user, mode.includes('--posix-acl'));
  } finally {
    await mount.stop();
  }
});
}
}

function run(t: { diagnostic(s: string): void }, mnt: string, user: 'root' | 'an unprivileged user' | 'a user in no other group', acl: boolean): void {
  // The unprivileged user works in a sticky, world-writable root, with a umask, as in /tmp.
  for (const r of [share, direct]) fs.chmodSync(r, user === 'root' ? 0o755 : 0o1777);
  const as = <T>(f: () => T): T => {
    if (user === 'root') return f();
    const alone = user === 'a user in no other group';
    const groups = alone ? (process.getgroups as () => number[])() : [];
    if (alone) (process.setgroups as (g: number[]) => void)([1000]);
    setegid(1000);
    seteuid(1000);
    const umask = process.umask(0o022);
    try {
      return f();
    } finally {
      process.umask(umask);
      seteuid(0);
      setegid(0);
      if (alone) (process.setgroups as (g: number[]) => void)(groups);
    }
  };
  let calls = 0;
  const errors = new Map<string, number>();
  for (let seq = 0; seq < SEQUENCES; seq++) {
    for (const r of [mnt, direct]) for (const n of fs.readdirSync(r)) fs.rmSync(join(r, n), { recursive: true, force: true });
    const rng = caseRng('passthrough-differential', seq);
    const done: string[] = [];
    for (let i = 0; i < CALLS; i++) {
      const c = call(rng, acl);
      const viaMount = as(() => outcome(() => c.run(mnt)));
      const viaDirect = as(() => outcome(() => c.run(direct)));
      calls++;
      const allowed = ALLOWED.some((a) => a.call.test(c.what) && a.mount.test(viaMount) && a.direct.test(viaDirect) && (a.device !== true || namesDevice(direct, c.what)));
      assert.ok(viaMount === viaDirect || allowed, `sequence ${seq}, call ${i} (${c.what}): through the mount "${viaMount}", directly "${viaDirect}"\nafter: ${done.slice(-12).join('; ')}`);
      done.push(`${c.what} -> ${viaDirect}`);
      if (viaDirect.startsWith('error')) errors.set(viaDirect, (errors.get(viaDirect) ?? 0) + 1);
    }
    assert.deepEqual(treeOf(mnt), treeOf(direct), `sequence ${seq}: the trees differ`);
  }
  t.diagnostic(`${calls} calls; errors both sides gave: ${[...errors].map(([k, n]) => `${k.slice(6)} ${n}`).join(', ')}`);
}
