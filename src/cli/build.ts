/** `damselfly build`: directories or OCI layers → a RAFS v6 image (bootstrap + blobs). */
import type { Command } from 'commander';
import { build } from '../builder/build.js';
import { nativeCodecs } from '../native/index.js';
import { getLogger, printJson, progressBar, run } from './common.js';
import { type FormatFlags, formatFromFlags, formatOptions } from './format-args.js';

interface BuildFlags extends FormatFlags {
  bootstrap?: string;
  blobDir: string;
  chunkDict?: string;
  inlineBootstrap?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('build')
    .description('build a RAFS v6 image from directories or OCI layer tars (tar, tar.gz, tar.zst), bottom layer first')
    .argument('<source...>', 'a directory or an OCI layer file; several sources are stacked as layers with OCI whiteouts')
    .option('--bootstrap <file>', 'where to write the bootstrap')
    .requiredOption('--blob-dir <dir>', 'directory for the data blobs (named by blob id)');
  formatOptions(cmd)
    .option('--chunk-dict <bootstrap>', 'deduplicate against the chunks of an existing RAFS v6 image')
    .option('--inline-bootstrap', 'also store the bootstrap inside the top layer blob')
    .option('--json', 'print the result as JSON')
    .action((sources: string[], flags: BuildFlags) =>
      run(async () => {
        const log = getLogger();
        const bar = progressBar('build');
        const result = await build({
          sources,
          blobDir: flags.blobDir,
          ...(flags.bootstrap ? { bootstrapPath: flags.bootstrap } : {}),
          codecs: nativeCodecs,
          ...(await formatFromFlags(flags)),
          ...(flags.chunkDict ? { chunkDictPath: flags.chunkDict } : {}),
          inlineBootstrap: flags.inlineBootstrap === true,
          log,
          onProgress: (done, total) => bar.update(done, total),
        });
        bar.stop();
        const summary = {
          bootstrap: result.bootstrapPath ?? null,
          bootstrapSize: result.bootstrap.length,
          blobs: result.blobs,
          blobTable: result.blobTable.map((b) => b.id),
          prefetch: result.prefetch,
          chunks: result.stats,
        };
        if (flags.json) {
          printJson(summary);
        } else {
          const s = result.stats;
          process.stdout.write(
            `bootstrap ${summary.bootstrap ?? '(inlined)'} (${summary.bootstrapSize} bytes)\n` +
              result.blobs.map((b) => `blob ${b.id} (${b.size} bytes, ${b.chunks} chunks)\n`).join('') +
              `chunks: ${s.chunks} read, ${s.stored} stored, ${s.dedupHits} deduplicated, ${s.dictHits} from the chunk dictionary; ` +
              `${s.bytesIn} bytes in, ${s.bytesStored} bytes stored\n`,
          );
        }
      }),
    );
}
