/**
 * The `s3` backend (spec §7.3, §8): blob `<id>` is the object `{object_prefix}<id>` of one bucket,
 * read with ranged GetObject over @aws-sdk/client-s3 (AWS SigV4). As in nydus the URL is path
 * style, `{scheme}://{endpoint}/{bucket}/{object_prefix}<id>`, which every S3-compatible server
 * (MinIO, Ceph RGW, moto) answers; an empty endpoint means AWS itself (the SDK's endpoint for the
 * region). Without credentials the requests go unsigned (anonymous, public buckets), as in nydus.
 *
 * Bounds: `connectTimeoutMs` to connect, `timeoutMs` until the answer's headers, then `timeoutMs`
 * plus the body's bytes at 64 KiB/s to read the body (and at most `timeoutMs` of silence on the
 * socket), as the registry transport; every operation makes
 * `retryLimit + 1` attempts at most (`withRetry`, with capped backoff) when one fails transiently,
 * a ranged read's body cut short or stalled included. The SDK's own retries are off: they cover
 * only the request, and both together would multiply the attempts.
 * Checksums are left to the chunk digests (the SDK's CRC checks are off: ranged answers carry none
 * and many S3-compatible servers reject them); uploads carry Content-MD5.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
// Types only: the SDK itself is loaded on first use (it costs a quarter of a second of start-up,
// which every daemon without an S3 backend would otherwise pay).
import type { GetObjectCommandOutput, S3Client, S3ClientConfig } from '@aws-sdk/client-s3';

type Sdk = typeof import('@aws-sdk/client-s3');
import { BackendError, type Logger, UsageError, silentLogger } from '../../base/index.js';
import { type RetryPolicy, bodyDeadlineMs, withRetry } from '../../oci/registry/index.js';
import { abortedError, mapS3Error, redact } from './s3-errors.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface S3BackendConfig {
  /** `host[:port]` or a URL (`http://127.0.0.1:9000`); empty or absent: AWS for `region`. */
  endpoint?: string;
  /** Used when `endpoint` has no scheme (nydus `scheme`); default https. */
  scheme?: 'http' | 'https';
  region: string;
  bucketName: string;
  /** Prepended to the blob id to make the object key (nydus `object_prefix`). */
  objectPrefix?: string;
  /** Both or neither; neither: unsigned (anonymous) requests. */
  accessKeyId?: string;
  accessKeySecret?: string;
  /** `{endpoint}/{bucket}/{key}` (default, as nydus) rather than `{bucket}.{endpoint}/{key}`. */
  forcePathStyle?: boolean;
  /** Accept any TLS certificate (nydus `skip_verify`). */
  skipVerify?: boolean;
  /** Request timeout (nydus `timeout`, seconds there); default 5000. */
  timeoutMs?: number;
  /** Connect timeout (nydus `connect_timeout`); default 5000. */
  connectTimeoutMs?: number;
  /** Retries after the first attempt (nydus `retry_limit`); default 0. */
  retryLimit?: number;
  /** First backoff wait (default 200 ms), doubled per retry; each wait at most `retryMaxDelayMs` (default 5000). */
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** Sockets kept open to the server at most; default 50. */
  maxSockets?: number;
  log?: Logger;
}

/** The nydus config v2 `backend.s3` object (spec §7.3), as parsed from JSON or TOML. */
export interface NydusS3Config {
  scheme?: string;
  endpoint?: string;
  region?: string;
  bucket_name?: string;
  object_prefix?: string;
  access_key_id?: string;
  access_key_secret?: string;
  skip_verify?: boolean;
  timeout?: number;
  connect_timeout?: number;
  retry_limit?: number;
}

