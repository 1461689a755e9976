/**
 * Retries with capped exponential backoff and jitter. Only errors that say so are retried
 * (`BackendError.retryable`; an `IntegrityError`, a body corrupted on the way, too); every wait is
 * bounded by `maxDelayMs` and ends early when the caller's signal aborts.
 */
import { BackendError, IntegrityError, type LogLimiter, type Logger, errorMessage } from '../../base/index.js';
import { HttpStatusError, abortedError } from './errors.js';

export interface RetryPolicy {
  /** Attempts after the first (0: fail on the first error). */
  limit: number;
  /** Wait before the first retry, doubled for each further one. */
  baseDelayMs: number;
  /** Upper bound of any single wait, `Retry-After` included. */
  maxDelayMs: number;
}

export function isRetryable(e: unknown): boolean {
  return (e instanceof BackendError && e.retryable) || e instanceof IntegrityError;
}

/**
 * The wait before retry number `attempt + 1`: `base * 2^attempt` capped at `maxDelayMs`, with
 * "equal jitter" (between half and all of it); a server's `Retry-After` raises it, within the cap.
 */
export function backoffDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt, 30));
  const jittered = exp / 2 + (random() * exp) / 2;
  const wanted = retryAfterMs === undefined ? jittered : Math.max(jittered, retryAfterMs);
  return Math.round(Math.min(policy.maxDelayMs, wanted));
}

/** Resolves after `ms`, or rejects with E_ABORTED as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal, what = 'wait'): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortedError(what, signal.reason));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortedError(what, signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `op` until it succeeds, throws a non-retryable error, or has failed `policy.limit + 1`
 * times; the last error is thrown unchanged.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  op: (attempt: number) => Promise<T>,
  ctx: { what: string; log: Logger; signal?: AbortSignal; limiter?: LogLimiter },
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op(attempt);
    } catch (e) {
      if (attempt >= policy.limit || !isRetryable(e) || ctx.signal?.aborted) throw e;
      const retryAfter = e instanceof HttpStatusError ? e.retryAfterMs : undefined;
      const delayMs = backoffDelay(policy, attempt, retryAfter);
      const line = { attempt: attempt + 1, of: policy.limit, delayMs, err: errorMessage(e) };
      // A registry that is down fails every reader's request: with a limiter, one line a minute.
      if (ctx.limiter !== undefined) ctx.limiter.log(ctx.log, 'warn', 'retry', line, `${ctx.what}: retrying`);
      else ctx.log.warn(line, `${ctx.what}: retrying`);
      await sleep(delayMs, ctx.signal, ctx.what);
    }
  }
}
