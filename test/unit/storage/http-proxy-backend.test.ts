/**
 * The `http-proxy` backend (a Dragonfly-style proxy serving blobs at `{addr}{path}/{id}`) against a
 * real HTTP server, over TCP (`{addr}{path}/{id}`) and over a Unix socket (`/{id}`): ranged reads,
 * sizes, a missing blob, a server that ignores Range, a short answer, and a bad blob id (the
 * transport's other checks, retries and timeouts: test/fuzz/http-responses.test.ts).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BackendError, NotFoundError, silentLogger } from '../../../src/base/index.js';
import { HttpProxyBackend } from '../../../src/storage/backend/http-proxy.js';
import { prng } from '../../helpers/tree.js';

const BLOB = prng(7, 100_000);
const ID = 'a'.repeat(64);

function serve(): Server {
  return createServer((req, res) => {
    const m = /^(?:\/blobs)?\/([^/]+)$/.exec(req.url ?? '');
    if (m === null || (m[1] !== ID && m[1] !== 'short' && m[1] !== 'norange')) {
      res.writeHead(404).end();
      return;
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-length': BLOB.length }).end();
      return;
    }
    const r = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m[1] === 'norange' || r === null) {
      res.writeHead(200, { 'content-length': BLOB.length }).end(BLOB);
      return;
    }
    const [start, end] = [Number(r[1]), Number(r[2])];
    const body = BLOB.subarray(start, m[1] === 'short' ? end : end + 1);
    res.writeHead(206, { 'content-length': body.length, 'content-range': `bytes ${start}-${end}/${BLOB.length}` }).end(body);
  });
}

describe('http-proxy backend', () => {
  let work: string;
  let tcp: Server;
  let unix: Server;
  let port: number;
  const sock = (): string => join(work, 'proxy.sock');

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-http-proxy-'));
    tcp = serve();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    port = (tcp.address() as AddressInfo).port;
    unix = serve();
    await new Promise<void>((r) => unix.listen(sock(), r));
  });
  after(async () => {
    tcp.closeAllConnections();
    unix.closeAllConnections();
    await new Promise((r) => tcp.close(r));
    await new Promise((r) => unix.close(r));
    await rm(work, { recursive: true, force: true });
  });

  for (const via of ['tcp', 'unix'] as const) {
    test(`over ${via}: ranged reads and sizes are exact; the failures are clear`, async () => {
      const b = new HttpProxyBackend({ addr: via === 'tcp' ? `http://127.0.0.1:${port}` : sock(), path: via === 'tcp' ? '/blobs/' : '', timeoutMs: 5000, connectTimeoutMs: 5000, skipVerify: false, log: silentLogger });
      try {
        assert.ok((await b.read(ID, 1000, 5000)).equals(BLOB.subarray(1000, 6000)));
        assert.ok((await b.read(ID, 0, BLOB.length)).equals(BLOB));
        assert.equal((await b.read(ID, 5, 0)).length, 0);
        assert.equal(await b.size(ID), BLOB.length);
        await assert.rejects(b.read('b'.repeat(64), 0, 10), NotFoundError);
        await assert.rejects(b.size('b'.repeat(64)), NotFoundError);
        // A 206 whose length is not the range's.
        await assert.rejects(b.read('short', 0, 100), (e: unknown) => e instanceof BackendError && /Content-Length 99 does not match the requested 100 bytes/.test(e.message));
        // A server that ignores Range: the window is cut out of the whole answer, wherever it lies.
        assert.ok((await b.read('norange', 0, 10)).equals(BLOB.subarray(0, 10)));
        assert.ok((await b.read('norange', 50_000, 10)).equals(BLOB.subarray(50_000, 50_010)));
        await assert.rejects(b.read('../etc/passwd', 0, 1), /invalid blob id/);
      } finally {
        await b.close();
      }
    });
  }
});
