/**
 * The test-guest tooling (scripts/guest, test/helpers/guest.ts) against the reference C virtiofsd:
 * a Linux guest under QEMU/TCG mounts a generated tree over virtio-fs and reports every file's
 * sha256, the find listing, stat fields, symlink targets, xattrs and hardlink inodes, and runs a
 * static binary from the share; the test compares all of it with the host's view. A second boot
 * shows memory hot-plug and resets through QMP, a guest-driven reboot, the boot counter and the
 * script's exit status reaching the caller.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, lchown, lstat, lutimes, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, link, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sh, requireTool } from '../helpers/env.js';
import { REFERENCE_VIRTIOFSD, type Virtiofsd, bootGuest, buildInitramfs, guestMissing, startVirtiofsd } from '../helpers/guest.js';

requireTool(guestMissing() ?? (existsSync(REFERENCE_VIRTIOFSD) ? undefined : `${REFERENCE_VIRTIOFSD} is absent (qemu-system-common)`));

interface HostEntry {
  path: string; // './a/b', as the guest's `find .` prints it
  type: string; // busybox `stat -c %F`
  stat: string; // the guest's stat line: %n|%F|%a|%u|%g|%s|%Y|%h|%i|%t,%T
  sha256?: string;
  target?: string;
  xattrs: string[]; // 'PATH\tNAME\t0xHEX', as /bin/xattrs prints
}

/** Everything the guest script prints about the tree, computed on the host. */
async function hostView(root: string): Promise<Map<string, HostEntry>> {
  const out = new Map<string, HostEntry>();
  const xattrDump = spawnSync('getfattr', ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', root], { encoding: 'utf8' });
  assert.equal(xattrDump.status, 0, xattrDump.stderr);
  const xattrs = new Map<string, string[]>();
  let current = '';
  for (const line of xattrDump.stdout.split('\n')) {
    if (line.startsWith('# file: ')) current = `.${line.slice('# file: '.length).slice(root.length)}` || '.';
    else if (line.includes('=')) {
      const i = line.indexOf('=');
      const list = xattrs.get(current) ?? [];
      list.push(`${current === '.' ? '.' : current}\t${line.slice(0, i)}\t${line.slice(i + 1)}`);
      xattrs.set(current, list);
    }
  }
  const walk = async (rel: string): Promise<void> => {
    const abs = join(root, rel);
    const st = await lstat(abs);
    const type = st.isDirectory()
      ? 'directory'
      : st.isSymbolicLink()
        ? 'symbolic link'
        : st.isFIFO()
          ? 'fifo'
          : st.isCharacterDevice()
            ? 'character special file'
            : st.size === 0
              ? 'regular empty file'
              : 'regular file';
    const dev = st.isCharacterDevice() || st.isBlockDevice() ? `${(st.rdev >> 8).toString(16)},${(st.rdev & 0xff).toString(16)}` : '0,0';
    const perm = (st.mode & 0o7777).toString(8);
    const path = rel === '' ? '.' : `./${rel}`;
    const e: HostEntry = {
      path,
      type,
      stat: [path, type, perm, st.uid, st.gid, st.size, Math.floor(st.mtimeMs / 1000), st.nlink, st.ino, dev].join('|'),
      xattrs: (xattrs.get(path) ?? []).sort(),
    };
    if (st.isFile()) e.sha256 = createHash('sha256').update(await readFile(abs)).digest('hex');
    if (st.isSymbolicLink()) e.target = await readlink(abs);
    out.set(path, e);
    if (st.isDirectory()) for (const name of await readdir(abs)) await walk(rel ? `${rel}/${name}` : name);
  };
  await walk('');
  return out;
}

/** The tree: files of several sizes, modes and owners, symlinks, a hardlink pair, a fifo, a char
 * device, binary and text xattrs, fixed mtimes, and a static busybox to execute from the share. */
async function makeShare(root: string): Promise<void> {
  await mkdir(join(root, 'dir', 'sub dir'), { recursive: true });
  await mkdir(join(root, 'bin'));
  await mkdir(join(root, 'private'), { mode: 0o750 });
  await writeFile(join(root, 'hello.txt'), 'hello virtiofs\n');
  await writeFile(join(root, 'empty'), '');
  const rand = Buffer.alloc(4 << 20);
  for (let i = 0; i < rand.length; i += 4) rand.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
  await writeFile(join(root, 'dir', 'big.bin'), rand);
  await writeFile(join(root, 'dir', 'sub dir', 'name with spaces.txt'), 'spaces\n'.repeat(1000));
  await writeFile(join(root, 'private', 'secret'), 'secret\n', { mode: 0o600 });
  await chmod(join(root, 'private', 'secret'), 0o600);
  await link(join(root, 'hello.txt'), join(root, 'dir', 'hardlink'));
  await symlink('hello.txt', join(root, 'link'));
  await symlink('../dir/sub dir', join(root, 'bin', 'dirlink'));
  await symlink('does/not/exist', join(root, 'dangling'));
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
  await chmod(join(root, 'bin', 'busybox'), 0o755);
  await lchown(join(root, 'private', 'secret'), 1234, 5678);
  sh(`mkfifo ${q(join(root, 'fifo'))} && mknod ${q(join(root, 'null'))} c 1 3 && chmod 4750 ${q(join(root, 'private', 'secret'))}`);
  await lchown(join(root, 'link'), 4321, 8765);
  sh(`setfattr -n user.greeting -v hello ${q(join(root, 'hello.txt'))}`);
  sh(`setfattr -n user.binary -v 0x00ff10 ${q(join(root, 'dir', 'big.bin'))}`);
  sh(`setfattr -n user.dir -v d ${q(join(root, 'dir'))} && setfattr -n trusted.overlay.opaque -v y ${q(join(root, 'dir', 'sub dir'))}`);
  // mtimes last, deepest first (creating entries changes the parent's).
  const paths = ['dir/sub dir/name with spaces.txt', 'dir/big.bin', 'hello.txt', 'empty', 'private/secret', 'bin/busybox', 'fifo', 'null', 'link', 'bin/dirlink', 'dangling', 'dir/sub dir', 'dir', 'bin', 'private', ''];
  let t = 1_600_000_000;
  for (const p of paths) await lutimes(join(root, p), t, (t += 1000));
}

/** A path quoted for sh. */
const q = (p: string): string => `'${p.replace(/'/g, `'\\''`)}'`;

/** Sections of the guest's output: '@@NAME' lines start them. */
function sections(lines: string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const l of lines) {
    if (l.startsWith('@@')) m.set(l.slice(2), (cur = []));
    else cur?.push(l);
  }
  return m;
}

const CHECK_SCRIPT = `
set -u
cd /mnt/share || exit 90
echo @@FIND
find . | sort
echo @@STAT
find . -exec stat -c '%n|%F|%a|%u|%g|%s|%Y|%h|%i|%t,%T' {} + | sort
echo @@SHA
find . -type f -exec sha256sum {} + | sort
echo @@LINK
find . -type l | sort | while IFS= read -r l; do echo "$l|$(readlink "$l")"; done
echo @@XATTR
find . -exec xattrs {} + | sort
echo @@EXEC
./bin/busybox sh -c 'echo exec-ok $((6 * 7))'
/mnt/share/bin/busybox sha256sum dir/big.bin
echo @@STATFS
stat -f -c '%t' .
echo @@DONE
`;

describe('test guest tooling with the reference C virtiofsd', () => {
  let work: string;
  let share: string;
  let host: Map<string, HostEntry>;
  const daemons: Virtiofsd[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-guest-tooling-'));
    share = join(work, 'share');
    await mkdir(share);
    await makeShare(share);
    host = await hostView(share);
    const image = await buildInitramfs();
    assert.ok(existsSync(image.kernel) && existsSync(image.initramfs), JSON.stringify(image));
    assert.ok(image.xattrsHelper, 'the static xattr helper was built');
  });
  after(async () => {
    for (const d of daemons) await d.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('a guest sees the tree exactly as the host does', { timeout: 240_000 }, async (t) => {
    // CAP_SYS_ADMIN lets virtiofsd see trusted.* xattrs (the overlay ones RAFS images carry).
    const vfsd = await startVirtiofsd({ source: share, socket: join(work, 'vfs1.sock'), xattr: true, args: ['-o', 'modcaps=+sys_admin'] });
    daemons.push(vfsd);
    const started = Date.now();
    const guest = await bootGuest({ devices: [{ socket: vfsd.socket, tag: 'share' }], script: CHECK_SCRIPT, timeoutMs: 150_000 });
    const r = await guest.wait();
    const seconds = (Date.now() - started) / 1000;
    assert.equal(r.status, 0, `${r.console}\n${r.stderr}`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.boots, 1);
    assert.match(r.console, /DAMSELFLY-GUEST-MOUNT share ok/);
    assert.match(r.console, /DAMSELFLY-GUEST-UMOUNT share ok/);
    const s = sections(guest.output());
    assert.deepEqual(s.get('DONE'), [], r.console);

    const entries = [...host.values()];
    const byte = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    assert.deepEqual(s.get('FIND'), entries.map((e) => e.path).sort(byte));
    assert.deepEqual(s.get('STAT'), entries.map((e) => e.stat).sort(byte));
    assert.deepEqual(
      s.get('SHA'),
      entries
        .filter((e) => e.sha256)
        .map((e) => `${e.sha256}  ${e.path}`)
        .sort(byte),
    );
    assert.deepEqual(
      s.get('LINK'),
      entries
        .filter((e) => e.target !== undefined)
        .map((e) => `${e.path}|${e.target}`)
        .sort(byte),
    );
    assert.deepEqual(s.get('XATTR'), entries.flatMap((e) => e.xattrs).sort(byte));

    // Hardlinks: one inode, two links, seen from both names.
    const stat = new Map(s.get('STAT')!.map((l) => [l.split('|')[0], l.split('|')]));
    assert.equal(stat.get('./hello.txt')![8], stat.get('./dir/hardlink')![8]);
    assert.equal(stat.get('./hello.txt')![7], '2');

    const exec = s.get('EXEC')!;
    assert.equal(exec[0], 'exec-ok 42');
    assert.equal(exec[1], `${host.get('./dir/big.bin')!.sha256}  dir/big.bin`);
    assert.deepEqual(s.get('STATFS'), ['65735546']); // FUSE_SUPER_MAGIC
    t.diagnostic(`guest boot + checks: ${seconds.toFixed(1)} s`);
  });

  test('QMP memory hot-plug and reset, guest reboot, boot counter, exit status', { timeout: 240_000 }, async () => {
    const vfsd = await startVirtiofsd({ source: share, socket: join(work, 'vfs2.sock'), xattr: true });
    daemons.push(vfsd);
    const big = host.get('./dir/big.bin')!.sha256!;
    const script = `
blocks() { ls -d /sys/devices/system/memory/memory* | wc -l; }
echo "boot $DAMSELFLY_BOOT tags $DAMSELFLY_TAGS"
case $DAMSELFLY_BOOT in
  1)
    n=$(blocks)
    echo "WAITING-FOR-DIMM $n"
    i=0
    while [ "$(blocks)" -le "$n" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    echo "blocks $(blocks) online $(grep -l online /sys/devices/system/memory/memory*/state | wc -l)"
    sha256sum /mnt/share/dir/big.bin
    exit 0 ;;
  2)
    echo READY-FOR-RESET
    sleep 600 ;;
  *)
    sha256sum /mnt/share/dir/big.bin
    exit 7 ;;
