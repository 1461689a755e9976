/**
 * The S3 backend against a real S3 server (moto on 127.0.0.1): exact ranged reads at many offsets,
 * sizes, the object prefix, missing objects and buckets, ranges past the end, credentials (moto
 * with authentication on), TLS with skipVerify, a refused endpoint, aborts, 50 concurrent reads,
 * uploads; against a scripted HTTP server what moto cannot do (path-style URL and headers, 5xx and
 * retry counts, stalls and timeouts, short and unranged answers); and end to end: an image built by
 * the CLI, its blobs uploaded to moto, every file read back through S3 equals its source.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { BackendError, DamselflyError, ErrorCode, NotFoundError } from '../../src/base/index.js';
import { openBootstrap } from '../../src/format/open.js';
import { nativeCodecs } from '../../src/native/index.js';
import { S3Backend, type S3BackendConfig } from '../../src/storage/backend/s3.js';
import { ToolChunkReader } from '../../src/tools/chunk-reader.js';
import { walkImage } from '../../src/tools/walk.js';
import { damselflyOk, requireTool } from '../helpers/env.js';
import { type Moto, motoAuthUser, motoMissing, startMoto } from '../helpers/moto.js';
import { makeTree, prng } from '../helpers/tree.js';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
const BUCKET = 'damselfly-blobs';
const PREFIX = 'nydus/blobs/';
const KEYS = { accessKeyId: 'AKIDDAMSELFLYTEST', accessKeySecret: 'very-secret-damselfly-key' };
requireTool(motoMissing());

function admin(endpoint: string, creds = { accessKeyId: KEYS.accessKeyId, secretAccessKey: KEYS.accessKeySecret }, requestHandler?: S3ClientConfig['requestHandler']): S3Client {
  return new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: creds, requestChecksumCalculation: 'WHEN_REQUIRED', ...(requestHandler ? { requestHandler } : {}) });
}

async function seed(client: S3Client, objects: Record<string, Uint8Array>): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  for (const [key, body] of Object.entries(objects)) await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

function backendFor(endpoint: string, extra: Partial<S3BackendConfig> = {}): S3Backend {
  return new S3Backend({ endpoint, region: 'us-east-1', bucketName: BUCKET, objectPrefix: PREFIX, ...KEYS, timeoutMs: 3000, connectTimeoutMs: 2000, ...extra });
}

/** Asserts a rejection with a BackendError of that retryability whose message names the object and no credential. */
async function rejectsBackend(p: Promise<unknown>, retryable: boolean, key: string, pattern?: RegExp): Promise<BackendError> {
  const e = await p.then(
    () => assert.fail('expected a BackendError'),
    (err: unknown) => err,
  );
  assert.ok(e instanceof BackendError, `not a BackendError: ${String(e)}`);
  assert.equal(e.retryable, retryable, e.message);
  assert.ok(e.message.includes(`${BUCKET}/${key}`), e.message);
  for (const secret of [KEYS.accessKeyId, KEYS.accessKeySecret]) assert.ok(!e.message.includes(secret), e.message);
  if (pattern) assert.match(e.message, pattern);
  return e;
}

