/**
 * Marks a promise as observed so that, when its owner fails part-way and never awaits it, its own
 * rejection is not reported as unhandled (which would end the process); the owner's first error is
 * the one that surfaces. Returns the same promise, still rejecting for whoever awaits it.
 */
export function observed<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/**
 * `p`, or a rejection with the signal's reason as soon as `signal` fires (`p` itself runs on; its
 * outcome is then ignored).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) {
    observed(p);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
