/**
 * Where a served image comes from, as the daemon's command lines and nydusd configs say it: a
 * local bootstrap (or a blob inlining one) with a blob directory; a nydusd configuration
 * (`--config`: backend, cache, validation, prefetch); or an image reference (`--image`), of which
 * only the manifest and the bootstrap layer are fetched before serving, chunks then on demand.
 */
import { constants as fsc } from 'node:fs';
import { access, mkdir, readFile, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, type Metrics, UsageError, errorMessage } from '../base/index.js';
import { type DaemonConfig, type PrefetchConfig, type RegistryBackendConfig, loadConfigFile } from '../config/index.js';
import type { Codecs } from '../format/compression.js';
import { openBootstrap } from '../format/open.js';
import type { RafsImage } from '../format/image.js';
import { bootstrapDescriptor, extractBootstrap, fetchBootstrap } from '../oci/convert/bootstrap-layer.js';
import type { Descriptor } from '../oci/media-types.js';
import { parseImageRef } from '../oci/reference.js';
import { RegistryClient, credentialsForHost } from '../oci/registry/index.js';
import { OciLayoutStore, RegistryStore } from '../oci/store.js';
import { EarlyReadsBackend } from '../storage/backend/early-reads.js';
import { createBackend, registryClientOptions } from '../storage/backend/factory.js';
import { LocalFsBackend } from '../storage/backend/localfs.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { CacheCipher } from '../storage/cache/cache-cipher.js';
import { FileBlobCache } from '../storage/cache/blob-cache.js';
import { keptBootstrapPath, writeKeptBootstrap } from '../storage/cache/kept-bootstrap.js';
import { type LoadedImage, loadImage, localBlobs } from '../storage/open-image.js';
import { loadBlobMeta } from '../storage/blob-meta.js';
import { planRanges, prefetchPlan } from './prefetch-plan.js';

export interface SourceFlags {
  bootstrap?: string;
  blob?: string;
  blobDir?: string;
  config?: string;
  image?: string;
  plainHttp?: boolean;
  cacheDir?: string;
  validate?: boolean;
  /**
   * A prefetch will follow (of these files, else of the image's prefetch table; a config that
   * enables prefetch implies it too). From a registry, its first reads are requested as soon as
   * the bootstrap is in, ahead of the rest of the set-up.
   */
  prefetchFirst?: { files?: string[] };
}

export interface ImageSource {
  loaded: LoadedImage;
  backend: BlobBackend;
  cacheDir?: string;
  /** The cipher of an encrypted chunk cache (the config's `filecache.enable_encryption`). */
  cacheCipher?: CacheCipher;
  validate: boolean;
  prefetch?: PrefetchConfig;
  /** Read amplification from the config (nydus `amplify_io` / `rafs.batch_size`). */
  amplifyBytes?: number;
  config?: DaemonConfig;
  /** The prefetch's first reads, requested early (`prefetchFirst`): released when it is done. */
  earlyReads?: { release(): void };
}

/**
 * The bootstrap of a registry image: the one an earlier daemon kept in the cache directory for
 * this bootstrap layer (the next container of the image on this host does not download it again;
 * not with `validate`, which trusts nothing cached unverified), else the layer's.
 */
async function registryBootstrap(store: RegistryStore, layer: Descriptor, cacheDir: string | undefined, validate: boolean, log: Logger): Promise<{ bootstrap: Buffer; image: RafsImage; kept: boolean }> {
  if (cacheDir !== undefined && !validate) {
    const path = keptBootstrapPath(cacheDir, layer.digest);
    const kept = await readFile(path).catch(() => undefined);
    if (kept !== undefined) {
      try {
        const image = openBootstrap(kept);
        // Used now: `cache gc` evicts the least recently used first.
        const now = new Date();
        await utimes(path, now, now).catch(() => undefined);
        return { bootstrap: kept, image, kept: true };
      } catch (e) {
        log.warn({ bootstrapLayer: layer.digest, err: errorMessage(e) }, 'the bootstrap kept in the cache directory is unusable; fetching it again');
      }
    }
  }
  const bootstrap = await extractBootstrap(store.blobStream(layer.digest), layer);
  return { bootstrap, image: openBootstrap(bootstrap), kept: false };
}

/** At most this much of a prefetch is requested before the image is served. */
const EARLY_READ_BYTES = 64 << 20;

