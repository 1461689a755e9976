/** `damselfly mount`: serve an image on a host mountpoint through /dev/fuse (foreground). */
import type { Command } from 'commander';
import { Metrics } from '../base/index.js';
import { FuseMount } from '../transport/index.js';
import { getLogger, printJson, run } from './common.js';
import { onStopSignals } from './exit.js';
import { type ServeFlags, openServed, serveOptions } from './serve-args.js';

export function register(program: Command): void {
  serveOptions(program.command('mount').description('mount an image on the host with FUSE (foreground; Ctrl-C, SIGTERM or SIGHUP unmounts)'))
    .argument('<mountpoint>', 'an existing directory')
    .action((mountpoint: string, flags: ServeFlags) =>
      run(async () => {
        const log = getLogger();
        const metrics = new Metrics();
        const served = await openServed(flags, log, metrics);
        const { source, service } = served;
        const loaded = source.loaded;
        // The handlers go in before the mount (which is synchronous, so no signal is handled in
        // between) and so before the ready line: a signal sent on seeing it always unmounts.
        const offSignals = onStopSignals(() => void mount.unmount());
        const mount = FuseMount.mount({ mountpoint, server: service.server, log: log.child({ component: 'fusedev' }) });
        log.info({ mountpoint, version: loaded.image.version, blobs: loaded.image.blobs.length }, 'mounted');
        process.stderr.write(`damselfly: mounted on ${mountpoint}\n`);
        await mount.ended;
        offSignals();
        await served.close();
        if (flags.stats) printJson(metrics.snapshot());
      }),
    );
}
