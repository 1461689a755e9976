/** `damselfly mount`: serve an image on a host mountpoint through /dev/fuse (foreground). */
import type { Command } from 'commander';
import { Metrics } from '../base/index.js';
import { ImageService } from '../daemon/index.js';
import { nativeCodecs } from '../native/index.js';
import { FuseMount } from '../transport/index.js';
import { getLogger, parseSize, printJson, run } from './common.js';
import { type ImageFlags, imageOptions, localBackendFromFlags, openImageFromFlags } from './image-args.js';

interface MountFlags extends ImageFlags {
  cacheDir?: string;
  validate?: boolean;
  stats?: boolean;
  amplifyIo: number;
}

export function register(program: Command): void {
  imageOptions(program.command('mount').description('mount an image on the host with FUSE (foreground; Ctrl-C or SIGTERM unmounts)'), true)
    .argument('<mountpoint>', 'an existing directory')
    .option('--cache-dir <dir>', 'local chunk cache (kept across runs; without it chunks are cached in memory)')
    .option('--validate', 'verify every chunk again on each cache read (nydus digest_validate)')
    .option('--amplify-io <bytes>', 'also fetch the chunks stored after a missing one, up to this many bytes per read (nydus amplify_io)', parseSize, 0)
    .option('--stats', 'print the counters (requests by opcode, bytes, chunks fetched, cache hits) as JSON at exit')
    .action((mountpoint: string, flags: MountFlags) =>
      run(async () => {
        const log = getLogger();
        const loaded = await openImageFromFlags(flags);
        const backend = localBackendFromFlags(flags, loaded);
        const metrics = new Metrics();
        const service = new ImageService({
          loaded,
          backend,
          codecs: nativeCodecs,
          ...(flags.cacheDir ? { cacheDir: flags.cacheDir } : {}),
          validate: flags.validate === true,
          amplifyBytes: flags.amplifyIo,
          metrics,
          log,
        });
        const mount = FuseMount.mount({ mountpoint, server: service.server, log: log.child({ component: 'fusedev' }) });
        log.info({ mountpoint, version: loaded.image.version, blobs: loaded.image.blobs.length }, 'mounted');
        process.stderr.write(`damselfly: mounted on ${mountpoint}\n`);
        const stop = (): void => void mount.unmount();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        await mount.ended;
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        await service.close();
        await backend.close();
        if (flags.stats) printJson(metrics.snapshot());
      }),
    );
}
