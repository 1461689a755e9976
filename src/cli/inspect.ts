/** `damselfly inspect`: superblock, blobs and tree of an image, or one file's chunks. */
import type { Command } from 'commander';
import { formatSummary, inspectImage, inspectPath } from '../tools/index.js';
import { UsageError } from '../base/index.js';
import { nativeCodecs } from '../native/index.js';
import { loadBlobMeta } from '../storage/blob-meta.js';
import { type ImageFlags, imageOptions, localBackendFromFlags, openImageFromFlags } from './image-args.js';
import { printJson, run } from './common.js';

export function register(program: Command): void {
  imageOptions(program.command('inspect').description('describe an image: superblock, blobs, tree'), true)
    .option('--path <path>', 'show one file: attributes, xattrs and chunks')
    .option('--no-tree', 'leave out the tree listing')
    .option('--json', 'print JSON')
    .action((flags: ImageFlags & { path?: string; tree: boolean; json?: boolean }) =>
      run(async () => {
        const loaded = await openImageFromFlags(flags);
        const { image } = loaded;
        if (flags.path !== undefined) {
          // Where a batch member is stored only its blob's meta says (a read from the blob).
          if (image.blobsNeedingMeta().length > 0) {
            if (flags.blobDir === undefined && flags.blob === undefined) throw new UsageError('this image stores small files in batches: give --blob-dir to show where its chunks are');
            const backend = localBackendFromFlags(flags, loaded);
            try {
              await loadBlobMeta(image, backend, nativeCodecs);
            } finally {
              await backend.close();
            }
          }
          const info = inspectPath(image, flags.path);
          if (flags.json) printJson(info);
          else process.stdout.write(JSON.stringify(info, null, 2) + '\n');
          return;
        }
        const summary = inspectImage(image, flags.tree);
        if (flags.json) printJson(summary);
        else process.stdout.write(formatSummary(summary) + '\n');
      }),
    );
}
