/**
 * One HTTP exchange with the registry over undici: a bounded connection pool per origin (`Agent`,
 * or `ProxyAgent` through an HTTP proxy), connect/headers/body timeouts, and redirects followed by
 * hand so that the registry-only headers (`Authorization`, configured extras) never reach another
 * host or port. Body helpers read exact lengths and turn every stream failure into our errors.
 */
import { Readable as NodeReadable, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { BackendError, type Logger, readRegularFileSync } from '../../base/index.js';
import { HttpStatusError, abortedError, describeErrorBody, isRetryableStatus, networkError, parseRetryAfter, redactUrl } from './errors.js';
import { loadUndici, requestTarget } from './undici.js';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface TransportOptions {
  /** The registry's origin, e.g. `http://127.0.0.1:5000`. */
  origin: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  maxConnections: number;
  skipVerify: boolean;
  caCertFiles: string[];
  proxyUrl?: string;
  /** Connect to this Unix socket instead of the origin's host and port (a local Dragonfly peer). */
  socketPath?: string;
  log: Logger;
}

/** Where a body read goes: a buffer from `allocate`, its progress to `onProgress`. */
export interface BodyOptions {
  signal?: AbortSignal;
  allocate?: (length: number) => Buffer;
  /** Bytes of the answer in the buffer so far (a retried read starts over). */
  onProgress?: (bytes: number) => void;
}

export interface ExchangeRequest {
  method: Method;
  url: URL;
  /** Sent to every hop (Accept, Range, Content-Type). */
  headers?: Record<string, string>;
  /** Sent only to `trustedOrigin` (Authorization, configured extra headers). */
  registryHeaders?: Record<string, string>;
  /** The one origin that may see `registryHeaders`: the registry's unless said (a token realm). */
  trustedOrigin?: string;
  /** A new body for each hop (a stream cannot be sent twice). */
  body?: () => Buffer | Readable;
  /** The body holds a secret: it goes to `trustedOrigin` only, and a redirect elsewhere is an error. */
  secretBody?: boolean;
  signal?: AbortSignal;
}

export interface Exchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The URL that answered (after redirects). */
  url: URL;
  method: Method;
  body: Dispatcher.ResponseData['body'];
  /** "GET http://host/v2/… " for messages, without credentials or signed query values. */
  what: string;
  /** The body's idle timer: reading helpers touch it per chunk; a consumer holding a chunk pauses it. */
  watchdog: Watchdog;
}

const noop = (): void => undefined;
const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Buffers larger than this are sent in pieces so that upload progress keeps the watchdog quiet. */
const PROGRESS_PIECE = 256 * 1024;

