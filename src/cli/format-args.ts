/**
 * Options shared by the commands that write an image (`build`, `convert`): how chunks are cut,
 * compressed, digested and batched, and which files go first. The values are checked by the
 * builder (`checkFormatOptions`), so a library caller gets the same errors.
 */
import type { Command } from 'commander';
import type { BuildOptions } from '../builder/build.js';
import { readPathList } from '../daemon/image-source.js';
import { COMPRESSOR_NAMES, type Compressor } from '../format/compression.js';
import { type Digester, Limits } from '../format/constants.js';
import { DIGESTER_NAMES } from '../format/digest.js';
import { oneOf, parseLevel, parseSize } from './common.js';

const COMPRESSORS = ['none', 'lz4_block', 'zstd'] as const;
const DIGESTERS = ['blake3', 'sha256'] as const;

export interface FormatFlags {
  compressor: (typeof COMPRESSORS)[number];
  digester: (typeof DIGESTERS)[number];
  chunkSize: number;
  batchSize: number;
  compressionLevel?: number;
  prefetchCompressionLevel?: number;
  prefetchFiles?: string;
  encrypt?: boolean;
}

/** What the flags ask of the builder. */
export type FormatChoice = Pick<BuildOptions, 'compressor' | 'digester' | 'chunkSize' | 'batchSize' | 'compressionLevel' | 'prefetchCompressionLevel' | 'prefetchFiles' | 'encrypt'>;

/** Adds the image format options to a command. */
export function formatOptions(cmd: Command): Command {
  return cmd
    .option('--compressor <c>', COMPRESSORS.join(' | '), oneOf(COMPRESSORS), 'zstd')
    .option('--digester <d>', DIGESTERS.join(' | '), oneOf(DIGESTERS), 'blake3')
    .option('--chunk-size <n>', 'chunk size, a power of two from 4K to 16M', parseSize, Limits.DEFAULT_CHUNK_SIZE)
    .option('--compression-level <n>', 'zstd level for chunk data, 1-22 (default 3, as nydus-image): higher builds slower, fetches less', parseLevel)
    .option('--batch-size <n>', 'store the data of small files together, in units of less than this (0 or a power of two from 4K to the chunk size; nydus-image --batch-size)', parseSize, 0)
    .option('--prefetch-files <file>', "paths (one per line) for the prefetch table; their data goes first in each layer's blob")
    .option('--encrypt', "encrypt each new blob with AES-128-XTS, its key in the bootstrap (nydus-image --encrypt): for blobs kept apart from the bootstrap")
    .option('--prefetch-compression-level <n>', 'zstd level for the prefetch files\' data (its first 64 MiB), 1-22 (default 19, or --compression-level if higher): fewer bytes for every cold start to wait for', parseLevel);
}

/** The format the flags ask for, with the prefetch list read. */
export async function formatFromFlags(flags: FormatFlags): Promise<FormatChoice> {
  return {
    compressor: COMPRESSOR_NAMES[flags.compressor] as Compressor,
    digester: DIGESTER_NAMES[flags.digester] as Digester,
    chunkSize: flags.chunkSize,
    batchSize: flags.batchSize,
    ...(flags.compressionLevel !== undefined ? { compressionLevel: flags.compressionLevel } : {}),
    ...(flags.prefetchCompressionLevel !== undefined ? { prefetchCompressionLevel: flags.prefetchCompressionLevel } : {}),
    ...(flags.prefetchFiles !== undefined ? { prefetchFiles: await readPathList(flags.prefetchFiles) } : {}),
    ...(flags.encrypt === true ? { encrypt: true } : {}),
  };
}
