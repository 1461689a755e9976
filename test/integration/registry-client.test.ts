/**
 * RegistryClient against a real registry (Debian docker-registry, distribution 2.8): pushes and
 * reads back blobs and manifests open, behind htpasswd Basic auth, behind Bearer tokens (cached per
 * scope, renewed on 401 and before expiry, a fixed registryToken), over TLS (verification, CA
 * files, skipVerify) and through a CONNECT proxy; exact ranged reads; redirects to another origin
 * that never see the Authorization header; and network faults from the fault proxy (5xx, 429 with
 * Retry-After, resets, refused connections, stalls bounded by timeoutMs, truncated and corrupted
 * bodies, aborts, a bounded pool under 100 concurrent reads). Also the skopeo layout helpers.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type IncomingHttpHeaders, type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { BackendError, DamselflyError, IntegrityError, NotFoundError } from '../../src/base/index.js';
import { RegistryClient, type RegistryClientOptions, digestOf } from '../../src/oci/registry/index.js';
import { BLOB_GET, MANIFEST_GET, startConnectProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { requireTool } from '../helpers/env.js';
import { type TestRegistry, copyOciLayoutToRegistry, copyRegistryToOciLayout, freePort, skopeoMissing, startRegistry } from '../helpers/registry.js';

const logLines: string[] = [];
const log = pino({ level: 'trace' }, { write: (s: string) => void logLines.push(s) });
const clients: RegistryClient[] = [];
function client(host: string, o: Partial<RegistryClientOptions> = {}): RegistryClient {
  const c = new RegistryClient({ host, scheme: 'http', log, retryBaseDelayMs: 20, retryMaxDelayMs: 200, ...o });
  clients.push(c);
  return c;
}
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
});

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** A small valid image (one tar layer) so that skopeo can copy it. */
async function imageParts(): Promise<{ layer: Buffer; config: Buffer; manifest: Buffer }> {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-img-'));
  try {
    await writeFile(join(dir, 'hello.txt'), randomBytes(5000).toString('hex'));
    const tar = spawnSync('tar', ['-C', dir, '--owner=0', '--group=0', '-cf', '-', 'hello.txt']);
    const layer = tar.stdout;
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [digestOf(layer)] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(layer), size: layer.length }],
      }),
    );
    return { layer, config, manifest };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function pushImage(c: RegistryClient, repo: string, tag: string): Promise<{ layer: Buffer; manifest: Buffer; digest: string }> {
  const { layer, config, manifest } = await imageParts();
  await c.pushBlob(repo, digestOf(config), config);
  await c.pushBlob(repo, digestOf(layer), layer);
  const digest = await c.putManifest(repo, tag, OCI_MANIFEST, manifest);
  return { layer, manifest, digest };
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

const isBackend = (retryable: boolean, re: RegExp) => (e: unknown) => e instanceof BackendError && e.retryable === retryable && re.test(e.message);

describe('open registry', () => {
  let reg: TestRegistry;
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const bigDigest = digestOf(big);
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => reg?.stop());

  test('blobs and manifests round trip; ranged reads are exact at every offset, the last byte included', async () => {
    const c = client(reg.host);
    assert.equal(await c.statBlob('lazy/app', bigDigest), undefined);
    await c.pushBlob('lazy/app', bigDigest, big);
    assert.equal(await c.statBlob('lazy/app', bigDigest), big.length);
    const { manifest, digest, layer } = await pushImage(c, 'lazy/app', 'v1');
    assert.equal(digest, digestOf(manifest));
    for (const ref of ['v1', digest]) {
      const m = await c.getManifest('lazy/app', ref);
      assert.deepEqual(m, { mediaType: OCI_MANIFEST, digest, bytes: manifest });
    }
    const ranges: [number, number][] = [[0, 1], [0, big.length], [big.length - 1, 1], [big.length - 4096, 4096], [1, 1], [65535, 3], [1 << 20, 1 << 20], [123_457, 999_983]];
    for (const [off, len] of ranges) assert.ok((await c.readBlob('lazy/app', bigDigest, off, len)).equals(big.subarray(off, off + len)), `${off}+${len}`);
    // Into the caller's buffer, its progress reported as the body arrives.
    const into = Buffer.alloc(1 << 20);
    const progress: number[] = [];
    const got = await c.readBlob('lazy/app', bigDigest, 4096, into.length, { allocate: () => into, onProgress: (n) => progress.push(n) });
    assert.equal(got, into);
    assert.ok(got.equals(big.subarray(4096, 4096 + into.length)));
    assert.ok(progress.length > 1 && progress.every((n, i) => i === 0 || n > (progress[i - 1] as number)), `progress ${progress.join(' ')}`);
    assert.equal(progress.at(-1), into.length);
    assert.ok((await collect(c.blobStream('lazy/app', bigDigest))).equals(big));
    assert.ok((await collect(c.blobStream('lazy/app', digestOf(layer)))).equals(layer));
    await assert.rejects(c.readBlob('lazy/app', bigDigest, big.length - 10, 20), isBackend(false, /outside the blob/));
    await assert.rejects(c.readBlob('lazy/app', bigDigest, big.length + 10, 20), isBackend(false, /416/));
    const missing = digestOf(Buffer.from('missing'));
    await assert.rejects(c.readBlob('lazy/app', missing, 0, 1), (e: unknown) => e instanceof NotFoundError && /HTTP 404.*BLOB_UNKNOWN/.test(e.message));
    await assert.rejects(c.getManifest('lazy/app', 'nope'), (e: unknown) => e instanceof NotFoundError && /MANIFEST_UNKNOWN/.test(e.message));
    await assert.rejects(c.getManifest('lazy/app', missing), NotFoundError);
  });

  test('a blob pushed from a file; an existing blob is not uploaded again', async () => {
    const fp = await startFaultProxy({ target: reg.host });
    try {
      const c = client(fp.host);
      const dir = await mkdtemp(join(tmpdir(), 'damselfly-blob-'));
      const data = randomBytes(2 * 1024 * 1024 + 5);
      await writeFile(join(dir, 'b'), data);
      await c.pushBlob('files', digestOf(data), { path: join(dir, 'b'), size: data.length });
      await rm(dir, { recursive: true });
      assert.ok((await c.readBlob('files', digestOf(data), data.length - 7, 7)).equals(data.subarray(-7)));
      assert.equal(fp.requestsTo(/\/blobs\/uploads\/$/).length, 1);
      await c.pushBlob('files', digestOf(data), data);
      assert.equal(fp.requestsTo(/\/blobs\/uploads\/$/).length, 1, 'no second upload');
      await c.pushBlob('files', digestOf(Buffer.alloc(0)), Buffer.alloc(0));
      assert.equal(await c.statBlob('files', digestOf(Buffer.alloc(0))), 0);
    } finally {
      await fp.stop();
    }
  });

  test('skopeo helpers copy an image out to an OCI layout and back in', async () => {
    requireTool(await skopeoMissing());
    const c = client(reg.host);
    const { digest } = await pushImage(c, 'skopeo/src', 'v1');
    const dir = await mkdtemp(join(tmpdir(), 'damselfly-layout-'));
    try {
      await copyRegistryToOciLayout(`${reg.host}/skopeo/src:v1`, join(dir, 'layout'));
      assert.equal(JSON.parse(await readFile(join(dir, 'layout', 'oci-layout'), 'utf8')).imageLayoutVersion, '1.0.0');
      await copyOciLayoutToRegistry(join(dir, 'layout'), `${reg.host}/skopeo/dst:copied`);
      assert.equal((await c.getManifest('skopeo/dst', 'copied')).digest, digest);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('through an HTTP proxy (CONNECT tunnel)', async () => {
    const proxy = await startConnectProxy();
    try {
      const c = client(reg.host, { proxyUrl: proxy.url });
      await c.pushBlob('proxied', bigDigest, big);
      assert.ok((await c.readBlob('proxied', bigDigest, 5, 10)).equals(big.subarray(5, 15)));
      assert.ok(proxy.connects.includes(reg.host));
    } finally {
      await proxy.stop();
    }
  });
});

describe('Basic auth (htpasswd)', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'basic' });
  });
  after(async () => reg?.stop());

  test('credentials work; wrong or missing ones fail clearly; credentials never reach the logs', async () => {
    const creds = reg.credentials as { username: string; password: string };
    const c = client(reg.host, { credentials: creds, retryLimit: 2 });
    const { layer, digest } = await pushImage(c, 'private/app', 'v1');
    assert.equal((await c.getManifest('private/app', 'v1')).digest, digest);
    assert.ok((await c.readBlob('private/app', digestOf(layer), 10, 100)).equals(layer.subarray(10, 110)));
    const bad = client(reg.host, { credentials: { username: creds.username, password: 'wrong-password' }, retryLimit: 2 });
    const err = await bad.readBlob('private/app', digestOf(layer), 0, 1).catch((e: unknown) => e);
    assert.ok(err instanceof BackendError && !err.retryable, String(err));
    assert.match(err.message, new RegExp(`GET http://${reg.host}/v2/private/app/blobs/sha256:[0-9a-f]+: HTTP 401 \\(the registry rejected the credentials\\)`));
    assert.doesNotMatch(err.message, /wrong-password/);
    const anon = client(reg.host);
    await assert.rejects(anon.statBlob('private/app', digestOf(layer)), isBackend(false, /HTTP 401 \(the registry requires credentials/));
    const logs = logLines.join('');
    for (const secret of [creds.password, 'wrong-password', Buffer.from(`${creds.username}:${creds.password}`).toString('base64')]) assert.ok(!logs.includes(secret), 'a secret in the logs');
  });
});

