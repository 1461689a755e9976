/**
 * The normalized daemon configuration: what `parseConfig` returns, whatever the input dialect
 * (config v2 JSON or TOML, legacy v1 JSON; rafs-format.md §7). Every default is filled in, every
 * value has been validated, and units are explicit in the names:
 *
 * - durations are milliseconds (`…Ms`); nydus writes seconds, so `timeout = 5` becomes
 *   `timeoutMs: 5000`;
 * - sizes are bytes (`…Bytes`), rates bytes per second (`…BytesPerSec`).
 */

/** Largest configuration text accepted (nydus `ConfigV2::from_file`: 0x100000 bytes). */
export const CONFIG_MAX_BYTES = 0x10_0000;
/** Upper bound of `rafs.batch_size` and `prefetch.batch_size` (nydus: 0x1000_0000). */
export const MAX_BATCH_SIZE = 0x1000_0000;
/** Prefetch worker threads must be 1..MAX_PREFETCH_THREADS when prefetch is enabled. */
export const MAX_PREFETCH_THREADS = 1024;
/** `timeout` and `connect_timeout` default, seconds. */
export const DEFAULT_HTTP_TIMEOUT_SECS = 5;
/** Proxy `check_interval` and mirror `health_check_interval` default, seconds. */
export const DEFAULT_CHECK_INTERVAL_SECS = 5;
/** Proxy `check_pause_elapsed` and mirror `health_check_pause_elapsed` default, seconds. */
export const DEFAULT_CHECK_PAUSE_ELAPSED_SECS = 300;
/** Mirror `failure_limit` default. */
export const DEFAULT_MIRROR_FAILURE_LIMIT = 5;
/** Prefetch `threads` (v1 `threads_count`) default. */
export const DEFAULT_PREFETCH_THREADS = 8;
/** Prefetch `batch_size` (v1 `merging_size`) and `rafs.batch_size` (v1 `amplify_io`) default. */
export const DEFAULT_BATCH_SIZE = 0x10_0000;
/** Endpoint used by the s3 backend when `endpoint` is empty. */
export const DEFAULT_S3_ENDPOINT = 's3.amazonaws.com';

export const BACKEND_TYPES = ['localfs', 'localdisk', 'registry', 'oss', 's3', 'http-proxy'] as const;
export type BackendType = (typeof BACKEND_TYPES)[number];

export const CACHE_TYPES = ['blobcache', 'filecache', 'fscache', 'dummycache', ''] as const;
/** `blobcache` and `filecache` are the same thing (local cache files); `''` = `dummycache`. */
export type CacheType = (typeof CACHE_TYPES)[number];

export const RAFS_MODES = ['direct', 'cached'] as const;
export type RafsMode = (typeof RAFS_MODES)[number];

export type HttpScheme = 'http' | 'https';

/** `proxy` of a registry/oss/s3/http-proxy backend (§7.3.1), e.g. a Dragonfly dfdaemon. */
export interface ProxyConfig {
  /** Proxy URL (http or https); '' = no proxy. */
  url: string;
  /** Health-check URL; '' = none. */
  pingUrl: string;
  /** Go to the origin when the proxy is unhealthy (default true). */
  fallback: boolean;
  /** Health-check interval (`check_interval`, default 5 s). */
  checkIntervalMs: number;
  /** Talk http to the origin through the proxy (falls back to https). */
  useHttp: boolean;
  /** Pause health checks after this long without requests (`check_pause_elapsed`, default 300 s). */
  checkPauseElapsedMs: number;
  /** Dragonfly SDK scheduler endpoint; '' = none. */
  dragonflySchedulerEndpoint: string;
}

/** A registry mirror (nydus ≤ 2.3 `mirrors`, still sent by nydus-snapshotter). */
export interface MirrorConfig {
  /** Mirror URL including scheme, e.g. `http://127.0.0.1:65001`. */
  host: string;
  /** Health-check URL; '' = `{host}/v2`. */
  pingUrl: string;
  /** Extra request headers for the mirror, e.g. `X-Dragonfly-Registry`. */
  headers: Record<string, string>;
  /** `health_check_interval`, default 5 s. */
  healthCheckIntervalMs: number;
  /** Failures before the mirror is skipped (`failure_limit`, default 5). */
  failureLimit: number;
  /** `health_check_pause_elapsed`, default 300 s. */
  healthCheckPauseElapsedMs: number;
  /** Send registry authorization through the mirror (`auth_through`, nydus ≤ 2.2; default false). */
  authThrough: boolean;
}