describe('S3Backend on moto', () => {
  let moto: Moto;
  let s3: S3Backend;
  const big = prng(7, 1024 * 1024 + 12345);
  const decoy = prng(8, 1000);

  before(async () => {
    moto = await startMoto();
    const c = admin(moto.endpoint);
    await seed(c, { [`${PREFIX}big`]: big, [`${PREFIX}one`]: Buffer.from([0xa5]), [`${PREFIX}empty`]: Buffer.alloc(0), big: decoy });
    await c.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}public`, Body: 'for anyone', ACL: 'public-read' }));
    c.destroy();
    s3 = backendFor(moto.endpoint);
  });
  after(async () => {
    await s3?.close();
    await moto?.stop();
  });

  test('ranged reads are exact at every offset tried', async () => {
    const n = big.length;
    const cases: Array<[number, number]> = [[0, 1], [n - 1, 1], [0, n], [1, n - 1], [0, n - 1], [4095, 2], [4096, 4096], [65535, 65537], [n - 4096, 4096], [12345, 1]];
    for (let i = 0; i < 40; i++) {
      const off = (i * 2654435761) % n;
      cases.push([off, 1 + ((i * 40503) % Math.min(200_000, n - off))]);
    }
    for (const [off, len] of cases) {
      const got = await s3.read('big', off, len);
      assert.equal(got.length, len);
      assert.ok(got.equals(big.subarray(off, off + len)), `bytes ${off}+${len}`);
    }
    assert.deepEqual(await s3.read('one', 0, 1), Buffer.from([0xa5]));
  });

  test('size, empty objects and the object prefix', async () => {
    assert.equal(await s3.size('big'), big.length);
    assert.equal(await s3.size('one'), 1);
    assert.equal(await s3.size('empty'), 0);
    assert.equal((await s3.read('empty', 0, 0)).length, 0);
    const noPrefix = backendFor(moto.endpoint, { objectPrefix: '' });
    try {
      assert.ok((await noPrefix.read('big', 0, 1000)).equals(decoy));
      assert.equal(s3.key('big'), `${PREFIX}big`);
    } finally {
      await noPrefix.close();
    }
  });

  test('an endpoint given as host:port uses the scheme option', async () => {
    const b = backendFor(moto.endpoint.replace('http://', ''), { scheme: 'http' });
    try {
      assert.ok((await b.read('big', 100, 100)).equals(big.subarray(100, 200)));
    } finally {
      await b.close();
    }
  });

  test('a missing object or bucket is a NotFoundError naming it', async () => {
    for (const op of [() => s3.read('nope', 0, 10), () => s3.size('nope')]) {
      const e = await op().then(() => undefined, (err: unknown) => err);
      assert.ok(e instanceof NotFoundError, String(e));
      assert.ok(e.message.includes(`${BUCKET}/${PREFIX}nope`), e.message);
    }
    const other = backendFor(moto.endpoint, { bucketName: 'no-such-bucket' });
    await assert.rejects(other.read('big', 0, 1), NotFoundError);
    await other.close();
  });

  test('without credentials requests go unsigned: a public-read object reads, a private one is denied', async () => {
    const anon = backendFor(moto.endpoint, { accessKeyId: '', accessKeySecret: '', retryLimit: 2 });
    assert.equal((await anon.read('public', 4, 6)).toString(), 'anyone');
    assert.equal(await anon.size('public'), 10);
    await rejectsBackend(anon.read('big', 0, 10), false, `${PREFIX}big`, /403/);
    await anon.close();
  });

  test('a range past the end is refused, not retried', async () => {
    const n = big.length;
    await rejectsBackend(s3.read('big', n - 5, 10), false, `${PREFIX}big`, /outside the object/);
    await rejectsBackend(s3.read('big', n, 1), false, `${PREFIX}big`, /416/);
    await rejectsBackend(s3.read('empty', 1, 0), false, `${PREFIX}empty`);
    await assert.rejects(s3.read('big', -1, 1), BackendError);
  });

  test('50 concurrent ranged reads are all correct', async () => {
    const reads = Array.from({ length: 50 }, (_, i) => {
      const off = (i * 20_011) % (big.length - 30_000);
      const len = 1 + ((i * 7919) % 30_000);
      return s3.read('big', off, len).then((b) => b.equals(big.subarray(off, off + len)));
    });
    assert.deepEqual(await Promise.all(reads), Array(50).fill(true));
  });

  test('putBlob uploads with Content-MD5; the blob reads back', async () => {
    const data = prng(9, 300_000);
    const r = await s3.putBlob('uploaded', data);
    assert.equal(r.key, `${PREFIX}uploaded`);
    assert.equal(r.etag, `"${createHash('md5').update(data).digest('hex')}"`);
    assert.equal(await s3.size('uploaded'), data.length);
    assert.ok((await s3.read('uploaded', 1000, 2000)).equals(data.subarray(1000, 3000)));
  });

  test('an aborted signal stops the read with E_ABORTED', async () => {
    const ac = new AbortController();
    ac.abort();
    const e = await s3.read('big', 0, 10, { signal: ac.signal }).catch((err: unknown) => err);
    assert.ok(e instanceof DamselflyError && e.code === ErrorCode.Aborted, String(e));
  });

  test('an endpoint that refuses connections fails within the timeout, retryable', async () => {
    const refused = backendFor(`http://127.0.0.1:${await closedPort()}`, { retryLimit: 2, connectTimeoutMs: 1000 });
    const t0 = Date.now();
    await rejectsBackend(refused.read('big', 0, 10), true, `${PREFIX}big`, /ECONNREFUSED/);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    await refused.close();
    await assert.rejects(refused.read('big', 0, 10), /closed/);
  });
});