/** Maps nydus `backend.s3` settings (timeouts in seconds) to the backend's options. */
export function s3ConfigFromNydus(c: NydusS3Config, log?: Logger): S3BackendConfig {
  const scheme = c.scheme ?? 'https';
  if (scheme !== 'http' && scheme !== 'https') throw new UsageError(`s3: scheme must be http or https, not ${JSON.stringify(scheme)}`);
  return {
    endpoint: c.endpoint ?? '',
    scheme,
    region: c.region ?? '',
    bucketName: c.bucket_name ?? '',
    objectPrefix: c.object_prefix ?? '',
    ...(c.access_key_id ? { accessKeyId: c.access_key_id } : {}),
    ...(c.access_key_secret ? { accessKeySecret: c.access_key_secret } : {}),
    skipVerify: c.skip_verify ?? false,
    timeoutMs: (c.timeout ?? 5) * 1000,
    connectTimeoutMs: (c.connect_timeout ?? 5) * 1000,
    retryLimit: c.retry_limit ?? 0,
    ...(log ? { log } : {}),
  };
}

/** The endpoint URL the SDK is given: `scheme://` added when missing; undefined for AWS. */
export function resolveS3Endpoint(endpoint: string | undefined, scheme: 'http' | 'https' = 'https'): string | undefined {
  const e = (endpoint ?? '').trim();
  if (e === '') return undefined;
  const full = /^[a-z][a-z0-9+.-]*:\/\//i.test(e) ? e : `${scheme}://${e}`;
  let url: URL;
  try {
    url = new URL(full);
  } catch {
    throw new UsageError(`s3: endpoint ${JSON.stringify(e)} is not a host or URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`s3: endpoint ${JSON.stringify(e)} must be http or https`);
  if (url.username || url.password || url.search || url.hash) throw new UsageError('s3: the endpoint must not carry credentials, a query or a fragment');
  return full.replace(/\/+$/, '');
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`s3: ${name} must be a positive number, not ${n}`);
  return n;
}

/** Signs nothing: requests without credentials go out anonymous. */
const noSigner = { sign: async <T>(request: T): Promise<T> => request };

export interface PutResult {
  key: string;
  etag: string | undefined;
}

export class S3Backend implements BlobBackend {
  readonly kind = 's3';
  readonly bucket: string;
  readonly prefix: string;
  /** The endpoint URL in use, or undefined for AWS's own. */
  readonly endpoint: string | undefined;
  private readonly config: S3ClientConfig;
  private conn: Promise<{ sdk: Sdk; client: S3Client }> | undefined;
  private readonly timeoutMs: number;
  private readonly secrets: string[];
  private readonly log: Logger;
  private readonly policy: RetryPolicy;
  private closed = false;

  constructor(cfg: S3BackendConfig) {
    if (!cfg.bucketName) throw new UsageError('s3: bucket_name must not be empty');
    if (!cfg.region) throw new UsageError('s3: region must not be empty');
    const id = cfg.accessKeyId ?? '';
    const secret = cfg.accessKeySecret ?? '';
    if ((id === '') !== (secret === '')) throw new UsageError('s3: give both access_key_id and access_key_secret, or neither');
    const retryLimit = cfg.retryLimit ?? 0;
    if (!Number.isInteger(retryLimit) || retryLimit < 0 || retryLimit > 255) throw new UsageError(`s3: retry_limit must be an integer from 0 to 255, not ${retryLimit}`);
    this.timeoutMs = positive('timeout', cfg.timeoutMs, 5000);
    const connectTimeoutMs = positive('connect_timeout', cfg.connectTimeoutMs, 5000);
    const maxSockets = positive('maxSockets', cfg.maxSockets, 50);
    this.bucket = cfg.bucketName;
    this.prefix = cfg.objectPrefix ?? '';
    this.secrets = [secret, id].filter((s) => s !== '');
    this.log = cfg.log ?? silentLogger;
    this.policy = { limit: retryLimit, baseDelayMs: cfg.retryBaseDelayMs ?? 200, maxDelayMs: cfg.retryMaxDelayMs ?? 5000 };
    this.endpoint = resolveS3Endpoint(cfg.endpoint, cfg.scheme ?? 'https');

    const config: S3ClientConfig = {
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle ?? true,
      maxAttempts: 1, // retries are this backend's (see the header comment)
      // The SDK's CRC checks: off unless an operation requires them (see the header comment).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // The configuration given here is the whole truth: no AWS_ENDPOINT_URL* from the environment.
      ignoreConfiguredEndpointUrls: true,
      followRegionRedirects: false,
      customUserAgent: 'damselfly',
      requestHandler: {
        connectionTimeout: connectTimeoutMs,
        requestTimeout: this.timeoutMs,
        throwOnRequestTimeout: true,
        socketTimeout: this.timeoutMs,
        httpAgent: { keepAlive: true, maxSockets },
        httpsAgent: { keepAlive: true, maxSockets, rejectUnauthorized: !(cfg.skipVerify ?? false) },
      },
    };
    if (this.endpoint !== undefined) config.endpoint = this.endpoint;
    else config.tls = (cfg.scheme ?? 'https') === 'https';
    if (id !== '') {
      config.credentials = { accessKeyId: id, secretAccessKey: secret };
    } else {
      const anonymous = () => async () => ({});
      config.httpAuthSchemes = ['aws.auth#sigv4', 'aws.auth#sigv4a'].map((schemeId) => ({ schemeId, identityProvider: anonymous, signer: noSigner }));
    }
    this.config = config;
  }

  /**
   * The SDK and its client, loaded and made on first use. The SDK is CommonJS: its exports are
   * the namespace's `default` (under Node, which also lifts the names it can find to the
   * namespace, and in the bundle, which does not).
   */
  private connect(): Promise<{ sdk: Sdk; client: S3Client }> {
    this.conn ??= import('@aws-sdk/client-s3').then((ns) => {
      const sdk = (ns as { default?: Sdk }).default ?? ns;
      return { sdk, client: new sdk.S3Client(this.config) };
    });
    return this.conn;
  }

  /** The object key of blob `id`. */
  key(id: string): string {
    if (id === '' || id.includes('\0')) throw new UsageError(`s3: bad blob id ${JSON.stringify(id)}`);
    return this.prefix + id;
  }

  private where(id: string): string {
    return `s3://${this.bucket}/${this.key(id)}`;
  }

  private fail(e: unknown, what: string, signal: AbortSignal | undefined): Error {
    const err = mapS3Error(e, { what, secrets: this.secrets, signal });
    this.log.debug({ bucket: this.bucket, err: err.message, code: err.code, retryable: err instanceof BackendError ? err.retryable : undefined }, 's3 request failed');
    return err;
  }

  private open(what: string, signal: AbortSignal | undefined): void {
    if (this.closed) throw new BackendError(`s3: ${what}: the backend is closed`);
    if (signal?.aborted) throw abortedError(what, signal);
  }

  async size(id: string, opts: ReadOptions = {}): Promise<number> {
    const what = `HEAD ${this.where(id)}`;
    const length = await this.retrying(what, opts.signal, async () => {
      this.open(what, opts.signal);
      try {
        const { sdk, client } = await this.connect();
        return (await client.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.key(id) }), { abortSignal: opts.signal })).ContentLength;
      } catch (e) {
        throw this.fail(e, what, opts.signal);
      }
    });
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0) throw new BackendError(`s3: ${what}: the answer has no valid Content-Length`);
    return length;
  }

  async read(id: string, offset: number, length: number, opts: ReadOptions = {}): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new BackendError(`s3: bad range ${offset}+${length} of ${this.where(id)}`);
    }
    if (length === 0) {
      const size = await this.size(id, opts);
      if (offset > size) throw new BackendError(`s3: range ${offset}+0 lies outside ${this.where(id)} (${size} bytes)`);
      return Buffer.alloc(0);
    }
    const range = `bytes=${offset}-${offset + length - 1}`;
    const what = `GET ${this.where(id)} ${range}`;
    return this.retrying(what, opts.signal, async () => {
      this.open(what, opts.signal);
      let out: GetObjectCommandOutput;
      try {
        const { sdk, client } = await this.connect();
        out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(id), Range: range }), { abortSignal: opts.signal });
      } catch (e) {
        throw this.fail(e, what, opts.signal);
      }
      try {
        checkRange(out, offset, length, what);
        return await this.readBody(out.Body, length, what, opts);
      } catch (e) {
        if (out.Body instanceof Readable) out.Body.destroy();
        throw this.fail(e, what, opts.signal);
      }
    });
  }

  /** Runs `op` until it succeeds, fails for good, or has failed `retry_limit + 1` times. */
  private retrying<T>(what: string, signal: AbortSignal | undefined, op: () => Promise<T>): Promise<T> {
    return withRetry(this.policy, op, { what: `s3: ${what}`, log: this.log, ...(signal ? { signal } : {}) });
  }

  /**
   * Reads the whole body into one buffer of exactly `length` bytes, within the deadline the registry
   * transport gives a body of that size (`timeoutMs` plus its bytes at `MIN_BODY_RATE`): `timeoutMs`
   * alone failed every large read on a link slower than `length / timeoutMs`, each retry alike.
   */
  private async readBody(body: unknown, length: number, what: string, { signal, allocate, onProgress }: ReadOptions): Promise<Buffer> {
    if (!(body instanceof Readable)) throw new BackendError(`s3: ${what}: the answer has no body stream`);
    const out = allocate?.(length) ?? Buffer.allocUnsafe(length);
    let got = 0;
    const deadlineMs = bodyDeadlineMs(this.timeoutMs, length);
    const timer = setTimeout(() => {
      body.destroy(Object.assign(new Error(`the body was not read within ${deadlineMs} ms`), { code: 'ETIMEDOUT' }));
    }, deadlineMs);
    const onAbort = (): void => void body.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (got + chunk.length > length) throw new BackendError(`s3: ${what}: the answer is longer than the ${length} bytes asked for`);
        chunk.copy(out, got);
        got += chunk.length;
        onProgress?.(got);
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    if (got !== length) throw new BackendError(`s3: ${what}: short answer, ${got} of ${length} bytes`, { retryable: true });
    return out;
  }

  /** Uploads one blob (single PutObject with Content-MD5; no multipart). */
  async putBlob(id: string, data: Uint8Array, opts: ReadOptions & { contentType?: string } = {}): Promise<PutResult> {
    const key = this.key(id);
    const what = `PUT ${this.where(id)} (${data.length} bytes)`;
    const md5 = createHash('md5').update(data).digest('base64');
    return this.retrying(what, opts.signal, async () => {
      this.open(what, opts.signal);
      try {
        const { sdk, client } = await this.connect();
        const out = await client.send(
          new sdk.PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: data.length, ContentMD5: md5, ContentType: opts.contentType ?? 'application/octet-stream' }),
          { abortSignal: opts.signal },
        );
        return { key, etag: out.ETag };
      } catch (e) {
        throw this.fail(e, what, opts.signal);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.conn !== undefined) (await this.conn).client.destroy();
  }

  /** For messages: never the credentials. */
  toString(): string {
    return redact(`S3Backend(${this.endpoint ?? 'aws'}, bucket ${this.bucket}, prefix ${JSON.stringify(this.prefix)})`, this.secrets);
  }
}

/** Checks that the answer is the range asked for (a server may ignore Range or clip it). */
function checkRange(out: GetObjectCommandOutput, offset: number, length: number, what: string): void {
  const end = offset + length - 1;
  const cr = out.ContentRange;
  if (cr !== undefined && cr !== '') {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(cr.trim());
    if (m === null) throw new BackendError(`s3: ${what}: unexpected Content-Range ${JSON.stringify(cr)}`);
    const [gotStart, gotEnd] = [Number(m[1]), Number(m[2])];
    const total = m[3] === '*' ? undefined : Number(m[3]);
    if (gotStart === offset && gotEnd === end) return;
    if (gotStart === offset && total !== undefined && total < end + 1) {
      throw new BackendError(`s3: ${what}: range ${offset}+${length} lies outside the object (${total} bytes)`);
    }
    throw new BackendError(`s3: ${what}: the server answered ${cr}`);
  }
  // No Content-Range: the server ignored Range and sent the whole object (a 200).
  if (offset !== 0 || out.ContentLength !== length) {
    throw new BackendError(`s3: ${what}: the server ignored the Range header (HTTP ${out.$metadata.httpStatusCode ?? '?'}, ${out.ContentLength ?? '?'} bytes)`);
  }
}
