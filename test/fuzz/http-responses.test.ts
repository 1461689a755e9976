/**
 * Seeded fuzzing of the HTTP backends with a hostile server: the chunk device reads a real
 * image's chunks (through the image filesystem, as a FUSE READ would) from a registry backend, an
 * s3 backend and an http-proxy (Dragonfly peer) backend, whose server answers each request its own way, chosen by a seeded generator: right, Range ignored,
 * wrong bytes, a Content-Range that lies, bodies cut short or running past their length, stalls
 * before and inside the body, resets, retryable and final statuses with odd Retry-After values,
 * Bearer challenges whose token service answers badly too, redirects in loops and to nowhere,
 * broken chunked encoding, oversized headers, and bytes that are not HTTP at all.
 *
 * Invariants: every READ completes within a bound made of the client's timeouts and retries, with
 * the file's exact bytes or EIO — never other bytes, never a hang, never a crash; and once the
 * server behaves, a fresh device reads everything right.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metrics, silentLogger } from '../../src/base/index.js';
import { build } from '../../src/builder/build.js';
import { Compressor } from '../../src/format/compression.js';
import { Digester } from '../../src/format/constants.js';
import { openBootstrap } from '../../src/format/open.js';
import { ImageFs } from '../../src/fs/image/image-fs.js';
import { FuseServer, Opcode } from '../../src/fuse/index.js';
import { nativeCodecs } from '../../src/native/index.js';
import { RegistryClient } from '../../src/oci/registry/client.js';
import { HttpProxyBackend } from '../../src/storage/backend/http-proxy.js';
import { RegistryBackend } from '../../src/storage/backend/registry.js';
import { S3Backend } from '../../src/storage/backend/s3.js';
import type { BlobBackend } from '../../src/storage/backend/types.js';
import { BlobDevice } from '../../src/storage/device.js';
import { cstr, exchange, initArgs, parseEntry, readArgs, type Reply, request } from '../helpers/fuse-client.js';
import { withTempDir } from '../helpers/env.js';
import { type Rng, seededRng } from '../helpers/rng.js';
import { prng } from '../helpers/tree.js';

const ROUNDS = 40;
const READS_PER_ROUND = 6;
const TIMEOUT_MS = 250;
const RETRIES = 2;
/** Per READ: each attempt may wait a timeout for headers and one per body gap, plus backoffs. */
const READ_LIMIT_MS = 15_000;
const REPO = 'fuzz/image';
/** Where the http-proxy backend finds blobs: `{addr}/{path}/{id}`. */
const PROXY_PATH = 'peer';
/** Where the s3 backend finds blobs: `{endpoint}/{bucket}/{id}` (path style). */
const BUCKET = 'fuzz-bucket';

type Behaviour = (s: Socket, req: Req, rng: Rng) => void;

interface Req {
  method: string;
  path: string;
  range: [number, number] | undefined;
}

/** The hostile server: each request answered by a behaviour chosen from `choose`. */
class HostileRegistry {
  readonly server: Server;
  private readonly sockets = new Set<Socket>();
  honest = false;
  requests = 0;
  readonly seen = new Map<string, number>();

  constructor(
    private readonly blobId: string,
    private readonly blob: Buffer,
    private readonly rng: Rng,
  ) {
    this.server = createServer((s) => this.connection(s));
  }

