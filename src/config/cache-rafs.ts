/**
 * `cache` (rafs-format.md §7.4), `rafs` (§7.5) and their `prefetch` objects (§7.6), in the v2
 * spelling; the v1 reader (v1.ts) reuses the prefetch and cache builders with its own names.
 */
import type { Section } from './reader.js';
import { U32_MAX, U64_MAX } from './reader.js';
import { v2Place } from './schema.js';
import {
  CACHE_TYPES,
  DEFAULT_BATCH_SIZE,
  DEFAULT_PREFETCH_THREADS,
  MAX_BATCH_SIZE,
  MAX_PREFETCH_THREADS,
  RAFS_MODES,
  type CacheConfig,
  type CacheType,
  type PrefetchConfig,
  type RafsConfig,
  type RafsMode,
} from './types.js';

/** The key names and defaults of a prefetch object in one dialect. */
export interface PrefetchDialect {
  threads: string;
  batchSize: string;
  bandwidth: string;
  /** v2: `enable` has no default inside a prefetch object; v1 `fs_prefetch.enable` defaults to false. */
  enableRequired: boolean;
  /** v2: false; v1 `fs_prefetch`: true. */
  prefetchAll: boolean;
}

export const V2_PREFETCH_DIALECT: PrefetchDialect = {
  threads: 'threads',
  batchSize: 'batch_size',
  bandwidth: 'bandwidth_limit',
  enableRequired: true,
  prefetchAll: false,
};

export const V1_PREFETCH_DIALECT: PrefetchDialect = {
  threads: 'threads_count',
  batchSize: 'merging_size',
  bandwidth: 'bandwidth_rate',
  enableRequired: false,
  prefetchAll: true,
};

/** Prefetch when no prefetch object is given: disabled, with the v2 defaults. */
export function disabledPrefetch(): PrefetchConfig {
  return {
    enable: false,
    threads: DEFAULT_PREFETCH_THREADS,
    batchSizeBytes: DEFAULT_BATCH_SIZE,
    bandwidthLimitBytesPerSec: 0,
    prefetchAll: false,
    streamPrefetch: false,
  };
}

export function readPrefetch(sec: Section, d: PrefetchDialect): PrefetchConfig {
  const p: PrefetchConfig = {
    enable: sec.bool('enable', d.enableRequired ? undefined : false),
    threads: sec.int(d.threads, U64_MAX, DEFAULT_PREFETCH_THREADS),
    batchSizeBytes: sec.int(d.batchSize, U64_MAX, DEFAULT_BATCH_SIZE),
    bandwidthLimitBytesPerSec: sec.int(d.bandwidth, U32_MAX, 0),
    prefetchAll: sec.bool('prefetch_all', d.prefetchAll),
    streamPrefetch: sec.bool('stream_prefetch', false),
  };
  if (p.enable) {
    if (p.threads < 1 || p.threads > MAX_PREFETCH_THREADS) {
      sec.fail(d.threads, `must be 1..${MAX_PREFETCH_THREADS} when prefetch is enabled, got ${p.threads}`);
    }
    checkBatchSize(sec, d.batchSize, p.batchSizeBytes);
  }
  sec.warnUnknown();
  return p;
}

export function checkBatchSize(sec: Section, key: string, n: number): void {
  if (n > MAX_BATCH_SIZE) sec.fail(key, `must be at most ${MAX_BATCH_SIZE} (0x10000000), got ${n}`);
}

/** The contents of a `filecache` object (v1: `device.cache.config`). */
export interface FileCacheFields {
  workDir: string;
  disableIndexedMap: boolean;
  enableEncryption: boolean;
  enableConvergentEncryption: boolean;
  encryptionKey: string;
  maxSize: number;
}

export function readFileCache(sec: Section): FileCacheFields {
  const f: FileCacheFields = {
    workDir: sec.string('work_dir', '.'),
    disableIndexedMap: sec.bool('disable_indexed_map', false),
    enableEncryption: sec.bool('enable_encryption', false),
    enableConvergentEncryption: sec.bool('enable_convergent_encryption', false),
    encryptionKey: sec.string('encryption_key', ''),
    maxSize: sec.int('max_size', U64_MAX, 0),
  };
  sec.warnUnknown();
  return f;
}

/** The contents of an `fscache` object. */
export function readFsCache(sec: Section): { workDir: string } {
  const f = { workDir: sec.string('work_dir', '.') };
  sec.warnUnknown();
  return f;
}

export function checkCacheType(sec: Section, t: string): CacheType {
  if ((CACHE_TYPES as readonly string[]).includes(t)) return t as CacheType;
  return sec.fail('type', `must be one of blobcache, filecache, fscache, dummycache or "", got "${t}"`);
}

/** A cache section with no `type` and nothing else: no cache (read-through). */
export function defaultCache(): CacheConfig {
  return {
    type: '',
    validate: false,
    compressed: false,
    prefetch: disabledPrefetch(),
    disableIndexedMap: false,
    enableEncryption: false,
    enableConvergentEncryption: false,
    encryptionKey: '',
  };
}

