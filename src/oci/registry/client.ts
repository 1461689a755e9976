/**
 * `RegistryClient`: the distribution API (manifests, blob HEAD, ranged and whole-blob GETs, blob
 * uploads) over `Transport`, with authentication (`RegistryAuth`: one renewal per 401) and retries
 * (`withRetry`) of whole operations. Errors: `BackendError` (`HttpStatusError` for a status) with
 * `retryable`, `NotFoundError` for 404, `IntegrityError` when bytes do not match their digest,
 * `UsageError` for bad names, E_ABORTED when the caller's signal fires.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { BackendError, IntegrityError, LogLimiter, type Logger, NotFoundError, UsageError } from '../../base/index.js';
import { type Credentials, RegistryAuth, type TokenAnswer, type TokenRequest, parseTokenAnswer, scopeFor } from './auth.js';
import { HttpStatusError, networkError, redactUrl } from './errors.js';
import { type BodyOptions, type Exchange, type ExchangeRequest, Transport, abandon, discard, header, parseContentRange, readAll, readRangeAnswer, statusError } from './http.js';
import { checkDigest, checkReference, checkRepository, digestOf, isDigest, parseDigest, verifyDigest } from './names.js';
import { type RetryPolicy, backoffDelay, isRetryable, sleep, withRetry } from './retry.js';

export interface RegistryClientOptions {
  /** `host[:port]` of the registry. */
  host: string;
  scheme: 'http' | 'https';
  /** Basic credentials, sent to the registry (Basic challenge) or to the token realm (Bearer); an identity token among them is exchanged at the realm. */
  credentials?: Credentials;
  /** A Bearer token sent as is until the registry refuses it (nydus `registry_token`). */
  registryToken?: string;
  /** https only: accept any certificate. */
  skipVerify?: boolean;
  /** PEM files trusted in addition to Node's built-in roots. */
  caCertFiles?: string[];
  /** Wait for response headers, and between body chunks, per attempt (default 5000). */
  timeoutMs?: number;
  /** TCP (and TLS) connect timeout (default 5000). */
  connectTimeoutMs?: number;
  /** Retries after the first attempt of each operation (default 0). */
  retryLimit?: number;
  /** First backoff wait (default 200 ms), doubled per retry, with jitter. */
  retryBaseDelayMs?: number;
  /** Cap of each backoff wait, `Retry-After` included (default 5000 ms). */
  retryMaxDelayMs?: number;
  /** Connections per origin (registry, redirect targets, token realm) (default 16). */
  maxConnections?: number;
  /** Extra headers sent to the registry only (never to redirect targets). */
  headers?: Record<string, string>;
  /** HTTP proxy (`http://[user:pass@]host:port`), used through CONNECT tunnels. */
  proxyUrl?: string;
  log: Logger;
}

export interface Manifest {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
] as const;

const MAX_MANIFEST_BYTES = 32 << 20;
const MAX_TOKEN_BYTES = 1 << 20;
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const GENERIC_TYPES = new Set(['', 'application/json', 'text/plain', 'application/octet-stream']);

interface SendRequest extends Omit<ExchangeRequest, 'url' | 'registryHeaders'> {
  url: URL;
  repo: string;
  push?: boolean;
}

export class RegistryClient {
  readonly base: URL;
  private readonly transport: Transport;
  private readonly auth: RegistryAuth;
  private readonly policy: RetryPolicy;
  private readonly log: Logger;
  private readonly extraHeaders: Record<string, string>;
  /** Retries of every request share it: a registry that is down gives one line a minute. */
  private readonly logLimiter = new LogLimiter();