/**
 * Requests the start of the prefetch (its chunks' blob ranges, up to `EARLY_READ_BYTES`) at once,
 * behind a backend that answers the prefetcher's and readers' reads from them. Blobs the cache
 * already knows are left out: a restart must not fetch again what its cache holds.
 */
async function earlyReads(
  image: RafsImage,
  backend: BlobBackend,
  want: { files?: string[] },
  cacheDir: string | undefined,
  cipher: CacheCipher | undefined,
  log: Logger,
  metrics: Metrics,
): Promise<EarlyReadsBackend | undefined> {
  const plan = prefetchPlan(image, { ...(want.files ? { files: want.files } : {}), all: false });
  let ranges = planRanges(plan, image.blobs, EARLY_READ_BYTES);
  if (cacheDir !== undefined) {
    const cached = new Set<string>();
    const blobs = new Map(image.blobs.map((b) => [b.id, b]));
    for (const id of new Set(ranges.map((r) => r.id))) {
      const blob = blobs.get(id);
      if (blob !== undefined && (await FileBlobCache.exists(cacheDir, blob, cipher))) cached.add(id);
    }
    ranges = ranges.filter((r) => !cached.has(r.id));
  }
  if (ranges.length === 0) return undefined;
  log.info({ ranges: ranges.length, bytes: ranges.reduce((n, r) => n + r.length, 0) }, 'prefetch: first reads requested with the bootstrap');
  return new EarlyReadsBackend(backend, ranges, { metrics, log: log.child({ component: 'early-reads' }) });
}

function registryConfig(host: string, repo: string, plainHttp: boolean, base?: DaemonConfig): RegistryBackendConfig {
  const fromConfig = base?.backend.type === 'registry' ? base.backend : undefined;
  return {
    type: 'registry',
    scheme: plainHttp ? 'http' : (fromConfig?.scheme ?? 'https'),
    host,
    repo,
    ...(fromConfig?.auth ? { auth: fromConfig.auth } : {}),
    ...(fromConfig?.registryToken ? { registryToken: fromConfig.registryToken } : {}),
    blobUrlScheme: '',
    blobRedirectedHost: '',
    mirrors: fromConfig?.mirrors ?? [],
    skipVerify: fromConfig?.skipVerify ?? false,
    caCertFiles: fromConfig?.caCertFiles ?? [],
    timeoutMs: fromConfig?.timeoutMs ?? 5000,
    connectTimeoutMs: fromConfig?.connectTimeoutMs ?? 5000,
    retryLimit: fromConfig?.retryLimit ?? 3,
    proxy: fromConfig?.proxy ?? { url: '', pingUrl: '', fallback: true, checkIntervalMs: 5000, useHttp: false, checkPauseElapsedMs: 300_000, dragonflySchedulerEndpoint: '' },
  };
}

/** A cache directory this process can write (made if missing), or a usage error saying why not. */
export async function checkCacheDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, fsc.W_OK | fsc.X_OK);
  } catch (e) {
    throw new UsageError(`cache directory ${dir} is not usable: ${errorMessage(e)}`, { cause: e });
  }
}

export async function openImageSource(flags: SourceFlags, codecs: Codecs, log: Logger, metrics: Metrics): Promise<ImageSource> {
  const source = await openSource(flags, codecs, log, metrics);
  try {
    // The registry path has loaded them already, before planning its first reads.
    await loadBlobMeta(source.loaded.image, source.backend, codecs, { ...(source.cacheDir !== undefined ? { cacheDir: source.cacheDir } : {}), log });
  } catch (e) {
    await source.backend.close();
    throw e;
  }
  return source;
}

