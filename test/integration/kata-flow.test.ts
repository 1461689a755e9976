/**
 * Kata's two shared-filesystem modes end to end, with a real Linux guest under QEMU (TCG):
 *
 * - `shared_fs = "virtio-fs"` (Go runtime): `damselfly` started with the runtime's virtiofsd argv
 *   on a listening socket handed over as fd 3, QEMU started at once (Kata's memory-backend-file
 *   line); the guest mounts `kataShared` at /run/kata-containers/shared/containers as the agent
 *   does, reads the container's files and writes, renames and lists; the host sees the changes.
 * - `shared_fs = "virtio-fs-nydus"` (runtime-rs): `damselfly virtiofs --hybrid-mode …` with both
 *   sockets; `/containers` mounted through the API before boot, the guest mounts the virtio-fs
 *   root at /run/kata-containers/shared, the RAFS image is mounted through the API while the
 *   guest runs (`/rafs/<cid>/lowerdir`), and the guest assembles the container rootfs with
 *   overlayfs exactly as the agent does (upper and work dirs on the passthrough share, lower the
 *   image): reads, copy-up, whiteout, new file. The host then finds them in the upper dir, and
 *   the daemon's access pattern lists what the guest read.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { native } from '../../src/native/index.js';
import { CLI, damselflyOk } from '../helpers/env.js';
import { type GuestImage, bootGuest, buildInitramfs, guestMissing } from '../helpers/guest.js';
import { prng } from '../helpers/tree.js';

const QUIET = 'dmesg -n 1 2>/dev/null\n';
const CID = '5f1e0c0ffee';

function http(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { host: 'localhost' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : (JSON.parse(text) as unknown) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

interface Proc {
  proc: ChildProcess;
  stderr(): string;
  exit: Promise<unknown[]>;
}

function spawnCli(args: string[], stdio: Array<'ignore' | 'pipe' | number>): Proc {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: stdio as never });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return { proc, stderr: () => err, exit: once(proc, 'exit') };
}

const skip = guestMissing();

describe('Kata flows with a Linux guest', { skip }, () => {
  let work: string;
  let guestImage: GuestImage;
  const data = prng(21, 700_000);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-kata-flow-'));
    guestImage = await buildInitramfs();
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('virtio-fs: the Go runtime launches damselfly as virtiofsd with fd 3', async () => {
    const share = join(work, 'sandboxes', 'sid-go', 'shared');
    await mkdir(join(share, CID, 'rootfs', 'etc'), { recursive: true });
    await writeFile(join(share, CID, 'rootfs', 'etc', 'hostname'), 'kata-box\n');
    await writeFile(join(share, `${CID}-0123456789abcdef-resolv.conf`), 'nameserver 10.0.0.1\n');
    const sock = join(work, 'vhost-fs.sock');
    const fd = native.listenUnix(sock, 16);
    let d: Proc;
    try {
      d = spawnCli(['--syslog', '--cache=auto', `--shared-dir=${share}`, '--fd=3', '--thread-pool-size=1', '--announce-submounts', '--xattr'], ['ignore', 'ignore', 'pipe', fd]);
    } finally {
      native.closeFd(fd);
    }
    try {
      const C = '/run/kata-containers/shared/containers';
      const guest = await bootGuest({
        devices: [{ socket: sock, tag: 'kataShared', queueSize: 1024 }],
        memBackend: 'file',
        noMount: true,
        script: `${QUIET}mkdir -p ${C}
mount -t virtiofs kataShared ${C} || exit 10
cat ${C}/${CID}/rootfs/etc/hostname
cat ${C}/${CID}-0123456789abcdef-resolv.conf
R=${C}/${CID}/rootfs
echo guest-wrote > $R/from-guest || exit 11
mkdir $R/newdir && mv $R/from-guest $R/newdir/moved || exit 12
ls $R/newdir
stat -c 'SIZE %s' $R/newdir/moved
`,
        timeoutMs: 240_000,
      });
      const r = await guest.wait();
      assert.equal(r.status, 0, r.console.slice(-3000));
      const out = guest.output();
      assert.ok(out.includes('kata-box'), out.join('\n'));
      assert.ok(out.includes('nameserver 10.0.0.1'));
      assert.ok(out.includes('moved'));
      assert.ok(out.includes('SIZE 12'));
      assert.equal(await readFile(join(share, CID, 'rootfs', 'newdir', 'moved'), 'utf8'), 'guest-wrote\n');
      await d.exit;
      assert.equal(d.proc.exitCode, 0, d.stderr());
    } finally {
      d.proc.kill('SIGKILL');
    }
  });

  test('virtio-fs-nydus: runtime-rs, API mounts, overlay rootfs assembled by the guest', async () => {
    const image = join(work, 'image');
    await mkdir(join(image, 'etc'), { recursive: true });
    await mkdir(join(image, 'bin'));
    await writeFile(join(image, 'etc', 'os-release'), 'ID=damselfly\n');
    await writeFile(join(image, 'etc', 'motd'), 'to be deleted\n');
    await writeFile(join(image, 'bin', 'data.bin'), data);
    await damselflyOk(['build', '--bootstrap', join(work, 'image.boot'), '--blob-dir', join(work, 'blobs'), image]);
    const rw = join(work, 'sandboxes', 'sid-rs', 'rw');
    await mkdir(join(rw, CID, 'snapshotdir', 'fs'), { recursive: true });
    await mkdir(join(rw, CID, 'snapshotdir', 'work'));
    await mkdir(join(rw, CID, 'rootfs'));
    const api = join(work, 'nydusd-api.sock');
    const sock = join(work, 'virtiofsd.sock');
    const d = spawnCli(['virtiofs', '--hybrid-mode', '--log-level', 'info', '--apisock', api, '--sock', sock], ['ignore', 'ignore', 'pipe']);
    try {
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (Date.now() > deadline || d.proc.exitCode !== null) throw new Error(`nydusd mode did not start: ${d.stderr()}`);
        const r = existsSync(api) ? await http(api, 'GET', '/api/v1/daemon').catch(() => undefined) : undefined;
        if (r?.status === 200 && (r.json as { state: string }).state === 'RUNNING') break;
        await new Promise((res) => setTimeout(res, 50));
      }
      const pt = await http(api, 'POST', '/api/v1/mount?mountpoint=%2Fcontainers', JSON.stringify({ fs_type: 'passthrough_fs', source: rw, config: '' }));
      assert.equal(pt.status, 204, JSON.stringify(pt.json));
      const S = '/run/kata-containers/shared';
      const R = `${S}/containers/${CID}/rootfs`;
      const guest = await bootGuest({
        devices: [{ socket: sock, tag: 'kataShared', queueSize: 1024 }],
        memBackend: 'file',
        noMount: true,
        hold: true,
        files: { '/lib/modules/overlay.ko': `/lib/modules/${guestImage.kver}/kernel/fs/overlayfs/overlay.ko` },
        script: `${QUIET}insmod /lib/modules/overlay.ko || exit 10
mkdir -p ${S}
mount -t virtiofs -o nodev kataShared ${S} || exit 11
echo KATA-SHARED-MOUNTED
i=0
while [ ! -e ${S}/rafs/${CID}/lowerdir/etc/os-release ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
[ -e ${S}/rafs/${CID}/lowerdir/etc/os-release ] || exit 12
mount -t overlay overlay -o upperdir=${S}/containers/${CID}/snapshotdir/fs,workdir=${S}/containers/${CID}/snapshotdir/work,lowerdir=${S}/rafs/${CID}/lowerdir,index=off ${R} || exit 13
cat ${R}/etc/os-release
sha256sum ${R}/bin/data.bin
echo changed > ${R}/etc/os-release || exit 14
rm ${R}/etc/motd || exit 15
echo new > ${R}/new-file || exit 16
ls ${R}/etc
cat ${R}/etc/os-release
umount ${R} || exit 17
cat ${S}/rafs/${CID}/lowerdir/etc/os-release
`,
        timeoutMs: 300_000,
      });
      await guest.waitForMarker('KATA-SHARED-MOUNTED', { timeoutMs: 240_000 });
      // As runtime-rs does per container, while the guest runs: %2F-encoded mountpoint, the snapshotter's config.
      const config = JSON.stringify({ device: { id: `/${CID}`, backend: { type: 'localfs', config: { dir: join(work, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'cache') } } }, mode: 'direct', digest_validate: false, iostats_files: false, enable_xattr: true });
      const m = await http(api, 'POST', `/api/v1/mount?mountpoint=%2Frafs%2F${CID}%2Flowerdir`, JSON.stringify({ fs_type: 'rafs', source: join(work, 'image.boot'), config }));
      assert.equal(m.status, 204, JSON.stringify(m.json));
      // The guest keeps running after its script (held): the daemon still answers the API.
      await guest.waitForMarker('DAMSELFLY-GUEST-HOLD', { timeoutMs: 240_000 });
      assert.equal(guest.status, 0, guest.console.slice(-4000) + d.stderr().slice(-3000));
      const out = guest.output();
      assert.deepEqual(out.filter((l) => l.startsWith('ID=') || l === 'changed'), ['ID=damselfly', 'changed', 'ID=damselfly'], out.join('\n'));
      assert.ok(out.some((l) => l.startsWith(createHash('sha256').update(data).digest('hex'))), 'image data through the overlay');
      assert.ok(!out.includes('motd'), 'the whiteout hides the lower file');
      // The upper dir on the host, as the agent's overlay left it.
      const upper = join(rw, CID, 'snapshotdir', 'fs');
      assert.equal(await readFile(join(upper, 'etc', 'os-release'), 'utf8'), 'changed\n', 'copy-up');
      const wh = await lstat(join(upper, 'etc', 'motd'));
      assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'a whiteout (char 0:0)');
      assert.equal(await readFile(join(upper, 'new-file'), 'utf8'), 'new\n');
      const pattern = (await http(api, 'GET', `/api/v1/metrics/pattern?id=%2Frafs%2F${CID}%2Flowerdir`)).json as Array<{ path: string }>;
      const paths = pattern.map((p) => p.path);
      assert.ok(paths.includes('/etc/os-release') && paths.includes('/bin/data.bin'), paths.join());
      assert.equal((await http(api, 'DELETE', `/api/v1/mount?mountpoint=%2Frafs%2F${CID}%2Flowerdir`)).status, 204);
      await guest.stop();
      await d.exit;
      assert.equal(d.proc.exitCode, 0, d.stderr());
    } finally {
      d.proc.kill('SIGKILL');
    }
  });
});