export function header(x: Exchange, name: string): string | undefined {
  const v = x.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A FIFO counting semaphore: at most `max` exchanges in flight per origin, so none waits in undici's queue. */
class Slots {
  private free: number;
  private readonly waiters: { grant: () => void }[] = [];

  constructor(max: number) {
    this.free = max;
  }

  acquire(signal: AbortSignal | undefined, what: string): Promise<() => void> {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next.grant();
      else this.free++;
    };
    if (this.free > 0 && this.waiters.length === 0) {
      this.free--;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortedError(what, signal?.reason));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}

/**
 * One exchange's timer: `timeoutMs` from sending until the response headers (connecting and
 * uploading included, re-armed by upload progress), then `timeoutMs` between body chunks. On expiry
 * it aborts the request with a retryable error; the caller's signal aborts it with E_ABORTED.
 */
export class Watchdog {
  readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private phase = 'response headers';
  /** Stopped for good (the exchange ended): a late `resume` must not arm the timer again. */
  private stopped = false;
  /** The whole body's deadline (`bodyWithin`), which progress does not move. */
  private bodyTimer: NodeJS.Timeout | undefined;
  private readonly unlink: () => void;

  constructor(
    private readonly timeoutMs: number,
    private readonly what: string,
    signal: AbortSignal | undefined,
  ) {
    const onAbort = (): void => this.abort(abortedError(what, signal?.reason));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    this.unlink = () => signal?.removeEventListener('abort', onAbort);
    this.resume();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  private abort(reason: Error): void {
    this.stop();
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** Progress: restart the countdown. */
  touch(): void {
    this.timer?.refresh();
  }

  /** Headers arrived: from now on the countdown is between body chunks. */
  bodyPhase(): void {
    this.phase = 'the next body bytes';
    this.touch();
  }

  /**
   * The body must be whole within `ms`, however it trickles in: the countdown between chunks alone
   * let a peer that sends a byte just inside each timeout hold a read for its length times the
   * timeout (a 1 MiB range at 5 s: weeks), and failover never took over.
   */
  bodyWithin(ms: number): void {
    if (this.stopped || this.bodyTimer !== undefined || this.controller.signal.aborted) return;
    this.bodyTimer = setTimeout(() => {
      this.abort(new BackendError(`${this.what}: the body was not whole within ${ms} ms (slower than ${MIN_BODY_RATE >> 10} KiB/s)`, { retryable: true }));
    }, ms);
  }

  /** The consumer holds a chunk: the server is not to blame for the time it takes. */
  pause(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  resume(): void {
    if (this.stopped || this.timer !== undefined || this.controller.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.abort(new BackendError(`${this.what}: no progress (${this.phase}) within ${this.timeoutMs} ms`, { retryable: true }));
    }, this.timeoutMs);
  }

  /**
   * The exchange ended. Its body may close while a consumer still holds the last chunk; the
   * consumer's `resume` then comes after this, and used to arm a timer that nothing stopped: it
   * kept the process alive (a daemon lingered one timeout after its unmount) and aborted a
   * finished request.
   */
  stop(): void {
    this.stopped = true;
    this.pause();
    clearTimeout(this.bodyTimer);
    this.unlink();
  }
}

/** `body` as sent: large buffers and streams pass through a counter that touches the watchdog. */
function withProgress(body: Buffer | Readable, wd: Watchdog): Buffer | Readable {
  if (Buffer.isBuffer(body) && body.length <= PROGRESS_PIECE) return body;
  const source: Iterable<Buffer> | AsyncIterable<Buffer> = Buffer.isBuffer(body)
    ? (function* pieces() {
        for (let i = 0; i < body.length; i += PROGRESS_PIECE) yield body.subarray(i, i + PROGRESS_PIECE);
      })()
    : (body as AsyncIterable<Buffer>);
  return NodeReadable.from(
    (async function* counted() {
      for await (const chunk of source) {
        wd.touch();
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

/** The largest CA file read (a bundle of every public root is about 200 KB). */
const MAX_CA_FILE_BYTES = 1 << 20;

export class Transport {
  readonly origin: string;
  private readonly opts: TransportOptions;
  private readonly rejectUnauthorized: boolean;
  /** The CA files' certificates, trusted besides Node's root certificates. */
  private readonly extraCa: string[];
  /** Made on the first exchange (undici is loaded then). */
  private dispatcher: Promise<Dispatcher> | undefined;
  private readonly slots = new Map<string, Slots>();
  /**
   * Per origin, while an exchange that ended in this event-loop turn has not yet given its
   * connection back: undici (pipelining 1) reuses a connection only a full turn after its response
   * ended, so an exchange sent at once (the bootstrap layer right after the manifest; the next
   * chunk read of a reader) opened a new connection: a round trip more, two or three with TLS.
   */
  private readonly settling = new Map<string, Promise<void>>();

  constructor(opts: TransportOptions) {
    this.opts = opts;
    this.origin = new URL(opts.origin).origin;
    // CA files are read here, so that a missing one is an error at once, not at the first read.
    // Regular files of at most 1 MiB: a FIFO named here would stop the whole daemon.
    this.extraCa = opts.caCertFiles.map((f) => readRegularFileSync(f, MAX_CA_FILE_BYTES, `CA file ${f}`).toString('utf8'));
    this.rejectUnauthorized = !opts.skipVerify;
  }

  private getDispatcher(): Promise<Dispatcher> {
    this.dispatcher ??= Promise.all([
      loadUndici(),
      // node:tls only for its root certificates, when CA files add to them: plain http never loads
      // it (undici loads it for https), and evaluating it cost ~13 ms of a cold start.
      this.extraCa.length > 0 ? import('node:tls').then((t) => [...t.rootCertificates, ...this.extraCa]) : undefined,
    ]).then(([{ Agent, ProxyAgent }, ca]) => {
      const { opts } = this;
      const tls = { rejectUnauthorized: this.rejectUnauthorized, ...(ca ? { ca } : {}) };
      const common = { connections: opts.maxConnections, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs };
      return opts.proxyUrl
        ? new ProxyAgent({ uri: opts.proxyUrl, ...common, requestTls: { ...tls, timeout: opts.connectTimeoutMs }, proxyTls: { timeout: opts.connectTimeoutMs } })
        : new Agent({ ...common, connect: { ...tls, timeout: opts.connectTimeoutMs, ...(opts.socketPath ? { socketPath: opts.socketPath } : {}) } });
    });
    return this.dispatcher;
  }

  get timeoutMs(): number {
    return this.opts.timeoutMs;
  }

  private slotsFor(origin: string): Slots {
    let s = this.slots.get(origin);
    if (s === undefined) {
      s = new Slots(this.opts.maxConnections);
      this.slots.set(origin, s);
    }
    return s;
  }

  /** Sends `req`, following redirects; the caller consumes, discards or abandons the returned body. */
  async exchange(req: ExchangeRequest): Promise<Exchange> {
    let url = req.url;
    let method = req.method;
    let body = req.body;
    for (let hop = 0; ; hop++) {
      const sameOrigin = url.origin === (req.trustedOrigin ?? this.origin);
      const headers = { ...req.headers, ...(sameOrigin ? req.registryHeaders : {}) };
      const what = `${method} ${redactUrl(url)}`;
      if (body !== undefined && req.secretBody === true && !sameOrigin) throw new BackendError(`${what}: a redirect to another origin, where the request's secret body is not sent`);
      const dispatcher = await this.getDispatcher();
      const settling = this.settling.get(url.origin);
      if (settling !== undefined) await settling;
      const release = await this.slotsFor(url.origin).acquire(req.signal, what);
      const wd = new Watchdog(this.opts.timeoutMs, what, req.signal);
      const started = Date.now();
      let res: Dispatcher.ResponseData;
      try {
        res = await dispatcher.request({
          ...requestTarget(url),
          method,
          headers,
          body: body ? withProgress(body(), wd) : null,
          signal: wd.signal,
          // undici's header timer ignores upload progress: the watchdog alone times uploads
          headersTimeout: body ? 0 : this.opts.timeoutMs,
          bodyTimeout: this.opts.timeoutMs,
        });
      } catch (e) {
        wd.stop();
        release();
        throw networkError(e, what, this.opts.timeoutMs, req.signal);
      }
      wd.bodyPhase();
      res.body.on('error', noop); // a destroyed body emits an abort error that readers already see
      res.body.once('close', () => {
        wd.stop();
        release();
        this.settle(url.origin);
      });
      this.opts.log.debug({ method, url: redactUrl(url), status: res.statusCode, ms: Date.now() - started }, 'registry http');
      const x: Exchange = { status: res.statusCode, headers: res.headers, url, method, body: res.body, what, watchdog: wd };
      const location = header(x, 'location');
      if (!REDIRECTS.has(res.statusCode) || location === undefined) return x;
      await discard(x);
      if (hop >= MAX_REDIRECTS) throw new BackendError(`${what}: more than ${MAX_REDIRECTS} redirects`);
      try {
        url = new URL(location, url);
      } catch {
        throw new BackendError(`${what}: invalid redirect location`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BackendError(`${what}: redirect to a non-http URL`);
      if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')) {
        if (method !== 'HEAD') method = 'GET';
        body = undefined;
      }
    }
  }

  /** See `settling`: undici's own wait was queued before this one, so it is over when this resolves. */
  private settle(origin: string): void {
    if (this.settling.has(origin)) return;
    this.settling.set(
      origin,
      new Promise((resolve) =>
        setImmediate(() => {
          this.settling.delete(origin);
          resolve();
        }),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.dispatcher !== undefined) await (await this.dispatcher).close();
  }
}

/** Reads and drops up to 64 KiB of an unwanted body so the connection can be reused. */
export async function discard(x: Exchange): Promise<void> {
  try {
    await x.body.dump({ limit: 64 * 1024 });
  } catch {
    // a broken body only costs the connection
  }
}

/** Stops reading a body and closes its connection (used when the rest is not wanted). */
export function abandon(x: Exchange): void {
  if (!x.body.destroyed) x.body.destroy();
}

/** Reads a whole body of at most `limit` bytes; a longer one is a non-retryable error. */
export async function readAll(x: Exchange, limit: number, timeoutMs: number, signal?: AbortSignal): Promise<Buffer> {
  const declared = Number(header(x, 'content-length') ?? NaN);
  if (declared > limit) {
    abandon(x);
    throw new BackendError(`${x.what}: body of ${declared} bytes exceeds the ${limit}-byte limit`);
  }
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of x.body as AsyncIterable<Buffer>) {
      x.watchdog.touch();
      n += chunk.length;
      if (n > limit) {
        abandon(x);
        throw new BackendError(`${x.what}: body exceeds the ${limit}-byte limit`);
      }
      parts.push(chunk);
    }
  } catch (e) {
    throw networkError(e, x.what, timeoutMs, signal);
  }
  const out = Buffer.concat(parts, n);
  if (Number.isSafeInteger(declared) && declared !== n) {
    throw new BackendError(`${x.what}: body truncated: ${n} of ${declared} bytes`, { retryable: true });
  }
  return out;
}

/**
 * The slowest transfer a ranged body may keep up, on average: below it a read fails (retryably)
 * and failover or a retry takes over, however steadily the bytes trickle.
 */
export const MIN_BODY_RATE = 64 << 10;

/** How long a body of `bytes` may take: the timeout, plus its bytes at `MIN_BODY_RATE`. */
export function bodyDeadlineMs(timeoutMs: number, bytes: number): number {
  return timeoutMs + Math.ceil((bytes / MIN_BODY_RATE) * 1000);
}

/**
 * Reads exactly `length` bytes after skipping `skip` bytes of the body. Fewer bytes (a closed or
 * truncated stream) is a retryable error; the body is abandoned once `length` bytes arrived when
 * `rest` is 'abandon', and must end right there when it is 'exact'.
 */
export async function readExact(x: Exchange, skip: number, length: number, rest: 'exact' | 'abandon', timeoutMs: number, opts: BodyOptions = {}): Promise<Buffer> {
  const { signal, allocate, onProgress } = opts;
  x.watchdog.bodyWithin(bodyDeadlineMs(timeoutMs, skip + length));
  const out = allocate?.(length) ?? Buffer.allocUnsafe(length);
  let reported = 0;
  let pos = -skip; // bytes of the wanted window received so far (negative while skipping)
  try {
    for await (const raw of x.body as AsyncIterable<Buffer>) {
      x.watchdog.touch();
      let chunk = raw;
      if (pos < 0) {
        const drop = Math.min(-pos, chunk.length);
        chunk = chunk.subarray(drop);
        pos += drop;
      }
      if (chunk.length === 0) continue;
      const room = length - pos;
      if (chunk.length > room && rest === 'exact') {
        abandon(x);
        throw new BackendError(`${x.what}: body longer than the ${length} bytes requested`, { retryable: true });
      }
      chunk.copy(out, pos, 0, Math.min(room, chunk.length));
      pos += Math.min(room, chunk.length);
      if (onProgress !== undefined && pos > reported) onProgress((reported = pos));
      if (pos === length && rest === 'abandon') {
        abandon(x);
        return out;
      }
    }
  } catch (e) {
    throw networkError(e, x.what, timeoutMs, signal);
  }
  if (pos !== length) {
    throw new BackendError(`${x.what}: body truncated: ${Math.max(0, pos)} of ${length} bytes`, { retryable: true });
  }
  return out;
}

/** The error for an unexpected status, with the registry's error text and retryability. */
export async function statusError(x: Exchange, context = ''): Promise<HttpStatusError> {
  let detail = '';
  if (x.method !== 'HEAD') {
    try {
      detail = describeErrorBody(await readAll(x, 16 * 1024, 1000));
    } catch {
      abandon(x);
    }
  }
  const retryAfterMs = parseRetryAfter(header(x, 'retry-after'));
  const msg = `${x.what}: HTTP ${x.status}${context ? ` (${context})` : ''}${detail ? `: ${detail}` : ''}`;
  return new HttpStatusError(msg, x.status, { retryable: isRetryableStatus(x.status), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) });
}

/**
 * The wanted bytes of an answer to a Range GET of `[offset, offset + length)`: from a 206 whose
 * Content-Range and Content-Length say exactly that range, or from a 200 that ignored the Range
 * (the bytes before it skipped, the rest abandoned: never the whole body in memory). A 416 is an
 * error; any other status is the caller's to judge (undefined, the body untouched).
 */
export async function readRangeAnswer(x: Exchange, offset: number, length: number, timeoutMs: number, opts: BodyOptions = {}): Promise<Buffer | undefined> {
  const last = offset + length - 1;
  if (x.status === 206) {
    checkContentRange(x, offset, last);
    return readExact(x, 0, length, 'exact', timeoutMs, opts);
  }
  if (x.status === 200) {
    const total = Number(header(x, 'content-length') ?? NaN);
    if (Number.isSafeInteger(total) && last >= total) {
      abandon(x);
      throw new BackendError(`${x.what}: range ${offset}+${length} lies outside the blob (${total} bytes)`);
    }
    return readExact(x, offset, length, 'abandon', timeoutMs, opts);
  }
  if (x.status === 416) throw await statusError(x, `range ${offset}+${length} lies outside the blob`);
  return undefined;
}

export function parseContentRange(v: string | undefined): { start: number; end: number; total: number | undefined } | undefined {
  const m = v === undefined ? null : /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(v.trim());
  if (!m) return undefined;
  const [start, end] = [Number(m[1]), Number(m[2])];
  const total = m[3] === '*' ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined;
  return { start, end, total };
}

/** A 206 must carry exactly the requested range; a range clipped at the blob's end is not retried. */
function checkContentRange(x: Exchange, first: number, last: number): void {
  const cr = parseContentRange(header(x, 'content-range'));
  const wanted = `${first}-${last}`;
  if (cr === undefined) {
    abandon(x);
    throw new BackendError(`${x.what}: 206 without a valid Content-Range (wanted bytes ${wanted})`, { retryable: true });
  }
  if (cr.start !== first || cr.end !== last) {
    abandon(x);
    const clipped = cr.start === first && cr.end < last && cr.total !== undefined && cr.end === cr.total - 1;
    const msg = clipped ? `range ${wanted} lies outside the blob (${cr.total} bytes)` : `answered bytes ${cr.start}-${cr.end}, wanted ${wanted}`;
    throw new BackendError(`${x.what}: ${msg}`, { retryable: !clipped });
  }
  const len = header(x, 'content-length');
  if (len !== undefined && Number(len) !== last - first + 1) {
    abandon(x);
    throw new BackendError(`${x.what}: Content-Length ${len} does not match the requested ${last - first + 1} bytes`, { retryable: true });
  }
}
