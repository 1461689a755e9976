/**
 * The `http-proxy` backend (spec §7.3, §8): blobs at `{addr}{path}/{blob_id}` read with HTTP Range
 * GETs, over TCP or a Unix socket (`addr` an absolute socket path).
 */
import type * as Undici from 'undici';
import { BackendError, NotFoundError } from '../../base/index.js';
import { loadUndici, requestTarget } from '../../oci/registry/undici.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface HttpProxyBackendOptions {
  addr: string;
  path: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  skipVerify: boolean;
}

export class HttpProxyBackend implements BlobBackend {
  readonly kind = 'http-proxy';
  /** The agent, made on the first request (undici is loaded then). */
  private client: Promise<Undici.Agent> | undefined;
  private readonly base: string;

  constructor(private readonly opts: HttpProxyBackendOptions) {
    this.base = opts.addr.startsWith('/') ? 'http://localhost' : `${opts.addr.replace(/\/$/, '')}${opts.path ? `/${opts.path.replace(/^\/|\/$/g, '')}` : ''}`;
  }

  private connect(): Promise<Undici.Agent> {
    this.client ??= loadUndici().then(({ Agent }) => {
      const { opts } = this;
      const socket = opts.addr.startsWith('/');
      return new Agent({
        connect: { timeout: opts.connectTimeoutMs || undefined, rejectUnauthorized: !opts.skipVerify, ...(socket ? { socketPath: opts.addr } : {}) },
        headersTimeout: opts.timeoutMs || 0,
        bodyTimeout: opts.timeoutMs || 0,
      });
    });
    return this.client;
  }

  private url(id: string): string {
    if (!/^[A-Za-z0-9._:-]{1,64}$/.test(id)) throw new BackendError(`invalid blob id ${JSON.stringify(id)}`);
    return `${this.base}/${id}`;
  }

  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const url = this.url(id);
    const agent = await this.connect();
    let res;
    try {
      res = await agent.request({ ...requestTarget(url), method: 'GET', headers: { range: `bytes=${offset}-${offset + length - 1}` }, ...(opts?.signal ? { signal: opts.signal } : {}) });
    } catch (e) {
      throw new BackendError(`http-proxy: GET ${this.url(id)} failed: ${(e as Error).message}`, { cause: e, retryable: true });
    }
    if (res.statusCode === 404) {
      await res.body.dump();
      throw new NotFoundError(`http-proxy: blob ${id} not found`);
    }
    if (res.statusCode !== 206 && !(res.statusCode === 200 && offset === 0)) {
      await res.body.dump();
      throw new BackendError(`http-proxy: GET ${this.url(id)} answered ${res.statusCode}`, { retryable: res.statusCode >= 500 });
    }
    const body = Buffer.from(await res.body.arrayBuffer());
    if (body.length < length) throw new BackendError(`http-proxy: short read of blob ${id}`, { retryable: true });
    return body.subarray(0, length);
  }

  async size(id: string): Promise<number> {
    const url = this.url(id);
    const agent = await this.connect();
    const res = await agent.request({ ...requestTarget(url), method: 'HEAD' });
    await res.body.dump();
    if (res.statusCode === 404) throw new NotFoundError(`http-proxy: blob ${id} not found`);
    const n = Number(res.headers['content-length']);
    if (res.statusCode !== 200 || !Number.isSafeInteger(n)) throw new BackendError(`http-proxy: HEAD ${this.url(id)} answered ${res.statusCode}`);
    return n;
  }

  async close(): Promise<void> {
    if (this.client !== undefined) await (await this.client).close();
  }
}
