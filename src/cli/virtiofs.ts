/**
 * `damselfly virtiofs`: the vhost-user-fs backend a VMM (QEMU, cloud-hypervisor, Kata) launches in
 * place of virtiofsd: serves one image to the guest over virtio-fs until the VMM disconnects.
 */
import type { Command } from 'commander';
import { Metrics, UsageError } from '../base/index.js';
import { ImageService } from '../daemon/index.js';
import { nativeCodecs } from '../native/index.js';
import { VhostListener, VhostUserBackend, VirtioFsDevice } from '../transport/index.js';
import { getLogger, parseSize, printJson, run } from './common.js';
import { type ImageFlags, imageOptions, localBackendFromFlags, openImageFromFlags } from './image-args.js';

interface VirtiofsFlags extends ImageFlags {
  socketPath?: string;
  fd?: string;
  cacheDir?: string;
  validate?: boolean;
  stats?: boolean;
  amplifyIo: number;
}

export const READY_LINE = 'Waiting for vhost-user socket connection...';

export function register(program: Command): void {
  imageOptions(program.command('virtiofs').description('serve an image to a guest as a vhost-user-fs backend (exits when the VMM disconnects)'), true)
    .option('--socket-path <path>', 'create and listen on this vhost-user socket')
    .option('--fd <n>', 'accept on this inherited listening socket fd')
    .option('--cache-dir <dir>', 'local chunk cache')
    .option('--validate', 'verify every chunk again on each cache read')
    .option('--amplify-io <bytes>', 'also fetch the chunks stored after a missing one, up to this many bytes per read (nydus amplify_io)', parseSize, 0)
    .option('--stats', 'print the counters as JSON at exit')
    .action((flags: VirtiofsFlags) =>
      run(async () => {
        if ((flags.socketPath === undefined) === (flags.fd === undefined)) throw new UsageError('give exactly one of --socket-path and --fd');
        const fd = flags.fd === undefined ? undefined : Number(flags.fd);
        if (fd !== undefined && !(Number.isInteger(fd) && fd >= 0)) throw new UsageError(`--fd must be a file descriptor number, not ${flags.fd}`);
        const log = getLogger();
        const loaded = await openImageFromFlags(flags);
        const backend = localBackendFromFlags(flags, loaded);
        const metrics = new Metrics();
        const service = new ImageService({ loaded, backend, codecs: nativeCodecs, ...(flags.cacheDir ? { cacheDir: flags.cacheDir } : {}), validate: flags.validate === true, amplifyBytes: flags.amplifyIo, metrics, log });
        const listener = VhostListener.listen({ ...(flags.socketPath !== undefined ? { socketPath: flags.socketPath } : {}), ...(fd !== undefined ? { fd } : {}) });
        process.stderr.write(`${READY_LINE}\n`);
        const vhost = new VhostUserBackend({ device: new VirtioFsDevice({ server: service.server, log: log.child({ component: 'virtio-fs' }), metrics }), log: log.child({ component: 'vhost-user' }), metrics });
        const stop = (): void => {
          listener.close();
          vhost.close();
          process.exitCode = 0;
          if (!connected) void finish();
        };
        let connected = false;
        const finish = async (): Promise<void> => {
          await service.close();
          await backend.close();
          if (flags.stats) printJson(metrics.snapshot());
          process.exit();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const conn = await listener.accept();
        connected = true;
        listener.close();
        log.info('vhost-user frontend connected');
        const reason = await vhost.serve(conn);
        log.info({ reason }, 'vhost-user frontend gone; exiting');
        await finish();
      }),
    );
}

/** `--print-capabilities`: the vhost-user backend description (vhost-user.json). */
export function printCapabilities(): void {
  process.stdout.write(JSON.stringify({ type: 'fs' }, null, 2) + '\n');
}