esac
`;
    const guest = await bootGuest({
      devices: [{ socket: vfsd.socket, tag: 'share', queueSize: 1024 }],
      script,
      memory: '1G',
      memBackend: 'file',
      qmp: true,
      reboots: 2,
      timeoutMs: 200_000,
    });
    try {
      const waiting = await guest.waitForMarker('WAITING-FOR-DIMM');
      const before = Number(waiting.split(' ')[1]);
      assert.equal(await guest.hotplugMemory(256 << 20), 'dimm1');
      // Boot 1 saw the new memory, read the file, and the guest rebooted itself.
      const reset = await guest.waitForMarker('READY-FOR-RESET');
      assert.ok(reset);
      const boot1 = guest.output(1);
      assert.match(boot1.join('\n'), new RegExp(`blocks ${before + 2} online ${before + 2}`));
      assert.ok(boot1.includes(`${big}  /mnt/share/dir/big.bin`), boot1.join('\n'));
      await guest.reset();
      const r = await guest.wait();
      assert.equal(r.boots, 3, r.console);
      assert.deepEqual(r.exits, [0, 7], r.console);
      assert.equal(r.status, 7);
      assert.equal(r.exitCode, 7, r.stderr);
      assert.deepEqual(guest.output(3), ['boot 3 tags share', `${big}  /mnt/share/dir/big.bin`]);
      assert.ok(guest.qmpEvents.some((e) => e.event === 'RESET'), JSON.stringify(guest.qmpEvents));
      assert.match(r.console, /DAMSELFLY-GUEST-REBOOT/);
    } finally {
      await guest.kill();
    }
  });
});