describe('S3Backend credentials (moto with authentication on)', () => {
  let moto: Moto;
  let keys: { accessKeyId: string; secretAccessKey: string };
  const data = prng(11, 5000);

  before(async () => {
    moto = await startMoto();
    keys = await motoAuthUser(moto.endpoint);
    const c = admin(moto.endpoint, keys);
    await seed(c, { [`${PREFIX}blob`]: data });
    c.destroy();
  });
  after(async () => {
    await moto?.stop();
  });

  test('the right keys read; a wrong secret or an unknown key is refused, not retried, and not echoed', async () => {
    const good = backendFor(moto.endpoint, { accessKeyId: keys.accessKeyId, accessKeySecret: keys.secretAccessKey });
    assert.ok((await good.read('blob', 10, 100)).equals(data.subarray(10, 110)));
    assert.equal(await good.size('blob'), data.length);
    await good.close();
    for (const creds of [{ accessKeyId: keys.accessKeyId, accessKeySecret: KEYS.accessKeySecret }, KEYS]) {
      const bad = backendFor(moto.endpoint, { ...creds, retryLimit: 3 });
      const e = await rejectsBackend(bad.read('blob', 0, 10), false, `${PREFIX}blob`, /403/);
      assert.ok(!e.message.includes(keys.accessKeyId) && !/\(.*attempts\)/.test(e.message), e.message);
      await rejectsBackend(bad.size('blob'), false, `${PREFIX}blob`, /403/);
      await bad.close();
    }
  });
});

describe('S3Backend over TLS (moto -s, self-signed)', () => {
  let moto: Moto;
  before(async () => {
    moto = await startMoto({ ssl: true });
    const c = admin(moto.endpoint, undefined, { httpsAgent: { rejectUnauthorized: false } });
    await seed(c, { [`${PREFIX}tls`]: Buffer.from('over tls') });
    c.destroy();
  });
  after(async () => {
    await moto?.stop();
  });

  test('skipVerify accepts the certificate; without it the read fails, not retryable', async () => {
    const lax = backendFor(moto.endpoint, { skipVerify: true });
    assert.equal((await lax.read('tls', 0, 8)).toString(), 'over tls');
    await lax.close();
    const strict = backendFor(moto.endpoint.replace('https://', ''), { retryLimit: 2 });
    await rejectsBackend(strict.read('tls', 0, 8), false, `${PREFIX}tls`, /CERT|certificate/i);
    await strict.close();
  });
});

