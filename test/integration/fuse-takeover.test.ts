/**
 * nydusd's failover and live upgrade for `damselfly fuse`, as nydus-snapshotter drives them
 * (`pkg/manager/daemon_event.go`, `pkg/supervisor`), through a real /dev/fuse mount and a test
 * supervisor holding the FUSE connection:
 *
 * - failover: the daemon sends its state and /dev/fuse fd (`PUT /api/v1/daemon/fuse/sendfd`); it
 *   is SIGKILLed while a READ waits on a stalled registry; a daemon started with `--upgrade`
 *   takes over (`PUT …/fuse/takeover`: READY) and starts (`PUT /api/v1/daemon/start`: RUNNING).
 *   The kernel sends the held READ again (FUSE_NOTIFY_RESEND) and it completes with the right
 *   bytes; a file and a directory the kernel kept open, the node ids it looked up and the mount
 *   table go on working; mounts can be added and removed afterwards.
 * - live upgrade: the new daemon takes over while the old one serves; the old one's
 *   `PUT /api/v1/daemon/exit` leaves the mount in place, a read made in between waits for the new
 *   daemon's start instead of failing.
 * - refusals: a state that is not ours, a passthrough mount (its open files cannot be handed
 *   over), takeover and start out of order: clear errors, the daemons stay as they were.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { native } from '../../src/native/index.js';
import { apiCall } from '../helpers/api-client.js';
import { damselfly, damselflyOk, sh, waitFor, within } from '../helpers/env.js';
import { type FuseDaemon as Daemon, mountLines, startFuseDaemon } from '../helpers/fuse-daemon.js';
import { BLOB_GET, type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { TestSupervisor } from '../helpers/supervisor.js';
import { compareTrees, listTree, makeTree, prng } from '../helpers/tree.js';

async function stateOf(api: string): Promise<string | undefined> {
  if (!existsSync(api)) return undefined;
  const r = await apiCall(api, 'GET', '/api/v1/daemon').catch(() => undefined);
  return (r?.json as { state?: string } | undefined)?.state;
}

async function waitState(api: string, state: string, d: Daemon): Promise<void> {
  await waitFor(`the daemon to answer ${state} (stderr: ${d.stderr().slice(-500)})`, async () => (await stateOf(api)) === state, 20_000);
}

/**
 * Aborts the FUSE connection of whatever is mounted at `mountpoint` (fusectl, mounted if need
 * be): a failed test must not leave a connection that nobody serves, on which every access hangs.
 */
function abortConnection(mountpoint: string): void {
  const ctl = '/sys/fs/fuse/connections';
  if (!readFileSync('/proc/self/mounts', 'utf8').includes(` ${ctl} fusectl `)) sh(`mount -t fusectl none ${ctl} 2>/dev/null || true`);
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] !== mountpoint) continue;
    const minor = (f[2] ?? '').split(':')[1];
    if (minor !== undefined && existsSync(join(ctl, minor, 'abort'))) writeFileSync(join(ctl, minor, 'abort'), '1');
  }
}