describe('Bearer token auth', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ auth: 'token' });
  });
  after(async () => reg?.stop());
  const ts = () => reg.tokenService as NonNullable<TestRegistry['tokenService']>;

  test('tokens are fetched once per scope and reused', async () => {
    const c = client(reg.host, { credentials: reg.credentials });
    const before0 = ts().requests.length;
    const { layer, digest } = await pushImage(c, 'tok/app', 'v1');
    assert.equal(ts().requests.length - before0, 2, 'one pull token, one pull,push token');
    assert.deepEqual(ts().requests.slice(before0).map((r) => [r.user, r.scopes]), [[reg.credentials?.username, ['repository:tok/app:pull']], [reg.credentials?.username, ['repository:tok/app:pull,push']]]);
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.readBlob('tok/app', digestOf(layer), i, 10)));
    assert.equal((await c.getManifest('tok/app', digest)).digest, digest);
    assert.equal(ts().requests.length - before0, 2);
    assert.equal(c.tokenFetches, 2);
    const logs = logLines.join('');
    assert.ok(!logs.includes(reg.credentials?.password as string));
  });

  test('a token the registry refuses is renewed once; an expiring one is renewed before use', async () => {
    const seed = client(reg.host, { credentials: reg.credentials });
    const { layer } = await pushImage(seed, 'tok/renew', 'v1');
    const fp = await startFaultProxy({ target: reg.host });
    try {
      ts().expireNext(1);
      const c = client(fp.host, { credentials: reg.credentials });
      assert.ok((await c.readBlob('tok/renew', digestOf(layer), 0, 5)).equals(layer.subarray(0, 5)));
      assert.equal(c.tokenFetches, 2);
      assert.deepEqual(fp.stats.log.map((r) => r.status), [401, 401, 206]);
      assert.equal(fp.stats.log[1]?.headers.authorization?.startsWith('Bearer '), true);
      ts().expireNext(2);
      const d = client(fp.host, { credentials: reg.credentials });
      await assert.rejects(d.readBlob('tok/renew', digestOf(layer), 0, 5), isBackend(false, /HTTP 401 \(the registry refused the renewed authorization\)/));
      ts().expireNext(0);
      ts().ttlSec = 2;
      fp.resetStats();
      const e = client(fp.host, { credentials: reg.credentials });
      await e.readBlob('tok/renew', digestOf(layer), 0, 5);
      await new Promise((r) => setTimeout(r, 2100));
      await e.readBlob('tok/renew', digestOf(layer), 0, 5);
      assert.equal(e.tokenFetches, 2, 'renewed after expires_in');
      assert.deepEqual(fp.stats.log.map((r) => r.status), [401, 206, 206], 'without a 401 in between');
    } finally {
      ts().ttlSec = 300;
      ts().expireNext(0);
      await fp.stop();
    }
  });

  test('a registryToken is used as is; a refused one falls back to the challenge; bad credentials fail clearly', async () => {
    const seed = client(reg.host, { credentials: reg.credentials });
    const { layer } = await pushImage(seed, 'tok/fixed', 'v1');
    const fixed = client(reg.host, { registryToken: ts().mint([{ name: 'tok/fixed', actions: ['pull'] }]) });
    const n0 = ts().requests.length;
    assert.ok((await fixed.readBlob('tok/fixed', digestOf(layer), 1, 2)).equals(layer.subarray(1, 3)));
    assert.equal(ts().requests.length, n0);
    const fallback = client(reg.host, { registryToken: 'not-a-jwt', credentials: reg.credentials });
    assert.ok((await fallback.readBlob('tok/fixed', digestOf(layer), 1, 2)).equals(layer.subarray(1, 3)));
    assert.equal(fallback.tokenFetches, 1);
    const bad = client(reg.host, { credentials: { username: 'damselfly', password: 'nope-nope' }, retryLimit: 2 });
    const err = await bad.readBlob('tok/fixed', digestOf(layer), 0, 1).catch((e: unknown) => e);
    assert.ok(err instanceof BackendError && !err.retryable, String(err));
    assert.match(err.message, /GET http:\/\/127\.0\.0\.1:\d+\/token\?service=.*scope=.*: HTTP 401 \(token service refused the credentials\)/);
    assert.doesNotMatch(err.message, /nope-nope/);
  });

  test('an identity token is exchanged with the refresh-token grant; a wrong one fails clearly and is never logged', async () => {
    const seed = client(reg.host, { credentials: reg.credentials });
    const { layer } = await pushImage(seed, 'tok/idt', 'v1');
    const user = reg.credentials?.username as string;
    const idt = ts().identityTokens[user] as string;
    const n0 = ts().requests.length;
    const c = client(reg.host, { credentials: { username: '<token>', password: '', identityToken: idt } });
    assert.ok((await c.readBlob('tok/idt', digestOf(layer), 3, 4)).equals(layer.subarray(3, 7)));
    assert.deepEqual(ts().requests.slice(n0).map((r) => [r.grant, r.user, r.scopes]), [['refresh_token', user, ['repository:tok/idt:pull']]]);
    const bad = client(reg.host, { credentials: { username: '<token>', password: '', identityToken: 'idt-wrong-one' }, retryLimit: 2 });
    const err = await bad.readBlob('tok/idt', digestOf(layer), 0, 1).catch((e: unknown) => e);
    assert.ok(err instanceof BackendError && !err.retryable, String(err));
    assert.match(err.message, /POST http:\/\/127\.0\.0\.1:\d+\/token: HTTP 400 \(token service refused the credentials\)/);
    assert.doesNotMatch(err.message, /idt-/);
    const logs = logLines.join('');
    assert.ok(!logs.includes(idt) && !logs.includes('idt-wrong-one'), 'identity tokens never reach the logs');
  });
});