/** A port on 127.0.0.1 with nothing listening. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** An HTTP server on 127.0.0.1 that answers as `handler` says and records each request. */
async function scripted(): Promise<{ endpoint: string; seen: IncomingMessage[]; on(h: Handler): void; close(): Promise<void> }> {
  let handler: Handler = (_req, res) => res.writeHead(500).end();
  const seen: IncomingMessage[] = [];
  const sockets = new Set<Socket>();
  const srv = createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  srv.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  return {
    endpoint,
    seen,
    on(h) {
      handler = h;
      seen.length = 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

const xmlError = (code: string): string => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code} here</Message></Error>`;

describe('S3Backend against a scripted HTTP server', () => {
  let srv: Awaited<ReturnType<typeof scripted>>;
  const data = prng(13, 10_000);
  const ranged: Handler = (req, res) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '') as RegExpExecArray;
    const [a, b] = [Number(m[1]), Number(m[2])];
    res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${data.length}`, 'content-length': b - a + 1 }).end(data.subarray(a, b + 1));
  };
  before(async () => {
    srv = await scripted();
  });
  after(async () => {
    await srv?.close();
  });

  test('path-style URL, Range header, SigV4 with the key id; unsigned without credentials', async () => {
    srv.on(ranged);
    const s = backendFor(srv.endpoint);
    assert.ok((await s.read('abc', 5, 10)).equals(data.subarray(5, 15)));
    const req = srv.seen[0] as IncomingMessage;
    assert.equal(new URL(req.url ?? '', 'http://x').pathname, `/${BUCKET}/${PREFIX}abc`);
    assert.equal(req.headers.range, 'bytes=5-14');
    assert.match(req.headers.authorization ?? '', new RegExp(`^AWS4-HMAC-SHA256 Credential=${KEYS.accessKeyId}/\\d{8}/us-east-1/s3/aws4_request`));
    await s.close();
    const anon = backendFor(srv.endpoint, { accessKeyId: '', accessKeySecret: '' });
    assert.ok((await anon.read('abc', 0, 3)).equals(data.subarray(0, 3)));
    assert.equal(srv.seen.at(-1)?.headers.authorization, undefined);
    await anon.close();
    assert.throws(() => backendFor(srv.endpoint, { accessKeyId: 'only-the-id', accessKeySecret: '' }), /both/);
  });

  test('5xx is retried retryLimit times, then retryable; 403 is not retried', async () => {
    srv.on((_req, res) => res.writeHead(503, { 'content-type': 'application/xml' }).end(xmlError('SlowDown')));
    const s = backendFor(srv.endpoint, { retryLimit: 2 });
    await rejectsBackend(s.read('abc', 0, 10), true, `${PREFIX}abc`, /503/);
    assert.equal(srv.seen.length, 3);
    srv.on((_req, res) => res.writeHead(403, { 'content-type': 'application/xml' }).end(xmlError('AccessDenied')));
    await rejectsBackend(s.read('abc', 0, 10), false, `${PREFIX}abc`, /AccessDenied/);
    assert.equal(srv.seen.length, 1);
    await s.close();
    srv.on((_req, res) => res.writeHead(500).end());
    const once = backendFor(srv.endpoint, { retryLimit: 0 });
    await rejectsBackend(once.read('abc', 0, 10), true, `${PREFIX}abc`);
    assert.equal(srv.seen.length, 1);
    await once.close();
  });

  test('no answer, or a body that stalls, times out (retryable) within the bounds', async () => {
    const s = backendFor(srv.endpoint, { timeoutMs: 300, retryLimit: 1 });
    srv.on(() => undefined); // never answers
    let t0 = Date.now();
    await rejectsBackend(s.read('abc', 0, 10), true, `${PREFIX}abc`);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    assert.equal(srv.seen.length, 2);
    srv.on((_req, res) => {
      res.writeHead(206, { 'content-range': 'bytes 0-9999/10000', 'content-length': 10_000 });
      res.write(data.subarray(0, 100)); // then nothing
    });
    t0 = Date.now();
    await rejectsBackend(s.read('abc', 0, 10_000), true, `${PREFIX}abc`);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    await s.close();
  });

  test('a short body, an unranged or a mis-ranged answer is an error', async () => {
    const s = backendFor(srv.endpoint);
    srv.on((_req, res) => {
      res.writeHead(206, { 'content-range': 'bytes 0-99/10000', 'content-length': 100 });
      res.write(data.subarray(0, 50));
      setTimeout(() => res.destroy(), 20);
    });
    await rejectsBackend(s.read('abc', 0, 100), true, `${PREFIX}abc`);
    srv.on((_req, res) => res.writeHead(200, { 'content-length': data.length }).end(data));
    await rejectsBackend(s.read('abc', 10, 100), false, `${PREFIX}abc`, /ignored the Range/);
    assert.ok((await s.read('abc', 0, data.length)).equals(data)); // whole object: a 200 is the answer
    srv.on((_req, res) => res.writeHead(206, { 'content-range': 'bytes 1-100/10000', 'content-length': 100 }).end(data.subarray(1, 101)));
    await rejectsBackend(s.read('abc', 0, 100), false, `${PREFIX}abc`, /answered bytes 1-100/);
    await s.close();
  });

  test('aborting while waiting for headers or body ends the read at once with E_ABORTED', async () => {
    const s = backendFor(srv.endpoint, { timeoutMs: 10_000 });
    for (const h of [() => undefined, (_req: IncomingMessage, res: ServerResponse) => res.writeHead(206, { 'content-range': 'bytes 0-99/10000', 'content-length': 100 }).write('x')] as Handler[]) {
      srv.on(h);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 150);
      const t0 = Date.now();
      const e = await s.read('abc', 0, 100, { signal: ac.signal }).catch((err: unknown) => err);
      assert.ok(e instanceof DamselflyError && e.code === ErrorCode.Aborted, String(e));
      assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
    }
    await s.close();
  });
});