/** Fields shared by the network backends. */
export interface HttpBackendOptions {
  /** Skip TLS verification (registry: also allows https→http fallback). */
  skipVerify: boolean;
  /** Extra PEM CA files to trust. */
  caCertFiles: string[];
  /** Whole-request timeout (`timeout`, default 5 s); 0 = none. */
  timeoutMs: number;
  /** Connect timeout (`connect_timeout`, default 5 s); 0 = none. */
  connectTimeoutMs: number;
  /** Retries after a failed request (`retry_limit`, 0..255, default 0). */
  retryLimit: number;
  proxy: ProxyConfig;
}

/** Blobs in a directory: `dir/<blob_id>`, or one file for every blob. */
export interface LocalfsBackendConfig {
  type: 'localfs';
  dir: string;
  /** Searched when `dir/<blob_id>` is missing or empty. */
  altDirs: string[];
  /** If set, this one file is used for every blob id. */
  blobFile: string;
}

/** Blobs on a block device or disk image (GPT partitions named by blob id unless `disableGpt`). */
export interface LocaldiskBackendConfig {
  type: 'localdisk';
  devicePath: string;
  disableGpt: boolean;
}

/**
 * Registry credentials: from a configuration's base64 `auth` ("user:password"), the command line,
 * or what a `docker login` saved (the registry client's `Credentials`).
 */
export interface RegistryAuth {
  username: string;
  password: string;
  /**
   * An identity token (an OAuth2 refresh token), which `docker login` saves instead of the
   * password for some registries (never in a nydusd configuration). It is exchanged at the Bearer
   * realm (`grant_type=refresh_token`); a registry that asks for Basic cannot use it.
   */
  identityToken?: string;
}

/** OCI distribution API: `{scheme}://{host}/v2/{repo}/blobs/sha256:{blob_id}`. */
export interface RegistryBackendConfig extends HttpBackendOptions {
  type: 'registry';
  scheme: HttpScheme;
  /** host[:port], no scheme. */
  host: string;
  /** Repository, e.g. `library/ubuntu`. */
  repo: string;
  auth?: RegistryAuth;
  /** Bearer token (`registry_token`). */
  registryToken?: string;
  /** Scheme override for blob URLs; '' = `scheme`. */
  blobUrlScheme: string;
  /** Host override for blob requests; '' = `host`. */
  blobRedirectedHost: string;
  mirrors: MirrorConfig[];
}

/** Amazon S3 or compatible, AWS SigV4. */
export interface S3BackendConfig extends HttpBackendOptions {
  type: 's3';
  scheme: HttpScheme;
  /** host[:port]; `s3.amazonaws.com` when the config gives ''. */
  endpoint: string;
  region: string;
  bucketName: string;
  /** Prepended to the blob id to form the object key. */
  objectPrefix: string;
  accessKeyId: string;
  accessKeySecret: string;
  /**
   * Path-style URLs `{scheme}://{endpoint}/{bucket}/{key}` (what nydus uses) rather than
   * virtual-hosted `{bucket}.{endpoint}`. Damselfly extension key `force_path_style`, default true.
   */
  forcePathStyle: boolean;
}

/** Aliyun OSS: `{scheme}://{bucket_name}.{endpoint}/{object_prefix}{blob_id}`. */
export interface OssBackendConfig extends HttpBackendOptions {
  type: 'oss';
  scheme: HttpScheme;
  endpoint: string;
  bucketName: string;
  objectPrefix: string;
  accessKeyId: string;
  accessKeySecret: string;
}

/** A local HTTP server or Unix socket that serves blobs: `addr + path + "/" + blob_id`. */
export interface HttpProxyBackendConfig extends HttpBackendOptions {
  type: 'http-proxy';
  /** `http://…`, `https://…`, or the absolute path of a Unix socket. */
  addr: string;
  /** URL path prefix; ignored for Unix sockets. */
  path: string;
}