/** An OCI distribution server for the blobs of a directory (anonymous, Range GETs), as a registry backend reads them. */
async function startBlobServer(dir: string): Promise<{ host: string; server: Server }> {
  const server = createServer((req, res) => {
    const m = /^\/v2\/[a-z0-9/._-]+\/blobs\/sha256:([0-9a-f]{64})$/.exec(req.url ?? '');
    if (req.method !== 'GET' || m === null) return res.writeHead(404).end();
    const path = join(dir, m[1] as string);
    void stat(path).then(
      (st) => {
        const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        const [start, end] = r === null ? [0, st.size - 1] : [Number(r[1]), Math.min(Number(r[2]), st.size - 1)];
        res.writeHead(r === null ? 200 : 206, { 'content-length': end - start + 1, ...(r === null ? {} : { 'content-range': `bytes ${start}-${end}/${st.size}` }) });
        createReadStream(path, { start, end }).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('damselfly fuse: failover and live upgrade through the supervisor', () => {
  let work: string;
  let src: string;
  let boot: string;
  let blobs: string;
  let blobServer: Server;
  let proxy: FaultProxy;
  const kill: ChildProcess[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-takeover-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 40, seed: 0x7a4e });
    // Files only the stalled read touches: each in a chunk of its own.
    await writeFile(join(src, 'late-a.bin'), prng(0x1a7e, 3 << 20));
    await writeFile(join(src, 'late-b.bin'), prng(0x1a7f, 1 << 20));
    boot = join(work, 'image.boot');
    blobs = join(work, 'blobs');
    await damselflyOk(['build', '--bootstrap', boot, '--blob-dir', blobs, src]);
    const b = await startBlobServer(blobs);
    blobServer = b.server;
    proxy = await startFaultProxy({ target: b.host });
  });
  after(async () => {
    for (const p of kill) p.kill('SIGKILL');
    await proxy?.stop();
    blobServer?.close();
    for (const m of ['failover', 'upgrade', 'refused-pt']) {
      abortConnection(join(work, m));
      sh(`umount -l '${join(work, m)}' 2>/dev/null || true`);
    }
    await rm(work, { recursive: true, force: true });
  });

  const localConfig = (): string => JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: blobs } } }, mode: 'direct', digest_validate: true });
  // No read amplification and one attempt: the stalled READ is the only blob GET in flight.
  const registryConfig = (): string =>
    JSON.stringify({ version: 2, backend: { type: 'registry', registry: { scheme: 'http', host: proxy.host, repo: 'takeover/app', timeout: 30, connect_timeout: 5, retry_limit: 0 } }, rafs: { mode: 'direct', batch_size: 0, validate: true } });

  async function mountRafs(api: string, mp: string, config: string): Promise<void> {
    const r = await apiCall(api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent(mp)}`, JSON.stringify({ fs_type: 'rafs', source: boot, config }));
    assert.equal(r.status, 204, r.text);
  }

  test('failover: a SIGKILLed daemon is replaced by one that takes over; the READ it held is sent again, open files and node ids carry on', async () => {
    const mnt = join(work, 'failover');
    await mkdir(mnt);
    const api = join(work, 'failover-api.sock');
    const sup = new TestSupervisor(join(work, 'failover-supervisor.sock'));
    const argv = ['--thread-num', '2', '--id', 'daemon-1', '--supervisor', sup.path, '--mountpoint', mnt, '--apisock', api, '--log-level', 'info'];
    const a = startFuseDaemon(argv);
    kill.push(a.proc);
    let b: Daemon | undefined;
    try {
      await waitState(api, 'RUNNING', a);
      await mountRafs(api, '/snap-local', localConfig());
      await mountRafs(api, '/snap-remote', registryConfig());
      const listing = await listTree(src);
      // The kernel looks up the whole local tree and keeps a file and a directory open.
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap-local'), { leftListing: listing, ignore: (p) => p === '/' }), []);
      const held = await open(join(mnt, 'snap-local', 'late-a.bin'));
      const heldDir = await open(join(mnt, 'snap-local', 'dir'), 'r');
      const remoteBefore = await readFile(join(mnt, 'snap-remote', 'late-b.bin'));
      assert.ok(remoteBefore.equals(prng(0x1a7f, 1 << 20)));

      await sup.fetch(async () => {
        const r = await apiCall(api, 'PUT', '/api/v1/daemon/fuse/sendfd');
        assert.equal(r.status, 204, r.text);
      });
      const saved = JSON.parse((sup.data as Buffer).toString()) as { mounts: Array<{ mountpoint: string }> };
      assert.deepEqual(saved.mounts.map((m) => m.mountpoint).sort(), ['/snap-local', '/snap-remote']);

      // A READ the daemon has taken from the kernel and not answered: its blob GET stalls. Its
      // file is looked up after the state was sent: the next daemon knows its node id only
      // from the kernel.
      proxy.resetStats();
      proxy.setFault({ stall: true, match: BLOB_GET, times: 1 });
      const pending = readFile(join(mnt, 'snap-remote', 'late-a.bin'));
      await waitFor('the stalled blob GET', () => proxy.stats.log.some((l) => l.fault === 'stall'), 10_000);
      a.proc.kill('SIGKILL');
      assert.equal((await a.exited)[1], 'SIGKILL');
      assert.equal((await mountLines(mnt)).length, 1, 'the mount stays: the supervisor holds the connection');

      // As the snapshotter's failover: the same command line with --upgrade, INIT, takeover, start.
      b = startFuseDaemon([...argv, '--upgrade']);
      kill.push(b.proc);
      await waitState(api, 'INIT', b);
      assert.equal((await apiCall(api, 'PUT', '/api/v1/daemon/start')).status, 400, 'start before the takeover is out of order');
      const [, took] = await Promise.all([sup.serve(), apiCall(api, 'PUT', '/api/v1/daemon/fuse/takeover')]);
      assert.equal(took.status, 204, took.text);
      assert.equal(await stateOf(api), 'READY');
      assert.equal((await apiCall(api, 'PUT', '/api/v1/daemon/start')).status, 204);
      assert.equal(await stateOf(api), 'RUNNING');

      const resent = await within(20_000, 'the READ the dead daemon held', pending);
      assert.ok(resent.equals(prng(0x1a7e, 3 << 20)), 'the resent READ got the right bytes');
      // The log line travels on the daemon's stderr pipe, which the API's answer may overtake.
      await waitFor('the resend in the log', () => /asked the kernel to send again the requests/.test((b as Daemon).stderr()), 10_000);

      // What the kernel held from the first daemon.
      const buf = Buffer.alloc(4096);
      const { bytesRead } = await held.read(buf, 0, 4096, 1 << 20);
      assert.equal(bytesRead, 4096);
      assert.ok(buf.equals(prng(0x1a7e, 3 << 20).subarray(1 << 20, (1 << 20) + 4096)), 'an fd opened before the takeover reads on');
      await held.close();
      await heldDir.close();
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap-local'), { leftListing: listing, ignore: (p) => p === '/' }), []);
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap-remote'), { leftListing: listing, ignore: (p) => p === '/' }), []);

      // The mount table goes on: a new mount gets a slot of its own, an old one goes.
      await mountRafs(api, '/snap-new', localConfig());
      assert.equal((await apiCall(api, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent('/snap-local')}`)).status, 204);
      assert.deepEqual((await readdir(mnt)).sort(), ['snap-new', 'snap-remote']);
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap-new'), { leftListing: listing, ignore: (p) => p === '/' }), []);
      const info = (await apiCall(api, 'GET', '/api/v1/daemon')).json as { backend_collection: Record<string, unknown> };
      assert.deepEqual(Object.keys(info.backend_collection).sort(), ['/snap-new', '/snap-remote']);
      // The successor hands over in turn (the snapshotter sends states again once it runs).
      await sup.fetch(async () => assert.equal((await apiCall(api, 'PUT', '/api/v1/daemon/fuse/sendfd')).status, 204));
      const again = JSON.parse((sup.data as Buffer).toString()) as { mounts: Array<{ mountpoint: string; bootstrapSha256: string }> };
      assert.deepEqual(again.mounts.map((m) => m.mountpoint).sort(), ['/snap-new', '/snap-remote']);
      assert.ok(again.mounts.every((m) => /^[0-9a-f]{64}$/.test(m.bootstrapSha256)));
    } finally {
      proxy.clearFaults();
      b?.proc.kill('SIGTERM');
      sup.close();
    }
    assert.equal((await (b as Daemon).exited)[0], 0, (b as Daemon).stderr());
    assert.deepEqual(await mountLines(mnt), [], 'SIGTERM unmounts');
  });

  test('live upgrade: the old daemon exits without unmounting once the new one took over; a read in between waits for the start', async () => {
    const mnt = join(work, 'upgrade');
    await mkdir(mnt);
    const api1 = join(work, 'upgrade-api1.sock');
    const api2 = join(work, 'upgrade-api2.sock');
    const sup = new TestSupervisor(join(work, 'upgrade-supervisor.sock'));
    const common = ['--id', 'daemon-2', '--supervisor', sup.path, '--mountpoint', mnt, '--log-level', 'info'];
    const a = startFuseDaemon([...common, '--apisock', api1]);
    kill.push(a.proc);
    let b: Daemon | undefined;
    try {
      await waitState(api1, 'RUNNING', a);
      await mountRafs(api1, '/snap', localConfig());
      const listing = await listTree(src);
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap'), { leftListing: listing, ignore: (p) => p === '/' }), []);
      await sup.fetch(async () => assert.equal((await apiCall(api1, 'PUT', '/api/v1/daemon/fuse/sendfd')).status, 204));

      b = startFuseDaemon([...common, '--apisock', api2, '--upgrade']);
      kill.push(b.proc);
      await waitState(api2, 'INIT', b);
      const [, took] = await Promise.all([sup.serve(), apiCall(api2, 'PUT', '/api/v1/daemon/fuse/takeover')]);
      assert.equal(took.status, 204, took.text);
      assert.equal(await stateOf(api2), 'READY');
      // The old daemon still serves until it is told to exit.
      assert.ok((await readFile(join(mnt, 'snap', 'late-b.bin'))).equals(prng(0x1a7f, 1 << 20)));
      assert.equal((await apiCall(api1, 'PUT', '/api/v1/daemon/exit')).status, 204);
      assert.equal((await a.exited)[0], 0, a.stderr());
      assert.equal((await mountLines(mnt)).length, 1, 'the old daemon left the mount for the new one');

      // Nobody reads the connection now: a request waits in the kernel.
      let settled = false;
      const waiting = readFile(join(mnt, 'snap', 'late-a.bin')).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, false, 'the read waits for a daemon');
      assert.equal((await apiCall(api2, 'PUT', '/api/v1/daemon/start')).status, 204);
      assert.ok((await within(10_000, 'the read made between the daemons', waiting)).equals(prng(0x1a7e, 3 << 20)));
      assert.deepEqual(await compareTrees(src, join(mnt, 'snap'), { leftListing: listing, ignore: (p) => p === '/' }), []);
      assert.equal(await stateOf(api2), 'RUNNING');
    } finally {
      b?.proc.kill('SIGTERM');
      sup.close();
    }
    assert.equal((await (b as Daemon).exited)[0], 0, (b as Daemon).stderr());
    assert.deepEqual(await mountLines(mnt), []);
  });

  test('refusals: a state that is not ours, a passthrough mount, a takeover out of order', async () => {
    const mnt = join(work, 'refused-pt');
    const share = join(work, 'share');
    await mkdir(mnt);
    await mkdir(share);
    const api = join(work, 'refused-api.sock');
    const sup = new TestSupervisor(join(work, 'refused-supervisor.sock'));
    const pt = startFuseDaemon(['--id', 'daemon-3', '--supervisor', sup.path, '--mountpoint', mnt, '--apisock', api, '--shared-dir', share, '--writable']);
    kill.push(pt.proc);
    const upApi = join(work, 'refused-up-api.sock');
    const up = startFuseDaemon(['--id', 'daemon-4', '--supervisor', sup.path, '--mountpoint', mnt, '--apisock', upApi, '--upgrade']);
    kill.push(up.proc);
    const devNull = native.openFd('/dev/null', 0);
    try {
      await waitState(api, 'RUNNING', pt);
      // A passthrough share's open files live in this process: they cannot be handed over.
      const sent = await within(10_000, 'sendfd of a passthrough daemon', apiCall(api, 'PUT', '/api/v1/daemon/fuse/sendfd'));
      assert.equal(sent.status, 501, sent.text);
      // The log line travels on the daemon's stderr pipe, which the API's answer may overtake.
      const refusal = /"err":"the filesystem mounted on \/ cannot be handed over to another daemon","msg":"sendfd refused"/;
      await waitFor(`the refusal in the log (stderr: ${pt.stderr().slice(-300)})`, () => refusal.test(pt.stderr()), 10_000);
      assert.equal(await stateOf(api), 'RUNNING');
      assert.equal((await apiCall(api, 'PUT', '/api/v1/daemon/fuse/takeover')).status, 400, 'a running daemon takes nothing over');

      await waitState(upApi, 'INIT', up);
      const mounted = await apiCall(upApi, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent('/x')}`, JSON.stringify({ fs_type: 'rafs', source: boot, config: localConfig() }));
      assert.equal(mounted.status, 503, 'no mounts before the takeover');
      // A nydusd's state (or anything else) is refused; the daemon stays INIT and can try again.
      const [, foreign] = await Promise.all([sup.serve({ override: { data: Buffer.from([1, 0, 0, 0, 0x6e, 0x79, 0x64]), fd: devNull } }), apiCall(upApi, 'PUT', '/api/v1/daemon/fuse/takeover')]);
      assert.equal(foreign.status, 500, foreign.text);
      assert.match(foreign.text, /not a state this daemon saved/);
      const [, nofd] = await Promise.all([sup.serve({ override: { data: Buffer.from('{}') } }), apiCall(upApi, 'PUT', '/api/v1/daemon/fuse/takeover')]);
      assert.equal(nofd.status, 500, nofd.text);
      assert.match(nofd.text, /no file descriptor/);
      const gone = await apiCall(upApi, 'PUT', '/api/v1/daemon/fuse/takeover');
      assert.equal(gone.status, 500, 'no supervisor listening');
      assert.match(gone.text, /cannot connect to the supervisor/);
      // A state of ours whose mount table does not hold together: refused, and no second try in
      // this process (the table may be part restored).
      const broken = {
        format: 'damselfly-fusedev-state-1',
        mountpoint: mnt,
        session: null,
        mounts: [{ mountpoint: '/snap', request: { fs_type: 'rafs', source: boot, config: localConfig() }, bootstrapSha256: null }],
        vfs: { session: null, transparent: false, pseudo: { nextId: 3, nodes: [{ id: 2, path: '/snap', lookups: 1, time: { sec: 1, nsec: 0 } }], rootTime: { sec: 1, nsec: 0 } }, slots: { fresh: 2, cursor: 1, slots: [] }, backends: {} },
      };
      const [, half] = await Promise.all([sup.serve({ override: { data: Buffer.from(JSON.stringify(broken)), fd: devNull } }), apiCall(upApi, 'PUT', '/api/v1/daemon/fuse/takeover')]);
      assert.equal(half.status, 500, half.text);
      assert.match(half.text, /cannot be restored: the mount table has no slot for \/snap/);
      const again = await apiCall(upApi, 'PUT', '/api/v1/daemon/fuse/takeover');
      assert.match(again.text, /start another daemon to take over/);
      assert.equal(await stateOf(upApi), 'INIT');
      assert.equal((await apiCall(upApi, 'PUT', '/api/v1/daemon/start')).status, 400);
      assert.equal((await apiCall(upApi, 'PUT', '/api/v1/daemon/fuse/sendfd')).status, 503, 'nothing to send before a takeover');
    } finally {
      native.closeFd(devNull);
      pt.proc.kill('SIGTERM');
      up.proc.kill('SIGTERM');
      sup.close();
    }
    assert.equal((await pt.exited)[0], 0, pt.stderr());
    assert.equal((await up.exited)[0], 0, up.stderr());
    assert.deepEqual(await mountLines(mnt), []);
    const refusedUpgrade = await damselfly(['fuse', '--upgrade', '--mountpoint', mnt, '--apisock', upApi]);
    assert.equal(refusedUpgrade.code, 2);
    assert.match(refusedUpgrade.stderr, /--upgrade needs --supervisor/);
  });
});
