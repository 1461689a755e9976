/**
 * Errors of the registry client: every failure becomes a `BackendError` (retryable or not) whose
 * message names the method, the URL without credentials or signed query values, and the status.
 */
import { BackendError, DamselflyError, ErrorCode } from '../../base/index.js';

/** Query parameters whose values are safe to show in logs and messages. */
const SAFE_QUERY = new Set(['digest', 'service', 'scope', 'n', 'last', 'mount', 'from']);

/** `url` without user info and with every unknown query value (signatures, `_state`) masked. */
export function redactUrl(url: URL | string): string {
  let u: URL;
  try {
    u = new URL(url.toString());
  } catch {
    return '<invalid url>';
  }
  u.username = '';
  u.password = '';
  for (const key of [...u.searchParams.keys()]) {
    if (!SAFE_QUERY.has(key.toLowerCase())) u.searchParams.set(key, '***');
  }
  return u.toString();
}

/** A registry (or redirect target, or token service) answered with an unexpected HTTP status. */
export class HttpStatusError extends BackendError {
  readonly status: number;
  /** From a `Retry-After` header (429, 503), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, status: number, options: { retryable: boolean; retryAfterMs?: number; cause?: unknown }) {
    super(message, options);
    this.status = status;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Statuses worth another attempt: server errors (but not "not implemented"), 408 and 429. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** Seconds or an HTTP date, as in `Retry-After`; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Network-level failures that another attempt may fix (Node system errors and undici's). */
const RETRYABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

function errorCodeOf(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let depth = 0; depth < 4 && cur instanceof Error; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'UND_ERR' && !code.startsWith('E_')) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The error the caller sees when its own signal aborted the operation. */
export function abortedError(what: string, reason?: unknown): DamselflyError {
  return new DamselflyError(ErrorCode.Aborted, `${what}: aborted`, { cause: reason });
}

/**
 * Turns anything thrown by undici (or a body stream) into our error: our own errors pass, a caller
 * abort becomes E_ABORTED, network failures and timeouts a retryable `BackendError`.
 */
export function networkError(e: unknown, what: string, timeoutMs: number, signal?: AbortSignal): Error {
  if (signal?.aborted) return abortedError(what, signal.reason);
  if (e instanceof DamselflyError) return e;
  const code = errorCodeOf(e);
  const detail = e instanceof Error ? e.message : String(e);
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new BackendError(`${what}: no response headers within ${timeoutMs} ms`, { retryable: true, cause: e });
  }
  if (code === 'UND_ERR_BODY_TIMEOUT') {
    return new BackendError(`${what}: response body stalled for ${timeoutMs} ms`, { retryable: true, cause: e });
  }
  const retryable = code !== undefined && RETRYABLE_CODES.has(code);
  return new BackendError(`${what}: ${code ? `${code}: ` : ''}${detail}`, { retryable, cause: e });
}

/** Longest error description taken from a registry's answer. */
const MAX_DESCRIPTION = 200;

/**
 * The registry's JSON error body (`{"errors":[{"code","message"}]}`), or its text, as one short
 * line: the server's words reach terminals and logs, so control characters (escape sequences,
 * line breaks that would forge log lines) become spaces, and the line stops at 200 characters.
 */
export function describeErrorBody(body: Buffer): string {
  const text = body.toString('utf8').trim();
  if (text === '') return '';
  let line = text;
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      line = parsed.errors.map((x) => [x.code, x.message].filter((v) => typeof v === 'string' && v !== '').join(': ')).join('; ');
    }
  } catch {
    // not JSON: the raw text
  }
  const clean = line.replace(/[\u0000-\u001f\u007f-\u009f\s]+/g, ' ').trim();
  return clean.length > MAX_DESCRIPTION ? `${clean.slice(0, MAX_DESCRIPTION - 1)}…` : clean;
}
