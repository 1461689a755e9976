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

/**
 * Waits for every promise to settle, then rejects with the first rejection (in array order), if
 * any. For jobs that write into a caller's buffers: `Promise.all` would reject at the first failure
 * while the others still write, into memory the caller has handed on meanwhile (a FUSE reply
 * buffer reused for the next request, a guest's descriptors already returned to it).
 */
export async function allSettledOrThrow(jobs: ReadonlyArray<Promise<unknown>>): Promise<void> {
  const results = await Promise.allSettled(jobs);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/**
 * Polls without blocking the event loop: runs `attempt` at once, then after waits of 1, 2, 4 … up
 * to 50 ms, until it returns something other than `undefined`, which it resolves with. Once
 * `deadline` (a `Date.now()` time) has passed with `attempt` still answering `undefined`, rejects
 * with `timedOut()`. What `attempt` throws rejects at once. For a resource held by another
 * process, which says nothing when it lets go (a lock, a listen queue).
 */
export async function pollUntil<T>(attempt: () => T | undefined, deadline: number, timedOut: () => Error): Promise<T> {
  for (let waitMs = 1; ; waitMs = Math.min(waitMs * 2, 50)) {
    const r = attempt();
    if (r !== undefined) return r;
    if (Date.now() >= deadline) throw timedOut();
    await new Promise((resolve) => setTimeout(resolve, waitMs));
  }
}
