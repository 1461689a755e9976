/**
 * Test helper (a child process of test/fuzz/passthrough-concurrency.test.ts, not a test file):
 * runs CALLS seeded random file system calls on a few names under ROOT, as fast as it can, while
 * other processes do the same there, and prints one JSON line: how many calls ran, how each
 * ended, and the calls that failed in a way no race on a local filesystem explains.
 *
 *   node --import tsx test/helpers/churn-worker.ts ROOT SEED CALLS mount|host
 */
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/index.js';
import { renameat2 } from '../integration/passthrough-posix-suite.js';
import { type Rng, caseRng } from './rng.js';

const NAMES = ['a', 'b', 'c', 'd', 'd/x', 'd/y', 'd/e', 'd/e/z', 'e', 'e/w', 'l'];
const DIRS = ['.', 'd', 'd/e', 'e'];
const C = fs.constants;

/**
 * What racing calls may end with: the name is gone or there (ENOENT, EEXIST), a directory came or
 * went (ENOTEMPTY, ENOTDIR, EISDIR), a rename into its own subtree or an exchange with a missing
 * name (EINVAL), a symlink loop (ELOOP), an absent xattr (ENODATA); EPERM for a hard link to a
 * directory and for a user.* xattr on a symlink. Through a FUSE mount also ESTALE: the kernel's
 * own answer (d_splice_alias) when a lookup finds a directory renamed behind its back (here by the
 * host's process) while it cannot take the locks to move its dentry, as NFS clients get it; and
 * the daemon's, for a name the host changed under a creating call, when it changed again under the
 * kernel's one retry.
 */
const RACES = new Set(['ENOENT', 'EEXIST', 'ENOTEMPTY', 'ENOTDIR', 'EISDIR', 'EINVAL', 'ELOOP', 'ENODATA']);

interface Call {
  what: string;
  run: () => void;
}

function bytes(rng: Rng): Buffer {
  const b = Buffer.alloc(rng.pick([0, 1, 100, 4096, 5000, 70_000, 300_000]));
  b.fill(rng.int(256));
  return b;
}

function call(root: string, rng: Rng): Call {
  const n1 = rng.pick(NAMES);
  const n2 = rng.pick(NAMES);
  const p1 = join(root, n1);
  const p2 = join(root, n2);
  const data = bytes(rng);
  const size = rng.pick([0, 1, 4096, 100_000]);
  const calls: Array<() => Call> = [
    () => ({ what: `write ${n1}`, run: () => fs.writeFileSync(p1, data) }),
    () => ({ what: `append ${n1}`, run: () => fs.appendFileSync(p1, data) }),
    () => ({ what: `read ${n1}`, run: () => void fs.readFileSync(p1) }),
    () => ({ what: `truncate ${n1} ${size}`, run: () => fs.truncateSync(p1, size) }),
    () => ({ what: `unlink ${n1}`, run: () => fs.unlinkSync(p1) }),
    () => ({ what: `mkdir ${n1}`, run: () => fs.mkdirSync(p1) }),
    () => ({ what: `rmdir ${n1}`, run: () => fs.rmdirSync(p1) }),
    () => ({ what: `rm -r ${n1}`, run: () => fs.rmSync(p1, { recursive: true }) }),
    () => ({ what: `rename ${n1} ${n2}`, run: () => fs.renameSync(p1, p2) }),
    () => ({ what: `rename-noreplace ${n1} ${n2}`, run: () => renameat2(p1, p2, 1) }),
    () => ({ what: `rename-exchange ${n1} ${n2}`, run: () => renameat2(p1, p2, 2) }),
    () => ({ what: `link ${n1} ${n2}`, run: () => fs.linkSync(p1, p2) }),
    () => ({ what: `symlink ${n2} ${n1}`, run: () => fs.symlinkSync(n2, p1) }),
    () => ({ what: `readlink ${n1}`, run: () => void fs.readlinkSync(p1) }),
    () => ({ what: `chmod ${n1}`, run: () => fs.chmodSync(p1, rng.pick([0o600, 0o644, 0o755, 0o4755])) }),
    () => ({ what: `utimes ${n1}`, run: () => fs.utimesSync(p1, 1_000_000 + rng.int(1000), 2_000_000 + rng.int(1000)) }),
    () => ({ what: `stat ${n1}`, run: () => void fs.statSync(p1) }),
    () => ({ what: `lstat ${n1}`, run: () => void fs.lstatSync(p1) }),
    () => ({ what: `readdir ${n1}`, run: () => void fs.readdirSync(join(root, rng.pick(DIRS)), { withFileTypes: true }) }),
    () => ({ what: `setxattr ${n1}`, run: () => native.lsetxattr(p1, 'user.k', Buffer.alloc(1 + rng.int(200), 7)) }),
    () => ({ what: `getxattr ${n1}`, run: () => void native.lgetxattr(p1, 'user.k') }),
    () => ({ what: `listxattr ${n1}`, run: () => void native.llistxattr(p1) }),
    () => {
      // A handle kept across another call (which may rename, unlink or replace its name).
      const other = call(root, rng);
      return {
        what: `open ${n1}, ${other.what}, pwrite, fstat, fsync, close`,
        run: () => {
          const fd = fs.openSync(p1, C.O_RDWR | C.O_CREAT | C.O_NOFOLLOW, 0o644);
          try {
            try {
              other.run();
            } catch (e) {
              check(other.what, e);
            }
            fs.writeSync(fd, data, 0, data.length, size);
            fs.fstatSync(fd);
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        },
      };
    },
  ];
  return rng.pick(calls)();
}

const outcomes: Record<string, number> = {};
const unexpected: string[] = [];

/** The errno's name (libuv names some, ESTALE among them, "Unknown system error -116"). */
function errnoName(e: unknown): string {
  const { code, errno } = e as { code?: string; errno?: number };
  const name = errno === undefined ? undefined : Object.entries(constants.errno).find(([, n]) => n === -errno)?.[0];
  return name ?? code ?? String(e);
}

/** Counts how a call failed; records it when no race explains it. */
function check(what: string, e: unknown): void {
  const code = errnoName(e);
  outcomes[code] = (outcomes[code] ?? 0) + 1;
  const race = RACES.has(code) || (code === 'EPERM' && /^(link|setxattr) /.test(what)) || (code === 'ESTALE' && side === 'mount');
  if (!race && unexpected.length < 20) unexpected.push(`${what}: ${code}`);
}

const [root, seed, count, side] = process.argv.slice(2);
if (root === undefined || seed === undefined || count === undefined || (side !== 'mount' && side !== 'host')) throw new Error('usage: churn-worker.ts ROOT SEED CALLS mount|host');
const rng = caseRng('churn', Number(seed));
for (let i = 0; i < Number(count); i++) {
  const c = call(root, rng);
  try {
    c.run();
    outcomes.ok = (outcomes.ok ?? 0) + 1;
  } catch (e) {
    check(c.what, e);
  }
}
process.stdout.write(`${JSON.stringify({ calls: Number(count), outcomes, unexpected })}\n`);