describe('end to end: a CLI-built image served from S3', () => {
  let moto: Moto;
  let work: string;
  before(async () => {
    moto = await startMoto();
    work = await mkdtemp(join(tmpdir(), 'damselfly-s3-'));
    await makeTree(join(work, 'src'));
    const c = admin(moto.endpoint);
    await c.send(new CreateBucketCommand({ Bucket: BUCKET }));
    c.destroy();
  });
  after(async () => {
    await moto?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const [compressor, chunk] of [['zstd', '1M'], ['lz4_block', '64K']] as const) {
    test(`${compressor}, ${chunk} chunks: every file read through S3 equals its source`, async () => {
      const out = join(work, `${compressor}-${chunk}`);
      const boot = join(out, 'boot');
      await damselflyOk(['build', '--compressor', compressor, '--chunk-size', chunk, '--bootstrap', boot, '--blob-dir', join(out, 'blobs'), join(work, 'src')]);
      const prefix = `${compressor}/`;
      const s3 = backendFor(moto.endpoint, { objectPrefix: prefix });
      for (const name of await readdir(join(out, 'blobs'))) await s3.putBlob(name, await readFile(join(out, 'blobs', name)));
      const image = openBootstrap(await readFile(boot));
      let reads = 0;
      const counting = { kind: 's3', size: (id: string) => s3.size(id), close: () => s3.close(), read: (id: string, o: number, l: number) => (reads++, s3.read(id, o, l)) };
      const reader = new ToolChunkReader(image, counting, nativeCodecs);
      let files = 0;
      for (const item of walkImage(image)) {
        if (item.attr.kind !== 'file') continue;
        const content = Buffer.alloc(item.attr.size); // holes stay zero
        for await (const piece of reader.readFile(item.attr.ino)) Buffer.from(piece.data).copy(content, piece.offset);
        const srcPath = Buffer.concat([Buffer.from(join(work, 'src')), ...item.components.flatMap((c) => [Buffer.from('/'), Buffer.from(c)])]);
        assert.ok(content.equals(await readFile(srcPath)), `${item.path} differs`);
        files++;
      }
      assert.ok(files > 300 && reads > 0, `${files} files, ${reads} reads`);
      await s3.close();
    });
  }
});
