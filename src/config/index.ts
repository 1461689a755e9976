/**
 * config — typed, validated configuration of the daemon: storage backend (registry, s3, oss,
 * localfs, localdisk, http-proxy, with proxy and mirrors), cache, RAFS options and prefetch.
 * Reads nydus config v2 (JSON or TOML) and legacy v1 JSON, and normalizes both to one model
 * with explicit units (milliseconds, bytes).
 * May import: base (and Node built-ins, smol-toml).
 * Implements: ../shared/spec/rafs-format.md §7 (config v2, legacy v1 and its mapping, defaults,
 * validation) and Appendix B item 14.
 */
export {
  BACKEND_TYPES,
  CACHE_TYPES,
  CONFIG_MAX_BYTES,
  DEFAULT_BATCH_SIZE,
  DEFAULT_CHECK_INTERVAL_SECS,
  DEFAULT_CHECK_PAUSE_ELAPSED_SECS,
  DEFAULT_HTTP_TIMEOUT_SECS,
  DEFAULT_MIRROR_FAILURE_LIMIT,
  DEFAULT_PREFETCH_THREADS,
  DEFAULT_S3_ENDPOINT,
  MAX_BATCH_SIZE,
  MAX_PREFETCH_THREADS,
  RAFS_MODES,
} from './types.js';
export type {
  BackendConfig,
  BackendType,
  CacheConfig,
  CacheType,
  DaemonConfig,
  ExternalBackendConfig,
  HttpBackendOptions,
  HttpProxyBackendConfig,
  HttpScheme,
  LocaldiskBackendConfig,
  LocalfsBackendConfig,
  MirrorConfig,
  OssBackendConfig,
  OverlayConfig,
  ParseConfigOptions,
  PrefetchConfig,
  ProxyConfig,
  RafsConfig,
  RafsMode,
  RegistryAuth,
  RegistryBackendConfig,
  S3BackendConfig,
} from './types.js';
export { configWithoutSecrets, loadConfigFile, parseConfig, parseConfigObject } from './parse.js';
export { decodeRegistryAuth } from './backend.js';
