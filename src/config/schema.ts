/**
 * The keys of every configuration section, per dialect. They drive the unknown-key warnings
 * (typos, keys in the wrong section, v1 names in v2 and back); the parsers read the same keys.
 */

export interface Schema {
  readonly keys: readonly string[];
  /** Unknown keys with a specific explanation (renamed or deliberately ignored keys). */
  readonly notes?: Readonly<Record<string, string>>;
}

/** A section as it appears in one dialect: its generic location and its keys. */
export interface Place {
  readonly where: string;
  readonly schema: Schema;
}

const HTTP = ['skip_verify', 'ca_cert_files', 'timeout', 'connect_timeout', 'retry_limit', 'proxy'];

export const LOCALFS: Schema = { keys: ['blob_file', 'dir', 'alt_dirs'] };
export const LOCALDISK: Schema = { keys: ['device_path', 'disable_gpt'] };
export const REGISTRY: Schema = {
  keys: ['scheme', 'host', 'repo', 'auth', 'registry_token', 'blob_url_scheme', 'blob_redirected_host', 'mirrors', ...HTTP],
};
export const OSS: Schema = {
  keys: ['scheme', 'endpoint', 'bucket_name', 'object_prefix', 'access_key_id', 'access_key_secret', ...HTTP],
};
export const S3: Schema = { keys: [...OSS.keys, 'region', 'force_path_style'] };
export const HTTP_PROXY: Schema = { keys: ['addr', 'path', ...HTTP] };
export const PROXY: Schema = {
  keys: ['url', 'ping_url', 'fallback', 'check_interval', 'use_http', 'check_pause_elapsed', 'dragonfly_scheduler_endpoint'],
};
export const MIRROR: Schema = {
  keys: ['host', 'ping_url', 'headers', 'health_check_interval', 'failure_limit', 'health_check_pause_elapsed', 'auth_through'],
};
export const FILECACHE: Schema = {
  keys: ['work_dir', 'disable_indexed_map', 'enable_encryption', 'enable_convergent_encryption', 'encryption_key', 'max_size'],
};
export const FSCACHE: Schema = { keys: ['work_dir'] };
export const EXTERNAL_BACKEND: Schema = { keys: ['patch', 'type', 'config'] };

/** Backend sub-objects by the key that names them (also the value of `type`). */
export const BACKEND_SCHEMAS: Readonly<Record<string, Schema>> = {
  localfs: LOCALFS,
  localdisk: LOCALDISK,
  registry: REGISTRY,
  oss: OSS,
  s3: S3,
  'http-proxy': HTTP_PROXY,
};

// ---- config v2 ----

export const V2_TOP: Schema = {
  keys: ['version', 'id', 'backend', 'external_backends', 'cache', 'rafs', 'overlay'],
  notes: {
    device: 'a v1 key; a config with "version" is read as v2, where it is "backend" and "cache"',
    mode: 'a v1 key; in v2 it is rafs.mode',
    digest_validate: 'a v1 key; in v2 it is rafs.validate',
    amplify_io: 'a v1 key; in v2 it is rafs.batch_size',
    fs_prefetch: 'a v1 key; in v2 it is rafs.prefetch',
  },
};
export const V2_BACKEND: Schema = { keys: ['type', ...Object.keys(BACKEND_SCHEMAS)], notes: { http_proxy: 'the key is "http-proxy", with a hyphen' } };
export const V2_CACHE: Schema = { keys: ['type', 'compressed', 'validate', 'prefetch', 'filecache', 'fscache'], notes: { config: 'a v1 key; in v2 it is cache.filecache or cache.fscache' } };
export const V2_RAFS: Schema = {
  keys: ['mode', 'batch_size', 'validate', 'enable_xattr', 'iostats_files', 'access_pattern', 'latest_read_files', 'prefetch'],
  notes: { digest_validate: 'the v2 name is validate', amplify_io: 'the v2 name is batch_size', fs_prefetch: 'the v2 name is prefetch' },
};
export const V2_PREFETCH: Schema = {
  keys: ['enable', 'threads', 'batch_size', 'bandwidth_limit', 'prefetch_all', 'stream_prefetch'],
  notes: { threads_count: 'the v2 name is threads', merging_size: 'the v2 name is batch_size', bandwidth_rate: 'the v2 name is bandwidth_limit' },
};
export const V2_OVERLAY: Schema = { keys: ['upper_dir', 'work_dir'] };

