/**
 * The passthrough filesystem through the kernel: `damselfly passthrough` serves a temp directory
 * on a /dev/fuse mount, and the same POSIX sequence runs there and on a plain directory, step by
 * step with errno values (plus the trees both leave, seen through the mount and on the host); a
 * guest user's creations and umask; creations allowed through a supplementary group; setuid and
 * setgid dropped for root without CAP_FSETID, with and without --killpriv-v2; and overlayfs with
 * its upper and work directories on the mount (index=off, as Kata's nydus mode), compared with the
 * same overlay on a plain upper.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { native } from '../../src/native/index.js';
import { type PassthroughMount, startPassthrough } from './passthrough-mount.js';
import { posixSuite, snap, treeOf } from './passthrough-posix-suite.js';

const GUEST = 1000;
const seteuid = process.seteuid as (id: number) => void;
const setegid = process.setegid as (id: number) => void;

function attempt(f: () => unknown): unknown {
  try {
    return f() ?? 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** Creations and denials of an unprivileged user with umask 027, in `root` (mode 1777). */
function asGuest(root: string): unknown[] {
  fs.mkdirSync(root, { mode: 0o1777 });
  fs.chmodSync(root, 0o1777);
  fs.writeFileSync(join(root, 'roots'), 'root file');
  fs.mkdirSync(join(root, 'private'), { mode: 0o700 });
  const out: unknown[] = [];
  setegid(GUEST);
  seteuid(GUEST);
  const umask = process.umask(0o027);
  try {
    const p = (n: string): string => join(root, n);
    out.push(attempt(() => (fs.writeFileSync(p('file'), 'x', { mode: 0o666 }), snap(p('file')))));
    out.push(attempt(() => (fs.mkdirSync(p('dir'), { mode: 0o777 }), snap(p('dir')))));
    out.push(attempt(() => (fs.symlinkSync('file', p('link')), snap(p('link')))));
    out.push(attempt(() => (native.mknod(p('fifo'), 0o010666, 0, 0), snap(p('fifo')))));
    out.push(attempt(() => native.mknod(p('dev'), 0o020666, 1, 3)));
    out.push(attempt(() => fs.chownSync(p('file'), 0, 0)));
    out.push(attempt(() => fs.chmodSync(p('roots'), 0o777)));
    out.push(attempt(() => fs.writeFileSync(p('roots'), 'mine')));
    out.push(attempt(() => fs.writeFileSync(p('private/x'), 'x')));
    out.push(attempt(() => fs.unlinkSync(p('roots')))); // sticky directory
    out.push(attempt(() => (fs.renameSync(p('file'), p('dir/file')), snap(p('dir/file')))));
    out.push(attempt(() => fs.utimesSync(p('roots'), 1, 1)));
  } finally {
    process.umask(umask);
    seteuid(0);
    setegid(0);
  }
  return out;
}

/** Overlay operations in a merged view: create, modify, delete (whiteouts), rename, opaque dirs. */
function overlayOps(merged: string): void {
  const p = (n: string): string => join(merged, n);
  fs.writeFileSync(p('new'), 'new file\n');
  fs.appendFileSync(p('lower-file'), 'modified in the merged view\n');
  fs.unlinkSync(p('doomed'));
  fs.rmSync(p('lower-dir'), { recursive: true });
  fs.renameSync(p('renamed'), p('renamed-to'));
  fs.rmSync(p('replaced'), { recursive: true });
  fs.mkdirSync(p('replaced'));
  fs.writeFileSync(p('replaced/inside'), 'fresh');
  fs.chmodSync(p('chmodded'), 0o600);
  native.lsetxattr(p('new'), 'user.merged', Buffer.from('xattr'));
  fs.linkSync(p('new'), p('new-link'));
  fs.symlinkSync('new', p('new-symlink'));
  fs.writeFileSync(p('lower-dir2/deep/added'), 'deep');
  assert.throws(() => fs.renameSync(p('lower-dir2'), p('moved-dir')), { code: 'EXDEV' }); // redirect_dir off
}