describe('TLS', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({ tls: true });
  });
  after(async () => reg?.stop());

  test('verification fails on a self-signed certificate unless it is trusted (caCertFiles) or skipVerify is set', async () => {
    const data = randomBytes(1000);
    await assert.rejects(client(reg.host, { scheme: 'https' }).statBlob('tls', digestOf(data)), isBackend(false, /self[- ]signed|certificate/i));
    const skip = client(reg.host, { scheme: 'https', skipVerify: true });
    await skip.pushBlob('tls', digestOf(data), data);
    const trusted = client(reg.host, { scheme: 'https', caCertFiles: [reg.certFile as string] });
    assert.ok((await trusted.readBlob('tls', digestOf(data), 999, 1)).equals(data.subarray(999)));
  });
});

/** A registry front that wants Basic auth and 307-redirects blob requests to an object store on another port. */
async function startRedirectingRegistry(creds: { username: string; password: string }, blob: Buffer) {
  const digest = digestOf(blob);
  const seen = { front: [] as { path: string; headers: IncomingHttpHeaders }[], store: [] as { path: string; headers: IncomingHttpHeaders }[] };
  const basic = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
  const listen = async (s: Server): Promise<number> => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as AddressInfo).port;
  };
  const store = createServer((req, res) => {
    seen.store.push({ path: req.url ?? '', headers: req.headers });
    if (req.url?.includes('forbidden')) return void res.writeHead(403).end('<Error>AccessDenied</Error>');
    const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] ? Math.min(Number(m[2]), blob.length - 1) : blob.length - 1;
    const part = blob.subarray(start, end + 1);
    res.writeHead(m ? 206 : 200, { 'content-length': part.length, ...(m ? { 'content-range': `bytes ${start}-${end}/${blob.length}` } : {}) });
    res.end(req.method === 'HEAD' ? undefined : part);
  });
  const storePort = await listen(store);
  const front = createServer((req, res) => {
    seen.front.push({ path: req.url ?? '', headers: req.headers });
    if (req.headers.authorization !== basic) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
    if (req.url === '/v2/r/manifests/old') return void res.writeHead(301, { location: '/v2/r/manifests/v1' }).end();
    if (req.url === '/v2/r/manifests/v1') return void res.writeHead(200, { 'content-type': OCI_MANIFEST }).end('{}');
    const b = /^\/v2\/r\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '');
    if (!b) return void res.writeHead(404).end();
    const where = b[1] === digest ? 'objects' : 'forbidden';
    res.writeHead(307, { location: `http://127.0.0.1:${storePort}/${where}/${b[1]}?X-Amz-Signature=sekrit` }).end();
  });
  const frontPort = await listen(front);
  return {
    host: `127.0.0.1:${frontPort}`,
    seen,
    stop: async () => {
      for (const s of [front, store]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    },
  };
}

