/**
 * Legacy v1 JSON (nydus `RafsConfig`; rafs-format.md §7.7), read in its own spelling and mapped
 * to the v2 model exactly as nydus converts it:
 *
 * - `device.backend = {type, config}`: `config` holds the fields of the v2 backend object
 *   named by `type`; `device.cache = {type, compressed, validate, config}`: `config` holds the
 *   `filecache`/`fscache` object;
 * - `mode` (required) → `rafs.mode`, `digest_validate` → `rafs.validate`, `amplify_io` →
 *   `rafs.batch_size` (default 1 MiB);
 * - `fs_prefetch.{enable, threads_count, merging_size, bandwidth_rate, prefetch_all,
 *   stream_prefetch}` → `rafs.prefetch.{enable, threads, batch_size, bandwidth_limit, …}`, with
 *   `enable` optional and `prefetch_all` defaulting to **true**;
 * - `cache.prefetch = rafs.prefetch` when rafs prefetch is enabled (a v1 cache has no prefetch
 *   of its own: nydus never reads `device.cache.prefetch_config`).
 */
import { isBackendType, readBackend } from './backend.js';
import {
  V1_PREFETCH_DIALECT,
  checkBatchSize,
  checkCacheType,
  checkRafsMode,
  defaultCache,
  disabledPrefetch,
  finishCache,
  readFileCache,
  readFsCache,
  readPrefetch,
} from './cache-rafs.js';
import type { Section } from './reader.js';
import { U64_MAX } from './reader.js';
import { BACKEND_SCHEMAS, FSCACHE, v1Place, type Schema } from './schema.js';
import {
  BACKEND_TYPES,
  DEFAULT_BATCH_SIZE,
  type BackendConfig,
  type CacheConfig,
  type ExternalBackendConfig,
  type RafsConfig,
} from './types.js';

export interface V1Result {
  id: string;
  backend: BackendConfig;
  externalBackends: ExternalBackendConfig[];
  cache: CacheConfig;
  rafs: RafsConfig;
}

export function readV1(top: Section): V1Result {
  const device = top.child('device', v1Place('device')) ?? top.fail('device', 'required');
  const id = device.string('id', '');
  const backend = readV1Backend(device);
  const externalBackends = device.children('external_backends', v1Place('device.external_backends[]')).map(readExternalBackend);
  const cacheSec = device.child('cache', v1Place('device.cache'));
  const cache = cacheSec === undefined ? defaultCache() : readV1Cache(cacheSec);
  device.warnUnknown();

  const mode = checkRafsMode(top, 'mode', top.string('mode'));
  const batchSizeBytes = top.int('amplify_io', U64_MAX, DEFAULT_BATCH_SIZE);
  checkBatchSize(top, 'amplify_io', batchSizeBytes);
  const prefetchSec = top.child('fs_prefetch', v1Place('fs_prefetch'));
  const rafs: RafsConfig = {
    mode,
    batchSizeBytes,
    validate: top.bool('digest_validate', false),
    enableXattr: top.bool('enable_xattr', false),
    iostatsFiles: top.bool('iostats_files', false),
    accessPattern: top.bool('access_pattern', false),
    latestReadFiles: top.bool('latest_read_files', false),
    prefetch: prefetchSec === undefined ? disabledPrefetch() : readPrefetch(prefetchSec, V1_PREFETCH_DIALECT),
  };
  top.warnUnknown();
  if (!cache.prefetch.enable && rafs.prefetch.enable) cache.prefetch = { ...rafs.prefetch };
  return { id, backend, externalBackends, cache, rafs };
}

function readV1Backend(device: Section): BackendConfig {
  const sec: Section = device.child('backend', v1Place('device.backend')) ?? device.fail('backend', 'required');
  const type = sec.string('type');
  if (!isBackendType(type)) sec.fail('type', `must be one of ${BACKEND_TYPES.join(', ')}; got "${type}"`);
  const place = { where: 'device.backend.config', schema: BACKEND_SCHEMAS[type] as Schema };
  const config = sec.child('config', place) ?? sec.fail('config', `required (the ${type} backend settings)`);
  const places = { proxy: v1Place('device.backend.config.proxy'), mirror: v1Place('device.backend.config.mirrors[]') };
  const backend = readBackend(type, config, places, true);
  sec.warnUnknown();
  return backend;
}

function readV1Cache(sec: Section): CacheConfig {
  const type = checkCacheType(sec, sec.string('type', ''));
  const base: CacheConfig = {
    ...defaultCache(),
    type,
    compressed: sec.bool('compressed', false),
    validate: sec.bool('validate', false),
  };
  const missing = (): never => sec.fail('config', `required when device.cache.type is "${type}"`);
  let cache = base;
  if (type === 'blobcache' || type === 'filecache') {
    const fileSec = sec.child('config', v1Place('device.cache.config'));
    cache = finishCache(base, fileSec && { fields: readFileCache(fileSec), sec: fileSec }, undefined, missing);
  } else if (type === 'fscache') {
    const fsSec = sec.child('config', { where: 'device.cache.config', schema: FSCACHE });
    cache = finishCache(base, undefined, fsSec && { ...readFsCache(fsSec), sec: fsSec }, missing);
  }
  sec.warnUnknown();
  return cache;
}

/** An `external_backends` item: `patch`, `type` and `config` are all required. */
export function readExternalBackend(sec: Section): ExternalBackendConfig {
  const ext = { patch: sec.stringMap('patch', true), type: sec.string('type'), config: sec.stringMap('config', true) };
  sec.warnUnknown();
  return ext;
}
