/**
 * Registry faults under a mounted image (Debian's docker-registry behind a fault-injecting proxy,
 * the daemon pointed at the proxy; config `timeout` 1 s and `retry_limit`): 500s that stop, 500s
 * that do not, connection resets, stalls before the headers and in the middle of the body,
 * truncated bodies and flipped bytes. Each read either returns exactly the right bytes (after
 * retries) or fails with EIO within a measured, bounded time; never short or wrong data, and the
 * daemon keeps serving other files (and the same file once the registry behaves) afterwards.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Opcode } from '../../src/fuse/abi.js';
import { CLI, damselflyOk, requireTool } from '../helpers/env.js';
import { cstr, initArgs, parseEntry, parseReply, readArgs, request } from '../helpers/fuse-client.js';
import { DESC_NEXT, DESC_WRITE, type Ring, TestFrontend } from '../helpers/vhost-frontend.js';
import { type FaultProxy, type RequestInfo, startFaultProxy } from '../helpers/fault-proxy.js';
import { type RunningMount, startMount } from '../helpers/mount.js';
import { makeOciImage } from '../helpers/oci-image.js';
import { type TestRegistry, registryMissing, startRegistry } from '../helpers/registry.js';
import { prng } from '../helpers/tree.js';
import { type Stats, Mountpoints, convertTo, preadFile, readOutcome, registryConfig, statsOf, waitFor, writeConfig } from './network-fixtures.test.js';

requireTool(registryMissing());
const FILES = 10;
const FILE_SIZE = 300_000; // one chunk each (random: stored uncompressed)

describe('registry faults under a mounted image', () => {
  let work: string;
  let src: string;
  let reg: TestRegistry;
  let proxy: FaultProxy;
  let mnt: string;
  let mps: Mountpoints;
  let boot: string;
  let n = 0;
  let current: RunningMount | undefined;
  const content = new Map<string, Buffer>();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-net-faults-'));
    src = join(work, 'src');
    await mkdir(src);
    for (let i = 0; i < FILES; i++) {
      const data = prng(4000 + i, FILE_SIZE + i);
      content.set(`f${i}`, data);
      await writeFile(join(src, `f${i}`), data);
    }
    await makeOciImage(join(work, 'oci'), 'v1', [src], work);
    reg = await startRegistry();
    await convertTo({ ref: `oci:${join(work, 'oci')}:v1`, tag: 'v1' }, reg.host, 'net/faults');
    proxy = await startFaultProxy({ target: reg.host });
    mps = new Mountpoints(work);
    mnt = await mps.next();
    // The bootstrap, as a daemon saves it: for the chunk ranges of each file.
    const m = await startMount(['--image', `docker://${reg.host}/net/faults:v1`, '--plain-http', '--cache-dir', join(work, 'cache-boot')], mnt);
    const stopped = await m.stop();
    assert.equal(stopped.code, 0, stopped.stderr);
    const name = (await readdir(join(work, 'cache-boot'))).find((f) => f.endsWith('.image.boot')) as string;
    boot = join(work, 'cache-boot', name);
  });
  afterEach(async () => {
    proxy.clearFaults();
    if (current) await current.stop();
    current = undefined;
  });
  after(async () => {
    mps?.detachAll();
    await proxy?.stop();
    await reg?.stop();
    await rm(work, { recursive: true, force: true });
  });

  /** Matches blob GETs of the chunk range of file `f` (one chunk per file). */
  async function rangeOf(f: string): Promise<(req: RequestInfo) => boolean> {
    const r = await damselflyOk(['inspect', '--bootstrap', boot, '--path', `/${f}`, '--json']);
    const chunks = (JSON.parse(r.stdout) as { chunks: { compressedOffset: number; compressedSize: number }[] }).chunks;
    assert.equal(chunks.length, 1);
    const c = chunks[0] as { compressedOffset: number; compressedSize: number };
    const range = `bytes=${c.compressedOffset}-${c.compressedOffset + c.compressedSize - 1}`;
    return (req) => req.method === 'GET' && /\/blobs\/sha256:/.test(req.path) && req.headers.range === range;
  }

  /** A fresh daemon (empty cache) on the proxy with `timeout` 1 s (or `timeoutSec`), `retryLimit`, no read amplification. */
  async function mount(retryLimit: number, timeoutSec = 1): Promise<RunningMount> {
    const cfg = await writeConfig(join(work, `faults-${n}.json`), registryConfig({ host: proxy.host, repo: 'net/faults', timeoutSec, retryLimit }, { amplifyBytes: 0 }));
    mnt = await mps.next();
    current = await startMount(['--image', `docker://${proxy.host}/net/faults:v1`, '--plain-http', '--config', cfg, '--cache-dir', join(work, `cache-${n++}`), '--stats'], mnt);
    proxy.resetStats();
    return current;
  }

  async function stop(): Promise<Stats> {
    const m = current as RunningMount;
    current = undefined;
    const t0 = Date.now();
    const r = await m.stop();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - t0 < 10_000, 'the daemon stops promptly');
    return statsOf(r.stdout);
  }

  const read = (f: string): Promise<{ outcome: string; ms: number }> => readOutcome(join(mnt, f), content.get(f) as Buffer);
  const faultsOn = (m: (req: RequestInfo) => boolean): number => proxy.stats.log.filter((l) => l.fault !== undefined && m(l)).length;

  test('500 twice, then the registry recovers: the read succeeds after retries', async () => {
    await mount(3);
    const match = await rangeOf('f0');
    proxy.setFault({ match, status: 500, times: 2 });
    const r = await read('f0');
    console.log(`500 ×2 then 206: ${r.outcome} in ${r.ms} ms`);
    assert.equal(r.outcome, 'ok');
    assert.equal(faultsOn(match), 2);
    assert.deepEqual(
      proxy.stats.log.filter((l) => match(l)).map((l) => l.status),
      [500, 500, 206],
    );
    const s = await stop();
    assert.equal(s['storage.backend_errors'] ?? 0, 0);
  });

  test('500 for good: EIO after retry_limit + 1 attempts, in bounded time; the file reads once the registry recovers', async () => {
    await mount(2);
    const match = await rangeOf('f1');
    proxy.setFault({ match, status: 500 });
    const r = await read('f1');
    const attempts = proxy.stats.log.filter((l) => match(l)).length;
    console.log(`500 for good: ${r.outcome} after ${attempts} attempts in ${r.ms} ms`);
    assert.equal(r.outcome, 'EIO');
    assert.ok(r.ms < 10_000, `bounded: ${r.ms} ms`);
    assert.equal(attempts % 3, 0, 'retry_limit 2: three attempts per backend read');
    assert.equal((await read('f2')).outcome, 'ok', 'other files are served meanwhile');
    proxy.clearFaults();
    assert.equal((await read('f1')).outcome, 'ok', 'a failure is not remembered');
    const s = await stop();
    assert.ok((s['storage.backend_errors'] ?? 0) >= 1);
    assert.equal(s['storage.verify_failures'] ?? 0, 0);
  });

  test('connection resets are retried', async () => {
    await mount(3);
    const match = await rangeOf('f3');
    proxy.setFault({ match, reset: true, times: 2 });
    const r = await read('f3');
    console.log(`reset ×2: ${r.outcome} in ${r.ms} ms`);
    assert.equal(r.outcome, 'ok');
    assert.equal(faultsOn(match), 2);
    await stop();
  });

  test('a registry that stalls before answering: EIO after the timeouts, other files are served meanwhile and afterwards', async () => {
    await mount(1);
    const match = await rangeOf('f4');
    proxy.setFault({ match, stall: true });
    const stalled = read('f4');
    // While f4 waits, another file is fetched and read at once: no head-of-line blocking.
    await new Promise((r) => setTimeout(r, 200));
    const other = await read('f5');
    assert.equal(other.outcome, 'ok');
    const r = await stalled;
    console.log(`stall before headers (timeout 1 s, retry_limit 1): ${r.outcome} in ${r.ms} ms; another file read meanwhile in ${other.ms} ms`);
    assert.equal(r.outcome, 'EIO');
    assert.ok(r.ms >= 1000, 'the daemon waited for the timeout');
    assert.ok(r.ms < 10_000, `bounded: ${r.ms} ms`);
    assert.ok(other.ms < 1000);
    proxy.clearFaults();
    assert.equal((await read('f4')).outcome, 'ok');
    await stop();
  });

  test('stopped while a read stalls: the daemon gives the read up and exits at once, not after the timeouts', async () => {
    // 30 s timeout, 3 retries: waiting the fetch out would take two minutes.
    await mount(3, 30);
    const match = await rangeOf('f6');
    proxy.setFault({ match, stall: true });
    const stalled = read('f6');
    for (let i = 0; faultsOn(match) === 0; i++) {
      assert.ok(i < 100, 'the read reached the registry');
      await new Promise((r) => setTimeout(r, 50));
    }
    const t0 = Date.now();
    const m = current as RunningMount;
    current = undefined;
    const r = await m.stop();
    const ms = Date.now() - t0;
    console.log(`stop with a stalled fetch (timeout 30 s, retry_limit 3): exit ${r.code} in ${ms} ms`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(ms < 5000, `stopped in ${ms} ms`);
    assert.doesNotMatch(r.stderr, /"level":50/, 'the read given up at the stop is no error of the daemon');
    const outcome = await stalled;
    assert.notEqual(outcome.outcome, 'ok', 'the stalled read got no data');
    assert.notEqual(outcome.outcome, 'WRONG BYTES');
    assert.equal(faultsOn(match), 1, 'no retry after the stop');
  });

  test('as a vhost-user backend: the VMM going away while a read stalls ends the daemon at once', async () => {
    // Kata's path: `damselfly virtiofs` exits when the VMM disconnects; with a chunk fetch stalled
    // (timeout 30 s, 3 retries) it used to wait the fetch out first.
    const cfg = await writeConfig(join(work, `faults-${n}.json`), registryConfig({ host: proxy.host, repo: 'net/faults', timeoutSec: 30, retryLimit: 3 }, { amplifyBytes: 0 }));
    const socket = join(work, `vhost-${n}.sock`);
    const proc = spawn(process.execPath, [CLI, '--log-level', 'warn', 'virtiofs', '--socket-path', socket, '--image', `docker://${proxy.host}/net/faults:v1`, '--plain-http', '--config', cfg, '--cache-dir', join(work, `cache-${n++}`)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = once(proc, 'exit') as Promise<[number | null, string | null]>;
    try {
      await waitFor('the backend to listen', () => stderr.includes('Waiting for vhost-user socket connection'), 20_000);
      const f = TestFrontend.connect(socket);
      let closed = false;
      try {
        await f.start({ queues: 2, size: 256 });
        const ring = f.rings[1] as Ring;
        assert.equal(parseReply(await f.fuse(ring, request(Opcode.INIT, 0, initArgs()).bytes, 256)).error, 0);
        const looked = parseReply(await f.fuse(ring, request(Opcode.LOOKUP, 1, cstr('f7')).bytes, 256));
        assert.equal(looked.error, 0);
        const match = await rangeOf('f7');
        proxy.setFault({ match, stall: true });
        // The READ goes out and is never answered: its chain is posted, not awaited.
        const req = request(Opcode.READ, parseEntry(looked.payload).nodeid, readArgs(0n, 0, 65536)).bytes;
        const inAt = f.alloc(req.length);
        f.view(inAt, req.length).set(req);
        const outAt = f.alloc(16 + 65536);
        const head = ring.nextDesc;
        f.writeDesc(ring, head, { addr: inAt, len: req.length, flags: DESC_NEXT, next: (head + 1) % ring.size });
        f.writeDesc(ring, (head + 1) % ring.size, { addr: outAt, len: 16 + 65536, flags: DESC_WRITE, next: 0 });
        ring.nextDesc = (head + 2) % ring.size;
        f.publish(ring, head);
        await waitFor('the read to reach the registry', () => faultsOn(match) > 0, 10_000);
        const t0 = Date.now();
        f.close(); // the VMM is gone
        closed = true;
        const [code] = await exited;
        const ms = Date.now() - t0;
        console.log(`vhost-user backend, VMM gone during a stalled fetch (timeout 30 s, retry_limit 3): exit ${code} in ${ms} ms`);
        assert.equal(code, 0, stderr);
        assert.ok(ms < 5000, `exited in ${ms} ms`);
        assert.equal(faultsOn(match), 1, 'no retry after the disconnect');
        assert.doesNotMatch(stderr, /"level":50/);
      } finally {
        if (!closed) f.close();
      }
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
  });

  test('a body that stalls half-way: EIO in bounded time, never short data', async () => {
    await mount(1);
    const match = await rangeOf('f6');
    proxy.setFault({ match, stall: true, afterBytes: 100_000 });
    const r = await read('f6');
    console.log(`stall after 100000 body bytes: ${r.outcome} in ${r.ms} ms`);
    assert.equal(r.outcome, 'EIO');
    assert.ok(r.ms >= 1000 && r.ms < 10_000, `bounded: ${r.ms} ms`);
    proxy.clearFaults();
    assert.equal((await read('f6')).outcome, 'ok');
    await stop();
  });

  test('truncated bodies: retried when it happens once; EIO (never short data) when it persists', async () => {
    await mount(2);
    const once = await rangeOf('f7');
    proxy.setFault({ match: once, truncate: 1000, times: 1 });
    const r1 = await read('f7');
    assert.equal(r1.outcome, 'ok');
    assert.equal(faultsOn(once), 1);
    const always = await rangeOf('f8');
    proxy.setFault({ match: always, truncate: 5000 });
    const r2 = await read('f8');
    console.log(`truncated once: ${r1.outcome} in ${r1.ms} ms; truncated every time: ${r2.outcome} in ${r2.ms} ms`);
    assert.equal(r2.outcome, 'EIO');
    assert.ok(r2.ms < 10_000);
    proxy.clearFaults();
    assert.equal((await read('f8')).outcome, 'ok');
    await stop();
  });

  test('wrong bytes from the registry: EIO from the chunk verification, never the wrong data; nothing bad is cached', async () => {
    await mount(2);
    const match = await rangeOf('f9');
    proxy.setFault({ match, corrupt: true, at: 4242 });
    const r = await read('f9');
    console.log(`one flipped byte: ${r.outcome} in ${r.ms} ms`);
    assert.equal(r.outcome, 'EIO');
    // A small read inside the flipped region fails too (a chunk is verified whole), and so does
    // one far from it in the same chunk.
    for (const at of [4200, 250_000]) {
      const piece = await preadFile(join(mnt, 'f9'), at, 100).then(
        () => 'read',
        (e: NodeJS.ErrnoException) => e.code,
      );
      assert.equal(piece, 'EIO', `pread at ${at}`);
    }
    proxy.clearFaults();
    assert.equal((await read('f9')).outcome, 'ok');
    const s = await stop();
    console.log(`verify_failures ${s['storage.verify_failures']}`);
    assert.ok((s['storage.verify_failures'] ?? 0) >= 1);
    // The cache holds the right bytes: a new daemon on it, offline of faults, validates them.
    mnt = await mps.next();
    current = await startMount(['--image', `docker://${reg.host}/net/faults:v1`, '--plain-http', '--cache-dir', join(work, `cache-${n - 1}`), '--validate', '--stats'], mnt);
    assert.equal((await read('f9')).outcome, 'ok');
    const s2 = await stop();
    assert.equal(s2['storage.cache_verify_failures'] ?? 0, 0);
    assert.equal(s2['storage.chunks_fetched'] ?? 0, 0, 'f9 came from the cache');
  });

  test('wrong bytes from a proxy route: the chunk is read again from the origin, right, and the proxy failed over; without fallback EIO', async () => {
    // The fault proxy is now a Dragonfly-style proxy route in front of the real registry (the origin).
    const viaProxy = async (fallback: boolean): Promise<void> => {
      const cfg = await writeConfig(
        join(work, `faults-${n}.json`),
        registryConfig({ host: reg.host, repo: 'net/faults', timeoutSec: 1, retryLimit: 1, proxy: { url: `http://${proxy.host}`, fallback } }, { amplifyBytes: 0 }),
      );
      mnt = await mps.next();
      current = await startMount(['--image', `docker://${reg.host}/net/faults:v1`, '--plain-http', '--config', cfg, '--cache-dir', join(work, `cache-${n++}`), '--stats'], mnt);
      proxy.resetStats();
    };
    await viaProxy(true);
    const match = await rangeOf('f3');
    proxy.setFault({ match, corrupt: true, at: 777 });
    const r = await read('f3');
    console.log(`one flipped byte from the proxy, origin fallback: ${r.outcome} in ${r.ms} ms`);
    assert.equal(r.outcome, 'ok');
    assert.ok(faultsOn(match) >= 1, 'the proxy served the flipped byte');
    // A route that served wrong bytes is failed over at once: the next read goes to the origin.
    const other = await rangeOf('f4');
    assert.equal((await read('f4')).outcome, 'ok');
    assert.equal(proxy.stats.log.filter((l) => other(l)).length, 0, 'the proxy is not asked again before its check interval');
    const s = await stop();
    assert.ok((s['storage.verify_failures'] ?? 0) >= 1, JSON.stringify(s));
    assert.ok((s['backend.origin_rereads'] ?? 0) >= 1, JSON.stringify(s));
    assert.equal(s['backend.route_corrupt.proxy'], 1, JSON.stringify(s));

    await viaProxy(false);
    proxy.setFault({ match, corrupt: true, at: 777 });
    assert.equal((await read('f3')).outcome, 'EIO', 'without fallback the wrong bytes are refused, not served');
    const s2 = await stop();
    assert.equal(s2['backend.origin_rereads'] ?? 0, 0);
  });
});
