/**
 * Marks a promise as observed so that, when its owner fails part-way and never awaits it, its own
 * rejection is not reported as unhandled (which would end the process); the owner's first error is
 * the one that surfaces. Returns the same promise, still rejecting for whoever awaits it.
 */
export function observed<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}