describe('redirects', () => {
  test('blob GETs and HEADs follow a 307 to another origin without the Authorization header', async () => {
    const creds = { username: 'u', password: 'redirect-secret' };
    const blob = randomBytes(200_000);
    const srv = await startRedirectingRegistry(creds, blob);
    try {
      const c = client(srv.host, { credentials: creds, headers: { 'x-registry-only': 'yes' } });
      assert.equal(await c.statBlob('r', digestOf(blob)), blob.length);
      assert.ok((await c.readBlob('r', digestOf(blob), blob.length - 1, 1)).equals(blob.subarray(-1)));
      assert.ok((await c.readBlob('r', digestOf(blob), 1000, 5000)).equals(blob.subarray(1000, 6000)));
      assert.ok((await collect(c.blobStream('r', digestOf(blob)))).equals(blob));
      assert.equal((await c.getManifest('r', 'old')).bytes.toString(), '{}', 'same-origin redirect');
      const err = await c.readBlob('r', digestOf(Buffer.from('other')), 0, 1).catch((e: unknown) => e);
      assert.ok(err instanceof BackendError && /HTTP 403/.test(err.message) && /X-Amz-Signature=\*\*\*/.test(err.message) && !/sekrit/.test(err.message), String(err));
      assert.ok(srv.seen.store.length >= 5);
      for (const r of srv.seen.store) {
        assert.equal(r.headers.authorization, undefined, `store saw Authorization on ${r.path}`);
        assert.equal(r.headers['x-registry-only'], undefined);
      }
      const authorized = srv.seen.front.filter((r) => r.headers.authorization !== undefined);
      assert.ok(authorized.length >= 6, 'the registry itself got credentials');
      assert.ok(srv.seen.front.some((r) => r.path === '/v2/r/manifests/v1' && r.headers.authorization !== undefined), 'kept on the same origin');
      assert.ok(srv.seen.front.every((r) => r.headers['x-registry-only'] === 'yes'));
    } finally {
      await srv.stop();
    }
  });
});

