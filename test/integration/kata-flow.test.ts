/**
 * Kata's launch sequences end to end, with a real Linux guest under QEMU (TCG), as
 * ../shared/spec/virtio-fs-interop.md §1–2 describes them — each runtime in each shared-fs mode:
 *
 * - Go runtime, `shared_fs = "virtio-fs"`: the runtime listens on the vhost socket itself and
 *   starts `damselfly` with virtiofsd's argv (`--syslog --cache=auto --shared-dir=… --fd=3 …`),
 *   the listening socket as fd 3, stdout and stderr to /dev/null, and QEMU at once (no readiness
 *   wait). The share is `<sid>/shared`, an rslave bind of `<sid>/mounts`.
 * - runtime-rs, `shared_fs = "virtio-fs"`: `--socket-path … --shared-dir <sid>/ro --cache auto
 *   --thread-pool-size=1 -o announce_submounts`; QEMU only after the readiness line on stderr.
 *   The share is a read-only MS_SLAVE bind of `<sid>/rw`.
 * - Go runtime, `shared_fs = "virtio-fs-nydus"`: `damselfly virtiofs --log-level info --apisock …
 *   --sock …` (stdout and stderr piped), ready when GET /api/v1/daemon says RUNNING, then the
 *   passthrough mount `/containers` (query not escaped), QEMU, and per container the RAFS mount
 *   `/rafs/<cid>/lowerdir`; stopped with SIGTERM, then SIGKILL after 5 s.
 * - runtime-rs, `shared_fs = "virtio-fs-nydus"`: the same with `--hybrid-mode`, `%2F`-encoded
 *   queries and the `rw` directory; stopped with SIGKILL.
 *
 * In every case the container's directories reach the share the way Kata makes them: bind mounts
 * created on the host after the daemon started (rootfs, snapshot dir), seen through mount
 * propagation. The guest does what kata-agent does — mounts `kataShared`, and in nydus mode
 * assembles the rootfs with overlayfs (upper and work on the passthrough share, lower the RAFS
 * image, `index=off`) — then writes, deletes and renames in the rootfs and runs a program from it.
 * Afterwards the host finds the changes, the daemon is stopped as Kata stops it, and (nydus) the
 * chunk cache the killed daemon left serves a new daemon correctly.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { native } from '../../src/native/index.js';
import { apiCall } from '../helpers/api-client.js';
import { CLI, damselflyOk, requireTool } from '../helpers/env.js';
import { type Guest, type GuestImage, bootGuest, buildInitramfs, guestMissing } from '../helpers/guest.js';
import { startMount } from '../helpers/mount.js';
import { prng } from '../helpers/tree.js';

const exec = promisify(execFile);
const QUIET = 'dmesg -n 1 2>/dev/null\n';
const CID = '5f1e0c0ffee';
const BUSYBOX = '/bin/busybox'; // static (busybox-static): runs in the guest from any file system

interface Proc {
  proc: ChildProcess;
  output(): string;
  exit: Promise<unknown[]>;
}

function spawnCli(args: string[], stdio: Array<'ignore' | 'pipe' | number>, cwd?: string): Proc {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: stdio as never, cwd });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, output: () => out, exit: once(proc, 'exit') };
}

function exited(p: Proc): boolean {
  return p.proc.exitCode !== null || p.proc.signalCode !== null;
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Host mounts the runtime makes (bind mounts with propagation), undone in reverse order. */
class HostMounts {
  private readonly made: string[] = [];

  async bind(src: string, dst: string, opts: { recursive?: boolean; readOnly?: boolean; propagation?: 'shared' | 'slave' | 'rslave' } = {}): Promise<void> {
    await exec('mount', [opts.recursive ? '--rbind' : '--bind', src, dst]);
    this.made.push(dst);
    if (opts.readOnly) await exec('mount', ['-o', 'remount,bind,ro', dst]);
    if (opts.propagation) await exec('mount', [`--make-${opts.propagation}`, dst]);
  }

  /** A directory as a mount point of its own with shared propagation (Kata's sandboxes dir). */
  async shared(dir: string): Promise<void> {
    await this.bind(dir, dir, { propagation: 'shared' });
  }

