/**
 * `damselfly virtiofs --apisock … --sock …` as Kata's virtio-fs-nydus mode drives nydusd, at the
 * protocol level: started with both runtimes' command lines, ready when `GET /api/v1/daemon`
 * says RUNNING; `/containers` (passthrough of the sandbox share) and `/rafs/<cid>/lowerdir` (a
 * RAFS image with nydus-snapshotter's v1 config string) mounted through the API with %2F-encoded
 * queries; the guest's view checked through an in-process vhost-user frontend; the access
 * pattern read back (API and `damselfly pattern`) and fed to `damselfly build --prefetch-files`;
 * unmount while the guest holds node ids (ESTALE), and exit when the VMM disconnects.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormatError } from '../../src/base/index.js';
import { prefetchPlan } from '../../src/daemon/prefetch-plan.js';
import { openBootstrap } from '../../src/format/open.js';
import { Opcode } from '../../src/fuse/abi.js';
import { apiCall } from '../helpers/api-client.js';
import { CLI, damselfly, damselflyOk } from '../helpers/env.js';
import { cstr, initArgs, parseEntry, parseReply, readArgs, request as fuseRequest, u32Args } from '../helpers/fuse-client.js';
import { prng } from '../helpers/tree.js';
import { type Ring, TestFrontend } from '../helpers/vhost-frontend.js';

const CID = 'c0ffee-1';
const ESTALE = 116;
const ENOENT = 2;

interface Nydusd {
  proc: ChildProcess;
  api: string;
  sock: string;
  stderr(): string;
  exit: Promise<[number | null, string | null]>;
}

/** Starts the daemon and waits as the Go runtime does: socket file, then state RUNNING. */
async function startNydusd(work: string, name: string, extra: string[]): Promise<Nydusd> {
  const api = join(work, `${name}-api.sock`);
  const sock = join(work, `${name}-vhost.sock`);
  const proc = spawn(process.execPath, [CLI, 'virtiofs', ...extra, '--apisock', api, '--sock', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  proc.stdout?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = once(proc, 'exit') as Promise<[number | null, string | null]>;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`nydusd mode did not start: ${err}`);
    if (existsSync(api)) {
      const r = await apiCall(api, 'GET', '/api/v1/daemon').catch(() => undefined);
      if (r?.status === 200 && (r.json as { state: string }).state === 'RUNNING') break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, api, sock, stderr: () => err, exit };
}

describe('damselfly as nydusd (Kata virtio-fs-nydus)', () => {
  let work: string;
  const data = prng(11, 300_000);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-api-nydusd-'));
    await mkdir(join(work, 'image', 'etc'), { recursive: true });
    await mkdir(join(work, 'image', 'bin'));
    await writeFile(join(work, 'image', 'etc', 'os-release'), 'ID=damselfly\n');
    await writeFile(join(work, 'image', 'bin', 'data.bin'), data);
    await mkdir(join(work, 'share', CID, 'snapshotdir'), { recursive: true });
    await writeFile(join(work, 'share', 'hostname'), 'sandbox\n');
    await damselflyOk(['build', '--chunk-size', '64K', '--bootstrap', join(work, 'image.boot'), '--blob-dir', join(work, 'blobs'), join(work, 'image')]);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test("the Go runtime's command line; DaemonInfo; PUT /api/v1/daemon/exit", async () => {
    const d = await startNydusd(work, 'go', ['--log-level', 'info']);
    try {
      const r = await apiCall(d.api, 'GET', '/api/v1/daemon');
      assert.equal(r.server, 'Nydus API');
      const info = r.json as { version: Record<string, unknown>; state: string };
      for (const k of ['package_ver', 'git_commit', 'build_time', 'profile', 'rustc']) assert.equal(typeof info.version[k], 'string');
      assert.equal((await apiCall(d.api, 'PUT', '/api/v1/daemon/exit')).status, 204);
      const [code] = await d.exit;
      assert.equal(code, 0, d.stderr());
      assert.equal(existsSync(d.api), false, 'the API socket is removed');
    } finally {
      d.proc.kill('SIGKILL');
    }
  });

  test("runtime-rs's command line: mounts through the API, the guest's view, pattern, unmount, exit", async () => {
    const d = await startNydusd(work, 'rs', ['--hybrid-mode', '--log-level', 'info']);
    const f = TestFrontend.connect(d.sock);
    try {
      const body = JSON.stringify({ fs_type: 'passthrough_fs', source: join(work, 'share'), config: '' });
      assert.equal((await apiCall(d.api, 'POST', '/api/v1/mount?mountpoint=%2Fcontainers', body)).status, 204);
      const config = JSON.stringify({
        device: { id: '/snap-1', backend: { type: 'localfs', config: { dir: join(work, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'cache') } } },
        mode: 'direct',
        digest_validate: false,
        iostats_files: false,
        enable_xattr: true,
        fs_prefetch: { enable: false, threads_count: 8, merging_size: 1048576, prefetch_all: false },
      });
      const mount = (cid: string): Promise<{ status: number; json: unknown }> =>
        apiCall(d.api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent(`/rafs/${cid}/lowerdir`)}`, JSON.stringify({ fs_type: 'rafs', source: join(work, 'image.boot'), config }));
      assert.equal((await mount(CID)).status, 204);
      assert.equal((await mount(CID)).status, 500, 'a duplicate mountpoint is an error');
      // A cache work_dir that cannot be written: the mount is refused, saying so.
      await writeFile(join(work, 'not-a-dir'), 'a file');
      const badConfig = config.replace(JSON.stringify(join(work, 'cache')), JSON.stringify(join(work, 'not-a-dir')));
      const bad = await apiCall(d.api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent('/rafs/bad-cache/lowerdir')}`, JSON.stringify({ fs_type: 'rafs', source: join(work, 'image.boot'), config: badConfig }));
      assert.notEqual(bad.status, 204);
      assert.match(JSON.stringify(bad.json), /cache directory .*not-a-dir is not usable: EEXIST/);
      const collection = ((await apiCall(d.api, 'GET', '/api/v1/daemon')).json as { backend_collection: Record<string, { backend_type: string }> }).backend_collection;
      assert.equal(collection[`/rafs/${CID}/lowerdir`]?.backend_type, 'Rafs');

      await f.start({ queues: 2, size: 1024 });
      const ring = f.rings[1] as Ring;
      const fuse = async (op: Opcode, nodeid: number, args: Buffer, cap = 4096): Promise<ReturnType<typeof parseReply>> => parseReply(await f.fuse(ring, fuseRequest(op, nodeid, args).bytes, cap));
      assert.equal((await fuse(Opcode.INIT, 0, initArgs(), 256)).error, 0);
      const lookup = async (parent: number, name: string): Promise<number> => {
        const r = await fuse(Opcode.LOOKUP, parent, cstr(name), 256);
        assert.equal(r.error, 0, `LOOKUP ${name}`);
        return parseEntry(r.payload).nodeid;
      };
      const readAll = async (nodeid: number, size: number): Promise<Buffer> => {
        const open = await fuse(Opcode.OPEN, nodeid, u32Args(0, 0), 256);
        assert.equal(open.error, 0);
        const fh = open.payload.readBigUInt64LE(0);
        const parts: Buffer[] = [];
        for (let off = 0; off < size; off += 65536) {
          const r = await fuse(Opcode.READ, nodeid, readArgs(fh, off, 65536), 65536 + 16);
          assert.equal(r.error, 0);
          parts.push(r.payload);
        }
        return Buffer.concat(parts);
      };
      const lower = await lookup(await lookup(await lookup(1, 'rafs'), CID), 'lowerdir');
      const bin = await lookup(lower, 'bin');
      const dataNode = await lookup(bin, 'data.bin');
      const osRelease = await lookup(await lookup(lower, 'etc'), 'os-release');
      assert.equal((await readAll(osRelease, 13)).toString(), 'ID=damselfly\n');
      assert.ok((await readAll(dataNode, data.length)).equals(data), 'image data through the Vfs');
      const hostname = await lookup(await lookup(1, 'containers'), 'hostname');
      assert.equal((await readAll(hostname, 8)).toString(), 'sandbox\n');

      const pattern = await apiCall(d.api, 'GET', `/api/v1/metrics/pattern?id=%2Frafs%2F${CID}%2Flowerdir`);
      assert.equal(pattern.status, 200);
      assert.deepEqual((pattern.json as Array<{ path: string }>).map((p) => p.path), ['/etc/os-release', '/bin/data.bin']);
      const list = await damselflyOk(['pattern', '--apisock', d.api, '--id', `/rafs/${CID}/lowerdir`]);
      assert.equal(list.stdout, '/etc/os-release\n/bin/data.bin\n');
      await writeFile(join(work, 'prefetch.list'), list.stdout);
      await damselflyOk(['build', '--prefetch-files', join(work, 'prefetch.list'), '--bootstrap', join(work, 'again.boot'), '--blob-dir', join(work, 'blobs2'), join(work, 'image')]);
      const global = (await apiCall(d.api, 'GET', `/api/v1/metrics?id=%2Frafs%2F${CID}%2Flowerdir`)).json as { data_read: number };
      assert.equal(global.data_read, data.length + 13);
      const backend = (await apiCall(d.api, 'GET', `/api/v1/metrics/backend?id=%2Frafs%2F${CID}%2Flowerdir`)).json as { read_count: number; backend_type: string };
      assert.equal(backend.backend_type, 'localfs');
      assert.ok(backend.read_count > 0);
      // The blob cache's files, as the blobcache metrics name them; an encrypted cache's are its own.
      const blobcache = async (cid: string): Promise<{ store_path: string; underlying_files: string[] }> =>
        (await apiCall(d.api, 'GET', `/api/v1/metrics/blobcache?id=${encodeURIComponent(`/rafs/${cid}/lowerdir`)}`)).json as { store_path: string; underlying_files: string[] };
      const plain = await blobcache(CID);
      assert.equal(plain.underlying_files.length, 1);
      assert.ok(plain.underlying_files.every((n) => existsSync(join(plain.store_path, n))), plain.underlying_files.join(' '));
      const encrypted = JSON.parse(config) as { device: { cache: { config: Record<string, unknown> } } };
      Object.assign(encrypted.device.cache.config, { enable_encryption: true, encryption_key: 'fc4a7db5614afc2f400e9478bebed1aefdbc9d7cd03210b84f144683a7a6fd1a' });
      const mounted = await apiCall(d.api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent('/rafs/encrypted/lowerdir')}`, JSON.stringify({ fs_type: 'rafs', source: join(work, 'image.boot'), config: JSON.stringify(encrypted) }));
      assert.equal(mounted.status, 204);
      const sealed = await blobcache('encrypted');
      assert.deepEqual(sealed.underlying_files.map((n) => n.replace(/\.xts-[0-9a-f]{8}\.blob\.data$/, '.blob.data')), plain.underlying_files);
      assert.notDeepEqual(sealed.underlying_files, plain.underlying_files);
      assert.equal((await apiCall(d.api, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent('/rafs/encrypted/lowerdir')}`)).status, 204);

      assert.equal((await apiCall(d.api, 'DELETE', `/api/v1/mount?mountpoint=%2Frafs%2F${CID}%2Flowerdir`)).status, 204);
      assert.equal((await fuse(Opcode.GETATTR, dataNode, Buffer.alloc(16), 256)).error, -ESTALE, 'node ids of an unmounted image are stale');
      assert.equal((await fuse(Opcode.LOOKUP, 1, cstr('rafs'), 256)).error, -ENOENT, 'its pseudo directories are gone');
      assert.equal((await apiCall(d.api, 'DELETE', `/api/v1/mount?mountpoint=%2Frafs%2F${CID}%2Flowerdir`)).status, 500);
      assert.equal((await mount('second')).status, 204, 'mounting again while the guest runs');
      assert.equal((await lookup(await lookup(1, 'rafs'), 'second')) > 0, true);
    } finally {
      f.close();
    }
    const [code] = await d.exit;
    assert.equal(code, 0, d.stderr());
    assert.equal(existsSync(d.sock), false, 'the vhost-user socket is removed');
  });

  test('mount sources and CA files that are not regular files fail at once; failed mounts hold nothing; a prefetch that cannot be planned costs only the prefetch', async () => {
    const d = await startNydusd(work, 'bad', ['--log-level', 'info']);
    try {
      const fdCount = (): number => readdirSync(`/proc/${d.proc.pid}/fd`).length;
      const localfs = (extra: object = {}, cacheExtra: object = {}): string =>
        JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: join(work, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'bad-cache'), ...cacheExtra } } }, mode: 'direct', ...extra });
      const mount = (name: string, source: string, config: string) =>
        apiCall(d.api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent(`/rafs/${name}/lowerdir`)}`, JSON.stringify({ fs_type: 'rafs', source, config }));
      // Warm up: one good mount and unmount, so that what the first mount loads is not counted.
      // Its cache size limit trims the directory first, as `mount` does (it was ignored here).
      const stale = join(work, 'bad-cache', `${'ee'.repeat(32)}.blob.data`);
      await mkdir(join(work, 'bad-cache'), { recursive: true });
      await writeFile(stale, Buffer.alloc(64 << 10, 1));
      assert.equal((await mount('warm', join(work, 'image.boot'), localfs({}, { max_size: 1 }))).status, 204);
      assert.ok(!existsSync(stale), 'the cache trimmed to max_size');
      assert.equal((await apiCall(d.api, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent('/rafs/warm/lowerdir')}`)).status, 204);
      const fds = fdCount();
      const fifo = join(work, 'bad.fifo');
      execFileSync('mkfifo', [fifo]);
      // A FIFO without a writer waited for ever (a thread-pool thread each: four stopped the
      // daemon's file I/O), /dev/zero was read until memory ran out.
      for (const source of [fifo, '/dev/zero']) {
        const started = Date.now();
        const r = await mount('bad', source, localfs());
        assert.equal(r.status, 500);
        assert.match(JSON.stringify(r.json), /not a regular file/);
        assert.ok(Date.now() - started < 5000);
      }
      // A registry backend whose CA file is a FIFO stopped the whole daemon (read synchronously).
      const registry = JSON.stringify({ device: { backend: { type: 'registry', config: { host: '127.0.0.1:9', repo: 'r', scheme: 'https', ca_cert_files: [fifo] } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'bad-cache') } } }, mode: 'direct' });
      const ca = await mount('bad', join(work, 'image.boot'), registry);
      assert.notEqual(ca.status, 204);
      assert.match(JSON.stringify(ca.json), /CA file .*bad\.fifo: not a regular file/);
      assert.equal((await apiCall(d.api, 'GET', '/api/v1/daemon')).status, 200);
      // A bootstrap that opens but whose directories do not decode, with a prefetch asked for:
      // planning the prefetch threw out of the mount, leaving its service and blob files open.
      const boot = readFileSync(join(work, 'image.boot'));
      let corrupt: Buffer | undefined;
      for (let off = 0; off < boot.length && corrupt === undefined; off++) {
        const b = Buffer.from(boot);
        b[off] = (b[off] as number) ^ 0xff;
        try {
          const image = openBootstrap(b);
          prefetchPlan(image, { files: ['/etc/os-release', '/bin/data.bin'], all: false });
        } catch (e) {
          if (!(e instanceof FormatError)) throw e;
          try {
            openBootstrap(b);
            corrupt = b;
          } catch {
            // it does not open at all: not this case
          }
        }
      }
      assert.ok(corrupt !== undefined, 'a byte whose flip leaves a bootstrap that opens but cannot be planned');
      await writeFile(join(work, 'corrupt.boot'), corrupt);
      const prefetching = localfs({ fs_prefetch: { enable: true, threads_count: 2, merging_size: 1048576, prefetch_all: true } });
      for (let i = 0; i < 3; i++) {
        assert.equal((await mount(`corrupt${i}`, join(work, 'corrupt.boot'), prefetching)).status, 204);
        assert.equal((await apiCall(d.api, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent(`/rafs/corrupt${i}/lowerdir`)}`)).status, 204);
      }
      assert.match(d.stderr(), /prefetch failed/);
      await new Promise((r) => setTimeout(r, 200)); // closes that finish after the answer
      assert.ok(fdCount() <= fds, `descriptors: ${fds} before the failed mounts, ${fdCount()} after`);
    } finally {
      d.proc.kill('SIGKILL');
      await d.exit;
    }
  });

  test('a mount that fails at start-up is an error exit', async () => {
    const r = await damselfly(['virtiofs', '--sock', join(work, 'x.sock'), '--bootstrap', join(work, 'nope.boot'), '--localfs-dir', join(work, 'blobs')]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /nope\.boot/);
  });
});