async function openSource(flags: SourceFlags, codecs: Codecs, log: Logger, metrics: Metrics): Promise<ImageSource> {
  const config = flags.config !== undefined ? await loadConfigFile(flags.config, { onWarning: (m) => log.warn(m) }) : undefined;
  const cacheDir = flags.cacheDir ?? (config?.cache.type === 'blobcache' || config?.cache.type === 'filecache' ? config.cache.workDir : undefined);
  if (cacheDir !== undefined) await checkCacheDir(cacheDir);
  const cacheCipher = config !== undefined ? CacheCipher.fromConfig(config.cache) : undefined;
  const common = {
    ...(cacheDir !== undefined ? { cacheDir } : {}),
    ...(cacheCipher !== undefined ? { cacheCipher } : {}),
    validate: flags.validate === true || config?.rafs.validate === true || config?.cache.validate === true,
    ...(config?.prefetch.enable ? { prefetch: config.prefetch } : {}),
    ...(config !== undefined ? { amplifyBytes: config.rafs.batchSizeBytes, config } : {}),
  };
  if (flags.image !== undefined) {
    if (flags.bootstrap !== undefined || flags.blob !== undefined) throw new UsageError('--image replaces --bootstrap and --blob');
    const ref = parseImageRef(flags.image);
    if (ref.kind === 'oci-layout') {
      const { bootstrap } = await fetchBootstrap(new OciLayoutStore(ref, log));
      return { ...common, loaded: { image: openBootstrap(bootstrap), bootstrap, blobFiles: new Map() }, backend: new LocalFsBackend({ dir: join(ref.dir, 'blobs', 'sha256') }) };
    }
    let rcfg = registryConfig(ref.host, ref.repo, flags.plainHttp === true, config);
    if (rcfg.auth === undefined && rcfg.registryToken === undefined) {
      // No credentials in a config: those a `docker login` (or podman's, skopeo's) saved, if any.
      const saved = credentialsForHost(ref.host, log);
      if (saved !== undefined) rcfg = { ...rcfg, auth: saved };
    }
    // The client of the chunk reads to come (createBackend takes it over below).
    const client = new RegistryClient(registryClientOptions(rcfg, log));
    let handedOver = false;
    try {
      const store = new RegistryStore(client, ref, true);
      const layer = bootstrapDescriptor((await store.resolve()).manifest, store.name);
      const { bootstrap, image, kept } = await registryBootstrap(store, layer, cacheDir, common.validate, log);
      const loaded = { image, bootstrap, blobFiles: new Map<string, string>() };
      // The chunk reads go on with this client: its open connection and its token.
      const origin = createBackend(rcfg, { log, metrics, originClient: client });
      handedOver = true;
      const want = flags.prefetchFirst ?? (config?.prefetch.enable === true ? {} : undefined);
      let early: EarlyReadsBackend | undefined;
      try {
        // Batch chunks are located through their blobs' meta: needed to plan the first reads.
        await loadBlobMeta(image, origin, codecs, { ...(cacheDir !== undefined ? { cacheDir } : {}), log });
        early = want !== undefined ? await earlyReads(loaded.image, origin, want, cacheDir, cacheCipher, log, metrics) : undefined;
        if (cacheDir !== undefined && !kept) {
          // Kept next to the chunks, for the next daemon of this image (and for a restart with the
          // registry gone). Not keeping it costs the next daemon a download, not this one its image.
          const path = keptBootstrapPath(cacheDir, layer.digest);
          await mkdir(cacheDir, { recursive: true })
            .then(() => writeKeptBootstrap(path, bootstrap))
            .catch((e: unknown) => log.warn({ file: path, err: errorMessage(e) }, 'cannot keep the bootstrap in the cache directory'));
        }
      } catch (e) {
        await (early ?? origin).close();
        throw e;
      }
      log.info({ image: flags.image, bootstrapLayer: layer.digest, bytes: bootstrap.length, fromCache: kept }, kept ? 'bootstrap kept in the cache directory' : 'bootstrap fetched');
      return { ...common, loaded, backend: early ?? origin, ...(early !== undefined ? { earlyReads: early } : {}) };
    } finally {
      if (!handedOver) await client.close();
    }
  }
  const loaded = await loadImage(codecs, { ...(flags.bootstrap ? { bootstrap: flags.bootstrap } : {}), ...(flags.blob ? { blob: flags.blob } : {}) });
  if (config !== undefined && flags.blobDir === undefined) {
    return { ...common, loaded, backend: createBackend(config.backend, { log, metrics, blobFiles: loaded.blobFiles }) };
  }
  const backend = localBlobs(loaded, flags);
  if (backend === undefined) throw new UsageError('give --blob-dir, or --config with a backend');
  return { ...common, loaded, backend };
}

/**
 * Reads a prefetch list file: one image path per line, `#` comments. The one reader of the format
 * `--record-pattern` and `damselfly pattern` write, for build, convert, mount, virtiofs and nydusd mode.
 */
export async function readPathList(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => (l.startsWith('/') ? l : `/${l}`));
}
