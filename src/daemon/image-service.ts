/**
 * Composition of one served image: bootstrap → chunk device (backend + cache) → image filesystem
 * → FUSE server, sharing one logger and one `Metrics`.
 */
import type { Logger, Metrics } from '../base/index.js';
import type { Codecs } from '../format/compression.js';
import { ImageFs } from '../fs/image/image-fs.js';
import { FuseServer } from '../fuse/index.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { BlobDevice } from '../storage/device.js';
import type { LoadedImage } from '../storage/open-image.js';
import { SuperFlags } from '../format/constants.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import { ChunkNeighbors } from '../storage/chunk/neighbors.js';

export interface ImageServiceOptions {
  loaded: LoadedImage;
  backend: BlobBackend;
  codecs: Codecs;
  cacheDir?: string;
  validate?: boolean;
  /** Read amplification in compressed bytes (nydus `amplify_io`); 0 fetches only what is read. */
  amplifyBytes?: number;
  metrics: Metrics;
  log: Logger;
}

function amplification(chunks: ChunkInfo[], bytes: number): { amplifyBytes: number; neighbors: (c: ChunkInfo, max: number) => ChunkInfo[] } {
  const index = new ChunkNeighbors(chunks);
  return { amplifyBytes: bytes, neighbors: (c, max) => index.after(c, max) };
}

export class ImageService {
  readonly device: BlobDevice;
  readonly fs: ImageFs;
  readonly server: FuseServer;

  constructor(opts: ImageServiceOptions) {
    const { image } = opts.loaded;
    this.device = new BlobDevice({
      blobs: image.blobs,
      backend: opts.backend,
      codecs: opts.codecs,
      ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
      validate: opts.validate === true,
      metrics: opts.metrics,
      log: opts.log.child({ component: 'storage' }),
      ...(opts.amplifyBytes && image.allChunks ? amplification(image.allChunks(), opts.amplifyBytes) : {}),
    });
    const explicitOwners = (image.flags & SuperFlags.EXPLICIT_UID_GID) !== 0n;
    this.fs = new ImageFs({
      image,
      device: this.device,
      metrics: opts.metrics,
      log: opts.log.child({ component: 'image-fs' }),
      ...(explicitOwners ? {} : { defaultOwner: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 } }),
    });
    this.server = new FuseServer(this.fs, { log: opts.log.child({ component: 'fuse' }), metrics: opts.metrics });
  }

  async close(): Promise<void> {
    await this.device.close();
  }
}
