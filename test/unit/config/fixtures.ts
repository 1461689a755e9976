/** Shared fixtures of the config tests (not a test file itself). */
import { parseConfig, parseConfigObject, type DaemonConfig, type PrefetchConfig } from '../../../src/config/index.js';

/** Parses and collects the warnings. */
export function parse(text: string | object): { cfg: DaemonConfig; warnings: string[] } {
  const warnings: string[] = [];
  const onWarning = (m: string) => warnings.push(m);
  const cfg = typeof text === 'string' ? parseConfig(text, { onWarning }) : parseConfigObject(text, { onWarning });
  return { cfg, warnings };
}

export const PREFETCH_OFF: PrefetchConfig = {
  enable: false,
  threads: 8,
  batchSizeBytes: 1048576,
  bandwidthLimitBytesPerSec: 0,
  prefetchAll: false,
  streamPrefetch: false,
};
export const PROXY_DEFAULT = {
  url: '',
  pingUrl: '',
  fallback: true,
  checkIntervalMs: 5000,
  useHttp: false,
  checkPauseElapsedMs: 300000,
  dragonflySchedulerEndpoint: '',
};

// rafs-format.md §7.7
export const SPEC_V1 = {
  device: {
    id: '',
    backend: { type: 'registry', config: { host: 'r.io', repo: 'a/b' } },
    external_backends: [],
    cache: { type: 'blobcache', compressed: false, validate: false, config: { work_dir: '/var/lib/nydus/cache' } },
  },
  mode: 'direct',
  digest_validate: false,
  iostats_files: false,
  enable_xattr: true,
  access_pattern: false,
  latest_read_files: false,
  amplify_io: 1048576,
  fs_prefetch: { enable: true, threads_count: 8, merging_size: 1048576, bandwidth_rate: 0, prefetch_all: true, stream_prefetch: false },
};

// What nydus-snapshotter's FuseDaemonConfig marshals (config/daemonconfig/fuse.go, daemonconfig.go):
// non-omitempty zero values included (readahead, proxy.fallback, merging_size, bandwidth_rate).
export const SNAPSHOTTER_V1 = {
  device: {
    backend: {
      type: 'registry',
      config: {
        readahead: false,
        host: 'ghcr.io',
        repo: 'dragonflyoss/image-service/nginx',
        auth: Buffer.from('robot$ci:s3cr:et').toString('base64'),
        mirrors: [{ host: 'http://127.0.0.1:65001', headers: { 'X-Dragonfly-Registry': 'https://ghcr.io' }, health_check_interval: 5, failure_limit: 5, ping_url: 'http://127.0.0.1:40901/server/ping' }],
        scheme: 'https',
        proxy: { fallback: false },
        timeout: 5,
        connect_timeout: 5,
        retry_limit: 2,
      },
    },
    cache: { type: 'blobcache', config: { work_dir: '/var/lib/containerd-nydus/cache', disable_indexed_map: false } },
  },
  mode: 'direct',
  digest_validate: false,
  enable_xattr: true,
  fs_prefetch: { enable: true, prefetch_all: true, threads_count: 2, merging_size: 0, bandwidth_rate: 0 },
};