  /** As Kata unmounts a container's shares: MNT_DETACH (the daemon may still hold fds in it). */
  async umount(dst: string): Promise<void> {
    await exec('umount', ['-l', dst]);
    this.made.splice(this.made.lastIndexOf(dst), 1);
  }

  async cleanup(): Promise<void> {
    for (const m of this.made.splice(0).reverse()) await exec('umount', ['-l', m]).catch(() => undefined);
  }
}

/** A container rootfs as the snapshotter would have it on the host. */
async function makeRootfs(dir: string): Promise<void> {
  await mkdir(join(dir, 'etc'), { recursive: true });
  await mkdir(join(dir, 'bin'));
  await writeFile(join(dir, 'etc', 'hostname'), 'kata-box\n');
  await writeFile(join(dir, 'etc', 'to-delete'), 'bye\n');
  await copyFile(BUSYBOX, join(dir, 'bin', 'busybox'));
}

/** Kata's stop of a nydusd: SIGTERM, then SIGKILL after `graceMs` (Go), or SIGKILL at once (runtime-rs). */
async function stopDaemon(p: Proc, graceMs: number): Promise<void> {
  if (exited(p)) return;
  if (graceMs > 0) {
    p.proc.kill('SIGTERM');
    const t = setTimeout(() => p.proc.kill('SIGKILL'), graceMs);
    await p.exit;
    clearTimeout(t);
  } else {
    p.proc.kill('SIGKILL');
    await p.exit;
  }
}

requireTool(guestMissing());

