/**
 * Builds the `BlobBackend` a configuration names (spec §7.3): localfs, registry (with its proxy
 * and mirrors as failover routes in front of the origin), s3 and http-proxy.
 */
import { type Logger, type Metrics, UnsupportedError } from '../../base/index.js';
import type { BackendConfig, MirrorConfig, RegistryBackendConfig } from '../../config/index.js';
import { RegistryClient, type RegistryClientOptions } from '../../oci/registry/index.js';
import { loadUndici, requestTarget } from '../../oci/registry/undici.js';
import { FailoverBackend, type Route } from './failover.js';
import { HttpProxyBackend } from './http-proxy.js';
import { LocalFsBackend } from './localfs.js';
import { RegistryBackend } from './registry.js';
import { S3Backend } from './s3.js';
import type { BlobBackend } from './types.js';

export interface BackendContext {
  log: Logger;
  metrics: Metrics;
  /** Blob ids read from explicit files (an inlined-bootstrap image). */
  blobFiles?: ReadonlyMap<string, string>;
  /**
   * A client of the registry's origin already in use (the one that fetched the manifest and the
   * bootstrap): its connection and its token serve the first chunk reads at once. The backend
   * takes it over (closes it).
   */
  originClient?: RegistryClient;
}

/** A health check: GET the URL, healthy on any 2xx/3xx answer within the timeout. */
function pinger(url: string, timeoutMs: number): () => Promise<boolean> {
  return async () => {
    const { Agent } = await loadUndici();
    // A connection of its own each time, closed after: a ping tells whether one can be made now.
    const agent = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: timeoutMs } });
    try {
      const res = await agent.request({ ...requestTarget(url), method: 'GET' });
      await res.body.dump();
      // Any answer but a server error: a registry that requires authorization answers its /v2/
      // 401 (nydus counts below 500 as well); taking only < 400 kept such a mirror out for good.
      return res.statusCode < 500;
    } finally {
      void agent.destroy().catch(() => undefined);
    }
  };
}

function hostAndScheme(url: string): { host: string; scheme: 'http' | 'https' } {
  const u = new URL(url);
  return { host: u.host, scheme: u.protocol === 'https:' ? 'https' : 'http' };
}

/** The options of a client of the registry a `registry` backend config names (its blob host). */
export function registryClientOptions(cfg: RegistryBackendConfig, log: Logger): RegistryClientOptions {
  return {
    host: cfg.blobRedirectedHost || cfg.host,
    scheme: (cfg.blobUrlScheme || cfg.scheme) as 'http' | 'https',
    ...(cfg.auth ? { credentials: cfg.auth } : {}),
    ...(cfg.registryToken ? { registryToken: cfg.registryToken } : {}),
    skipVerify: cfg.skipVerify,
    caCertFiles: cfg.caCertFiles,
    timeoutMs: cfg.timeoutMs,
    connectTimeoutMs: cfg.connectTimeoutMs,
    retryLimit: cfg.retryLimit,
    log, // the client names itself (component, registry host)
  };
}

function registryBackend(cfg: RegistryBackendConfig, ctx: BackendContext): BlobBackend {
  const base = registryClientOptions(cfg, ctx.log);
  const origin = new RegistryBackend(ctx.originClient ?? new RegistryClient(base), cfg.repo);
  const routes: Route[] = [];
  if (cfg.proxy.url) {
    // A Dragonfly peer (or a caching reverse proxy) serving the registry API for the origin.
    const client = new RegistryClient({ ...base, ...hostAndScheme(cfg.proxy.url), retryLimit: 0 });
    routes.push({
      name: 'proxy',
      backend: new RegistryBackend(client, cfg.repo),
      ...(cfg.proxy.pingUrl ? { ping: pinger(cfg.proxy.pingUrl, cfg.connectTimeoutMs || 5000) } : {}),
      checkIntervalMs: cfg.proxy.checkIntervalMs,
      failureLimit: 1,
    });
  }
  cfg.mirrors.forEach((m: MirrorConfig, i) => {
    const { credentials: _c, registryToken: _t, ...anonymous } = base;
    const client = new RegistryClient({ ...(m.authThrough ? base : anonymous), ...hostAndScheme(m.host), headers: m.headers, retryLimit: 0 });
    routes.push({
      name: `mirror-${i}`,
      backend: new RegistryBackend(client, cfg.repo),
      ping: pinger(m.pingUrl || `${m.host.replace(/\/$/, '')}/v2/`, cfg.connectTimeoutMs || 5000),
      checkIntervalMs: m.healthCheckIntervalMs,
      failureLimit: m.failureLimit,
    });
  });
  if (routes.length === 0) return origin;
  // Without fallback a broken proxy fails reads instead of going to the origin (nydus `fallback`).
  const fallback = !cfg.proxy.url || cfg.proxy.fallback;
  return new FailoverBackend(routes, fallback ? origin : undefined, ctx.log.child({ component: 'failover' }), ctx.metrics);
}

export function createBackend(cfg: BackendConfig, ctx: BackendContext): BlobBackend {
  switch (cfg.type) {
    case 'localfs':
      return new LocalFsBackend({ dir: cfg.dir, altDirs: cfg.altDirs, blobFile: cfg.blobFile, ...(ctx.blobFiles ? { files: ctx.blobFiles } : {}) });
    case 'registry':
      return registryBackend(cfg, ctx);
    case 's3':
      return new S3Backend({
        endpoint: cfg.endpoint,
        scheme: cfg.scheme,
        region: cfg.region,
        bucketName: cfg.bucketName,
        objectPrefix: cfg.objectPrefix,
        ...(cfg.accessKeyId ? { accessKeyId: cfg.accessKeyId, accessKeySecret: cfg.accessKeySecret } : {}),
        forcePathStyle: cfg.forcePathStyle,
        skipVerify: cfg.skipVerify,
        timeoutMs: cfg.timeoutMs,
        connectTimeoutMs: cfg.connectTimeoutMs,
        retryLimit: cfg.retryLimit,
        log: ctx.log.child({ component: 's3' }),
      });
    case 'http-proxy':
      return new HttpProxyBackend({ addr: cfg.addr, path: cfg.path, timeoutMs: cfg.timeoutMs, connectTimeoutMs: cfg.connectTimeoutMs, skipVerify: cfg.skipVerify, caCertFiles: cfg.caCertFiles, retryLimit: cfg.retryLimit, log: ctx.log });
    case 'oss':
    case 'localdisk':
      throw new UnsupportedError(`the ${cfg.type} backend is not supported`);
  }
}
