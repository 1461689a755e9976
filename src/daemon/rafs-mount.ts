/**
 * A RAFS mount as the nydusd API asks for one (`{"fs_type":"rafs","source":<bootstrap>,"config":<json>}`):
 * the configuration string parsed (config v1 as nydus-snapshotter sends it, or v2), the storage
 * backend created from it, the bootstrap loaded from `source`, and the image served through an
 * `ImageService` (chunk device + image filesystem) on the mount's own counters. Prefetch starts in
 * the background when the configuration enables it or the request lists files.
 */
import { type Logger, type Metrics, errorMessage } from '../base/index.js';
import { type DaemonConfig, configWithoutSecrets, parseConfig } from '../config/index.js';
import type { Codecs } from '../format/compression.js';
import type { RafsImage } from '../format/image.js';
import type { FileSystem } from '../fs/types.js';
import { createBackend } from '../storage/backend/factory.js';
import { loadBlobMeta } from '../storage/blob-meta.js';
import { type CacheCipher, cacheCipherOption } from '../storage/cache/cache-cipher.js';
import { trimCacheFor } from '../storage/cache/gc.js';
import { loadImage } from '../storage/open-image.js';
import { DaemonError } from './control.js';
import { ImageService } from './image-service.js';
import { checkCacheDir } from './image-source.js';

export interface RafsMountRequest {
  mountpoint: string;
  /** Path of the bootstrap. */
  source: string;
  /** The nydusd configuration text. */
  config: string;
  prefetchFiles?: string[];
}

export interface RafsMountContext {
  codecs: Codecs;
  log: Logger;
  metrics: Metrics;
}

/** What the daemon keeps of a RAFS mount. */
export interface RafsMount {
  fs: FileSystem;
  /** Configuration without credentials (DaemonInfo). */
  config: unknown;
  image?: RafsImage;
  backendType: string;
  cacheDir?: string;
  cacheCipher?: CacheCipher;
  close(): Promise<void>;
}

export type RafsFactory = (req: RafsMountRequest, ctx: RafsMountContext) => Promise<RafsMount>;

function parseMountConfig(req: RafsMountRequest, log: Logger): DaemonConfig {
  if (req.config.trim() === '') throw new DaemonError('InvalidArguments', `mount ${req.mountpoint}: a rafs mount needs a configuration`);
  try {
    return parseConfig(req.config, { path: `mount ${req.mountpoint} config`, onWarning: (m) => log.warn(m) });
  } catch (e) {
    throw new DaemonError('InvalidArguments', errorMessage(e), { cause: e });
  }
}

/** The default RAFS factory: real backend, cache and image filesystem. */
export const openRafsMount: RafsFactory = async (req, ctx) => {
  const log = ctx.log.child({ mountpoint: req.mountpoint });
  const config = parseMountConfig(req, log);
  let loaded;
  try {
    loaded = await loadImage(ctx.codecs, { bootstrap: req.source });
  } catch (e) {
    throw new DaemonError('Other', `mount ${req.mountpoint}: cannot load the bootstrap ${req.source}: ${errorMessage(e)}`, { cause: e });
  }
  const cacheDir = config.cache.type === 'blobcache' || config.cache.type === 'filecache' ? config.cache.workDir : undefined;
  if (cacheDir !== undefined) {
    try {
      await checkCacheDir(cacheDir);
    } catch (e) {
      throw new DaemonError('InvalidArguments', `mount ${req.mountpoint}: ${errorMessage(e)}`, { cause: e });
    }
  }
  const backend = createBackend(config.backend, { log, metrics: ctx.metrics, blobFiles: loaded.blobFiles });
  try {
    await loadBlobMeta(loaded.image, backend, ctx.codecs, { ...(cacheDir !== undefined ? { cacheDir } : {}), log });
  } catch (e) {
    await backend.close();
    throw new DaemonError('Other', `mount ${req.mountpoint}: ${errorMessage(e)}`, { cause: e });
  }
  const cipher = cacheCipherOption(config.cache);
  let service: ImageService;
  try {
    // The cache size limit (filecache `max_size`), as `mount` and `virtiofs` apply it.
    if (cacheDir !== undefined && config.cache.maxSizeBytes !== undefined) {
      await trimCacheFor(cacheDir, config.cache.maxSizeBytes, loaded.image.blobs, cipher.cacheCipher, log.child({ component: 'cache-gc' }));
    }
    service = new ImageService({
    loaded,
    backend,
    codecs: ctx.codecs,
    ...(cacheDir !== undefined ? { cacheDir } : {}),
    ...cipher,
    validate: config.rafs.validate || config.cache.validate,
    amplifyBytes: config.rafs.batchSizeBytes,
    enableXattr: config.rafs.enableXattr,
    metrics: ctx.metrics,
    log,
  });
  } catch (e) {
    await backend.close();
    throw new DaemonError('Other', `mount ${req.mountpoint}: ${errorMessage(e)}`, { cause: e });
  }
  const files = req.prefetchFiles?.map((p) => (p.startsWith('/') ? p : `/${p}`));
  const pf = config.prefetch;
  if (pf.enable || (files !== undefined && files.length > 0)) {
    service
      .startPrefetch({
        ...(files && files.length > 0 ? { files } : {}),
        all: pf.enable && pf.prefetchAll,
        threads: pf.threads,
        mergeBytes: pf.batchSizeBytes,
        bandwidthLimit: pf.bandwidthLimitBytesPerSec,
      })
      .then(
        (r) => log.info({ result: r }, 'prefetch finished'),
        (e: unknown) => log.warn({ err: errorMessage(e) }, 'prefetch failed'),
      );
  }
  return {
    fs: service.fs,
    config: configWithoutSecrets(config),
    image: loaded.image,
    backendType: config.backend.type,
    ...(cacheDir !== undefined ? { cacheDir } : {}),
    ...cipher,
    close: () => service.close(),
  };
};

/** The nydusd configuration `--localfs-dir DIR` stands for: blobs in DIR, cached in DIR. */
export function localfsConfig(dir: string): string {
  return JSON.stringify({
    device: { backend: { type: 'localfs', config: { dir, readahead: true } }, cache: { type: 'blobcache', config: { compressed: false, work_dir: dir } } },
    mode: 'direct',
    digest_validate: false,
    iostats_files: false,
  });
}
