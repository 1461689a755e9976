/**
 * A proxy in front of the registry (Debian's nginx as a caching reverse proxy, standing in for a
 * Dragonfly peer: config `backend.registry.proxy.{url, ping_url, fallback, check_interval}`),
 * killed in the middle of a run:
 *
 * - with `fallback: true` reads go to the origin registry at once and return exact bytes, and go
 *   back to the proxy once `ping_url` answers again (within about `check_interval`);
 * - with `fallback: false` reads fail with EIO (quickly, never wrong bytes) while the proxy is
 *   down, and succeed through the proxy again once it is back.
 *
 * Traffic is told apart at both ends: nginx's access log counts what went through the proxy; a
 * counting proxy in front of the registry (the daemon's "origin") counts what went around it.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { type RunningMount, startMount } from '../helpers/mount.js';
import { makeOciImage } from '../helpers/oci-image.js';
import { requireTool } from '../helpers/env.js';
import { type TestRegistry, registryMissing, startRegistry } from '../helpers/registry.js';
import { prng } from '../helpers/tree.js';
import { type Nginx, Mountpoints, convertTo, nginxMissing, readOutcome, registryConfig, startNginx, statsOf, waitFor, writeConfig } from './network-fixtures.test.js';

requireTool(registryMissing());
requireTool(nginxMissing());
const FILES = 40;
const CHECK_INTERVAL_SEC = 1;

describe('a caching proxy (nginx) in front of the registry, killed mid-run', () => {
  let work: string;
  let reg: TestRegistry;
  let origin: FaultProxy;
  let ngx: Nginx;
  let mnt: string;
  let mps: Mountpoints;
  let current: RunningMount | undefined;
  let n = 0;
  const content = new Map<string, Buffer>();

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-net-proxy-'));
    const src = join(work, 'src');
    await mkdir(src);
    for (let i = 0; i < FILES; i++) {
      const data = prng(9000 + i, 60_000 + i);
      content.set(`f${i}`, data);
      await writeFile(join(src, `f${i}`), data);
    }
    await makeOciImage(join(work, 'oci'), 'v1', [src], work);
    reg = await startRegistry();
    await convertTo({ ref: `oci:${join(work, 'oci')}:v1`, tag: 'v1' }, reg.host, 'net/proxy');
    origin = await startFaultProxy({ target: reg.host });
    ngx = await startNginx(join(work, 'nginx'), reg.host);
    mps = new Mountpoints(work);
  });
  afterEach(async () => {
    if (current) await current.stop();
    current = undefined;
    if (ngx) await ngx.restart().catch(() => undefined);
  });
  after(async () => {
    mps?.detachAll();
    await ngx?.stop();
    await origin?.stop();
    await reg?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const proxied = async (): Promise<number> => (await ngx.accessLog()).filter((l) => /^GET \/v2\/net\/proxy\/blobs\/sha256:/.test(l)).length;
  const direct = (): number => origin.stats.log.filter((l) => l.method === 'GET' && /\/blobs\/sha256:/.test(l.path)).length;
  let next = 0;
  /** Reads the next unread file (one chunk: one backend read), with its outcome and time. */
  const readNext = async (): Promise<{ outcome: string; ms: number; file: string }> => {
    const file = `f${next++}`;
    assert.ok(next <= FILES, 'the test ran out of unread files');
    return { file, ...(await readOutcome(join(mnt, file), content.get(file) as Buffer)) };
  };

  async function mount(fallback: boolean): Promise<void> {
    const cfg = registryConfig(
      { host: origin.host, repo: 'net/proxy', timeoutSec: 2, retryLimit: 1, proxy: { url: ngx.url, ping_url: ngx.pingUrl, fallback, check_interval: CHECK_INTERVAL_SEC } },
      { amplifyBytes: 0 },
    );
    const file = await writeConfig(join(work, `proxy-${n}.json`), cfg);
    mnt = await mps.next();
    current = await startMount(['--image', `docker://${origin.host}/net/proxy:v1`, '--plain-http', '--config', file, '--cache-dir', join(work, `cache-${n++}`), '--stats'], mnt);
  }

  test('fallback: reads go to the origin while the proxy is down and back to the proxy once ping_url answers', async () => {
    await mount(true);
    origin.resetStats();
    const p0 = await proxied();
    for (let i = 0; i < 5; i++) assert.equal((await readNext()).outcome, 'ok');
    // nginx logs a request after it has sent the answer: the last line may lag the read a little.
    await waitFor('nginx to log the five blob requests', async () => (await proxied()) - p0 >= 5, 5000);
    assert.equal((await proxied()) - p0, 5, 'five reads, five blob requests through nginx');
    assert.equal(direct(), 0, 'none around it');

    await ngx.kill();
    const down: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await readNext();
      assert.equal(r.outcome, 'ok', `${r.file} with the proxy down`);
      down.push(r.ms);
    }
    assert.equal(direct(), 5, 'the reads went to the origin');
    assert.ok(Math.max(...down) < 2000, `fallback is immediate: ${down.join(', ')} ms`);

    await ngx.restart();
    const restarted = Date.now();
    const p1 = await proxied();
    let back = 0;
    let reads = 0;
    while ((await proxied()) === p1) {
      assert.ok(Date.now() - restarted < CHECK_INTERVAL_SEC * 1000 + 5000, 'the daemon returned to the proxy within check_interval + 5 s');
      const r = await readNext();
      reads++;
      assert.equal(r.outcome, 'ok');
      back = Date.now() - restarted;
      await new Promise((res) => setTimeout(res, 100));
    }
    const d1 = direct();
    for (let i = 0; i < 3; i++) assert.equal((await readNext()).outcome, 'ok');
    assert.equal(direct(), d1, 'once back, reads stay on the proxy');
    const m = current as RunningMount;
    current = undefined;
    const r = await m.stop();
    assert.equal(r.code, 0, r.stderr);
    const s = statsOf(r.stdout);
    console.log(
      `proxy killed: ${down.length} reads fell back to the origin in ${down.join(', ')} ms; proxy back after ${back} ms (${reads} reads) with check_interval ${CHECK_INTERVAL_SEC} s; ` +
        `origin_fallbacks ${s['backend.origin_fallbacks']}, proxy route failures ${s['backend.route_failures.proxy']}`,
    );
    assert.ok((s['backend.origin_fallbacks'] ?? 0) >= 5);
    assert.equal(s['storage.verify_failures'] ?? 0, 0);
  });

  test('no fallback: reads fail with EIO while the proxy is down, and succeed through it once it is back', async () => {
    await mount(false);
    origin.resetStats();
    assert.equal((await readNext()).outcome, 'ok');
    await ngx.kill();
    const failed: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await readNext();
      assert.equal(r.outcome, 'EIO', `${r.file} with the proxy down and fallback off`);
      failed.push(r.ms);
      next--; // read it again later
    }
    assert.ok(Math.max(...failed) < 5000, `bounded: ${failed.join(', ')} ms`);
    assert.equal(direct(), 0, 'nothing went to the origin');
    await ngx.restart();
    const restarted = Date.now();
    let r = await readNext();
    while (r.outcome !== 'ok') {
      assert.equal(r.outcome, 'EIO');
      assert.ok(Date.now() - restarted < CHECK_INTERVAL_SEC * 1000 + 5000, 'reads work again within check_interval + 5 s');
      next--;
      await new Promise((res) => setTimeout(res, 200));
      r = await readNext();
    }
    console.log(`no fallback: EIO in ${failed.join(', ')} ms while the proxy was down; reads work again ${Date.now() - restarted} ms after its restart`);
    assert.equal(direct(), 0);
  });
});
