/** flock(2) taken without ever blocking the event loop. */
import { DamselflyError, ErrorCode, pollUntil } from '../base/index.js';
import { native } from './addon.js';

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;

/**
 * Takes `lock` (LOCK_SH or LOCK_EX) on `fd`: at once when free, else retried every 1–50 ms (a
 * blocking flock would stall every request of the process meanwhile). After `limitMs`, an
 * E_ABORTED error: "`what` for `limitMs` ms".
 */
export async function flockWait(fd: number, lock: typeof LOCK_SH | typeof LOCK_EX, what: string, limitMs: number): Promise<void> {
  await pollUntil(
    () => (native.flock(fd, lock | LOCK_NB) ? true : undefined),
    Date.now() + limitMs,
    () => new DamselflyError(ErrorCode.Aborted, `${what} for ${limitMs} ms`),
  );
}
