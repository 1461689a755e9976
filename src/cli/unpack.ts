/** `damselfly unpack`: an image's tree to a directory or a tar archive. */
import type { Command } from 'commander';
import { UsageError } from '../base/index.js';
import { nativeCodecs } from '../native/index.js';
import { ToolChunkReader, unpackToDirectory, unpackToTar } from '../tools/index.js';
import { getLogger, run } from './common.js';
import { type ImageFlags, imageOptions, openToolImage, withBootstrapArgument } from './image-args.js';

export function register(program: Command): void {
  imageOptions(program.command('unpack').description('write the tree of an image to a directory or a tar file'), true)
    .option('--output <dir>', 'an empty or new directory')
    .option('--tar <file>', 'a new tar file')
    .option('--sparse', "with --tar: files with holes as GNU tar's --sparse writes them (PAX 1.0), their data alone")
    .action((argument: string | undefined, given: ImageFlags & { output?: string; tar?: string; sparse?: boolean }) =>
      run(async () => {
        const flags = withBootstrapArgument(argument, given);
        if ((flags.output === undefined) === (flags.tar === undefined)) throw new UsageError('give exactly one of --output and --tar');
        if (flags.sparse === true && flags.tar === undefined) throw new UsageError('--sparse is for --tar (a directory keeps holes as holes already)');
        const opened = await openToolImage(flags);
        const { loaded } = opened;
        try {
          const reader = await ToolChunkReader.open(loaded.image, opened.backend(), nativeCodecs);
          const log = getLogger();
          const r = flags.output !== undefined
            ? await unpackToDirectory(loaded.image, reader, flags.output, log)
            : await unpackToTar(loaded.image, reader, flags.tar as string, log, { sparse: flags.sparse === true });
          process.stdout.write(`unpacked ${r.files} files, ${r.bytes} bytes\n`);
        } finally {
          await opened.close();
        }
      }),
    );
}
