/**
 * A read-only view of a filesystem (virtiofsd `--readonly`): every modifying operation, and
 * every open for writing or truncation, answers EROFS before reaching the filesystem.
 */
import { Errno, type FileSystem, FsError } from '../fs/types.js';

const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const MODIFYING = new Set(['setattr', 'symlink', 'mknod', 'mkdir', 'unlink', 'rmdir', 'rename', 'link', 'create', 'write', 'setxattr', 'removexattr', 'fallocate']);

export function readOnly(fs: FileSystem): FileSystem {
  return new Proxy(fs, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      const fn = v as (...a: unknown[]) => unknown;
      if (typeof prop === 'string' && MODIFYING.has(prop)) {
        return async () => {
          throw new FsError(Errno.EROFS);
        };
      }
      if (prop === 'open') {
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
