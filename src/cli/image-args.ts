/**
 * Options shared by the commands that open an existing image: local files (`--bootstrap` /
 * `--blob`, blobs in `--blob-dir`), or an image reference (`--image`: a registry or an OCI layout,
 * as `mount` takes it; only the manifest and the bootstrap layer are fetched up front, chunks as
 * the command reads them, like `nydusify check` of a pushed image). As `nydus-image inspect`,
 * `check` and `unpack` take them, the bootstrap may also come as the first argument, and the
 * options have nydus-image's short forms (-B, -b, -D).
 */
import type { Command } from 'commander';
import { Metrics, UsageError } from '../base/index.js';
import { nativeCodecs } from '../native/index.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { type LoadedImage, loadImage, localBlobs } from '../storage/open-image.js';
import { getLogger } from './common.js';

export interface ImageFlags {
  bootstrap?: string;
  blob?: string;
  blobDir?: string;
  image?: string;
  plainHttp?: boolean;
}

export function imageOptions(cmd: Command, needBlobs: boolean): Command {
  cmd
    .argument('[bootstrap]', 'the image bootstrap (as --bootstrap)')
    .option('-B, --bootstrap <file>', 'the image bootstrap')
    .option('-b, --blob <file>', 'a data blob with an inlined bootstrap');
  if (needBlobs) cmd.option('-D, --blob-dir <dir>', 'directory holding the data blobs (default: that of --blob)');
  return cmd
    .option('--image <ref>', 'instead of local files, an image in a registry (docker://HOST/REPO:TAG) or an OCI layout (oci:DIR[:TAG]); chunks are fetched as they are read')
    .option('--plain-http', 'talk plain http to the registry');
}

/**
 * The flags of a command made by `imageOptions`, with the bootstrap given as its argument (if any)
 * in `bootstrap`.
 */
export function withBootstrapArgument<F extends ImageFlags>(argument: string | undefined, flags: F): F {
  if (argument === undefined) return flags;
  if (flags.bootstrap !== undefined) throw new UsageError(`the bootstrap is given twice: ${argument} and --bootstrap ${flags.bootstrap}`);
  return { ...flags, bootstrap: argument };
}

/** An opened image and where its chunks are read from. */
export interface ToolImage {
  loaded: LoadedImage;
  /**
   * The backend of the chunks, made on the first call for local files (a usage error when no
   * blob directory is known); `close` closes it.
   */
  backend(): BlobBackend;
  close(): Promise<void>;
}

export async function openToolImage(flags: ImageFlags): Promise<ToolImage> {
  if (flags.image !== undefined) {
    if (flags.bootstrap !== undefined || flags.blob !== undefined || flags.blobDir !== undefined) throw new UsageError('--image replaces --bootstrap, --blob and --blob-dir');
    // Loaded only here: the local commands do not load the registry client.
    const { openImageSource } = await import('../daemon/image-source.js');
    const source = await openImageSource({ image: flags.image, ...(flags.plainHttp ? { plainHttp: true } : {}) }, nativeCodecs, getLogger(), new Metrics());
    return { loaded: source.loaded, backend: () => source.backend, close: () => source.backend.close() };
  }
  if (flags.plainHttp) throw new UsageError('--plain-http goes with --image');
  const loaded = await loadImage(nativeCodecs, { ...(flags.bootstrap ? { bootstrap: flags.bootstrap } : {}), ...(flags.blob ? { blob: flags.blob } : {}) });
  let backend: BlobBackend | undefined;
  const local = (): BlobBackend => {
    const b = localBlobs(loaded, flags);
    if (b === undefined) throw new UsageError('--blob-dir is required');
    return b;
  };
  return {
    loaded,
    backend: () => (backend ??= local()),
    close: async () => {
      await backend?.close();
    },
  };
}