/**
 * Completes a cache config from its type and the work-dir object that type needs. `fileSec`
 * is the section holding it (for messages); `missing` reports its absence.
 */
export function finishCache(
  base: CacheConfig,
  file: { fields: FileCacheFields; sec: Section } | undefined,
  fs: { workDir: string; sec: Section } | undefined,
  missing: () => never,
): CacheConfig {
  if (base.type === 'blobcache' || base.type === 'filecache') {
    if (file === undefined) return missing();
    const f = file.fields;
    if (f.workDir === '') file.sec.fail('work_dir', 'must not be empty');
    if (f.encryptionKey !== '' && !/^[0-9a-fA-F]{64}$/.test(f.encryptionKey)) {
      file.sec.fail('encryption_key', 'must be 64 hexadecimal digits (32 bytes)');
    }
    // As nydusd: an encrypted cache needs a key (convergent encryption too, though it keys each
    // chunk by its digest), of two different AES-128 keys.
    if (f.enableEncryption) {
      if (f.encryptionKey === '') file.sec.fail('encryption_key', 'required with enable_encryption (64 hexadecimal digits)');
      if (f.encryptionKey.slice(0, 32).toLowerCase() === f.encryptionKey.slice(32).toLowerCase()) file.sec.fail('encryption_key', 'its two halves (the two AES-128 keys of XTS) must differ');
    } else if (f.enableConvergentEncryption) {
      file.sec.fail('enable_convergent_encryption', 'needs enable_encryption');
    }
    return {
      ...base,
      workDir: f.workDir,
      ...(f.maxSize > 0 ? { maxSizeBytes: f.maxSize } : {}),
      disableIndexedMap: f.disableIndexedMap,
      enableEncryption: f.enableEncryption,
      enableConvergentEncryption: f.enableConvergentEncryption,
      encryptionKey: f.encryptionKey,
    };
  }
  if (base.type === 'fscache') {
    if (fs === undefined) return missing();
    if (fs.workDir === '') fs.sec.fail('work_dir', 'must not be empty');
    return { ...base, workDir: fs.workDir };
  }
  return base;
}

export function readCacheV2(sec: Section | undefined): CacheConfig {
  if (sec === undefined) return defaultCache();
  const type = checkCacheType(sec, sec.string('type', ''));
  const prefetchSec = sec.child('prefetch', v2Place('cache.prefetch'));
  const base: CacheConfig = {
    ...defaultCache(),
    type,
    compressed: sec.bool('compressed', false),
    validate: sec.bool('validate', false),
    prefetch: prefetchSec === undefined ? disabledPrefetch() : readPrefetch(prefetchSec, V2_PREFETCH_DIALECT),
  };
  const fileSec = sec.child('filecache', v2Place('cache.filecache'));
  const fsSec = sec.child('fscache', v2Place('cache.fscache'));
  const file = fileSec && { fields: readFileCache(fileSec), sec: fileSec };
  const fs = fsSec && { ...readFsCache(fsSec), sec: fsSec };
  sec.warnUnknown();
  const sub = type === 'fscache' ? 'fscache' : 'filecache';
  return finishCache(base, file, fs, () => sec.fail(sub, `required when cache.type is "${type}"`));
}

export function checkRafsMode(sec: Section, key: string, mode: string): RafsMode {
  if ((RAFS_MODES as readonly string[]).includes(mode)) return mode as RafsMode;
  return sec.fail(key, `must be "direct" or "cached", got "${mode}"`);
}

/** `rafs` of a v2 config; absent gives every default. */
export function readRafsV2(sec: Section | undefined): RafsConfig {
  if (sec === undefined) {
    return {
      mode: 'direct',
      batchSizeBytes: DEFAULT_BATCH_SIZE,
      validate: false,
      enableXattr: false,
      iostatsFiles: false,
      accessPattern: false,
      latestReadFiles: false,
      prefetch: disabledPrefetch(),
    };
  }
  const mode = checkRafsMode(sec, 'mode', sec.string('mode', 'direct'));
  const batchSizeBytes = sec.int('batch_size', U64_MAX, DEFAULT_BATCH_SIZE);
  checkBatchSize(sec, 'batch_size', batchSizeBytes);
  const prefetchSec = sec.child('prefetch', v2Place('rafs.prefetch'));
  const rafs: RafsConfig = {
    mode,
    batchSizeBytes,
    validate: sec.bool('validate', false),
    enableXattr: sec.bool('enable_xattr', false),
    iostatsFiles: sec.bool('iostats_files', false),
    accessPattern: sec.bool('access_pattern', false),
    latestReadFiles: sec.bool('latest_read_files', false),
    prefetch: prefetchSec === undefined ? disabledPrefetch() : readPrefetch(prefetchSec, V2_PREFETCH_DIALECT),
  };
  sec.warnUnknown();
  return rafs;
}