  get host(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private connection(s: Socket): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0 && !s.destroyed; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.subarray(0, end).toString('latin1').split('\r\n');
        buf = buf.subarray(end + 4);
        const [method = '', path = ''] = (head[0] ?? '').split(' ');
        const r = head.map((l) => /^range:\s*bytes=(\d+)-(\d+)$/i.exec(l)).find((m) => m !== null);
        this.answer(s, { method, path, range: r ? [Number(r[1]), Number(r[2])] : undefined });
      }
    });
  }

  private answer(s: Socket, req: Req): void {
    this.requests++;
    if (req.path.startsWith('/token')) return this.pick(TOKEN_BEHAVIOURS, s, req);
    const blobPaths = [`/v2/${REPO}/blobs/sha256:${this.blobId}`, `/${PROXY_PATH}/${this.blobId}`, `/${BUCKET}/${this.blobId}`];
    if (!blobPaths.includes(req.path.split('?')[0] as string)) return respond(s, 404, {}, '');
    if (this.honest) return this.good(s, req);
    this.pick(this.behaviours, s, req);
  }

  private pick(list: ReadonlyArray<readonly [string, number, Behaviour]>, s: Socket, req: Req): void {
    const total = list.reduce((n, [, w]) => n + w, 0);
    let x = this.rng.next() * total;
    for (const [name, w, b] of list) {
      x -= w;
      if (x < 0) {
        this.seen.set(name, (this.seen.get(name) ?? 0) + 1);
        return b(s, req, this.rng);
      }
    }
  }

  private slice(req: Req): { start: number; body: Buffer } {
    const [start, end] = req.range ?? [0, this.blob.length - 1];
    return { start, body: this.blob.subarray(start, Math.min(end + 1, this.blob.length)) };
  }

  private good(s: Socket, req: Req): void {
    const { start, body } = this.slice(req);
    respond(s, 206, { 'Content-Range': `bytes ${start}-${start + body.length - 1}/${this.blob.length}` }, body);
  }

  private readonly behaviours: ReadonlyArray<readonly [string, number, Behaviour]> = [
    ['good', 30, (s, req) => this.good(s, req)],
    ['range ignored', 4, (s) => respond(s, 200, {}, this.blob)],
    [
      'wrong bytes',
      5,
      (s, req, rng) => {
        const { start, body } = this.slice(req);
        const bad = Buffer.from(body);
        const at = rng.int(bad.length);
        if (bad.length > 0) bad[at] = (bad[at] as number) ^ 0x40;
        respond(s, 206, { 'Content-Range': `bytes ${start}-${start + bad.length - 1}/${this.blob.length}` }, bad);
      },
    ],
    [
      'content-range lies',
      4,
      (s, req, rng) => {
        const { start, body } = this.slice(req);
        const claimed = rng.pick([start + 1, Math.max(0, start - 4096), 0]);
        respond(s, 206, { 'Content-Range': `bytes ${claimed}-${claimed + body.length - 1}/${this.blob.length}` }, this.blob.subarray(claimed, claimed + body.length));
      },
    ],
    [
      'short body',
      5,
      (s, req, rng) => {
        const { body } = this.slice(req);
        s.write(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.end(body.subarray(0, rng.int(Math.max(1, body.length))));
      },
    ],
    [
      'body past its length',
      3,
      (s, req) => {
        const { start, body } = this.slice(req);
        s.write(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${start}-${start + body.length - 1}/${this.blob.length}\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.write(Buffer.concat([body, Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz')]));
      },
    ],
    ['stall', 3, () => undefined],
    [
      'stall in the body',
      3,
      (s, req) => {
        const { body } = this.slice(req);
        s.write(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length}\r\n\r\n`);
        s.write(body.subarray(0, body.length >> 1));
      },
    ],
    ['reset', 4, (s) => s.resetAndDestroy()],
    ['close', 3, (s) => s.destroy()],
    ['retryable status', 6, (s, _req, rng) => respond(s, rng.pick([500, 502, 503, 429]), rng.next() < 0.5 ? { 'Retry-After': rng.pick(['0', '1', 'abc', '999999', '-5', 'Wed, 21 Oct 2099 07:28:00 GMT']) } : {}, 'busy')],
    ['final status', 4, (s, _req, rng) => respond(s, rng.pick([400, 403, 404, 416, 451]), {}, 'no')],
    [
      'bearer challenge',
      4,
      (s, _req, rng) =>
        respond(s, 401, { 'WWW-Authenticate': rng.pick([`Bearer realm="http://${this.host}/token",service="fuzz"`, 'Bearer realm="http://127.0.0.1:1/token"', 'Bearer', 'Basic realm="x"', 'Bearer realm=""', 'Garbage ,,, =']) }, ''),
    ],
    ['redirect', 4, (s, req, rng) => respond(s, rng.pick([301, 302, 307]), rng.next() < 0.8 ? { Location: rng.pick([req.path, 'http://127.0.0.1:1/x', `http://${this.host}${req.path}`, '::::', '']) } : {}, '')],
    ['bad chunked', 3, (s) => s.end('HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n')],
    ['huge header', 2, (s) => s.end(`HTTP/1.1 206 Partial Content\r\nX-Big: ${'a'.repeat(100_000)}\r\nContent-Length: 0\r\n\r\n`)],
    ['not http', 3, (s, _req, rng) => s.end(rng.pick([Buffer.from([0, 1, 2, 0xff, 0xfe]), Buffer.from('SSH-2.0-OpenSSH\r\n'), Buffer.from('HTTP/1.1 abc\r\n\r\n')]))],
  ];

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const TOKEN_BEHAVIOURS: ReadonlyArray<readonly [string, number, Behaviour]> = [
  ['token ok', 2, (s) => respond(s, 200, { 'Content-Type': 'application/json' }, JSON.stringify({ token: 't0k', expires_in: 60 }))],
  ['token garbage', 2, (s, _req, rng) => respond(s, 200, { 'Content-Type': 'application/json' }, rng.pick(['{', '[]', '{"token": 5}', 'null', '{"access_token":""}']))],
  ['token refused', 1, (s) => respond(s, 401, {}, '')],
  ['token stall', 1, () => undefined],
];

function respond(s: Socket, status: number, headers: Record<string, string>, body: string | Buffer): void {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const lines = [`HTTP/1.1 ${status} X`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${b.length}`, '', ''];
  s.write(Buffer.concat([Buffer.from(lines.join('\r\n')), b]));
}

/** A backend of each kind that reads over HTTP, with the client's timeouts and retries. */
const BACKENDS: Record<string, (host: string) => BlobBackend> = {
  registry: (host) => new RegistryBackend(new RegistryClient({ host, scheme: 'http', timeoutMs: TIMEOUT_MS, connectTimeoutMs: TIMEOUT_MS, retryLimit: RETRIES, retryBaseDelayMs: 5, retryMaxDelayMs: 50, maxConnections: 4, log: silentLogger }), REPO),
  s3: (host) => new S3Backend({ endpoint: `http://${host}`, region: 'us-east-1', bucketName: BUCKET, timeoutMs: TIMEOUT_MS, connectTimeoutMs: TIMEOUT_MS, retryLimit: RETRIES, retryBaseDelayMs: 5, retryMaxDelayMs: 50, log: silentLogger }),
  'http-proxy': (host) => new HttpProxyBackend({ addr: `http://${host}`, path: PROXY_PATH, timeoutMs: TIMEOUT_MS, connectTimeoutMs: TIMEOUT_MS, skipVerify: false, retryLimit: RETRIES, retryBaseDelayMs: 5, retryMaxDelayMs: 50, log: silentLogger }),
};

for (const [kind, makeBackend] of Object.entries(BACKENDS)) {
test(`a hostile server under the ${kind} backend (${ROUNDS} rounds of ${READS_PER_ROUND} reads): exact bytes or EIO, in bounded time`, async (t) => {
  await withTempDir('damselfly-http-fuzz-', async (work) => {
    const src = join(work, 'src');
    mkdirSync(src);
    const files = new Map<string, Buffer>([
      ['a', prng(1, 300_000)],
      ['b', prng(2, 90_000)],
      ['c', prng(3, 5_000)],
    ]);
    for (const [n, b] of files) writeFileSync(join(src, n), b);
    const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
    const image = openBootstrap(r.bootstrap);
    const blobId = (image.blobs[0] as { id: string }).id;
    const rng = seededRng(0x4e7f);
    const registry = new HostileRegistry(blobId, readFileSync(join(work, 'blobs', blobId)), rng);
    await new Promise<void>((res) => registry.server.listen(0, '127.0.0.1', () => res()));
    const outcomes = new Map<string, number>();
    try {
      for (let round = 0; round <= ROUNDS; round++) {
        // The last round: the server behaves, and everything must read right.
        registry.honest = round === ROUNDS;
        const backend = makeBackend(registry.host);
        const metrics = new Metrics();
        const device = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, metrics, log: silentLogger });
        const server = new FuseServer(new ImageFs({ image, device, metrics, log: silentLogger }), { log: silentLogger, metrics });
        try {
          await call(server, Opcode.INIT, 0, initArgs());
          const reads = registry.honest ? [...files.keys()].map((n) => [n, 0, (files.get(n) as Buffer).length] as const) : Array.from({ length: READS_PER_ROUND }, () => pickRead(rng, files));
          await Promise.all(
            reads.map(async ([name, offset, size]) => {
              const e = await call(server, Opcode.LOOKUP, 1, cstr(name));
              assert.equal(e.error, 0, `lookup ${name}`);
              const node = parseEntry(e.payload).nodeid;
              const started = Date.now();
              const got = await call(server, Opcode.READ, node, readArgs(0n, offset, size));
              const took = Date.now() - started;
              assert.ok(took < READ_LIMIT_MS, `round ${round}: READ of ${name} took ${took} ms`);
              const content = files.get(name) as Buffer;
              if (got.error === 0) {
                assert.ok(got.payload.equals(content.subarray(offset, offset + size)), `round ${round}: READ of ${name} at ${offset}+${size}: wrong bytes`);
              } else {
                assert.equal(got.error, -5, `round ${round}: READ of ${name} failed with ${got.error}, not EIO`);
                assert.ok(!registry.honest, `round ${round}: READ of ${name} failed against an honest server`);
              }
              const k = got.error === 0 ? 'exact bytes' : 'EIO';
              outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
            }),
          );
        } finally {
          await device.close();
          await backend.close?.();
        }
      }
    } finally {
      await registry.close();
    }
    t.diagnostic(`${registry.requests} requests; reads: ${[...outcomes].map(([k, n]) => `${k} ${n}`).join(', ')}; answers: ${[...registry.seen].map(([k, n]) => `${k} ${n}`).join(', ')}`);
    assert.ok((outcomes.get('exact bytes') ?? 0) > 0 && (outcomes.get('EIO') ?? 0) > 0, 'both outcomes were reached');
  });
});
}

function pickRead(rng: Rng, files: Map<string, Buffer>): readonly [string, number, number] {
  const name = rng.pick([...files.keys()]);
  const len = (files.get(name) as Buffer).length;
  const offset = rng.int(len);
  return [name, offset, Math.min(len - offset, rng.pick([1, 4096, 65536, 131072]))];
}

function call(server: FuseServer, op: Opcode, node: number, args: Buffer): Promise<Reply> {
  return exchange(server, request(op, node, args).bytes);
}