export const V2_PLACES: readonly Place[] = [
  { where: '', schema: V2_TOP },
  { where: 'backend', schema: V2_BACKEND },
  ...Object.entries(BACKEND_SCHEMAS).map(([k, schema]) => ({ where: `backend.${k}`, schema })),
  { where: 'backend.<type>.proxy', schema: PROXY },
  { where: 'backend.registry.mirrors[]', schema: MIRROR },
  { where: 'external_backends[]', schema: EXTERNAL_BACKEND },
  { where: 'cache', schema: V2_CACHE },
  { where: 'cache.filecache', schema: FILECACHE },
  { where: 'cache.fscache', schema: FSCACHE },
  { where: 'cache.prefetch', schema: V2_PREFETCH },
  { where: 'rafs', schema: V2_RAFS },
  { where: 'rafs.prefetch', schema: V2_PREFETCH },
  { where: 'overlay', schema: V2_OVERLAY },
];

/** Finds the place of a v2 section by its location. */
export function v2Place(where: string): Place {
  const p = V2_PLACES.find((x) => x.where === where);
  if (p === undefined) throw new Error(`config schema: no v2 section ${where}`);
  return p;
}

// ---- legacy v1 ----

export const V1_TOP: Schema = {
  keys: ['device', 'mode', 'digest_validate', 'iostats_files', 'fs_prefetch', 'enable_xattr', 'access_pattern', 'latest_read_files', 'amplify_io'],
  notes: {
    rafs: 'a v2 section, but this config has no "version" and is read as v1',
    backend: 'a v2 section, but this config has no "version" and is read as v1 (device.backend)',
    cache: 'a v2 section, but this config has no "version" and is read as v1 (device.cache)',
  },
};
export const V1_DEVICE: Schema = { keys: ['id', 'backend', 'external_backends', 'cache'] };
export const V1_BACKEND: Schema = { keys: ['type', 'config'] };
export const V1_CACHE: Schema = {
  keys: ['type', 'compressed', 'config', 'validate'],
  notes: { prefetch_config: 'nydus never reads it in a v1 config; use fs_prefetch', prefetch: 'not a v1 key; use fs_prefetch' },
};
export const V1_PREFETCH: Schema = {
  keys: ['enable', 'threads_count', 'merging_size', 'bandwidth_rate', 'prefetch_all', 'stream_prefetch'],
  notes: { threads: 'the v1 name is threads_count', batch_size: 'the v1 name is merging_size', bandwidth_limit: 'the v1 name is bandwidth_rate' },
};
const V1_BACKEND_CONFIG: Schema = { keys: [...new Set(Object.values(BACKEND_SCHEMAS).flatMap((s) => s.keys))] };

export const V1_PLACES: readonly Place[] = [
  { where: '', schema: V1_TOP },
  { where: 'device', schema: V1_DEVICE },
  { where: 'device.backend', schema: V1_BACKEND },
  { where: 'device.backend.config', schema: V1_BACKEND_CONFIG },
  { where: 'device.backend.config.proxy', schema: PROXY },
  { where: 'device.backend.config.mirrors[]', schema: MIRROR },
  { where: 'device.external_backends[]', schema: EXTERNAL_BACKEND },
  { where: 'device.cache', schema: V1_CACHE },
  { where: 'device.cache.config', schema: FILECACHE },
  { where: 'fs_prefetch', schema: V1_PREFETCH },
];

export function v1Place(where: string): Place {
  const p = V1_PLACES.find((x) => x.where === where);
  if (p === undefined) throw new Error(`config schema: no v1 section ${where}`);
  return p;
}