test('an identity token is not sent on to another origin: a token service answering its POST with a 307 there fails it', async () => {
  const seen: string[] = [];
  const listen = async (handler: Parameters<typeof createServer>[1]): Promise<Server> => {
    const srv = createServer(handler);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return srv;
  };
  const port = (srv: Server): number => (srv.address() as AddressInfo).port;
  // Elsewhere: records whatever reaches it.
  const elsewhere = await listen((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${body}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"t"}');
    });
  });
  const realm = await listen((req, res) => {
    req.resume();
    res.writeHead(307, { location: `http://127.0.0.1:${port(elsewhere)}/token` }).end();
  });
  const registry = await listen((req, res) => {
    req.resume();
    res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port(realm)}/token",service="svc"` }).end();
  });
  try {
    const c = client(`127.0.0.1:${port(registry)}`, { credentials: { username: '<token>', password: '', identityToken: 'idt-do-not-forward' }, retryLimit: 0 });
    const err = await c.readBlob('r', digestOf(Buffer.from('x')), 0, 1).catch((e: unknown) => e);
    assert.ok(err instanceof BackendError, String(err));
    assert.match(err.message, /a redirect to another origin, where the request's secret body is not sent/);
    assert.deepEqual(seen, [], 'nothing reached the other origin');
  } finally {
    for (const srv of [elsewhere, realm, registry]) {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    }
  }
});