  constructor(opts: RegistryClientOptions) {
    if (opts.scheme !== 'http' && opts.scheme !== 'https') throw new UsageError(`registry scheme must be http or https, not ${String(opts.scheme)}`);
    if (!HOST.test(opts.host)) throw new UsageError(`invalid registry host ${JSON.stringify(opts.host)} (want host[:port])`);
    this.base = new URL(`${opts.scheme}://${opts.host}/`);
    const positive = (v: number | undefined, dflt: number, name: string): number => {
      const n = v ?? dflt;
      if (!Number.isFinite(n) || n < 0) throw new UsageError(`registry option ${name} must be a non-negative number`);
      return n;
    };
    this.log = opts.log.child({ component: 'registry', registry: this.base.host });
    this.policy = {
      limit: Math.floor(positive(opts.retryLimit, 0, 'retryLimit')),
      baseDelayMs: positive(opts.retryBaseDelayMs, 200, 'retryBaseDelayMs'),
      maxDelayMs: positive(opts.retryMaxDelayMs, 5000, 'retryMaxDelayMs'),
    };
    this.extraHeaders = { ...opts.headers };
    this.transport = new Transport({
      origin: this.base.origin,
      timeoutMs: positive(opts.timeoutMs, 5000, 'timeoutMs') || 5000,
      connectTimeoutMs: positive(opts.connectTimeoutMs, 5000, 'connectTimeoutMs') || 5000,
      maxConnections: Math.max(1, Math.floor(positive(opts.maxConnections, 16, 'maxConnections'))),
      skipVerify: opts.skipVerify ?? false,
      caCertFiles: opts.caCertFiles ?? [],
      ...(opts.proxyUrl ? { proxyUrl: opts.proxyUrl } : {}),
      log: this.log,
    });
    this.auth = new RegistryAuth({
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.registryToken ? { registryToken: opts.registryToken } : {}),
      fetchToken: (req) => this.fetchToken(req),
    });
  }

  /** Tokens fetched from a token service so far. */
  get tokenFetches(): number {
    return this.auth.tokenFetches;
  }

  private url(repo: string, tail: string): URL {
    return new URL(`/v2/${checkRepository(repo)}/${tail}`, this.base);
  }

  /** One authenticated exchange: on a 401 from the registry, learn the challenge and retry once. */
  private async send(req: SendRequest): Promise<Exchange> {
    const scope = scopeFor(req.repo, req.push ?? false);
    const once = async (): Promise<{ x: Exchange; sent: string | undefined }> => {
      const sent = await this.auth.header(scope, req.signal);
      const registryHeaders = { ...this.extraHeaders, ...(sent ? { authorization: sent } : {}) };
      return { x: await this.transport.exchange({ ...req, registryHeaders }), sent };
    };
    let { x, sent } = await once();
    // a 401 to an anonymous request teaches the scheme; one to an authorized one renews it, once
    for (let renewals = 0, round = 0; x.status === 401 && x.url.origin === this.transport.origin; round++) {
      const verdict = this.auth.onUnauthorized(x.headers['www-authenticate'], sent);
      const again = verdict.retry && round < 2 && (sent === undefined || renewals++ === 0);
      if (!again) throw await statusError(x, verdict.retry ? 'the registry refused the renewed authorization' : verdict.reason);
      await discard(x);
      ({ x, sent } = await once());
    }
    return x;
  }

  private async fetchToken(req: TokenRequest): Promise<TokenAnswer> {
    const x = req.refreshToken !== undefined ? await this.refreshTokenExchange(req, req.refreshToken) : await this.tokenExchange(req);
    if (x.status !== 200) throw await statusError(x, x.status === 401 || (req.refreshToken !== undefined && x.status === 400) ? 'token service refused the credentials' : 'token service');
    const answer = parseTokenAnswer(await readAll(x, MAX_TOKEN_BYTES, this.transport.timeoutMs, req.signal));
    if (answer === undefined) throw new BackendError(`${x.what}: token service answer has no token`);
    this.log.debug({ realm: redactUrl(req.realm), scopes: req.scopes, expiresInSec: answer.expiresInSec }, 'registry token');
    return answer;
  }

  /** The token GET of the token authentication specification, with Basic credentials if any. */
  private tokenExchange(req: TokenRequest): Promise<Exchange> {
    const url = new URL(req.realm);
    if (req.service !== undefined) url.searchParams.set('service', req.service);
    for (const s of req.scopes) url.searchParams.append('scope', s);
    return this.transport.exchange({
      method: 'GET',
      url,
      registryHeaders: req.authorization ? { authorization: req.authorization } : {},
      trustedOrigin: url.origin,
      ...(req.signal ? { signal: req.signal } : {}),
    });
  }

  /**
   * The OAuth2 refresh-token grant of the specification's `oauth` part, as Docker sends it for a
   * saved identity token: a form POSTed to the realm. The token travels in the body, to the
   * realm's origin only: a redirect elsewhere that keeps the body (307, 308) is an error.
   */
  private refreshTokenExchange(req: TokenRequest, refreshToken: string): Promise<Exchange> {
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: 'damselfly' });
    if (req.service !== undefined) form.set('service', req.service);
    if (req.scopes.length > 0) form.set('scope', req.scopes.join(' '));
    const body = Buffer.from(form.toString(), 'utf8');
    return this.transport.exchange({
      method: 'POST',
      url: new URL(req.realm),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      trustedOrigin: req.realm.origin,
      body: () => body,
      secretBody: true,
      ...(req.signal ? { signal: req.signal } : {}),
    });
  }

  private retry<T>(what: string, op: (attempt: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withRetry(this.policy, op, { what, log: this.log, limiter: this.logLimiter, ...(signal ? { signal } : {}) });
  }

  private async notFoundOr(x: Exchange, context?: string): Promise<Error> {
    const e = await statusError(x, context);
    return x.status === 404 ? new NotFoundError(e.message) : e;
  }

  /** GETs a manifest; a digest reference is verified against the bytes (sha256 of them otherwise). */
  async getManifest(repo: string, reference: string, accept: string[] = [...MANIFEST_TYPES]): Promise<Manifest> {
    checkReference(reference);
    const url = this.url(repo, `manifests/${reference}`);
    return this.retry(`GET manifest ${repo}:${reference}`, async () => {
      const x = await this.send({ method: 'GET', url, repo, headers: { accept: accept.join(', ') } });
      if (x.status !== 200) throw await this.notFoundOr(x);
      const bytes = await readAll(x, MAX_MANIFEST_BYTES, this.transport.timeoutMs);
      const declared = header(x, 'docker-content-digest');
      let digest: string;
      if (isDigest(reference)) {
        verifyDigest(bytes, reference, x.what);
        digest = reference;
      } else {
        const d = declared !== undefined ? parseDigest(declared) : undefined;
        digest = digestOf(bytes, d?.algorithm ?? 'sha256');
        if (d !== undefined && digest !== declared) throw new IntegrityError(`${x.what}: manifest digest ${digest} does not match Docker-Content-Digest ${declared}`);
      }
      return { mediaType: manifestMediaType(header(x, 'content-type'), bytes), digest, bytes };
    });
  }

  /** PUTs a manifest under a tag or its digest; returns its sha256 digest. */
  async putManifest(repo: string, reference: string, mediaType: string, bytes: Buffer): Promise<string> {
    checkReference(reference);
    if (isDigest(reference)) verifyDigest(bytes, reference, `manifest for ${repo}@${reference}`);
    const digest = isDigest(reference) ? reference : digestOf(bytes);
    const url = this.url(repo, `manifests/${reference}`);
    return this.retry(`PUT manifest ${repo}:${reference}`, async () => {
      const x = await this.send({ method: 'PUT', url, repo, push: true, headers: { 'content-type': mediaType }, body: () => bytes });
      if (x.status !== 201 && x.status !== 200) throw await statusError(x);
      await discard(x);
      const declared = header(x, 'docker-content-digest');
      if (declared !== undefined && declared !== digest && parseDigest(declared)?.algorithm === parseDigest(digest)?.algorithm) {
        throw new IntegrityError(`${x.what}: registry stored digest ${declared}, expected ${digest}`);
      }
      return digest;
    });
  }

  /** HEADs a blob: its size, or undefined when the registry does not have it. */
  async statBlob(repo: string, digest: string, signal?: AbortSignal): Promise<number | undefined> {
    const url = this.url(repo, `blobs/${checkDigest(digest)}`);
    return this.retry(
      `HEAD blob ${repo}@${digest}`,
      async () => {
        const x = await this.send({ method: 'HEAD', url, repo, ...(signal ? { signal } : {}) });
        await discard(x);
        if (x.status === 404) return undefined;
        if (x.status !== 200) throw await statusError(x);
        const size = Number(header(x, 'content-length'));
        if (!Number.isSafeInteger(size) || size < 0) throw new BackendError(`${x.what}: no valid Content-Length`, { retryable: true });
        return size;
      },
      signal,
    );
  }

  /**
   * Reads exactly `length` bytes at `offset` of a blob with a Range GET (into a buffer from
   * `allocate` when given, reporting the bytes in it to `onProgress` as they arrive).
   */
  async readBlob(repo: string, digest: string, offset: number, length: number, opts: BodyOptions = {}): Promise<Buffer> {
    const { signal } = opts;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new UsageError(`invalid blob range ${offset}+${length}`);
    }
    const url = this.url(repo, `blobs/${checkDigest(digest)}`);
    if (length === 0) return Buffer.alloc(0);
    const last = offset + length - 1;
    const timeoutMs = this.transport.timeoutMs;
    return this.retry(
      `GET blob ${repo}@${digest} range ${offset}+${length}`,
      async () => {
        const x = await this.send({ method: 'GET', url, repo, headers: { range: `bytes=${offset}-${last}` }, ...(signal ? { signal } : {}) });
        const data = await readRangeAnswer(x, offset, length, timeoutMs, opts);
        if (data === undefined) throw await this.notFoundOr(x);
        return data;
      },
      signal,
    );
  }

  /**
   * Streams a whole blob. A broken transfer resumes with a Range GET from the byte reached (within
   * `retryLimit`); a sha256/sha512 digest is verified at the end (IntegrityError after the last chunk).
   */
  async *blobStream(repo: string, digest: string, signal?: AbortSignal): AsyncIterable<Buffer> {
    const url = this.url(repo, `blobs/${checkDigest(digest)}`);
    const algorithm = parseDigest(digest)?.algorithm ?? 'sha256';
    const hash = createHash(algorithm);
    let received = 0;
    for (let attempt = 0; ; attempt++) {
      let x: Exchange | undefined;
      try {
        const headers: Record<string, string> = received > 0 ? { range: `bytes=${received}-` } : {};
        x = await this.send({ method: 'GET', url, repo, headers, ...(signal ? { signal } : {}) });
        let skip = 0;
        let total = Number(header(x, 'content-length') ?? NaN);
        if (x.status === 206 && received > 0) {
          const cr = parseContentRange(header(x, 'content-range'));
          if (cr === undefined || cr.start !== received) throw new BackendError(`${x.what}: resumed at the wrong offset`, { retryable: true });
          total = received + total;
        } else if (x.status === 200) {
          skip = received;
        } else {
          throw await this.notFoundOr(x);
        }
        yield* this.streamBody(x, skip, hash, (n) => (received += n), signal);
        if (Number.isSafeInteger(total) && received !== total) throw new BackendError(`${x.what}: body truncated: ${received} of ${total} bytes`, { retryable: true });
        break;
      } catch (e) {
        if (x) abandon(x);
        if (attempt >= this.policy.limit || !isRetryable(e) || signal?.aborted) throw e;
        const delayMs = backoffDelay(this.policy, attempt, e instanceof HttpStatusError ? e.retryAfterMs : undefined);
        this.log.warn({ attempt: attempt + 1, of: this.policy.limit, delayMs, received, err: (e as Error).message }, `GET blob ${repo}@${digest}: resuming`);
        await sleep(delayMs, signal, `GET blob ${repo}@${digest}`);
      }
    }
    const actual = `${algorithm}:${hash.digest('hex')}`;
    if (parseDigest(digest) !== undefined && actual !== digest) throw new IntegrityError(`blob ${repo}@${digest}: content digest is ${actual}`);
  }

  private async *streamBody(x: Exchange, skip: number, hash: ReturnType<typeof createHash>, count: (n: number) => void, signal?: AbortSignal): AsyncIterable<Buffer> {
    let toSkip = skip;
    try {
      for await (const raw of x.body as AsyncIterable<Buffer>) {
        x.watchdog.touch();
        const chunk = toSkip > 0 ? raw.subarray(Math.min(toSkip, raw.length)) : raw;
        toSkip -= raw.length - chunk.length;
        if (chunk.length === 0) continue;
        hash.update(chunk);
        count(chunk.length);
        x.watchdog.pause(); // the consumer's time is not the server's
        yield chunk;
        x.watchdog.resume();
      }
    } catch (e) {
      throw networkError(e, x.what, this.transport.timeoutMs, signal);
    }
  }

  /** Uploads a blob unless the registry has it: POST an upload, then one monolithic PUT. */
  async pushBlob(repo: string, digest: string, data: Buffer | { path: string; size: number }): Promise<void> {
    checkDigest(digest);
    const size = Buffer.isBuffer(data) ? data.length : data.size;
    if (!Number.isSafeInteger(size) || size < 0) throw new UsageError(`invalid blob size ${size}`);
    if ((await this.statBlob(repo, digest)) !== undefined) {
      this.log.debug({ repo, digest }, 'blob exists, not pushed');
      return;
    }
    const body = Buffer.isBuffer(data) ? () => data : () => createReadStream(data.path, { start: 0, end: Math.max(0, size - 1) });
    await this.retry(`push blob ${repo}@${digest}`, async () => {
      const post = await this.send({ method: 'POST', url: this.url(repo, 'blobs/uploads/'), repo, push: true });
      const location = header(post, 'location');
      if (post.status !== 202 || location === undefined) throw await statusError(post, post.status === 202 ? 'no upload Location' : 'starting the upload');
      await discard(post);
      // A relative Location is relative to the request that answered it (as Go's Response.Location,
      // which Docker and containerd use), not to the registry's root.
      const target = new URL(location, post.url);
      const put = new URL(`${target.href}${target.search ? '&' : '?'}digest=${encodeURIComponent(digest)}`);
      const x = await this.send({
        method: 'PUT',
        url: put,
        repo,
        push: true,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body: size === 0 ? () => Buffer.alloc(0) : body,
      });
      if (x.status !== 201) throw await statusError(x, 'completing the upload');
      await discard(x);
      const stored = header(x, 'docker-content-digest');
      if (stored !== undefined && stored !== digest) throw new IntegrityError(`${x.what}: registry stored ${stored}, expected ${digest}`);
    });
  }

  async close(): Promise<void> {
    this.auth.close();
    await this.transport.close();
  }
}

/** The manifest's media type: Content-Type unless generic, else the JSON `mediaType` field. */
function manifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const ct = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (!GENERIC_TYPES.has(ct)) return ct;
  try {
    const m = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    if (typeof m === 'string' && m !== '') return m;
  } catch {
    // not JSON
  }
  return ct || 'application/octet-stream';
}
