/** `damselfly inspect`: superblock, blobs and tree of an image, or one file's chunks. */
import type { Command } from 'commander';
import { formatSummary, inspectImage, inspectPath } from '../tools/index.js';
import { type ImageFlags, imageOptions, openImageFromFlags } from './image-args.js';
import { printJson, run } from './common.js';

export function register(program: Command): void {
  imageOptions(program.command('inspect').description('describe an image: superblock, blobs, tree'), false)
    .option('--path <path>', 'show one file: attributes, xattrs and chunks')
    .option('--no-tree', 'leave out the tree listing')
    .option('--json', 'print JSON')
    .action((flags: ImageFlags & { path?: string; tree: boolean; json?: boolean }) =>
      run(async () => {
        const { image } = await openImageFromFlags(flags);
        if (flags.path !== undefined) {
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