describe('network faults', () => {
  let reg: TestRegistry;
  const blob = randomBytes(1024 * 1024);
  const digest = digestOf(blob);
  let manifestDigest = '';
  before(async () => {
    reg = await startRegistry();
    const c = client(reg.host);
    await c.pushBlob('faulty', digest, blob);
    manifestDigest = (await pushImage(c, 'faulty', 'v1')).digest;
  });
  after(async () => reg?.stop());

  async function withProxy(body: (fp: Awaited<ReturnType<typeof startFaultProxy>>) => Promise<void>): Promise<void> {
    const fp = await startFaultProxy({ target: reg.host });
    try {
      await body(fp);
    } finally {
      await fp.stop();
    }
  }
  const blobPath = new RegExp(`/blobs/${digest}$`);

  test('5xx: retried up to retryLimit, then recovered; without retries it fails fast naming URL and status', () =>
    withProxy(async (fp) => {
      fp.setFault({ status: 500, times: 2, match: BLOB_GET });
      assert.ok((await client(fp.host, { retryLimit: 3 }).readBlob('faulty', digest, 10, 10)).equals(blob.subarray(10, 20)));
      assert.equal(fp.requestsTo(blobPath).length, 3);
      fp.setFault({ status: 503, times: 1, match: BLOB_GET });
      const t0 = Date.now();
      await assert.rejects(client(fp.host).readBlob('faulty', digest, 0, 1), isBackend(true, new RegExp(`GET http://${fp.host}/v2/faulty/blobs/${digest}: HTTP 503: FAULT_INJECTED`)));
      assert.ok(Date.now() - t0 < 1000);
      fp.setFault({ status: 500, match: BLOB_GET });
      await assert.rejects(client(fp.host, { retryLimit: 2 }).readBlob('faulty', digest, 0, 1), isBackend(true, /HTTP 500/));
      fp.setFault({ status: 429, retryAfterSec: 1, times: 1, match: BLOB_GET });
      const t1 = Date.now();
      await client(fp.host, { retryLimit: 1, retryMaxDelayMs: 5000 }).readBlob('faulty', digest, 0, 1);
      assert.ok(Date.now() - t1 >= 950, 'Retry-After honoured');
      fp.setFault({ status: 429, retryAfterSec: 60, times: 1, match: BLOB_GET });
      const t2 = Date.now();
      await client(fp.host, { retryLimit: 1, retryMaxDelayMs: 200 }).readBlob('faulty', digest, 0, 1);
      assert.ok(Date.now() - t2 < 2000, 'each wait capped');
      fp.setFault({ status: 400, match: BLOB_GET });
      await assert.rejects(client(fp.host, { retryLimit: 3 }).readBlob('faulty', digest, 0, 1), isBackend(false, /HTTP 400/));
    }));

  test('connection resets and refused connections are retried', () =>
    withProxy(async (fp) => {
      fp.setFault({ reset: true, times: 2, match: BLOB_GET });
      assert.ok((await client(fp.host, { retryLimit: 2 }).readBlob('faulty', digest, 0, 100)).equals(blob.subarray(0, 100)));
      fp.setFault({ reset: true, times: 1, match: BLOB_GET });
      await assert.rejects(client(fp.host).readBlob('faulty', digest, 0, 100), isBackend(true, /ECONNRESET|UND_ERR_SOCKET|other side closed/));
      const closed = await freePort();
      const t0 = Date.now();
      await assert.rejects(client(`127.0.0.1:${closed}`, { retryLimit: 2 }).statBlob('faulty', digest), isBackend(true, /ECONNREFUSED/));
      assert.ok(Date.now() - t0 < 2000);
    }));

  test('a stalled server fails each attempt after timeoutMs; a stalled body too; the caller can abort', () =>
    withProxy(async (fp) => {
      fp.setFault({ stall: true, match: BLOB_GET });
      const c = client(fp.host, { timeoutMs: 500, retryLimit: 2, retryBaseDelayMs: 50, retryMaxDelayMs: 100 });
      const t0 = Date.now();
      await assert.rejects(c.readBlob('faulty', digest, 0, 10), isBackend(true, /no progress \(response headers\) within 500 ms/));
      const took = Date.now() - t0;
      assert.ok(took >= 1500 && took < 500 * 3 + 200 + 1500, `took ${took} ms`);
      assert.equal(fp.requestsTo(blobPath).length, 3);
      fp.setFault({ stall: true, afterBytes: 1000, match: BLOB_GET });
      const t1 = Date.now();
      await assert.rejects(client(fp.host, { timeoutMs: 400 }).readBlob('faulty', digest, 0, 100_000), isBackend(true, /no progress \(the next body bytes\) within 400 ms/));
      assert.ok(Date.now() - t1 < 400 + 1500);
      fp.setFault({ stall: true, match: /^PUT / });
      const upload = randomBytes(600_000);
      const t3 = Date.now();
      await assert.rejects(client(fp.host, { timeoutMs: 400 }).pushBlob('faulty', digestOf(upload), upload), isBackend(true, /PUT .*no progress \(response headers\) within 400 ms/));
      assert.ok(Date.now() - t3 < 400 + 1500);
      fp.setFault({ stall: true, match: BLOB_GET });
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const t2 = Date.now();
      await assert.rejects(client(fp.host, { retryLimit: 5 }).readBlob('faulty', digest, 0, 10, { signal: ac.signal }), (e: unknown) => e instanceof DamselflyError && e.code === 'E_ABORTED');
      assert.ok(Date.now() - t2 < 1000);
      fp.clearFaults();
    }));

  test('truncated bodies are errors (never a short buffer), retried; a broken whole-blob stream resumes with Range', () =>
    withProxy(async (fp) => {
      fp.setFault({ truncate: 100, times: 1, match: BLOB_GET });
      await assert.rejects(client(fp.host).readBlob('faulty', digest, 0, 5000), isBackend(true, /truncated|other side closed|UND_ERR_SOCKET|ECONNRESET/));
      fp.setFault({ truncate: 4999, times: 1, match: BLOB_GET });
      assert.ok((await client(fp.host, { retryLimit: 1 }).readBlob('faulty', digest, 7, 5000)).equals(blob.subarray(7, 5007)));
      fp.resetStats();
      fp.setFault({ truncate: 300_000, times: 1, match: BLOB_GET });
      assert.ok((await collect(client(fp.host, { retryLimit: 1 }).blobStream('faulty', digest))).equals(blob));
      const gets = fp.requestsTo(blobPath);
      assert.equal(gets.length, 2);
      assert.equal(gets[0]?.headers.range, undefined);
      assert.match(gets[1]?.headers.range ?? '', /^bytes=[1-9]\d*-$/);
      fp.setFault({ truncate: 300_000, match: BLOB_GET });
      await assert.rejects(collect(client(fp.host, { retryLimit: 1 }).blobStream('faulty', digest)), isBackend(true, /./));
    }));

  test('corrupted manifests fail their digest check', () =>
    withProxy(async (fp) => {
      fp.setFault({ corrupt: true, at: 5, match: MANIFEST_GET });
      await assert.rejects(client(fp.host, { retryLimit: 1 }).getManifest('faulty', manifestDigest), IntegrityError);
      assert.equal(fp.requestsTo(/\/manifests\//).length, 2);
      await assert.rejects(client(fp.host).getManifest('faulty', 'v1'), /does not match Docker-Content-Digest/);
      fp.clearFaults();
      assert.equal((await client(fp.host).getManifest('faulty', 'v1')).digest, manifestDigest);
    }));

  test('the connection pool stays bounded under 100 concurrent reads', () =>
    withProxy(async (fp) => {
      fp.setFault({ delayMs: 20, match: BLOB_GET });
      const c = client(fp.host, { maxConnections: 4 });
      const offsets = Array.from({ length: 100 }, (_, i) => (i * 9973) % (blob.length - 4096));
      const got = await Promise.all(offsets.map((o) => c.readBlob('faulty', digest, o, 4096)));
      got.forEach((b, i) => assert.ok(b.equals(blob.subarray(offsets[i], (offsets[i] as number) + 4096)), `read ${i}`));
      assert.equal(fp.requestsTo(blobPath).length, 100);
      assert.ok(fp.stats.maxActiveConnections <= 4 && fp.stats.maxActiveConnections >= 2, `max ${fp.stats.maxActiveConnections} connections`);
    }));

  test('exchanges one after the other share one connection though the pool may open more', () =>
    withProxy(async (fp) => {
      const c = client(fp.host, { maxConnections: 8 });
      assert.equal((await c.getManifest('faulty', 'v1')).digest, manifestDigest);
      let streamed = 0;
      for await (const chunk of c.blobStream('faulty', digest)) streamed += chunk.length;
      assert.equal(streamed, blob.length);
      for (let i = 0; i < 3; i++) assert.ok((await c.readBlob('faulty', digest, i * 1000, 10)).equals(blob.subarray(i * 1000, i * 1000 + 10)));
      assert.equal(fp.stats.requests, 5);
      // undici reuses a connection only a loop turn after its response ended; each of these was
      // sent at once, and used to open a connection of its own (a round trip more, more with TLS).
      assert.equal(fp.stats.connections, 1);
    }));

  test('every kind of answer gives its connection back (one connection serves them all in turn)', { timeout: 30_000 }, () =>
    withProxy(async (fp) => {
      const c = client(fp.host, { maxConnections: 1, timeoutMs: 2000 });
      const missing = digestOf(Buffer.from('nothing'));
      for (let round = 0; round < 2; round++) {
        assert.equal(await c.statBlob('faulty', digest), blob.length);
        assert.equal(await c.statBlob('faulty', missing), undefined);
        await assert.rejects(c.readBlob('faulty', missing, 0, 1), NotFoundError);
        await assert.rejects(c.readBlob('faulty', digest, blob.length - 1, 2), /outside the blob/);
        assert.equal((await c.getManifest('faulty', 'v1')).digest, manifestDigest);
        fp.setFault({ status: 500, times: 1, match: BLOB_GET });
        await assert.rejects(c.readBlob('faulty', digest, 0, 1), /HTTP 500/);
        fp.setFault({ truncate: 10, times: 1, match: BLOB_GET });
        await assert.rejects(c.readBlob('faulty', digest, 0, 1000), BackendError);
        for await (const chunk of c.blobStream('faulty', digest)) {
          assert.ok(chunk.length > 0);
          break; // the consumer stops early
        }
        assert.ok((await c.readBlob('faulty', digest, 3, 3)).equals(blob.subarray(3, 6)));
      }
    }));
});