/** The upper layer's entries with only the xattrs both upper filesystems keep alike. */
function upperTree(upper: string): Record<string, unknown> {
  const kept = /^(trusted\.overlay\.(opaque|redirect)|user\.)/;
  const t = treeOf(upper) as Record<string, { xattrs: Record<string, unknown> }>;
  for (const e of Object.values(t)) e.xattrs = Object.fromEntries(Object.entries(e.xattrs).filter(([k]) => kept.test(k)));
  return t;
}

describe('passthrough filesystem through /dev/fuse', () => {
  let work: string;
  let share: string;
  let mnt: string;
  let plain: string;
  let mount: PassthroughMount;

  before(async () => {
    work = fs.mkdtempSync(join(tmpdir(), 'damselfly-pt-fuse-'));
    fs.chmodSync(work, 0o755);
    share = join(work, 'share');
    mnt = join(work, 'mnt');
    plain = join(work, 'plain');
    for (const d of [share, mnt, plain]) fs.mkdirSync(d, { mode: 0o755 });
    mount = await startPassthrough(share, mnt);
  });
  after(async () => {
    for (const m of ['merged-plain', 'merged-fuse']) {
      try {
        execFileSync('umount', ['-l', join(work, m)], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
    }
    await mount?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('POSIX sequence: the mount answers step by step as a plain directory', () => {
    fs.mkdirSync(join(plain, 't'));
    fs.mkdirSync(join(mnt, 't'));
    const expected = posixSuite(join(plain, 't'));
    const got = posixSuite(join(mnt, 't'));
    assert.equal(got.length, expected.length);
    for (let i = 0; i < got.length; i++) assert.deepEqual(got[i], expected[i], `step ${expected[i]?.step}`);
    // Spot checks that the sequence exercised what it claims.
    const by = (s: string): unknown => expected.find((x) => x.step === s)?.result;
    assert.equal(by('create O_EXCL again'), 'EEXIST');
    assert.equal(by('rmdir non-empty'), 'ENOTEMPTY');
    assert.equal(by('unlink a directory'), 'EISDIR');
    assert.equal(by('rmdir a file'), 'ENOTDIR');
    assert.equal(by('rename dir over non-empty dir'), 'ENOTEMPTY');
    assert.equal(by('loop'), 'ELOOP');
    assert.equal(by('long name'), 'ENAMETOOLONG');
    assert.deepEqual(by('large file'), [true, 48 << 20]);
    // The host directory holds exactly what the plain run left, and the mount shows it.
    assert.deepEqual(treeOf(join(share, 't')), treeOf(join(plain, 't')));
    assert.deepEqual(treeOf(join(mnt, 't')), treeOf(join(plain, 't')));
  });

  test('an rmdir through a stale entry (the host moved the directory away and made another at its name) leaves the moved one alive to the kernel', () => {
    fs.mkdirSync(join(mnt, 'sd'));
    // An open file inside keeps the kernel's inode of `sd` (and its entry, valid for 1 s under auto).
    const fd = fs.openSync(join(mnt, 'sd', 'x'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    try {
      fs.renameSync(join(share, 'sd'), join(share, 'sd-moved'));
      fs.mkdirSync(join(share, 'sd'));
      // The daemon refuses (ESTALE) the new directory the kernel never looked up; the VFS looks
      // `sd` up again and removes what is there now. It used to remove it at once, and the kernel
      // marked its inode of the old `sd` dead: through the mount `sd-moved` then listed as empty.
      fs.rmdirSync(join(mnt, 'sd'));
      assert.deepEqual(fs.readdirSync(share).filter((n) => n.startsWith('sd')), ['sd-moved']);
      assert.deepEqual(fs.readdirSync(join(mnt, 'sd-moved')), ['x']);
      assert.ok(fs.lstatSync(join(mnt, 'sd-moved', 'x')).isFile());
      fs.mkdirSync(join(mnt, 'sd-moved', 'q'));
      assert.ok(fs.lstatSync(join(share, 'sd-moved', 'q')).isDirectory());
    } finally {
      fs.closeSync(fd);
    }
    fs.rmSync(join(share, 'sd-moved'), { recursive: true });
  });

  test('a guest user creates files as itself, with its umask, and is denied as on the host', () => {
    const expected = asGuest(join(plain, 'u'));
    const got = asGuest(join(mnt, 'u'));
    assert.deepEqual(got, expected);
    assert.deepEqual(expected[0], { type: 'file', perm: 0o640, size: 1, nlink: 1, uid: GUEST, gid: GUEST, rdev: 0 });
    assert.deepEqual((expected[1] as { perm: number }).perm, 0o750);
    assert.equal(fs.lstatSync(join(share, 'u', 'link')).uid, GUEST);
    assert.deepEqual(treeOf(join(share, 'u')), treeOf(join(plain, 'u')));
  });

  test('a user writing a directory through a supplementary group creates there, as on the host (FUSE_CREATE_SUPP_GROUP)', () => {
    // Every creating call, as uid 2000 with and without supplementary group 3000, in a directory
    // of group 3000 writable by the group, and in a set-gid one.
    const STEPS = 'for s in "mkdir d" ": > f" "ln -s f l" "mkfifo p" "mkdir sg/d" ": > sg/f"; do if sh -c "$s" 2>/dev/null; then echo "$s -> ok"; else echo "$s -> denied"; fi; done';
    const run = (root: string): string[] => {
      fs.mkdirSync(root);
      for (const [d, mode] of [['g', 0o775], ['g/sg', 0o2775]] as const) {
        fs.mkdirSync(join(root, d));
        fs.chownSync(join(root, d), 0, 3000);
        fs.chmodSync(join(root, d), mode);
      }
      const as = (groups: string[]): string => execFileSync('setpriv', ['--reuid', '2000', '--regid', '2000', ...groups, 'sh', '-c', `cd ${join(root, 'g')} && ${STEPS}`], { encoding: 'utf8' });
      return [as(['--clear-groups']), as(['--groups', '3000'])];
    };
    const expected = run(join(plain, 'sg'));
    const got = run(join(mnt, 'sg'));
    assert.deepEqual(got, expected);
    assert.deepEqual(expected[0]?.trim().split('\n').map((l) => l.split(' -> ')[1]), ['denied', 'denied', 'denied', 'denied', 'denied', 'denied']);
    assert.deepEqual(expected[1]?.trim().split('\n').map((l) => l.split(' -> ')[1]), ['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    // Owned by the user; below the set-gid directory, of its group (and a new directory set-gid too).
    assert.deepEqual(treeOf(join(share, 'sg')), treeOf(join(plain, 'sg')));
    assert.equal(fs.lstatSync(join(share, 'sg', 'g', 'sg', 'f')).gid, 3000);
    assert.equal(fs.lstatSync(join(share, 'sg', 'g', 'sg', 'd')).mode & 0o7777, 0o2755);
  });

  test('setuid and setgid after a truncating open, a write, a truncate and a chown by root with and without CAP_FSETID: as on the host under --killpriv-v2; without it, but for a truncating open without CAP_FSETID', async () => {
    // Root without CAP_FSETID is a container whose capabilities were dropped: the host drops the
    // bits for it, keeps them for root with it. Under --killpriv-v2 the kernel tells the daemon
    // which caller lacks it (FUSE_*_KILL_SUIDGID), for every call.
    const STEPS: Array<[string, string]> = [
      ['truncating open', ': > f'],
      ['append', 'echo more >> f'],
      ['truncate', 'truncate -s 1 f'],
      ['chown', 'chown 0:0 f'],
    ];
    const run = (root: string, host: string): string[] => {
      fs.mkdirSync(root);
      const out: string[] = [];
      for (const [what, step] of STEPS) {
        for (const fsetid of [false, true]) {
          const f = join(root, 'f');
          fs.writeFileSync(f, 'data\n');
          fs.chmodSync(f, 0o6755);
          const drop = fsetid ? [] : ['--inh-caps=-fsetid', '--bounding-set=-fsetid'];
          execFileSync('setpriv', [...drop, '--', 'sh', '-c', `cd ${root} && ${step}`]);
          // The host's file: through the mount the kernel may show its cached mode a while longer.
          out.push(`${what} ${fsetid ? 'with' : 'without'} CAP_FSETID: ${(fs.statSync(join(host, 'f')).mode & 0o7777).toString(8)}`);
          fs.unlinkSync(f);
        }
      }
      return out;
    };
    const expected = run(join(plain, 'kp'), join(plain, 'kp'));
    assert.deepEqual(expected, [
      'truncating open without CAP_FSETID: 755',
      'truncating open with CAP_FSETID: 6755',
      'append without CAP_FSETID: 755',
      'append with CAP_FSETID: 6755',
      'truncate without CAP_FSETID: 755',
      'truncate with CAP_FSETID: 6755',
      'chown without CAP_FSETID: 755',
      'chown with CAP_FSETID: 755',
    ]);
    // Without KILLPRIV_V2 the kernel drops its own mode change when O_TRUNC travels in the OPEN
    // (FUSE_ATOMIC_O_TRUNC) and sends nothing saying who opened: the daemon takes root to have
    // CAP_FSETID.
    const got = run(join(mnt, 'kp'), join(share, 'kp'));
    assert.deepEqual(got, expected.map((l) => (l === 'truncating open without CAP_FSETID: 755' ? 'truncating open without CAP_FSETID: 6755' : l)));
    const kpShare = join(work, 'kp-share');
    const kpMnt = join(work, 'kp-mnt');
    fs.mkdirSync(kpShare, { mode: 0o755 });
    fs.mkdirSync(kpMnt);
    const kp = await startPassthrough(kpShare, kpMnt, ['--killpriv-v2']);
    try {
      assert.deepEqual(run(join(kpMnt, 'kp'), join(kpShare, 'kp')), expected);
    } finally {
      await kp.stop();
    }
  });

  test('overlayfs with upperdir and workdir on the mount', () => {
    const lower = join(work, 'lower');
    const files: Record<string, string> = {
      'lower-file': 'from the lower layer\n',
      doomed: 'to be deleted\n',
      'lower-dir/a': 'a',
      'lower-dir/sub/b': 'b',
      renamed: 'renamed\n',
      'replaced/old': 'old',
      chmodded: 'mode',
      'lower-dir2/deep/keep': 'keep',
    };
    for (const [rel, data] of Object.entries(files)) {
      fs.mkdirSync(join(lower, rel, '..'), { recursive: true });
      fs.writeFileSync(join(lower, rel), data);
    }
    const results: Record<string, { merged: unknown; upper: unknown }> = {};
    for (const [name, base, hostBase] of [['plain', plain, plain], ['fuse', mnt, share]] as const) {
      const upper = join(base, 'ov', 'upper');
      fs.mkdirSync(upper, { recursive: true });
      fs.mkdirSync(join(base, 'ov', 'work'));
      const merged = join(work, `merged-${name}`);
      fs.mkdirSync(merged);
      execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${join(base, 'ov', 'work')},index=off`, merged]);
      try {
        overlayOps(merged);
        results[name] = { merged: treeOf(merged), upper: upperTree(join(hostBase, 'ov', 'upper')) };
      } finally {
        execFileSync('umount', [merged]);
      }
    }
    const fuse = results['fuse'] as { merged: unknown; upper: Record<string, Record<string, unknown>> };
    assert.deepEqual(fuse.merged, results['plain']?.merged);
    assert.deepEqual(fuse.upper, results['plain']?.upper);
    // What landed on the host under the share: whiteouts, an opaque directory, copied-up data.
    const up = join(share, 'ov', 'upper');
    for (const wh of ['doomed', 'lower-dir', 'renamed']) assert.deepEqual([snap(join(up, wh)).type, snap(join(up, wh)).rdev], ['chr', 0], wh);
    assert.equal(native.lgetxattr(join(up, 'replaced'), 'trusted.overlay.opaque')?.toString(), 'y');
    assert.equal(fs.readFileSync(join(up, 'lower-file'), 'utf8'), 'from the lower layer\nmodified in the merged view\n');
    assert.equal(fs.readFileSync(join(up, 'renamed-to'), 'utf8'), 'renamed\n');
    assert.equal(native.lgetxattr(join(up, 'new'), 'user.merged')?.toString(), 'xattr');
    assert.equal(snap(join(up, 'new')).nlink, 2);
    assert.equal(snap(join(up, 'chmodded')).perm, 0o600);
    assert.ok(native.llistxattr(up).some((n) => n.toString().startsWith('trusted.overlay.')), 'overlay marks its upper root');
  });
});
