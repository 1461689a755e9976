/**
 * The `http-proxy` backend (spec §7.3, §8): blobs at `{addr}{path}/{blob_id}` read with HTTP Range
 * GETs, over TCP or a Unix socket (`addr` an absolute socket path). The registry client's
 * transport carries them: its timeouts (per answer and between body chunks), redirects, ranged
 * answers checked against the range asked for (a 200 that ignored the Range is skipped to it,
 * never held whole), reads streamed into the caller's buffer, and `retry_limit` retries with
 * backoff on timeouts, resets and 5xx.
 */
import { BackendError, type Logger, NotFoundError } from '../../base/index.js';
import { Transport, readRangeAnswer, statusError, withRetry, type RetryPolicy } from '../../oci/registry/index.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface HttpProxyBackendOptions {
  addr: string;
  path: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  skipVerify: boolean;
  caCertFiles?: string[];
  /** Retries after the first attempt of a read (nydus `retry_limit`). */
  retryLimit?: number;
  /** First backoff wait (default 200 ms), doubled per retry; each wait at most `retryMaxDelayMs` (default 5000). */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  log: Logger;
}

export class HttpProxyBackend implements BlobBackend {
  readonly kind = 'http-proxy';
  private readonly transport: Transport;
  private readonly base: string;
  private readonly policy: RetryPolicy;
  private readonly log: Logger;

  constructor(opts: HttpProxyBackendOptions) {
    const socket = opts.addr.startsWith('/');
    this.base = socket ? 'http://localhost' : `${opts.addr.replace(/\/$/, '')}${opts.path ? `/${opts.path.replace(/^\/|\/$/g, '')}` : ''}`;
    this.log = opts.log.child({ component: 'http-proxy' });
    this.policy = { limit: opts.retryLimit ?? 0, baseDelayMs: opts.retryBaseDelayMs ?? 200, maxDelayMs: opts.retryMaxDelayMs ?? 5000 };
    this.transport = new Transport({
      origin: this.base,
      timeoutMs: opts.timeoutMs || 5000,
      connectTimeoutMs: opts.connectTimeoutMs || 5000,
      maxConnections: 16,
      skipVerify: opts.skipVerify,
      caCertFiles: opts.caCertFiles ?? [],
      ...(socket ? { socketPath: opts.addr } : {}),
      log: this.log,
    });
  }

  private url(id: string): URL {
    if (!/^[A-Za-z0-9._:-]{1,64}$/.test(id)) throw new BackendError(`invalid blob id ${JSON.stringify(id)}`);
    return new URL(`${this.base}/${id}`);
  }

  async read(id: string, offset: number, length: number, opts: ReadOptions = {}): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    const url = this.url(id);
    const { signal } = opts;
    return withRetry(
      this.policy,
      async () => {
        const x = await this.transport.exchange({ method: 'GET', url, headers: { range: `bytes=${offset}-${offset + length - 1}` }, ...(signal ? { signal } : {}) });
        const data = await readRangeAnswer(x, offset, length, this.transport.timeoutMs, opts);
        if (data !== undefined) return data;
        const e = await statusError(x);
        throw x.status === 404 ? new NotFoundError(`http-proxy: blob ${id} not found`) : e;
      },
      { what: `http-proxy: GET ${url.href} range ${offset}+${length}`, log: this.log, ...(signal ? { signal } : {}) },
    );
  }

  async size(id: string, opts: ReadOptions = {}): Promise<number> {
    const url = this.url(id);
    const { signal } = opts;
    return withRetry(
      this.policy,
      async () => {
        const x = await this.transport.exchange({ method: 'HEAD', url, ...(signal ? { signal } : {}) });
        await x.body.dump().catch(() => undefined);
        if (x.status === 404) throw new NotFoundError(`http-proxy: blob ${id} not found`);
        const n = Number(x.headers['content-length']);
        if (x.status !== 200 || !Number.isSafeInteger(n)) throw new BackendError(`http-proxy: HEAD ${url.href} answered ${x.status}`, { retryable: x.status >= 500 });
        return n;
      },
      { what: `http-proxy: HEAD ${url.href}`, log: this.log, ...(signal ? { signal } : {}) },
    );
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}
