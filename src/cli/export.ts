/** `damselfly export`: uncompressed blob views, or one flattened EROFS block image. */
import { mkdir } from 'node:fs/promises';
import type { Command } from 'commander';
import { UsageError } from '../base/index.js';
import { nativeCodecs } from '../native/index.js';
import { exportBlobViews, exportBlockImage } from '../tools/index.js';
import { printJson, run } from './common.js';
import { type ImageFlags, imageOptions, openToolImage, withBootstrapArgument } from './image-args.js';

export function register(program: Command): void {
  imageOptions(
    program.command('export').description('write uncompressed blob views (EROFS extra devices, cache layout) or a flattened block image'),
    true,
  )
    .option('--blob-views <dir>', 'write <dir>/<blob id>.blob.data for every blob')
    .option('--block <file>', 'write one block image: bootstrap + blob views at their mapped addresses')
    .option('--json', 'print the written paths as JSON')
    .action((argument: string | undefined, given: ImageFlags & { blobViews?: string; block?: string; json?: boolean }) =>
      run(async () => {
        const flags = withBootstrapArgument(argument, given);
        if ((flags.blobViews === undefined) === (flags.block === undefined)) throw new UsageError('give exactly one of --blob-views and --block');
        const opened = await openToolImage(flags);
        const { loaded } = opened;
        try {
          const backend = opened.backend();
          if (flags.blobViews !== undefined) {
            await mkdir(flags.blobViews, { recursive: true });
            const paths = await exportBlobViews(loaded.image, backend, nativeCodecs, flags.blobViews);
            if (flags.json) printJson(paths);
            else process.stdout.write(paths.map((p) => `${p}\n`).join(''));
          } else {
            await exportBlockImage(loaded.image, loaded.bootstrap, backend, nativeCodecs, flags.block as string);
            if (flags.json) printJson([flags.block]);
            else process.stdout.write(`${flags.block}\n`);
          }
        } finally {
          await opened.close();
        }
      }),
    );
}
