/**
 * `damselfly fuse`: nydusd's FUSE daemon on the host, as nydus-snapshotter's fusedev mode starts
 * it (`fuse --thread-num N --id ID --config C --bootstrap B --mountpoint M --apisock A
 * --log-level L --log-rotation-size S --supervisor SUP`, the arguments its command builder
 * makes), through a real /dev/fuse mount:
 *
 * - dedicated: the image at the mountpoint, mounted as nydusd mounts it (`rafs` on M, type
 *   `fuse`, read-only, nosuid, nodev, noatime); the API answers RUNNING; the tree matches the source; a write is refused;
 *   unmounted from outside, the daemon exits 0 and removes its API socket;
 * - shared: no bootstrap, images mounted and unmounted through the API under the pseudo root
 *   while the FUSE mount stays; SIGTERM unmounts and exits 0;
 * - `--shared-dir` with `--writable`: a read-write passthrough of the directory;
 * - `--upgrade` without a supervisor to take over from, a missing --mountpoint and a thread count
 *   outside nydusd's 1-1024 are refused before anything is mounted (the takeover itself:
 *   fuse-takeover.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { apiCall } from '../helpers/api-client.js';
import { damselfly, damselflyOk, sh, waitFor } from '../helpers/env.js';
import { mountLine, startFuseDaemon } from '../helpers/fuse-daemon.js';
import { compareTrees, listTree, makeTree } from '../helpers/tree.js';

describe('damselfly fuse (nydusd FUSE daemon, nydus-snapshotter fusedev mode)', () => {
  let work: string;
  let src: string;
  let boot: string;
  let blobs: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-nydusd-fuse-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 50, seed: 0x5f05 });
    boot = join(work, 'image.boot');
    blobs = join(work, 'blobs');
    await damselflyOk(['build', '--bootstrap', boot, '--blob-dir', blobs, src]);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const config = (): string =>
    JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: blobs } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'cache') } } }, mode: 'direct', digest_validate: true });

  test('dedicated, as nydus-snapshotter starts it: the image at the mountpoint, RUNNING, read-only; unmounted from outside, the daemon exits', async () => {
    const mnt = join(work, 'dedicated');
    await mkdir(mnt);
    const api = join(work, 'dedicated-api.sock');
    await writeFile(join(work, 'config.json'), config());
    const d = startFuseDaemon([
      '--thread-num', '4', '--id', 'snap-1', '--config', join(work, 'config.json'), '--bootstrap', boot, '--mountpoint', mnt,
      '--apisock', api, '--log-level', 'info', '--log-rotation-size', '100', '--supervisor', join(work, 'supervisor.sock'),
    ]);
    try {
      await waitFor('the daemon to answer RUNNING', async () => existsSync(api) && ((await apiCall(api, 'GET', '/api/v1/daemon')).json as { state?: string }).state === 'RUNNING', 20_000);
      const info = (await apiCall(api, 'GET', '/api/v1/daemon')).json as { id: string; supervisor: string };
      assert.deepEqual([info.id, info.supervisor], ['snap-1', join(work, 'supervisor.sock')]);
      const line = await mountLine(mnt);
      assert.ok(line !== undefined, 'mounted');
      const [source, , type, options] = line.split(' ');
      assert.deepEqual([source, type], ['rafs', 'fuse'], 'as nydusd mounts it');
      assert.match(options as string, /^ro,nosuid,nodev,noatime,/);
      assert.deepEqual(await compareTrees(src, mnt, { leftListing: await listTree(src) }), []);
      await assert.rejects(writeFile(join(mnt, 'new-file'), 'x'), /EROFS/);
    } finally {
      // As the snapshotter does when the image goes: unmount; the daemon notices and exits.
      sh(`umount '${mnt}'`);
    }
    const [code] = await d.exited;
    assert.equal(code, 0, d.stderr());
    assert.match(d.stderr(), /FUSE filesystem unmounted; exiting/);
    assert.equal(existsSync(api), false, 'the API socket is removed');
  });

  test('shared: images mounted and unmounted through the API under the pseudo root; SIGTERM unmounts and exits', async () => {
    const mnt = join(work, 'shared');
    await mkdir(mnt);
    const api = join(work, 'shared-api.sock');
    const d = startFuseDaemon(['--thread-num', '4', '--mountpoint', mnt, '--apisock', api, '--log-level', 'info']);
    try {
      await waitFor('the daemon to answer RUNNING', async () => existsSync(api) && ((await apiCall(api, 'GET', '/api/v1/daemon')).json as { state?: string }).state === 'RUNNING', 20_000);
      assert.deepEqual(await readdir(mnt), [], 'nothing mounted yet');
      for (const id of ['snap-a', 'snap-b']) {
        const r = await apiCall(api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent(`/${id}`)}`, JSON.stringify({ fs_type: 'rafs', source: boot, config: config() }));
        assert.equal(r.status, 204, r.text);
      }
      assert.deepEqual((await readdir(mnt)).sort(), ['snap-a', 'snap-b']);
      const listing = await listTree(src);
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap-a'), { leftListing: listing, ignore: (p) => p === '/' }), []);
      assert.equal((await apiCall(api, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent('/snap-a')}`)).status, 204);
      assert.deepEqual(await readdir(mnt), ['snap-b']);
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap-b'), { leftListing: listing, ignore: (p) => p === '/' }), []);
    } finally {
      d.proc.kill('SIGTERM');
    }
    const [code] = await d.exited;
    assert.equal(code, 0, d.stderr());
    assert.equal(await mountLine(mnt), undefined, 'unmounted');
  });

  test('--shared-dir with --writable: the directory through a read-write mount, writes land in it', async () => {
    const dir = join(work, 'share');
    const mnt = join(work, 'share-mnt');
    await mkdir(dir);
    await mkdir(mnt);
    await writeFile(join(dir, 'before'), 'in the directory\n');
    const d = startFuseDaemon(['--mountpoint', mnt, '--shared-dir', dir, '--writable']);
    try {
      await waitFor('the mount', async () => (await mountLine(mnt)) !== undefined, 20_000);
      assert.match((await mountLine(mnt)) as string, / fuse rw,/);
      assert.equal(await readFile(join(mnt, 'before'), 'utf8'), 'in the directory\n');
      await writeFile(join(mnt, 'after'), 'through the mount\n');
      assert.equal(await readFile(join(dir, 'after'), 'utf8'), 'through the mount\n');
    } finally {
      d.proc.kill('SIGTERM');
    }
    assert.equal((await d.exited)[0], 0, d.stderr());
    assert.equal(await mountLine(mnt), undefined);
  });

  test('--upgrade, a missing --mountpoint and a thread count nydusd refuses are refused before anything is mounted', async () => {
    const mnt = join(work, 'refused');
    await mkdir(mnt);
    const up = await damselfly(['fuse', '--upgrade', '--mountpoint', mnt, '--bootstrap', boot, '--localfs-dir', blobs]);
    assert.equal(up.code, 2);
    assert.match(up.stderr, /--upgrade needs --supervisor, --id and --apisock/);
    const none = await damselfly(['fuse', '--bootstrap', boot, '--localfs-dir', blobs]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--mountpoint/);
    const threads = await damselfly(['fuse', '--thread-num', '0', '--mountpoint', mnt, '--bootstrap', boot, '--localfs-dir', blobs]);
    assert.equal(threads.code, 2);
    assert.match(threads.stderr, /invalid thread number 0, valid range: \[1-1024\]/);
    assert.equal(await mountLine(mnt), undefined);
  });
});