export type BackendConfig =
  | LocalfsBackendConfig
  | LocaldiskBackendConfig
  | RegistryBackendConfig
  | S3BackendConfig
  | OssBackendConfig
  | HttpProxyBackendConfig;

/** An item of `external_backends`, merged into the backends of EXTERNAL blobs. */
export interface ExternalBackendConfig {
  patch: Record<string, string>;
  type: string;
  config: Record<string, string>;
}

/** `PrefetchConfigV2` (§7.6), also what v1 `fs_prefetch` maps to. */
export interface PrefetchConfig {
  enable: boolean;
  /** Worker threads (`threads`, v1 `threads_count`); 1..1024 when enabled. */
  threads: number;
  /** Merge size of backend requests (`batch_size`, v1 `merging_size`). */
  batchSizeBytes: number;
  /** `bandwidth_limit` (v1 `bandwidth_rate`); 0 = unlimited. */
  bandwidthLimitBytesPerSec: number;
  /** Prefetch all blob data after the prefetch list (default false in v2, true in v1). */
  prefetchAll: boolean;
  /** Dragonfly whole-blob streaming prefetch. */
  streamPrefetch: boolean;
}

/** `cache` (§7.4). */
export interface CacheConfig {
  type: CacheType;
  /** `filecache.work_dir` or `fscache.work_dir`; undefined for `dummycache`/''. */
  workDir?: string;
  /** Validate chunk data read from the cache or backend. */
  validate: boolean;
  /** Legacy, unused by nydus. */
  compressed: boolean;
  /** Blob-level prefetch. */
  prefetch: PrefetchConfig;
  /**
   * Cache size limit (bytes) — a Damselfly extension: key `max_size` under `filecache`
   * (v1: `device.cache.config.max_size`). Absent or 0 = unlimited.
   */
  maxSizeBytes?: number;
  /** filecache `disable_indexed_map` (deprecated in nydus). */
  disableIndexedMap: boolean;
  /** filecache `enable_encryption`: encrypt cache files (AES-128-XTS). */
  enableEncryption: boolean;
  /** filecache `enable_convergent_encryption`. */
  enableConvergentEncryption: boolean;
  /** filecache `encryption_key`: '' or 64 hex digits (32 bytes). */
  encryptionKey: string;
}

/** `rafs` (§7.5). */
export interface RafsConfig {
  mode: RafsMode;
  /** User-IO amplification (`batch_size`, v1 `amplify_io`); 0 disables. */
  batchSizeBytes: number;
  /** Validate chunk digests (v1 `digest_validate`). */
  validate: boolean;
  enableXattr: boolean;
  iostatsFiles: boolean;
  accessPattern: boolean;
  latestReadFiles: boolean;
  /** Filesystem-level prefetch (bootstrap prefetch table or an explicit list). */
  prefetch: PrefetchConfig;
}

/** `overlay` (both keys required): makes the filesystem writable in nydus. */
export interface OverlayConfig {
  upperDir: string;
  workDir: string;
}

export interface DaemonConfig {
  /** Which dialect the input was written in (the result is always the v2 model). */
  sourceVersion: 1 | 2;
  /** Instance id (v1: `device.id`). */
  id: string;
  backend: BackendConfig;
  externalBackends: ExternalBackendConfig[];
  cache: CacheConfig;
  rafs: RafsConfig;
  overlay?: OverlayConfig;
  /** The prefetch in effect: `rafs.prefetch` if enabled, else `cache.prefetch`. */
  prefetch: PrefetchConfig;
}

export interface ParseConfigOptions {
  /** Where the text came from; prefixed to error messages. */
  path?: string;
  /**
   * Called for keys that are ignored but look like mistakes: a typo of a known key
   * (`backend.registy`), a key of another section (`cache.enable_encryption`), a v1 name in a
   * v2 config (`threads_count`). Unknown keys are otherwise ignored silently, as in nydus.
   */
  onWarning?: (message: string) => void;
}