describe('Kata launch sequences with a Linux guest', () => {
  let work: string;
  let guestImage: GuestImage;
  const mounts = new HostMounts();
  const data = prng(21, 700_000);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-kata-flow-'));
    guestImage = await buildInitramfs();
    // The RAFS image of the nydus cases: data, a file the container deletes, a static program.
    const image = join(work, 'image');
    await mkdir(join(image, 'etc'), { recursive: true });
    await mkdir(join(image, 'bin'));
    await writeFile(join(image, 'etc', 'os-release'), 'ID=damselfly\n');
    await writeFile(join(image, 'etc', 'motd'), 'to be deleted\n');
    await writeFile(join(image, 'bin', 'data.bin'), data);
    await copyFile(BUSYBOX, join(image, 'bin', 'busybox'));
    await damselflyOk(['build', '--bootstrap', join(work, 'image.boot'), '--blob-dir', join(work, 'blobs'), image]);
  });
  after(async () => {
    await mounts.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  /**
   * The guest side of the virtio-fs modes: mount the share as the agent does, check that the
   * rootfs bind mount is announced as a submount, run the container's program, change its files,
   * then wait for the host to remove the bind mount and see it gone (stale mount dropped).
   */
  function virtiofsScript(opts: { mountOpts: string; rootfs: string; sharedFile?: string; readOnlyTop: boolean }): string {
    const C = '/run/kata-containers/shared/containers';
    const R = `${C}/${opts.rootfs}`;
    return `${QUIET}mkdir -p ${C}
mount -t virtiofs ${opts.mountOpts} kataShared ${C} || exit 10
${opts.sharedFile ? `cat ${C}/${opts.sharedFile}` : ''}
cat ${R}/etc/hostname || exit 11
[ "$(stat -c %d ${C})" != "$(stat -c %d ${R})" ] && echo ROOTFS-IS-A-SUBMOUNT
${R}/bin/busybox echo RAN-FROM-ROOTFS || exit 12
echo guest-wrote > ${R}/from-guest || exit 13
mkdir ${R}/newdir && mv ${R}/from-guest ${R}/newdir/moved || exit 14
rm ${R}/etc/to-delete || exit 15
ls ${R}/newdir
stat -c 'SIZE %s' ${R}/newdir/moved
${opts.readOnlyTop ? `touch ${C}/top-level 2>/dev/null && echo TOP-LEVEL-WRITABLE || echo TOP-LEVEL-READ-ONLY` : ''}
echo ROOTFS-DONE
i=0
while [ ! -e ${C}/host-unmounted ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
i=0
while [ "$(stat -c %d ${R})" != "$(stat -c %d ${C})" ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
[ "$(stat -c %d ${R})" = "$(stat -c %d ${C})" ] && echo "STALE-MOUNT-GONE $(ls -A ${R} | wc -l)"
`;
  }

  /** After the guest: the host sees the guest's changes through the bind mount's source. */
  async function assertRootfsChanged(rootfsSrc: string): Promise<void> {
    assert.equal(await readFile(join(rootfsSrc, 'newdir', 'moved'), 'utf8'), 'guest-wrote\n');
    assert.equal(existsSync(join(rootfsSrc, 'etc', 'to-delete')), false);
    assert.equal(existsSync(join(rootfsSrc, 'from-guest')), false);
  }

  async function runVirtiofsGuest(g: Guest, rootfsMount: string, shareRoot: string, held: boolean): Promise<string[]> {
    await g.waitForMarker('ROOTFS-DONE', { timeoutMs: 240_000 });
    // The runtime removes the container: its rootfs bind mount goes, the agent stats the mount point.
    await mounts.umount(rootfsMount);
    await writeFile(join(shareRoot, 'host-unmounted'), '');
    if (held) await g.waitForMarker('DAMSELFLY-GUEST-HOLD', { timeoutMs: 120_000 });
    else await g.wait();
    assert.equal(g.status, 0, g.console.slice(-3000));
    return g.output();
  }

  test('Go runtime, virtio-fs: virtiofsd argv, fd 3, no readiness wait, SIGKILL after QEMU', async () => {
    const sid = join(work, 'go-vfs');
    const mountsDir = join(sid, 'mounts');
    const share = join(sid, 'shared');
    const rootfsSrc = join(work, 'go-vfs-rootfs');
    await mkdir(mountsDir, { recursive: true });
    await mkdir(share);
    await makeRootfs(rootfsSrc);
    await mounts.shared(mountsDir);
    await mounts.bind(mountsDir, share, { recursive: true, propagation: 'rslave' });
    const vm = join(work, 'vc-vm-go');
    await mkdir(vm);
    const sock = join(vm, 'vhost-fs.sock');
    const fd = native.listenUnix(sock, 16);
    let d: Proc;
    try {
      d = spawnCli(['--syslog', '--cache=auto', `--shared-dir=${share}`, '--fd=3', '--thread-pool-size=1', '--announce-submounts'], ['ignore', 'ignore', 'ignore', fd]);
    } finally {
      native.closeFd(fd);
    }
    let g: Guest | undefined;
    try {
      // Shares appear after the daemon started: the container rootfs and a per-container file.
      await mkdir(join(mountsDir, CID, 'rootfs'), { recursive: true });
      await mounts.bind(rootfsSrc, join(mountsDir, CID, 'rootfs'));
      await writeFile(join(mountsDir, `${CID}-0123456789abcdef-resolv.conf`), 'nameserver 10.0.0.1\n');
      g = await bootGuest({
        devices: [{ socket: sock, tag: 'kataShared', queueSize: 1024 }],
        memBackend: 'file',
        noMount: true,
        script: virtiofsScript({ mountOpts: '', rootfs: `${CID}/rootfs`, sharedFile: `${CID}-0123456789abcdef-resolv.conf`, readOnlyTop: false }),
        timeoutMs: 300_000,
      });
      const out = await runVirtiofsGuest(g, join(mountsDir, CID, 'rootfs'), mountsDir, false);
      for (const line of ['nameserver 10.0.0.1', 'kata-box', 'ROOTFS-IS-A-SUBMOUNT', 'RAN-FROM-ROOTFS', 'moved', 'SIZE 12', 'STALE-MOUNT-GONE 0']) {
        assert.ok(out.includes(line), `${line}\n${out.join('\n')}`);
      }
      await assertRootfsChanged(rootfsSrc);
      // QEMU went away: the daemon ends by itself, cleanly (Kata would SIGKILL it anyway).
      await Promise.race([d.exit, new Promise((r) => setTimeout(r, 15_000))]);
      assert.equal(d.proc.exitCode, 0, `the daemon did not exit cleanly after QEMU left: ${String(d.proc.exitCode)} ${String(d.proc.signalCode)}`);
    } finally {
      await g?.kill();
      d.proc.kill('SIGKILL');
      await rm(sock, { force: true });
    }
  });

  test('runtime-rs, virtio-fs: --socket-path, readiness line, read-only share, SIGKILL', async () => {
    const sid = join(work, 'rs-vfs');
    const rw = join(sid, 'rw');
    const ro = join(sid, 'ro');
    const rootfsSrc = join(work, 'rs-vfs-rootfs');
    await mkdir(join(rw, 'passthrough', CID, 'rootfs'), { recursive: true });
    await mkdir(ro);
    await makeRootfs(rootfsSrc);
    await mounts.shared(rw);
    await mounts.bind(rw, ro, { readOnly: true, propagation: 'slave' });
    const jail = join(work, 'run-kata-rs-vfs', 'root');
    await mkdir(jail, { recursive: true });
    const sock = join(jail, 'virtiofsd.sock');
    const d = spawnCli(['--socket-path', sock, '--shared-dir', ro, '--cache', 'auto', '--thread-pool-size=1', '-o', 'announce_submounts'], ['ignore', 'ignore', 'pipe']);
    let g: Guest | undefined;
    try {
      // runtime-rs starts the VMM only after this line (and has no timeout of its own).
      await waitFor('the readiness line', () => {
        if (exited(d)) throw new Error(`the daemon exited before it was ready: ${d.output()}`);
        return d.output().includes('Waiting for vhost-user socket connection');
      }, 20_000);
      assert.ok(existsSync(sock), 'the socket exists when the readiness line is printed');
      await mounts.bind(rootfsSrc, join(rw, 'passthrough', CID, 'rootfs'));
      g = await bootGuest({
        devices: [{ socket: sock, tag: 'kataShared', queueSize: 1024 }],
        memBackend: 'file',
        noMount: true,
        script: virtiofsScript({ mountOpts: '-o nodev', rootfs: `passthrough/${CID}/rootfs`, readOnlyTop: true }),
        hold: true, // the guest still runs when the runtime kills the daemon
        timeoutMs: 300_000,
      });
      const out = await runVirtiofsGuest(g, join(rw, 'passthrough', CID, 'rootfs'), rw, true);
      for (const line of ['kata-box', 'ROOTFS-IS-A-SUBMOUNT', 'RAN-FROM-ROOTFS', 'moved', 'SIZE 12', 'TOP-LEVEL-READ-ONLY', 'STALE-MOUNT-GONE 0']) {
        assert.ok(out.includes(line), `${line}\n${out.join('\n')}`);
      }
      await assertRootfsChanged(rootfsSrc);
      assert.equal(existsSync(join(rw, 'top-level')), false);
      assert.equal(exited(d), false, 'the daemon serves while the guest runs');
    } finally {
      // runtime-rs: SIGKILL while the VM still runs, then the runtime removes the socket.
      d.proc.kill('SIGKILL');
      await d.exit;
      await g?.kill();
      await rm(sock, { force: true });
    }
    assert.equal(d.proc.signalCode, 'SIGKILL');
  });

  /**
   * The nydus modes. `go`: Go runtime (no --hybrid-mode, raw query paths, share `<sid>/shared`
   * bound from `<sid>/mounts`, SIGTERM then SIGKILL); otherwise runtime-rs (`--hybrid-mode`,
   * %2F-encoded, share `<sid>/rw`, SIGKILL).
   */
  async function nydusFlow(go: boolean): Promise<void> {
    const name = go ? 'go-nydus' : 'rs-nydus';
    const sid = join(work, name);
    // Where the runtime creates per-container directories, and what it hands to the daemon.
    const hostDir = go ? join(sid, 'mounts') : join(sid, 'rw');
    const share = go ? join(sid, 'shared') : hostDir;
    await mkdir(hostDir, { recursive: true });
    await mkdir(share, { recursive: true });
    await mounts.shared(hostDir);
    if (go) await mounts.bind(hostDir, share, { recursive: true, propagation: 'rslave' });
    const snapshot = join(work, `${name}-snapshotter`, 'snapshots', '42');
    await mkdir(join(snapshot, 'fs'), { recursive: true });
    await mkdir(join(snapshot, 'work'));
    const cache = join(work, `${name}-cache`);
    const q = (p: string) => (go ? p : encodeURIComponent(p));

    const vm = join(work, `${name}-vm`);
    await mkdir(vm);
    const api = join(vm, 'nydusd-api.sock');
    const sock = join(vm, go ? 'vhost-fs.sock' : 'virtiofsd.sock');
    const args = ['virtiofs', ...(go ? [] : ['--hybrid-mode']), '--log-level', 'info', '--apisock', api, '--sock', sock];
    const d = spawnCli(args, ['ignore', 'pipe', 'pipe']);
    let g: Guest | undefined;
    try {
      await waitFor('RUNNING', async () => {
        if (exited(d)) throw new Error(`nydusd mode exited: ${d.output()}`);
        if (!existsSync(api)) return false;
        const r = await apiCall(api, 'GET', '/api/v1/daemon').catch(() => undefined);
        if (r?.status !== 200) return false;
        const info = r.json as { state: string; version: Record<string, unknown> };
        // runtime-rs deserialises these five strings and fails without them.
        for (const k of ['package_ver', 'git_commit', 'build_time', 'profile', 'rustc']) assert.equal(typeof info.version[k], 'string', k);
        return info.state === 'RUNNING';
      }, 20_000);
      const pt = await apiCall(api, 'POST', `/api/v1/mount?mountpoint=${q('/containers')}`, JSON.stringify({ fs_type: 'passthrough_fs', source: share, config: '' }));
      assert.equal(pt.status, 204, JSON.stringify(pt.json));

      const S = '/run/kata-containers/shared';
      const R = `${S}/containers/${CID}/rootfs`;
      const U = `${S}/containers/${CID}/snapshotdir`;
      g = await bootGuest({
        devices: [{ socket: sock, tag: 'kataShared', queueSize: 1024 }],
        memBackend: 'file',
        noMount: true,
        files: { '/lib/modules/overlay.ko': `/lib/modules/${guestImage.kver}/kernel/fs/overlayfs/overlay.ko` },
        script: `${QUIET}insmod /lib/modules/overlay.ko || exit 10
mkdir -p ${S}
mount -t virtiofs -o nodev kataShared ${S} || exit 11
echo KATA-SHARED-MOUNTED
i=0
while [ ! -e ${S}/rafs/${CID}/lowerdir/etc/os-release ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
[ -e ${S}/rafs/${CID}/lowerdir/etc/os-release ] || exit 12
mount -t overlay overlay -o upperdir=${U}/fs,workdir=${U}/work,lowerdir=${S}/rafs/${CID}/lowerdir,index=off ${R} || exit 13
cat ${R}/etc/os-release
sha256sum ${R}/bin/data.bin
${R}/bin/busybox echo RAN-FROM-IMAGE || exit 14
echo changed > ${R}/etc/os-release || exit 15
rm ${R}/etc/motd || exit 16
echo new > ${R}/new-file || exit 17
mkdir ${R}/d && mv ${R}/new-file ${R}/d/renamed || exit 18
ls ${R}/etc
cat ${R}/etc/os-release
umount ${R} || exit 19
cat ${S}/rafs/${CID}/lowerdir/etc/os-release
echo CONTAINER-DONE
`,
        hold: true,
        timeoutMs: 300_000,
      });
      await g.waitForMarker('KATA-SHARED-MOUNTED', { timeoutMs: 240_000 });
      // Per container, while the guest runs: the snapshot dir bound under the share (the daemon
      // sees it by propagation), the rootfs mount point, and the RAFS mount — last, because the
      // guest (standing in for the agent's CreateContainer) starts when the image appears.
      await mkdir(join(hostDir, CID, 'snapshotdir'), { recursive: true });
      await mkdir(join(hostDir, CID, 'rootfs'));
      await mounts.bind(snapshot, join(hostDir, CID, 'snapshotdir'), { propagation: 'slave' });
      const config = JSON.stringify({
        device: { id: `/${CID}`, backend: { type: 'localfs', config: { dir: join(work, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: cache } } },
        mode: 'direct',
        digest_validate: false,
        iostats_files: false,
        enable_xattr: true,
        fs_prefetch: { enable: true, threads_count: 2, merging_size: 1048576, prefetch_all: true },
      });
      const lower = `/rafs/${CID}/lowerdir`;
      const m = await apiCall(api, 'POST', `/api/v1/mount?mountpoint=${q(lower)}`, JSON.stringify({ fs_type: 'rafs', source: join(work, 'image.boot'), config }));
      assert.equal(m.status, 204, JSON.stringify(m.json));

      await g.waitForMarker('DAMSELFLY-GUEST-HOLD', { timeoutMs: 240_000 });
      assert.equal(g.status, 0, g.console.slice(-4000) + d.output().slice(-3000));
      const out = g.output();
      assert.deepEqual(out.filter((l) => l.startsWith('ID=') || l === 'changed'), ['ID=damselfly', 'changed', 'ID=damselfly'], out.join('\n'));
      assert.ok(out.some((l) => l.startsWith(createHash('sha256').update(data).digest('hex'))), 'image data through the overlay');
      assert.ok(out.includes('RAN-FROM-IMAGE'), 'a program from the image ran');
      assert.ok(!out.includes('motd'), 'the whiteout hides the lower file');
      // The upper dir, as the agent's overlay left it, in the snapshotter's own directory.
      const upper = join(snapshot, 'fs');
      assert.equal(await readFile(join(upper, 'etc', 'os-release'), 'utf8'), 'changed\n', 'copy-up');
      const wh = await lstat(join(upper, 'etc', 'motd'));
      assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'a whiteout (char 0:0)');
      assert.equal(await readFile(join(upper, 'd', 'renamed'), 'utf8'), 'new\n');
      const pattern = (await apiCall(api, 'GET', `/api/v1/metrics/pattern?id=${encodeURIComponent(lower)}`)).json as Array<{ path: string }>;
      const paths = pattern.map((p) => p.path);
      assert.ok(paths.includes('/etc/os-release') && paths.includes('/bin/data.bin') && paths.includes('/bin/busybox'), paths.join());

      // Teardown as the runtime does it: DELETE the RAFS mount, unbind the snapshot dir, stop.
      assert.equal((await apiCall(api, 'DELETE', `/api/v1/mount?mountpoint=${q(lower)}`)).status, 204);
      await mounts.umount(join(hostDir, CID, 'snapshotdir'));
      await stopDaemon(d, go ? 5_000 : 0);
    } finally {
      if (!exited(d)) d.proc.kill('SIGKILL');
      await d.exit;
      await g?.kill();
      await rm(api, { force: true });
      await rm(sock, { force: true });
    }
    // Whatever the stop left in the chunk cache (prefetch may have been cut short) serves a new
    // daemon exactly: every byte verified on the way.
    const mnt = join(work, `${name}-check`);
    await mkdir(mnt);
    const cfg = join(work, `${name}.json`);
    await writeFile(cfg, JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: join(work, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: cache } } }, mode: 'direct', digest_validate: true }));
    const check = await startMount(['--bootstrap', join(work, 'image.boot'), '--config', cfg], mnt);
    try {
      assert.deepEqual(await readFile(join(mnt, 'bin', 'data.bin')), data);
      assert.deepEqual(await readFile(join(mnt, 'bin', 'busybox')), await readFile(BUSYBOX));
      assert.deepEqual((await readdir(join(mnt, 'etc'))).sort(), ['motd', 'os-release']);
      assert.ok((await stat(cache)).isDirectory());
    } finally {
      await check.stop();
    }
  }

  test('Go runtime, virtio-fs-nydus: API mounts, overlay rootfs assembled by the guest, SIGTERM then SIGKILL', async () => {
    await nydusFlow(true);
  });

  test('runtime-rs, virtio-fs-nydus: --hybrid-mode, encoded queries, overlay rootfs, SIGKILL', async () => {
    await nydusFlow(false);
  });
});
