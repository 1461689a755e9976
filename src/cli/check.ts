/** `damselfly check`: every structure and every chunk digest of an image. */
import type { Command } from 'commander';
import { nativeCodecs } from '../native/index.js';
import { checkImage } from '../tools/index.js';
import { EXIT_FAILURE, getLogger, printJson, progressBar, run } from './common.js';
import { type ImageFlags, imageOptions, openToolImage, withBootstrapArgument } from './image-args.js';

export function register(program: Command): void {
  imageOptions(program.command('check').description('verify every structure and every chunk digest of an image'), true)
    .option('--json', 'print the report as JSON')
    .action((argument: string | undefined, given: ImageFlags & { json?: boolean }) =>
      run(async () => {
        const flags = withBootstrapArgument(argument, given);
        const opened = await openToolImage(flags);
        const { loaded } = opened;
        try {
          const backend = opened.backend();
          const bar = progressBar('check');
          const report = await checkImage(loaded.image, backend, {
            codecs: nativeCodecs,
            log: getLogger(),
            blobFiles: loaded.blobFiles,
            onProgress: (d, t) => bar.update(d, t),
          });
          bar.stop();
          if (flags.json) {
            printJson(report);
          } else {
            process.stdout.write(
              `${report.inodes} inodes, ${report.files} files, ${report.blobs} blobs, ${report.chunksVerified} chunks verified (${report.bytesVerified} bytes)\n`,
            );
            for (const p of report.problems) {
              const where = [p.path, p.blob ? `blob ${p.blob}` : undefined, p.chunk !== undefined ? `chunk ${p.chunk}` : undefined].filter(Boolean).join(', ');
              process.stdout.write(`PROBLEM${where ? ` (${where})` : ''}: ${p.message}\n`);
            }
            if (report.truncated) process.stdout.write('(more problems not shown)\n');
            process.stdout.write(report.ok ? 'OK\n' : 'FAILED\n');
          }
          return report.ok ? 0 : EXIT_FAILURE;
        } finally {
          await opened.close();
        }
      }),
    );
}
