/**
 * Failover over real HTTP (local servers on 127.0.0.1): a mirror broken otherwise than by a
 * retryable error (403, 404, a truncated copy, a server that does not speak HTTP) passes each read
 * on to the origin, which has the blob, and is failed over like one that times out (every read used
 * to fail, the origin never asked); without an origin, the route's answer stands. A mirror whose
 * health check (GET /v2/) answers 401, as a registry that requires authorization does, counts as
 * recovered (it stayed out for good). A peer that trickles a body one byte just inside each timeout
 * fails the read within the body's deadline (the countdown between chunks alone let it run for
 * length × timeout), on the registry and the HTTP proxy transport alike.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { after, test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { parseConfigObject } from '../../../src/config/index.js';
import { RegistryClient } from '../../../src/oci/registry/index.js';
import { createBackend } from '../../../src/storage/backend/factory.js';
import { FailoverBackend } from '../../../src/storage/backend/failover.js';
import { HttpProxyBackend } from '../../../src/storage/backend/http-proxy.js';
import { RegistryBackend } from '../../../src/storage/backend/registry.js';

const BLOB = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));
const ID = createHash('sha256').update(BLOB).digest('hex');
const servers: Array<{ close(): void }> = [];
after(() => {
  for (const s of servers) s.close();
});

/** The byte range a request asks for (inclusive), or undefined for the whole blob. */
function rangeOf(req: IncomingMessage): [number, number] | undefined {
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

function ranged(req: IncomingMessage, res: ServerResponse): void {
  const r = rangeOf(req);
  if (r === undefined) {
    res.writeHead(200, { 'content-length': BLOB.length }).end(BLOB);
    return;
  }
  const [s, e] = r;
  res.writeHead(206, { 'content-length': e - s + 1, 'content-range': `bytes ${s}-${e}/${BLOB.length}` }).end(BLOB.subarray(s, e + 1));
}

/** An origin that serves BLOB and counts the requests it answered. */
async function countingOrigin(): Promise<{ port: number; gets: () => number; reset: () => void }> {
  let gets = 0;
  const port = await listen(
    createServer((req, res) => {
      gets++;
      ranged(req, res);
    }),
  );
  return { port, gets: () => gets, reset: () => void (gets = 0) };
}

async function listen(s: Server | ReturnType<typeof createNetServer>): Promise<number> {
  servers.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return (s.address() as AddressInfo).port;
}

function registry(port: number, scheme: 'http' | 'https' = 'http'): RegistryBackend {
  return new RegistryBackend(new RegistryClient({ host: `127.0.0.1:${port}`, scheme, log: silentLogger, timeoutMs: 2000, retryLimit: 0 }), 'lib/x');
}

test('a mirror that refuses, lacks, truncates or does not speak HTTP passes the read on to the origin', async () => {
  const origin = await countingOrigin();
  let mode = '';
  let mirrorGets = 0;
  const mirrorPort = await listen(
    createServer((_req, res) => {
      mirrorGets++;
      if (mode === '403') res.writeHead(403).end('denied');
      else if (mode === '404') res.writeHead(404).end();
      else res.writeHead(200, { 'content-length': 100 }).end(BLOB.subarray(0, 100)); // a cut copy
    }),
  );
  const notHttpPort = await listen(
    createNetServer((c) => {
      mirrorGets++;
      c.on('error', () => undefined);
      c.end('SSH-2.0-OpenSSH_9.6\r\n');
    }),
  );
  for (mode of ['403', '404', 'truncated', 'not HTTP', 'TLS to a plain HTTP server']) {
    mirrorGets = 0;
    origin.reset();
    const mirror = mode === 'not HTTP' ? registry(notHttpPort) : registry(mirrorPort, mode.startsWith('TLS') ? 'https' : 'http');
    const metrics = new Metrics();
    const fb = new FailoverBackend([{ name: 'mirror-0', backend: mirror, checkIntervalMs: 60_000, failureLimit: 2 }], registry(origin.port), silentLogger, metrics);
    try {
      for (let i = 0; i < 4; i++) assert.deepEqual(await fb.read(ID, 1000, 500), BLOB.subarray(1000, 1500), `${mode}: read ${i}`);
      assert.equal(origin.gets(), 4, `${mode}: the origin served every read`);
      assert.equal(metrics.get('backend.route_failures.mirror-0'), 2, `${mode}: failed over after failureLimit answers`);
      if (!mode.startsWith('TLS')) assert.equal(mirrorGets, 2, `${mode}: not asked again until its check`);
    } finally {
      await fb.close();
    }
  }
  // Without an origin (a proxy without fallback) the route's own answer stands.
  mode = '404';
  const alone = new FailoverBackend([{ name: 'proxy', backend: registry(mirrorPort), checkIntervalMs: 60_000, failureLimit: 1 }], undefined, silentLogger, new Metrics());
  try {
    await assert.rejects(alone.read(ID, 0, 10), /404/);
  } finally {
    await alone.close();
  }
});

test('a mirror whose health check is answered 401 (a registry that requires authorization) is used again once it is back', async () => {
  const origin = await countingOrigin();
  let down = true;
  let mirrorGets = 0;
  let pings = 0;
  const mirrorPort = await listen(
    createServer((req, res) => {
      if (req.url === '/v2/') {
        pings++;
        res.writeHead(401, { 'www-authenticate': 'Basic realm="mirror"' }).end();
        return;
      }
      mirrorGets++;
      if (down) res.writeHead(503).end();
      else ranged(req, res);
    }),
  );
  const config = parseConfigObject({
    device: {
      backend: {
        type: 'registry',
        config: {
          scheme: 'http',
          host: `127.0.0.1:${origin.port}`,
          repo: 'lib/x',
          timeout: 2,
          retry_limit: 0,
          mirrors: [{ host: `http://127.0.0.1:${mirrorPort}`, health_check_interval: 1, failure_limit: 1 }],
        },
      },
    },
    mode: 'direct',
  });
  const b = createBackend(config.backend, { log: silentLogger, metrics: new Metrics() });
  try {
    assert.deepEqual(await b.read(ID, 0, 100), BLOB.subarray(0, 100)); // the mirror's 503: the origin
    assert.equal(origin.gets(), 1);
    down = false;
    const deadline = Date.now() + 10_000;
    while (mirrorGets < 2 && Date.now() < deadline) {
      assert.deepEqual(await b.read(ID, 0, 100), BLOB.subarray(0, 100));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(pings > 0, 'the health check ran');
    assert.ok(mirrorGets >= 2, `the mirror serves again after its check (${pings} checks, each answered 401)`);
  } finally {
    await b.close();
  }
});

test('a body that trickles one byte just inside each timeout fails within its deadline, not after length × timeout', async () => {
  let requests = 0;
  const port = await listen(
    createServer((req, res) => {
      requests++;
      const [s, e] = rangeOf(req) as [number, number];
      res.writeHead(206, { 'content-length': e - s + 1, 'content-range': `bytes ${s}-${e}/${BLOB.length}` });
      let i = s;
      const t = setInterval(() => {
        if (res.destroyed || i > e) {
          clearInterval(t);
          res.end();
          return;
        }
        res.write(BLOB.subarray(i, ++i));
      }, 300);
    }),
  );
  const proxy = new HttpProxyBackend({ addr: `http://127.0.0.1:${port}`, path: '', timeoutMs: 500, connectTimeoutMs: 500, skipVerify: false, retryLimit: 0, log: silentLogger });
  const reg = new RegistryBackend(new RegistryClient({ host: `127.0.0.1:${port}`, scheme: 'http', timeoutMs: 500, retryLimit: 0, log: silentLogger }), 'lib/x');
  try {
    for (const [name, b] of [['http proxy', proxy], ['registry', reg]] as const) {
      const t0 = Date.now();
      // 20 bytes at one per 300 ms would take 6 s, each gap well inside the 500 ms timeout.
      await assert.rejects(b.read(ID, 0, 20), /the body was not whole within 501 ms/, name);
      const took = Date.now() - t0;
      assert.ok(took < 4500, `${name}: failed after ${took} ms`);
    }
    assert.equal(requests, 2);
  } finally {
    await proxy.close();
    await reg.close();
  }
});
