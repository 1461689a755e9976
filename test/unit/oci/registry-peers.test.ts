/**
 * The registry client and converter against small registries on 127.0.0.1 that behave in the
 * ways a review found mishandled: a token shared by requests of which one gives up, a relative
 * upload Location, a layer whose body never ends, a push target named by digest, a chunk
 * dictionary on another registry than the target's credentials are for.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { IntegrityError, UsageError, silentLogger } from '../../../src/base/index.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { convertImage } from '../../../src/oci/convert/convert.js';
import { type ImageRef, parseImageRef } from '../../../src/oci/reference.js';
import { RegistryClient } from '../../../src/oci/registry/index.js';
import { OciLayoutStore, RegistryStore } from '../../../src/oci/store.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function serve(t: { after(fn: () => unknown): void }, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * A registry holding one image of `layers` (an empty config): it answers the manifest and the
 * config, and hands every other request to `other`.
 */
function imageServer(layers: object[], other: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers,
    }),
  );
  return (req, res) => {
    if (req.url?.includes('/manifests/')) {
      res.setHeader('content-type', 'application/vnd.oci.image.manifest.v1+json');
      res.end(manifest);
    } else if (req.url?.endsWith(sha(config))) res.end(config);
    else other(req, res);
  };
}

function registryRef(ref: string): Extract<ImageRef, { kind: 'registry' }> {
  const r = parseImageRef(ref);
  assert.equal(r.kind, 'registry');
  return r as Extract<ImageRef, { kind: 'registry' }>;
}

function client(t: { after(fn: () => unknown): void }, host: string): RegistryClient {
  const c = new RegistryClient({ host, scheme: 'http', log: silentLogger, retryLimit: 2, retryBaseDelayMs: 10, timeoutMs: 5000 });
  t.after(() => c.close());
  return c;
}

test('a token fetch shared by two requests survives the one that gives up', async (t) => {
  const blob = Buffer.alloc(4096, 7);
  let tokenRequests = 0;
  const host: string = await serve(t, (req, res) => {
    if (req.url?.startsWith('/token')) {
      tokenRequests++;
      setTimeout(() => res.end(JSON.stringify({ token: 'T', expires_in: 300 })), 300);
      return;
    }
    if (req.headers.authorization !== 'Bearer T') {
      res.statusCode = 401;
      res.setHeader('www-authenticate', `Bearer realm="http://${host}/token",service="reg"`);
      res.end();
      return;
    }
    res.statusCode = 206;
    res.setHeader('content-range', `bytes 0-9/${blob.length}`);
    res.end(blob.subarray(0, 10));
  });
  const c = client(t, host);
  const a = new AbortController();
  const pa = c.readBlob('repo', sha(blob), 0, 10, { signal: a.signal });
  const pb = c.readBlob('repo', sha(blob), 0, 10, { signal: new AbortController().signal });
  setTimeout(() => a.abort(new Error('reader A gave up')), 100); // while the token is being fetched
  const [ra, rb] = await Promise.allSettled([pa, pb]);
  assert.equal(ra.status, 'rejected');
  assert.equal(rb.status, 'fulfilled', rb.status === 'rejected' ? String(rb.reason) : '');
  assert.deepEqual(Buffer.from(rb.value), blob.subarray(0, 10));
  assert.equal(tokenRequests, 1);
});

test('a relative upload Location is relative to the POST that answered it', async (t) => {
  const blob = Buffer.from('hello');
  const seen: string[] = [];
  const host = await serve(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    if (req.method === 'HEAD') res.statusCode = 404;
    else if (req.method === 'POST') {
      res.statusCode = 202;
      res.setHeader('location', 'upload-1234?_state=abc');
    } else if (req.method === 'PUT' && req.url?.startsWith('/v2/repo/blobs/uploads/upload-1234?_state=abc&digest=')) res.statusCode = 201;
    else res.statusCode = 404;
    req.on('end', () => res.end());
  });
  await client(t, host).pushBlob('repo', sha(blob), blob);
  assert.ok(seen.some((s) => s.startsWith('PUT /v2/repo/blobs/uploads/upload-1234?')), seen.join(', '));
});

test('a push target named by a digest is refused: nothing is put under a tag it never named', async (t) => {
  const seen: string[] = [];
  const host = await serve(t, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    res.statusCode = 201;
    res.end();
  });
  const digest = `sha256:${'a'.repeat(64)}`;
  for (const ref of [`docker://${host}/repo@${digest}`, `docker://${host}/repo:v1@${digest}`]) {
    const store = new RegistryStore(client(t, host), registryRef(ref));
    await assert.rejects(store.putManifest('application/vnd.oci.image.manifest.v1+json', Buffer.from('{}')), UsageError);
  }
  assert.deepEqual(seen, []);
  // Repository names with the distribution spec's `__` and `--` separators are references too.
  assert.equal((parseImageRef(`docker://${host}/a__b/c--d:v1`) as { repo: string }).repo, 'a__b/c--d');
  assert.throws(() => parseImageRef(`docker://${host}/a___b:v1`), UsageError);
});

test('a layer longer than its descriptor stops the pull at once, not when the disk is full', async (t) => {
  const junk = Buffer.alloc(1 << 20, 0x41);
  let sent = 0;
  const host = await serve(
    t,
    imageServer([{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(Buffer.from('a layer')), size: 100 }], (_req, res) => {
      // The layer: a body without a length and without an end.
      const pump = (): void => {
        while (!res.destroyed && sent < 2 ** 32 && res.write(junk)) sent += junk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    }),
  );
  const work = await mkdtemp(join(tmpdir(), 'damselfly-endless-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const source = new RegistryStore(client(t, host), registryRef(`docker://${host}/src:v1`));
  const target = new OciLayoutStore({ kind: 'oci-layout', dir: join(work, 'out') }, silentLogger);
  const started = Date.now();
  await assert.rejects(
    convertImage({ source, target, codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 1 << 20, workDir: join(work, 'w'), log: silentLogger }),
    (e: unknown) => e instanceof IntegrityError && /longer than its descriptor's 100 bytes/.test(e.message),
  );
  assert.ok(Date.now() - started < 10_000);
  assert.ok(sent < 64 << 20, `the server got to send ${sent} bytes`);
  // Nothing of the layer is left behind in the work directory.
  const left = await readdir(join(work, 'w', 'layers')).catch(() => []);
  for (const f of left) assert.equal((await stat(join(work, 'w', 'layers', f))).size, 0, f);
});

test('convert sends --target-creds to the chunk dictionary only on the target registry', async (t) => {
  const target = await serve(
    t,
    imageServer([], (_req, res) => {
      res.statusCode = 404;
      res.end();
    }),
  );
  const seenByOther: string[] = [];
  const other = await serve(t, (req, res) => {
    seenByOther.push(String(req.headers.authorization));
    res.statusCode = req.headers.authorization === undefined ? 401 : 404;
    if (res.statusCode === 401) res.setHeader('www-authenticate', 'Basic realm="x"');
    res.end();
  });
  const home = await mkdtemp(join(tmpdir(), 'damselfly-home-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const args = ['convert', '--plain-http', '--source', `docker://${target}/src:v1`, '--target', `docker://${target}/dst:v1`, '--chunk-dict', `docker://${other}/dict:v1`, '--target-creds', 'alice:target-secret'];
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 1, stderr);
  assert.match(stderr, /dict\/manifests\/v1: HTTP 401/);
  assert.ok(seenByOther.length > 0);
  assert.ok(!seenByOther.some((a) => a.startsWith('Basic ')), seenByOther.join(' | '));
});
