/**
 * The mounts of a daemon: what each one is (RAFS image or passthrough directory), its counters,
 * and how to take it down. Passthrough filesystems come from a factory given to the daemon, so
 * the daemon codes against the `FileSystem` interface only.
 */
import type { Logger, Metrics } from '../base/index.js';
import type { RafsImage } from '../format/image.js';
import type { FileSystem } from '../fs/types.js';
import { cacheDataFile } from '../storage/cache/blob-cache.js';
import type { CacheCipher } from '../storage/cache/cache-cipher.js';
import type { BackendDescriptor, BackendType } from './control.js';
import type { FsStats } from './fs-stats.js';
import type { ScopedMetrics } from './scoped-metrics.js';

export type CachePolicy = 'auto' | 'always' | 'never' | 'metadata';

/** What a passthrough filesystem of a host directory is created with. */
export interface PassthroughOptions {
  root: string;
  xattr: boolean;
  cache: CachePolicy;
  announceSubmounts: boolean;
  log: Logger;
  metrics: Metrics;
  /** Further virtiofsd options the implementation may honour (readonly, writeback, …). */
  extra?: Record<string, unknown>;
}

export type PassthroughFactory = (opts: PassthroughOptions) => FileSystem | Promise<FileSystem>;

export interface MountRecord {
  mountpoint: string;
  type: BackendType;
  mountedAt: Date;
  config: unknown;
  stats: FsStats;
  metrics: ScopedMetrics;
  /** The filesystem as mounted in the Vfs (wrapped by `stats`). */
  fs: FileSystem;
  image?: RafsImage;
  backendType?: string;
  cacheDir?: string;
  /** The cipher of an encrypted chunk cache (its files' names). */
  cacheCipher?: CacheCipher;
  close(): Promise<void>;
}

export function describe(m: MountRecord): BackendDescriptor {
  return { backend_type: m.type, mountpoint: m.mountpoint, mounted_time: m.mountedAt.toISOString(), config: m.config ?? null };
}

/** nydusd's `FsBackendType::from_str`. */
export function backendTypeOf(fsType: string): BackendType | undefined {
  if (fsType === 'rafs') return 'Rafs';
  if (fsType === 'passthrough_fs' || fsType === 'passthroughfs' || fsType === 'passthrough') return 'PassthroughFs';
  return undefined;
}

/** nydusd-like storage backend metrics of a mount (`GET /api/v1/metrics/backend`). */
export function backendMetrics(m: MountRecord): Record<string, unknown> {
  const c = m.metrics;
  return {
    id: m.mountpoint,
    backend_type: m.backendType ?? '',
    read_count: c.get('storage.backend_requests'),
    read_errors: c.get('storage.backend_errors'),
    read_amount_total: c.get('storage.backend_bytes'),
    chunks_fetched: c.get('storage.chunks_fetched'),
    chunks_fetched_bytes: c.get('storage.chunks_fetched_bytes'),
    verify_failures: c.get('storage.verify_failures'),
    origin_fallbacks: c.get('backend.origin_fallbacks'),
  };
}

/** nydusd-like blob cache metrics of a mount (`GET /api/v1/metrics/blobcache`). */
export function blobcacheMetrics(m: MountRecord): Record<string, unknown> {
  const c = m.metrics;
  const hits = c.get('storage.cache_hits') + c.get('storage.memory_hits');
  return {
    id: m.mountpoint,
    store_path: m.cacheDir ?? '',
    underlying_files: (m.image?.blobs ?? []).map((b) => cacheDataFile(b, m.cacheCipher)),
    partial_hits: 0,
    whole_hits: hits,
    total: hits + c.get('storage.chunks_fetched'),
    entries_count: c.get('storage.chunks_fetched'),
    prefetch_data_amount: c.get('prefetch.done_chunks'),
    prefetch_requests_count: c.get('prefetch.planned_chunks'),
    prefetch_failed_chunks: c.get('prefetch.failed_chunks'),
    cache_verify_failures: c.get('storage.cache_verify_failures'),
    read_bytes: c.get('storage.read_bytes'),
  };
}

/** RAFS superblock information of a mount (`GET /api/v1/daemon/backend`). */
export function superblockInfo(m: MountRecord): Record<string, unknown> {
  const img = m.image as RafsImage;
  return {
    mountpoint: m.mountpoint,
    version: img.version,
    flags: `0x${img.flags.toString(16)}`,
    chunk_size: img.chunkSize,
    inodes_count: img.inodeCount,
    bootstrap_size: img.size,
    prefetch_table_entries: img.prefetch.length,
    blobs: img.blobs.map((b) => ({ blob_id: b.id, chunk_count: b.chunkCount, compressed_size: b.compressedSize, uncompressed_size: b.uncompressedSize })),
  };
}
