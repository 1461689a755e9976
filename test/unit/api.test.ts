/**
 * The nydusd-compatible HTTP API in-process, over a temp unix socket, on a NydusDaemon whose RAFS
 * and passthrough filesystems are fakes: DaemonInfo (state, the five version strings runtime-rs
 * requires), exact status codes and error bodies, URL-decoded and raw mountpoint queries,
 * duplicate and unknown mounts, bad methods/bodies/queries, metrics per mount, access patterns
 * (the order a guest first read files) and the prefetch list made from them.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ApiServer } from '../../src/api/index.js';
import { Metrics, silentLogger } from '../../src/base/index.js';
import { NydusDaemon, type RafsFactory } from '../../src/daemon/index.js';
import { nativeCodecs } from '../../src/native/index.js';
import { apiCall as call } from '../helpers/api-client.js';
import { FakeFs } from './fs/vfs-fake-fs.js';

const images = new Map<string, FakeFs>();
const fakeRafs: RafsFactory = async (req) => {
  if (req.source.includes('missing')) throw new Error(`cannot open ${req.source}`);
  const fs = new FakeFs(req.source, { files: { 'etc/os-release': 'ID=fake\n', 'bin/sh': '#!/bin/sh\n', 'usr/lib/libc.so': 'elf' } });
  images.set(req.mountpoint, fs);
  JSON.parse(req.config);
  return { fs, config: { id: 'cfg' }, backendType: 'localfs', close: async () => undefined };
};

describe('nydusd HTTP API', () => {
  let dir: string;
  let sock: string;
  let daemon: NydusDaemon;
  let server: ApiServer;
  let exits = 0;
  const config = JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: '/blobs' } } }, mode: 'direct' });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'damselfly-api-'));
    await mkdir(join(dir, 'share'));
    sock = join(dir, 'api.sock');
    daemon = new NydusDaemon({
      log: silentLogger,
      metrics: new Metrics(),
      codecs: nativeCodecs,
      rafs: fakeRafs,
      passthrough: (o) => new FakeFs(`pt:${o.root}`, { files: { 'cid/rootfs/': '' } }),
      onExit: () => exits++,
    });
    server = new ApiServer(daemon, silentLogger);
    await server.listen(sock);
    // A second server on the same path replaces the stale socket file.
    await server.close();
    server = new ApiServer(daemon, silentLogger);
    await server.listen(sock);
  });
  after(async () => {
    await server.close();
    await daemon.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('GET /api/v1/daemon: DaemonInfo with the five version strings, headers', async () => {
    const r = await call(sock, 'GET', '/api/v1/daemon');
    assert.equal(r.status, 200);
    assert.equal(r.headers['server'], 'Nydus API');
    assert.equal(r.headers['content-type'], 'application/json');
    const info = r.json as Record<string, unknown>;
    const version = info['version'] as Record<string, unknown>;
    for (const k of ['package_ver', 'git_commit', 'build_time', 'profile', 'rustc']) assert.equal(typeof version[k], 'string', k);
    assert.equal(info['id'], null);
    assert.equal(info['supervisor'], null);
    assert.equal(info['state'], 'INIT', 'INIT until the vhost-user socket listens');
    assert.deepEqual(info['backend_collection'], {});
    daemon.listen({ socketPath: join(dir, 'vhost.sock') });
    assert.equal(((await call(sock, 'GET', '/api/v1/daemon')).json as { state: string }).state, 'RUNNING');
    const v2 = (await call(sock, 'GET', '/api/v2/daemon')).json as Record<string, unknown>;
    assert.equal(v2['backend_collection'], null);
    assert.equal(v2['state'], 'RUNNING');
  });

  test('mounts: %2F-encoded and raw queries, duplicates, unknown mountpoints', async () => {
    const pt = JSON.stringify({ fs_type: 'passthrough_fs', source: join(dir, 'share'), config: '' });
    const a = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fcontainers', pt);
    assert.equal(a.status, 204);
    assert.equal(a.text, '');
    assert.equal(a.headers['server'], 'Nydus API');
    const rafs = JSON.stringify({ fs_type: 'rafs', source: '/snap/1/image.boot', config });
    assert.equal((await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Frafs%2Fabc%2Flowerdir', rafs)).status, 204);
    assert.equal((await call(sock, 'POST', '/api/v1/mount?mountpoint=/rafs/def-1.x/lowerdir', rafs)).status, 204, 'the Go runtime sends the path unescaped');
    assert.deepEqual(
      daemon.vfs.mounts().map((m) => m.path),
      ['/containers', '/rafs/abc/lowerdir', '/rafs/def-1.x/lowerdir'],
    );
    const dup = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Frafs%2Fabc%2Flowerdir', rafs);
    assert.equal(dup.status, 500);
    assert.deepEqual(dup.json, { code: 'UNDEFINED', message: 'Mount(MountFilesystem(Other("/rafs/abc/lowerdir is already mounted")))' });
    const info = (await call(sock, 'GET', '/api/v1/daemon')).json as { backend_collection: Record<string, { backend_type: string; mountpoint: string; mounted_time: string; config: unknown }> };
    assert.equal(info.backend_collection['/containers']?.backend_type, 'PassthroughFs');
    assert.equal(info.backend_collection['/rafs/abc/lowerdir']?.backend_type, 'Rafs');
    assert.deepEqual(info.backend_collection['/rafs/abc/lowerdir']?.config, { id: 'cfg' });
    assert.ok(!Number.isNaN(Date.parse(info.backend_collection['/containers']?.mounted_time as string)));

    const del = await call(sock, 'DELETE', '/api/v1/mount?mountpoint=%2Frafs%2Fdef-1.x%2Flowerdir');
    assert.equal(del.status, 204);
    const again = await call(sock, 'DELETE', '/api/v1/mount?mountpoint=%2Frafs%2Fdef-1.x%2Flowerdir');
    assert.equal(again.status, 500);
    assert.deepEqual(again.json, { code: 'UNDEFINED', message: 'Mount(MountFilesystem(Other("/rafs/def-1.x/lowerdir is not mounted")))' });
    const nested = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fcontainers%2Finner', pt);
    assert.equal(nested.status, 500);
    const failing = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Frafs%2Fbad%2Flowerdir', JSON.stringify({ fs_type: 'rafs', source: '/missing', config }));
    assert.equal(failing.status, 500);
    assert.match((failing.json as { message: string }).message, /^Mount\(MountFilesystem\(Other\(".*cannot open \/missing/);
    const events = (await call(sock, 'GET', '/api/v1/daemon/events')).json as { total_errors: number };
    assert.ok(events.total_errors >= 2);
  });

  test('bad requests: 400 for method, body and query; 404 for unknown paths; 501 unsupported', async () => {
    const body = JSON.stringify({ fs_type: 'rafs', source: '/x', config });
    const noQuery = await call(sock, 'POST', '/api/v1/mount', body);
    assert.equal(noQuery.status, 400);
    assert.deepEqual(noQuery.json, { code: 'UNDEFINED', message: `QueryString("'mountpoint' should be specified in query string")` });
    assert.equal((await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fx', '{not json')).status, 400);
    const missing = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fx', JSON.stringify({ source: '/x' }));
    assert.equal(missing.status, 400);
    assert.match((missing.json as { message: string }).message, /^ParseBody\(.*config/);
    assert.equal((await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fx')).status, 400, 'POST without a body');
    assert.equal((await call(sock, 'DELETE', '/api/v1/mount?mountpoint=%2Fx', '{}')).status, 400, 'DELETE with a body');
    // A body over the limit is answered 400 as nydusd answers it, not a reset connection.
    const big = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fbig', JSON.stringify({ fs_type: 'rafs', source: '/x', config: 'a'.repeat(3 << 20) }));
    assert.equal(big.status, 400);
    assert.deepEqual(big.json, { code: 'UNDEFINED', message: 'PayloadTooLarge' });
    assert.equal((await call(sock, 'GET', '/api/v1/daemon')).status, 200);
    assert.equal((await call(sock, 'PATCH', '/api/v1/daemon')).status, 400);
    assert.equal((await call(sock, 'GET', '/api/v1/daemon', '{}')).status, 400);
    assert.equal((await call(sock, 'PUT', '/api/v1/daemon')).status, 400);
    const unknown = await call(sock, 'GET', '/api/v1/nope');
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.json, { code: 'UNDEFINED', message: 'NoRoute' });
    assert.equal(unknown.headers['server'], 'Nydus API');
    const badType = await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Fy', JSON.stringify({ fs_type: 'ext4', source: '/x', config: '' }));
    assert.equal(badType.status, 500);
    // No supervisor to send to; not started with --upgrade, so nothing to take over.
    assert.deepEqual((await call(sock, 'PUT', '/api/v1/daemon/fuse/sendfd')).json, { code: 'UNDEFINED', message: 'Upgrade(DaemonAbnormal(Unsupported))' });
    const takeover = await call(sock, 'PUT', '/api/v1/daemon/fuse/takeover');
    assert.equal(takeover.status, 400);
    assert.match((takeover.json as { message: string }).message, /^Upgrade\(DaemonAbnormal\(UnexpectedEvent\(.*not started with --upgrade/);
    const start = await call(sock, 'PUT', '/api/v1/daemon/start');
    assert.equal(start.status, 400, 'UnexpectedEvent');
    assert.match((start.json as { message: string }).message, /^Configure\(DaemonAbnormal\(UnexpectedEvent\(/);
    assert.equal((await call(sock, 'GET', '/api/v2/blobs?domain_id=x')).status, 501);
  });

  test('PUT /api/v1/daemon sets the log level', async () => {
    assert.equal((await call(sock, 'PUT', '/api/v1/daemon', JSON.stringify({ log_level: 'debug' }))).status, 204);
    assert.equal(silentLogger.level, 'debug');
    silentLogger.level = 'silent';
    assert.equal((await call(sock, 'PUT', '/api/v2/daemon', JSON.stringify({ log_level: 'Off' }))).status, 204);
    assert.equal((await call(sock, 'PUT', '/api/v1/daemon', JSON.stringify({ log_level: 'loud' }))).status, 500);
  });

  test('metrics per mount; access pattern and prefetch list', async () => {
    const none = await call(sock, 'GET', '/api/v1/metrics');
    assert.equal(none.status, 200, 'the only RAFS mount when no id is given');
    const ctx = { uid: 0, gid: 0, pid: 1 };
    const vfs = daemon.vfs;
    const lookup = async (parent: number, name: string): Promise<number> => (await vfs.lookup(ctx, parent, Buffer.from(name))).nodeid;
    const lower = await lookup(await lookup(await lookup(1, 'rafs'), 'abc'), 'lowerdir');
    const readFile = async (path: string): Promise<void> => {
      let id = lower;
      for (const p of path.split('/').filter(Boolean)) id = await lookup(id, p);
      const fh = await vfs.open(ctx, id, 0);
      await vfs.read(ctx, id, fh.fh, 0, 4096, [Buffer.alloc(4096)]);
    };
    await readFile('/usr/lib/libc.so');
    await readFile('/bin/sh');
    await readFile('/usr/lib/libc.so');
    const pattern = await call(sock, 'GET', '/api/v1/metrics/pattern?id=%2Frafs%2Fabc%2Flowerdir');
    assert.equal(pattern.status, 200);
    const items = pattern.json as Array<{ path: string; nr_read: number; first_access_time_secs: number; first_access_time_nanos: number }>;
    assert.deepEqual(
      items.map((i) => [i.path, i.nr_read]),
      [
        ['/usr/lib/libc.so', 2],
        ['/bin/sh', 1],
      ],
    );
    assert.ok(items[0]?.first_access_time_secs && items[0].first_access_time_secs > 1_600_000_000);
    assert.equal(daemon.prefetchList('/rafs/abc/lowerdir'), '/usr/lib/libc.so\n/bin/sh\n');
    const global = (await call(sock, 'GET', '/api/v1/metrics?id=/rafs/abc/lowerdir')).json as { id: string; data_read: number; fop_hits: number[] };
    assert.equal(global.id, '/rafs/abc/lowerdir');
    assert.equal(global.fop_hits.length, 15);
    assert.equal(global.data_read, 3 + 10 + 3);
    const files = (await call(sock, 'GET', '/api/v1/metrics/files?id=%2Frafs%2Fabc%2Flowerdir')).json as Record<string, { path: string; nr_read: number }>;
    assert.deepEqual(Object.values(files).map((f) => [f.path, f.nr_read]).sort(), [['/bin/sh', 1], ['/usr/lib/libc.so', 2]]);
    const latest = (await call(sock, 'GET', '/api/v1/metrics/files?id=%2Frafs%2Fabc%2Flowerdir&latest=true')).json as number[];
    assert.equal(latest.length, 2);
    assert.deepEqual((await call(sock, 'GET', '/api/v1/metrics/files?id=%2Frafs%2Fabc%2Flowerdir&latest=true')).json, []);
    const backend = (await call(sock, 'GET', '/api/v1/metrics/backend?id=%2Frafs%2Fabc%2Flowerdir')).json as { backend_type: string };
    assert.equal(backend.backend_type, 'localfs');
    assert.equal((await call(sock, 'GET', '/api/v1/metrics/blobcache?id=%2Frafs%2Fabc%2Flowerdir')).status, 200);
    const noCounter = await call(sock, 'GET', '/api/v1/metrics/pattern?id=%2Frafs%2Fzzz%2Flowerdir');
    assert.equal(noCounter.status, 404);
    assert.deepEqual(noCounter.json, { code: 'UNDEFINED', message: 'Pattern(Metrics(Stats(NoCounter)))' });
    assert.equal((await call(sock, 'GET', '/api/v1/metrics/backend?id=%2Fcontainers')).status, 404);
    const inflight = await call(sock, 'GET', '/api/v1/metrics/inflight');
    assert.equal(inflight.status, 204, 'idle: no content');
    const sb = await call(sock, 'GET', '/api/v1/daemon/backend?mountpoint=%2Fcontainers');
    assert.equal(sb.status, 500);
    // Two RAFS mounts: without an id there is no single answer.
    await call(sock, 'POST', '/api/v1/mount?mountpoint=%2Frafs%2Fsecond%2Flowerdir', JSON.stringify({ fs_type: 'rafs', source: '/snap/2/image.boot', config }));
    assert.equal((await call(sock, 'GET', '/api/v1/metrics')).status, 404);
  });

  test('PUT /api/v1/daemon/exit asks the daemon to stop', async () => {
    assert.equal((await call(sock, 'PUT', '/api/v1/daemon/exit')).status, 204);
    await new Promise((r) => setImmediate(r));
    assert.equal(exits, 1);
  });
});
