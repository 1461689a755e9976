/** `damselfly cache`: inspect and trim a local chunk cache directory. */
import type { Command } from 'commander';
import { gcCache, listCache } from '../storage/cache/gc.js';
import { getLogger, parseSize, printJson, run } from './common.js';

export function register(program: Command): void {
  const cache = program.command('cache').description('manage a local chunk cache directory');
  cache
    .command('gc')
    .description('evict whole blobs not in use and kept bootstraps, least recently used first, until the cache fits --max-size')
    .requiredOption('--cache-dir <dir>', 'the cache directory')
    .requiredOption('--max-size <bytes>', 'size to shrink the cache to (e.g. 10G)', parseSize)
    .option('--json', 'print the result as JSON')
    .action((flags: { cacheDir: string; maxSize: number; json?: boolean }) =>
      run(async () => {
        const r = await gcCache(flags.cacheDir, flags.maxSize, getLogger());
        if (flags.json) printJson(r);
        else process.stdout.write(`evicted ${r.removed.length} blobs and ${r.removedBootstraps.length} kept bootstraps (${r.freedBytes} bytes); ${r.remainingBytes} bytes remain${r.busy.length ? `; ${r.busy.length} in use kept` : ''}\n`);
      }),
    );
  cache
    .command('ls')
    .description('list the cached blobs and kept bootstraps, least recently used first')
    .requiredOption('--cache-dir <dir>', 'the cache directory')
    .option('--json', 'print JSON')
    .action((flags: { cacheDir: string; json?: boolean }) =>
      run(async () => {
        const entries = await listCache(flags.cacheDir);
        if (flags.json) printJson(entries);
        else for (const e of entries) process.stdout.write(`${e.kind.padEnd(9)}  ${e.id}  ${e.bytes}  ${new Date(e.lastUsed).toISOString()}${e.inUse ? '  in use' : ''}\n`);
      }),
    );
}
