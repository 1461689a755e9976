/**
 * Options shared by the commands that serve an image (`mount`, `virtiofs`): where the image and its
 * blobs are (local files, a nydusd config, an image reference), the cache, and prefetch.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { type Logger, type Metrics, errorMessage } from '../base/index.js';
import { FsStats } from '../daemon/fs-stats.js';
import { ImageService } from '../daemon/image-service.js';
import { type ImageSource, type SourceFlags, openImageSource, readPathList } from '../daemon/image-source.js';
import { nativeCodecs } from '../native/index.js';
import { trimCacheFor } from '../storage/cache/gc.js';
import { parseSize, progressBar } from './common.js';

/** What `serveOptions` parses: where the image comes from, and how it is served. */
export interface ServeFlags extends SourceFlags {
  amplifyIo?: number;
  prefetch?: boolean;
  prefetchFiles?: string;
  prefetchAll?: boolean;
  recordPattern?: string;
  stats?: boolean;
}

export function serveOptions(cmd: Command): Command {
  return cmd
    .option('--bootstrap <file>', 'the image bootstrap')
    .option('--blob <file>', 'a data blob with an inlined bootstrap')
    .option('--blob-dir <dir>', 'directory holding the data blobs (localfs backend)')
    .option('--config <file>', 'nydusd configuration (JSON v1/v2 or TOML v2): backend, cache, validation, prefetch')
    .option('--image <ref>', 'serve an image from a registry (docker://HOST/REPO:TAG) or an OCI layout (oci:DIR[:TAG])')
    .option('--plain-http', 'talk plain http to the registry (as the config key scheme: http)')
    .option('--cache-dir <dir>', 'local chunk cache (kept across runs; without it chunks are cached in memory)')
    .option('--validate', 'verify every chunk again on each cache read (nydus digest_validate)')
    .option('--amplify-io <bytes>', 'also fetch the chunks stored after a missing one, up to this many bytes per read (nydus amplify_io; 0: only what is read; default: up to 1 MiB ahead only while reads scan a blob in storage order)', parseSize)
    .option('--prefetch', "prefetch the files of the image's prefetch table in the background (nydus fs_prefetch)")
    .option('--prefetch-files <file>', 'prefetch these image paths (one per line) in the background first')
    .option('--prefetch-all', 'prefetch every chunk of the image in the background (nydus prefetch_all)')
    .option('--record-pattern <file>', 'at exit, write the files opened or read, first accessed first, as a prefetch list (for build and convert --prefetch-files)')
    .option('--stats', 'print the counters (requests, bytes, chunks fetched, cache hits) as JSON at exit');
}

export interface Served {
  source: ImageSource;
  service: ImageService;
  /** Closes the service, then writes the access pattern (`--record-pattern`). */
  close(): Promise<void>;
}

export async function openServed(flags: ServeFlags, log: Logger, metrics: Metrics): Promise<Served> {
  const files = flags.prefetchFiles !== undefined ? await readPathList(flags.prefetchFiles) : undefined;
  const prefetchFirst = files !== undefined || flags.prefetch === true || flags.prefetchAll === true ? { ...(files ? { files } : {}) } : undefined;
  const source = await openImageSource({ ...flags, ...(prefetchFirst ? { prefetchFirst } : {}) }, nativeCodecs, log, metrics);
  const maxSize = source.config?.cache.maxSizeBytes;
  if (maxSize !== undefined && source.cacheDir !== undefined && existsSync(source.cacheDir)) {
    await trimCacheFor(source.cacheDir, maxSize, source.loaded.image.blobs, source.cacheCipher, log.child({ component: 'cache-gc' }));
  }
  // The pattern file is written at exit; a path that cannot be written is an error now, not then.
  if (flags.recordPattern !== undefined) await writeFile(flags.recordPattern, '');
  const recorder = flags.recordPattern !== undefined ? new FsStats('/') : undefined;
  const amplifyBytes = flags.amplifyIo ?? source.amplifyBytes; // else the device's blob read-ahead
  const service = new ImageService({
    loaded: source.loaded,
    backend: source.backend,
    codecs: nativeCodecs,
    ...(source.cacheDir !== undefined ? { cacheDir: source.cacheDir } : {}),
    ...(source.cacheCipher !== undefined ? { cacheCipher: source.cacheCipher } : {}),
    validate: source.validate,
    ...(amplifyBytes !== undefined ? { amplifyBytes } : {}),
    enableXattr: source.config?.rafs.enableXattr === true,
    ...(recorder !== undefined ? { wrapFs: (fs) => recorder.wrap(fs) } : {}),
    metrics,
    log,
  });
  const cfg = source.prefetch;
  if (flags.prefetch === true && files === undefined && source.loaded.image.prefetch.length === 0) {
    log.warn('--prefetch: the image has no prefetch table (build or convert it with --prefetch-files)');
  }
  if (cfg !== undefined || files !== undefined || flags.prefetch === true || flags.prefetchAll === true) {
    const bar = progressBar('prefetch');
    void service
      .startPrefetch({
        ...(files ? { files } : {}),
        all: flags.prefetchAll === true || cfg?.prefetchAll === true,
        threads: cfg?.threads ?? 8,
        mergeBytes: cfg?.batchSizeBytes ?? 1 << 20,
        bandwidthLimit: cfg?.bandwidthLimitBytesPerSec ?? 0,
        onProgress: (d, t) => bar.update(d, t),
      })
      .catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'prefetch failed'))
      .finally(() => {
        bar.stop();
        source.earlyReads?.release();
      });
  }
  const close = async (): Promise<void> => {
    await service.close();
    if (recorder !== undefined && flags.recordPattern !== undefined) await writeFile(flags.recordPattern, recorder.prefetchList());
  };
  return { source, service, close };
}
