/**
 * daemon — the composition root: images served through FUSE transports, their lifecycle and
 * their shared metrics; the nydusd-compatible daemon (mount table, control operations, vhost-user
 * serving, access patterns). May import: everything below it.
 * Implements: ../shared/spec/virtio-fs-interop.md §2 (Kata virtio-fs-nydus: states, mounts,
 * DaemonInfo, metrics).
 */
export { ImageService, type ImageServiceOptions } from './image-service.js';
export {
  type BackendDescriptor,
  type BackendType,
  type BuildInfo,
  type DaemonControl,
  DaemonError,
  type DaemonErrorKind,
  type DaemonInfo,
  type DaemonState,
  type MetricsKind,
  type MountRequest,
} from './control.js';
export { NydusDaemon, type NydusDaemonOptions } from './nydus-daemon.js';
export { type CachePolicy, type PassthroughFactory, type PassthroughOptions } from './mounts.js';
export { FsStats, type AccessPatternItem, type InflightOp } from './fs-stats.js';
export { type RafsFactory, type RafsMount, type RafsMountRequest, localfsConfig, openRafsMount } from './rafs-mount.js';
export { type ListenTarget, VhostService, removeStaleSocket } from './vhost-service.js';
export { buildInfo } from './version.js';
export { readOnly } from './read-only-fs.js';
