/**
 * A read-only view of a filesystem (virtiofsd `--readonly`): every modifying operation, and
 * every open for writing or truncation, answers EROFS before reaching the filesystem.
 */
import { Errno, type FileSystem, FsError } from '../fs/types.js';

const O_ACCMODE = 3;
const O_TRUNC = 0o1000;

/**
 * What the view does with each member of `FileSystem`: pass it through, refuse it (EROFS), or
 * check an open's flags. Every member is named, so a new operation does not compile until it is
 * placed here: none reaches the filesystem by being forgotten (TMPFILE and COPY_FILE_RANGE once
 * did, and made a file on the host and wrote into it).
 */
const MEMBERS: { readonly [K in keyof Required<FileSystem>]: 'pass' | 'refuse' | 'open' } = {
  wantedInitFlags: 'pass',
  init: 'pass',
  destroy: 'pass',
  saveState: 'pass',
  restoreState: 'pass',
  lookup: 'pass',
  forget: 'pass',
  getattr: 'pass',
  setattr: 'refuse',
  readlink: 'pass',
  symlink: 'refuse',
  mknod: 'refuse',
  mkdir: 'refuse',
  unlink: 'refuse',
  rmdir: 'refuse',
  rename: 'refuse',
  link: 'refuse',
  open: 'open',
  create: 'refuse',
  copyFileRange: 'refuse',
  tmpfile: 'refuse',
  read: 'pass',
  write: 'refuse',
  flush: 'pass',
  release: 'pass',
  fsync: 'pass',
  opendir: 'pass',
  readdir: 'pass',
  readdirplus: 'pass',
  releasedir: 'pass',
  fsyncdir: 'pass',
  statfs: 'pass',
  setxattr: 'refuse',
  getxattr: 'pass',
  listxattr: 'pass',
  removexattr: 'refuse',
  access: 'pass',
  fallocate: 'refuse',
  lseek: 'pass',
  syncfs: 'pass',
  ioctl: 'pass', // the passthrough share serves none (ENOTTY)
};

export function readOnly(fs: FileSystem): FileSystem {
  return new Proxy(fs, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      const fn = v as (...a: unknown[]) => unknown;
      // Members outside the interface (the filesystem's own helpers) are not requests: as they are.
      const kind = typeof prop === 'string' && Object.hasOwn(MEMBERS, prop) ? MEMBERS[prop as keyof FileSystem] : 'pass';
      if (kind === 'refuse') {
        return async () => {
          throw new FsError(Errno.EROFS);
        };
      }
      if (kind === 'open') {
        return async (...args: unknown[]) => {
          const flags = args[2] as number;
          if ((flags & O_ACCMODE) !== 0 || (flags & O_TRUNC) !== 0) throw new FsError(Errno.EROFS);
          return fn.apply(target, args);
        };
      }
      return fn.bind(target);
    },
  });
}
