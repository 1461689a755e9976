/**
 * Failover between routes to the same blobs (nydus `proxy` with `fallback`, and `mirrors`): the
 * first healthy route serves; a route that fails (connection refused, reset, timeout, 5xx, but also
 * 4xx, a truncated answer or a protocol mismatch: a route's failure passes the read on)
 * `failureLimit` times in a row is skipped until its health check passes (`ping` every
 * `checkIntervalMs`, or simply the interval elapsing). The origin, if any, is the last resort, and
 * its answer stands (a blob that does not exist); without an origin, the last route's does.
 * Data a route served that fails its chunk verification is read again from the origin
 * (`readOrigin`), when there is one: a broken peer costs a second read, never the read; and the
 * route is failed over at once (`reportCorrupt`), so it costs that only until its next check.
 */
import { BackendError, DamselflyError, ErrorCode, type Logger, type Metrics, errorMessage } from '../../base/index.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface Route {
  name: string;
  backend: BlobBackend;
  /** Resolves true when the route is healthy again (a GET of nydus `ping_url`). */
  ping?: () => Promise<boolean>;
  checkIntervalMs: number;
  failureLimit: number;
}

interface RouteState extends Route {
  failures: number;
  healthy: boolean;
  retryAt: number;
  checking: boolean;
}

export class FailoverBackend implements BlobBackend {
  readonly kind: string;
  readonly readOrigin?: (id: string, offset: number, length: number, opts?: ReadOptions) => Promise<Buffer>;
  private readonly routes: RouteState[];
  /** The route that served each buffer `read` returned (null: the origin), for `reportCorrupt`. */
  private readonly servedBy = new WeakMap<Buffer, RouteState | null>();

  constructor(
    routes: Route[],
    private readonly origin: BlobBackend | undefined,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.routes = routes.map((r) => ({ ...r, failures: 0, healthy: true, retryAt: 0, checking: false }));
    this.kind = origin?.kind ?? routes[0]?.backend.kind ?? 'failover';
    if (origin !== undefined) {
      this.readOrigin = (id, offset, length, opts) => {
        this.metrics.inc('backend.origin_rereads');
        return origin.read(id, offset, length, opts);
      };
    }
  }

  private usable(r: RouteState): boolean {
    if (r.healthy) return true;
    if (r.ping !== undefined) {
      if (!r.checking && Date.now() >= r.retryAt) this.check(r);
      return false;
    }
    // No health check: one read tries it again after each interval (the next try is due an
    // interval later, whether this one fails or not: a dead route must not be tried by every read).
    if (Date.now() < r.retryAt) return false;
    r.retryAt = Date.now() + r.checkIntervalMs;
    return true;
  }

  private check(r: RouteState): void {
    r.checking = true;
    (r.ping as () => Promise<boolean>)()
      .catch(() => false)
      .then((ok) => {
        r.checking = false;
        r.retryAt = Date.now() + r.checkIntervalMs;
        if (ok) {
          r.healthy = true;
          r.failures = 0;
          this.log.info({ route: r.name }, 'backend route recovered');
        }
      });
  }

  readonly reportCorrupt = (data: Buffer): boolean => {
    const r = this.servedBy.get(data);
    if (r === null) return false;
    if (r !== undefined) {
      // Once per answer (its chunks fail one by one); a route may answer right between wrong
      // answers, which would reset a count, so the first wrong answer fails it over.
      this.servedBy.delete(data);
      this.metrics.inc(`backend.route_corrupt.${r.name}`);
      this.failed(r, new Error('served bytes that failed chunk verification'), true);
    }
    return true;
  };

  private failed(r: RouteState, e: unknown, now = false): void {
    r.failures++;
    this.metrics.inc(`backend.route_failures.${r.name}`);
    if ((now || r.failures >= r.failureLimit) && r.healthy) {
      r.healthy = false;
      r.retryAt = Date.now() + r.checkIntervalMs;
      this.log.warn({ route: r.name, err: errorMessage(e) }, 'backend route unhealthy; failing over');
    }
  }

  private async attempt<T>(op: (b: BlobBackend) => Promise<T>, served?: (v: T, r: RouteState | null) => void): Promise<T> {
    let last: unknown;
    for (const r of this.routes) {
      if (!this.usable(r)) continue;
      try {
        const v = await op(r.backend);
        if (!r.healthy || r.failures > 0) {
          r.healthy = true;
          r.failures = 0;
        }
        served?.(v, r);
        return v;
      } catch (e) {
        if (e instanceof DamselflyError && e.code === ErrorCode.Aborted) throw e;
        // A route's other answers are its own: a mirror without the blob, one that refuses us
        // (401/403), a truncated copy, a TLS or protocol mismatch. The next route, or the origin,
        // is asked; only when none is left does the answer stand (a blob that does not exist).
        last = e;
        this.failed(r, e);
      }
    }
    if (this.origin !== undefined) {
      this.metrics.inc('backend.origin_fallbacks');
      const v = await op(this.origin);
      served?.(v, null);
      return v;
    }
    throw last ?? new BackendError('no backend route is healthy and fallback is disabled', { retryable: true });
  }

  read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    return this.attempt(
      (b) => b.read(id, offset, length, opts),
      (v, r) => this.servedBy.set(v, r),
    );
  }

  size(id: string, opts?: ReadOptions): Promise<number> {
    return this.attempt((b) => b.size(id, opts));
  }

  async close(): Promise<void> {
    await Promise.all([...this.routes.map((r) => r.backend.close()), this.origin?.close()]);
  }
}
