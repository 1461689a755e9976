/**
 * Mapping the failures of @aws-sdk/client-s3 (service exceptions with an HTTP status, Node socket
 * and TLS errors, the HTTP handler's timeouts, aborts) to Damselfly errors, once, for the S3
 * backend: a missing object or bucket is a `NotFoundError`; everything else a `BackendError` whose
 * `retryable` says whether trying again may help (network errors, timeouts, 5xx, throttling) or
 * not (denied, bad signature, bad range, certificate). Messages name the bucket and key and carry
 * the service's error code, never credentials; the SDK error itself is not kept as the cause
 * (its response and request objects are too much to log), only its name, code and status.
 */
import { STATUS_CODES } from 'node:http';
import { BackendError, DamselflyError, ErrorCode, NotFoundError } from '../../base/index.js';

/** The fields of an SDK or Node error this mapping looks at. */
interface SdkErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  cause?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: number; attempts?: number; requestId?: string };
}

/** Service error names that are worth another try. */
const RETRYABLE_NAMES = new Set([
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  'ServiceUnavailable',
  'InternalError',
]);

const NOT_FOUND_NAMES = new Set(['NoSuchKey', 'NotFound', 'NoSuchBucket']);

function shape(e: unknown): SdkErrorShape {
  return typeof e === 'object' && e !== null ? (e as SdkErrorShape) : { message: String(e) };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The Node error code of `e` or of one of its causes (a TLS failure wrapped by the SDK). */
function nodeCode(e: unknown, depth = 0): string | undefined {
  const s = shape(e);
  return str(s.code) ?? (s.cause !== undefined && depth < 5 ? nodeCode(s.cause, depth + 1) : undefined);
}

function isTlsCode(code: string): boolean {
  return code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE';
}

export interface S3ErrorContext {
  /** What was asked, e.g. "GET s3://bucket/key bytes=0-99". */
  what: string;
  /** Strings that must never appear in a message (the credentials). */
  secrets: readonly string[];
  /** The caller's signal: its abort wins over whatever error the abort caused. */
  signal?: AbortSignal | undefined;
}

export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  // (Strings shorter than 4 are no real credential, and would garble every message.)
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join('***');
  return out;
}

/** The error for an aborted operation (code E_ABORTED); the signal's reason is the cause. */
export function abortedError(what: string, signal: AbortSignal | undefined): DamselflyError {
  return new DamselflyError(ErrorCode.Aborted, `s3: ${what}: aborted`, { cause: signal?.reason });
}

/** Maps anything the SDK (or the body stream) threw to a Damselfly error. */
export function mapS3Error(e: unknown, ctx: S3ErrorContext): DamselflyError {
  if (ctx.signal?.aborted) return abortedError(ctx.what, ctx.signal);
  if (e instanceof DamselflyError) return e;
  const s = shape(e);
  const name = str(s.Code) ?? str(s.name) ?? 'Error';
  const status = s.$metadata?.httpStatusCode;
  const code = nodeCode(e);
  const attempts = s.$metadata?.attempts;
  // HEAD answers have no body: the SDK names them by status ("NotFound", "Forbidden") and says "UnknownError".
  let detail = str(s.message);
  if (detail === undefined || detail === 'UnknownError') detail = (status !== undefined ? STATUS_CODES[status] : undefined) ?? name;
  const tags = [status !== undefined ? `HTTP ${status}` : undefined, !['Error', 'Unknown', 'UnknownError'].includes(name) ? name : undefined, code, attempts !== undefined && attempts > 1 ? `${attempts} attempts` : undefined]
    .filter((t): t is string => t !== undefined)
    .join(', ');
  const message = redact(`s3: ${ctx.what}: ${detail}${tags ? ` (${tags})` : ''}`, ctx.secrets);
  const cause = new Error(redact(`${name}${code ? ` ${code}` : ''}: ${str(s.message) ?? ''}`, ctx.secrets));

  if (status === 404 || NOT_FOUND_NAMES.has(name)) return new NotFoundError(message, { cause });
  if (name === 'AbortError') return new BackendError(message, { cause, retryable: true }); // the handler's own abort (a timeout)
  let retryable: boolean;
  if (status !== undefined && status > 0) {
    retryable = status >= 500 || status === 429 || status === 408 || RETRYABLE_NAMES.has(name);
  } else if (code !== undefined && isTlsCode(code)) {
    retryable = false;
  } else {
    // No HTTP answer: a transport failure (refused, reset, timed out, DNS), worth another try,
    // unless the request itself was invalid.
    retryable = !(code?.startsWith('ERR_INVALID') ?? false);
  }
  return new BackendError(message, { cause, retryable });
}
