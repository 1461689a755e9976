/** Options shared by the commands that open an existing image (`--bootstrap` / `--blob`). */
import type { Command } from 'commander';
import { nativeCodecs } from '../native/index.js';
import { LocalFsBackend } from '../storage/backend/localfs.js';
import { type LoadedImage, loadImage } from '../storage/open-image.js';
import { UsageError } from '../base/index.js';
import { dirname } from 'node:path';

export interface ImageFlags {
  bootstrap?: string;
  blob?: string;
  blobDir?: string;
}

export function imageOptions(cmd: Command, needBlobs: boolean): Command {
  cmd.option('--bootstrap <file>', 'the image bootstrap').option('--blob <file>', 'a data blob with an inlined bootstrap');
  if (needBlobs) cmd.option('--blob-dir <dir>', 'directory holding the data blobs (default: that of --blob)');
  return cmd;
}

export async function openImageFromFlags(flags: ImageFlags): Promise<LoadedImage> {
  return loadImage(nativeCodecs, { ...(flags.bootstrap ? { bootstrap: flags.bootstrap } : {}), ...(flags.blob ? { blob: flags.blob } : {}) });
}

export function localBackendFromFlags(flags: ImageFlags, loaded: LoadedImage): LocalFsBackend {
  const dir = flags.blobDir ?? (flags.blob ? dirname(flags.blob) : undefined);
  if (dir === undefined && loaded.blobFiles.size === 0) throw new UsageError('--blob-dir is required');
  return new LocalFsBackend({ ...(dir ? { dir } : {}), files: loaded.blobFiles });
}
