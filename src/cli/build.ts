/** `damselfly build`: directories or OCI layers → a RAFS v6 image (bootstrap + blobs). */
import type { Command } from 'commander';
import { build } from '../builder/build.js';
import { readPathList } from '../daemon/image-source.js';
import { COMPRESSOR_NAMES, Compressor } from '../format/compression.js';
import { isPowerOfTwo, UsageError } from '../base/index.js';
import { Limits } from '../format/constants.js';
import { DIGESTER_NAMES } from '../format/digest.js';
import { nativeCodecs } from '../native/index.js';
import { getLogger, oneOf, parseLevel, parseSize, printJson, progressBar, run } from './common.js';

interface BuildFlags {
  bootstrap?: string;
  blobDir: string;
  compressor: 'none' | 'lz4_block' | 'zstd';
  digester: 'blake3' | 'sha256';
  chunkSize: number;
  batchSize: number;
  compressionLevel?: number;
  chunkDict?: string;
  prefetchFiles?: string;
  inlineBootstrap?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('build')
    .description('build a RAFS v6 image from directories or OCI layer tars (tar, tar.gz, tar.zst), bottom layer first')
    .argument('<source...>', 'a directory or an OCI layer file; several sources are stacked as layers with OCI whiteouts')
    .option('--bootstrap <file>', 'where to write the bootstrap')
    .requiredOption('--blob-dir <dir>', 'directory for the data blobs (named by blob id)')
    .option('--compressor <c>', 'none | lz4_block | zstd', oneOf(['none', 'lz4_block', 'zstd'] as const), 'zstd')
    .option('--digester <d>', 'blake3 | sha256', oneOf(['blake3', 'sha256'] as const), 'blake3')
    .option('--chunk-size <n>', 'chunk size, a power of two from 4K to 16M', parseSize, Limits.DEFAULT_CHUNK_SIZE)
    .option('--compression-level <n>', 'zstd level for chunk data, 1-22 (default 3, as nydus-image): higher builds slower, fetches less', parseLevel)
    .option('--batch-size <n>', 'store the data of small files together, in units of less than this (0 or a power of two from 4K to the chunk size; nydus-image --batch-size)', parseSize, 0)
    .option('--chunk-dict <bootstrap>', 'deduplicate against the chunks of an existing RAFS v6 image')
    .option('--prefetch-files <file>', 'file listing paths (one per line) for the prefetch table; their data goes first in each layer\'s blob')
    .option('--inline-bootstrap', 'also store the bootstrap inside the top layer blob')
    .option('--json', 'print the result as JSON')
    .action((sources: string[], flags: BuildFlags) =>
      run(async () => {
        if (!isPowerOfTwo(flags.chunkSize) || flags.chunkSize < Limits.MIN_CHUNK_SIZE || flags.chunkSize > Limits.MAX_CHUNK_SIZE) {
          throw new UsageError(`--chunk-size must be a power of two from 4096 to 16777216, not ${flags.chunkSize}`);
        }
        const log = getLogger();
        const bar = progressBar('build');
        const result = await build({
          sources,
          blobDir: flags.blobDir,
          ...(flags.bootstrap ? { bootstrapPath: flags.bootstrap } : {}),
          codecs: nativeCodecs,
          compressor: COMPRESSOR_NAMES[flags.compressor] as Compressor,
          digester: DIGESTER_NAMES[flags.digester] as number,
          chunkSize: flags.chunkSize,
          batchSize: flags.batchSize,
          ...(flags.compressionLevel !== undefined ? { compressionLevel: flags.compressionLevel } : {}),
          ...(flags.chunkDict ? { chunkDictPath: flags.chunkDict } : {}),
          ...(flags.prefetchFiles ? { prefetchFiles: await readPathList(flags.prefetchFiles) } : {}),
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
