/**
 * The open-file limit of a daemon that shares a directory. The passthrough filesystem holds one
 * O_PATH fd for every inode the guest has looked up and not forgotten (as virtiofsd does): `ls -l`
 * of a directory of 20,000 files holds 20,000 fds. virtiofsd and nydusd therefore raise
 * RLIMIT_NOFILE at start (`--rlimit-nofile`, default 1,000,000, at most the kernel's
 * `fs.nr_open`; 0 leaves it unchanged); Node raises only the soft limit, to the hard one.
 */
import { readFileSync } from 'node:fs';
import { type Logger, errorMessage } from '../base/index.js';
import { native } from '../native/index.js';

/** virtiofsd's and nydusd's default `--rlimit-nofile`. */
export const DEFAULT_NOFILE = 1_000_000;

function nrOpen(): number {
  try {
    const n = Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim());
    return Number.isSafeInteger(n) && n > 0 ? n : DEFAULT_NOFILE;
  } catch {
    return DEFAULT_NOFILE;
  }
}

/**
 * Raises RLIMIT_NOFILE to `wanted` (capped at `fs.nr_open`; never lowered; 0 leaves it). Without
 * the privilege to raise the hard limit, it says so and keeps what it has. Returns the soft limit.
 */
export function raiseNofileLimit(wanted: number, log: Logger): number {
  const [soft, hard] = native.getNofileLimit();
  const unlimited = (n: number): boolean => n < 0;
  if (wanted === 0 || unlimited(soft)) return soft;
  const target = Math.min(wanted, nrOpen());
  if (soft >= target) return soft;
  try {
    native.setNofileLimit(target, unlimited(hard) ? target : Math.max(hard, target));
    log.debug({ from: soft, to: target }, 'open-file limit raised');
    return target;
  } catch (e) {
    log.warn({ wanted: target, soft, hard, err: errorMessage(e) }, 'could not raise the open-file limit (RLIMIT_NOFILE); a guest holding more inodes than that gets EMFILE');
    return soft;
  }
}
