/** `damselfly inspect`: superblock, blobs and tree of an image, or one file's chunks. */
import type { Command } from 'commander';
import { formatSummary, inspectImage, inspectPath } from '../tools/index.js';
import { UsageError } from '../base/index.js';
import { nativeCodecs } from '../native/index.js';
import { loadBlobMeta } from '../storage/blob-meta.js';
import { type ImageFlags, imageOptions, openToolImage, withBootstrapArgument } from './image-args.js';
import { printJson, run } from './common.js';

export function register(program: Command): void {
  imageOptions(program.command('inspect').description('describe an image: superblock, blobs, tree'), true)
    .option('--path <path>', 'show one file: attributes, xattrs and chunks')
    .option('--no-tree', 'leave out the tree listing')
    .option('--json', 'print JSON')
    .action((argument: string | undefined, given: ImageFlags & { path?: string; tree: boolean; json?: boolean }) =>
      run(async () => {
        const flags = withBootstrapArgument(argument, given);
        const opened = await openToolImage(flags);
        try {
          const { image } = opened.loaded;
          if (flags.path !== undefined) {
            // Where a batch member or ZRan chunk is stored only its blob's meta says (a read from
            // the blob; an image opened by reference has it read already).
            if (flags.image === undefined && image.blobsNeedingMeta().length > 0) {
              if (flags.blobDir === undefined && flags.blob === undefined) throw new UsageError('this image locates chunks through its blobs\' chunk info (batches or ZRan): give --blob-dir to show where its chunks are');
              await loadBlobMeta(image, opened.backend(), nativeCodecs);
            }
            const info = inspectPath(image, flags.path);
            if (flags.json) printJson(info);
            else process.stdout.write(JSON.stringify(info, null, 2) + '\n');
            return;
          }
          const summary = inspectImage(image, flags.tree);
          if (flags.json) printJson(summary);
          else process.stdout.write(formatSummary(summary) + '\n');
        } finally {
          await opened.close();
        }
      }),
    );
}
