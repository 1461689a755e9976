/**
 * fs/passthrough — a host directory served read-write over FUSE with virtiofsd's semantics: the
 * Kata shared directory (`/run/kata-containers/shared/containers`), overlayfs upper and work
 * directories included (spec virtio-fs-interop §1.4, §2.3, §4.4). Nothing outside the shared
 * directory is ever resolved: node ids hold O_PATH fds, names are single components opened with
 * openat2(RESOLVE_BENEATH), symlinks are data.
 * May import: base, native, fs/types.
 */
export { PassthroughFs, type CachePolicy, type PassthroughOptions } from './passthrough-fs.js';
export { IdTranslation } from './id-map.js';
export { XattrMap } from './xattr-map.js';
