/**
 * Composition of one served image: bootstrap → chunk device (backend + cache) → image filesystem
 * → FUSE server, sharing one logger and one `Metrics`.
 */
import type { Logger, Metrics } from '../base/index.js';
import type { Codecs } from '../format/compression.js';
import { ImageFs } from '../fs/image/image-fs.js';
import type { FileSystem } from '../fs/types.js';
import { FuseServer } from '../fuse/index.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { BlobDevice, type DeviceOptions, chunkBufferPool } from '../storage/device.js';
import type { LoadedImage } from '../storage/open-image.js';
import { SuperFlags } from '../format/constants.js';
import { warmDigest } from '../format/digest.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import type { CacheCipher } from '../storage/cache/cache-cipher.js';
import { ChunkNeighbors } from '../storage/chunk/neighbors.js';
import { type PrefetchResult, Prefetcher } from '../storage/prefetch/prefetcher.js';
import { prefetchPlan } from './prefetch-plan.js';

export interface ImageServiceOptions {
  loaded: LoadedImage;
  backend: BlobBackend;
  codecs: Codecs;
  cacheDir?: string;
  /** Encrypt the cache files (filecache `enable_encryption`). */
  cacheCipher?: CacheCipher;
  validate?: boolean;
  /**
   * Read amplification in compressed bytes (nydus `amplify_io`); 0 fetches only what is read.
   * Without it, the device's blob read-ahead (`DeviceOptions.sequentialBytes`) up to 1 MiB.
   */
  amplifyBytes?: number;
  /** Serve xattrs even if the superblock says there are none (nydus `enable_xattr`). */
  enableXattr?: boolean;
  /** Wraps the image filesystem before the FUSE server gets it (e.g. `FsStats.wrap`). */
  wrapFs?: (fs: FileSystem) => FileSystem;
  metrics: Metrics;
  log: Logger;
}

/** Chunk buffers, shared by every image this process serves. */
const chunkBuffers = chunkBufferPool();

/** Blob read-ahead limit when no amplification is set: nydus's default `amplify_io`. */
const READ_AHEAD_BYTES = 1 << 20;

/**
 * The neighbour index (it sorts every chunk), built when the device prepares it after a reader's
 * first miss, or else by the first miss that wants it.
 */
function neighbors(chunks: () => ChunkInfo[]): Pick<DeviceOptions, 'neighbors' | 'prepareNeighbors' | 'batchMembers'> {
  let index: ChunkNeighbors | undefined;
  const built = (): ChunkNeighbors => (index ??= new ChunkNeighbors(chunks()));
  return { neighbors: (c, max) => built().after(c, max), prepareNeighbors: () => void built(), batchMembers: (c) => built().members(c) };
}

export interface PrefetchRequest {
  /** Paths to prefetch first instead of the bootstrap's prefetch table. */
  files?: string[];
  /** Then every remaining chunk. */
  all: boolean;
  threads: number;
  mergeBytes: number;
  bandwidthLimit: number;
  onProgress?: (done: number, total: number) => void;
}

export class ImageService {
  readonly device: BlobDevice;
  readonly fs: ImageFs;
  readonly server: FuseServer;
  private prefetcher: Prefetcher | undefined;
  private readonly opts: ImageServiceOptions;

  constructor(opts: ImageServiceOptions) {
    this.opts = opts;
    const { image } = opts.loaded;
    // Whoever serves this (mount, virtiofs, a nydusd API mount) mounts or listens next and then
    // waits for a first request: the digest binding is loaded, and the tables the first reads
    // use are built, in that idle moment, not in the first chunk read's path.
    setImmediate(() => {
      warmDigest(image.digester);
      try {
        image.prepare?.();
      } catch (e) {
        opts.log.debug({ err: String(e) }, 'preparing the image tables failed'); // the read that needs them reports it
      }
      this.device.prepare().catch((e: unknown) => opts.log.debug({ err: String(e) }, 'preparing the blobs failed'));
    });
    this.device = new BlobDevice({
      blobs: image.blobs,
      backend: opts.backend,
      codecs: opts.codecs,
      ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.cacheCipher !== undefined ? { cacheCipher: opts.cacheCipher } : {}),
      bufferPool: chunkBuffers,
      validate: opts.validate === true,
      metrics: opts.metrics,
      log: opts.log.child({ component: 'storage' }),
      ...(image.allChunks !== undefined
        ? {
            ...(opts.amplifyBytes === undefined ? { sequentialBytes: READ_AHEAD_BYTES } : { amplifyBytes: opts.amplifyBytes }),
            ...neighbors(image.allChunks.bind(image)),
          }
        : {}),
    });
    const explicitOwners = (image.flags & SuperFlags.EXPLICIT_UID_GID) !== 0n;
    this.fs = new ImageFs({
      image,
      device: this.device,
      metrics: opts.metrics,
      log: opts.log.child({ component: 'image-fs' }),
      enableXattr: opts.enableXattr === true,
      ...(explicitOwners ? {} : { defaultOwner: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 } }),
    });
    this.server = new FuseServer(opts.wrapFs ? opts.wrapFs(this.fs) : this.fs, { log: opts.log.child({ component: 'fuse' }), metrics: opts.metrics });
  }

  /**
   * Starts the background prefetch; resolves when it is done (or stopped), rejects when it cannot
   * be planned (a directory of the image that does not decode): a prefetch that fails costs the
   * prefetch, not the mount.
   */
  async startPrefetch(req: PrefetchRequest): Promise<PrefetchResult> {
    const chunks = prefetchPlan(this.opts.loaded.image, {
      ...(req.files ? { files: req.files } : {}),
      all: req.all,
      onMissing: (path) => this.opts.log.warn({ path }, 'prefetch list: the image has no such path; skipped'),
    });
    this.prefetcher = new Prefetcher(this.device, {
      threads: req.threads,
      mergeBytes: req.mergeBytes,
      bandwidthLimit: req.bandwidthLimit,
      metrics: this.opts.metrics,
      log: this.opts.log.child({ component: 'prefetch' }),
      ...(req.onProgress ? { onProgress: req.onProgress } : {}),
    });
    this.opts.log.info({ chunks: chunks.length, all: req.all }, 'prefetch started');
    return this.prefetcher.start(chunks);
  }

  async close(): Promise<void> {
    this.prefetcher?.stop();
    await this.device.close();
    await this.opts.backend.close();
  }
}
