/**
 * `damselfly virtiofs`: the vhost-user-fs backend a VMM (QEMU, cloud-hypervisor, Kata) launches in
 * place of virtiofsd: serves one image to the guest over virtio-fs until the VMM disconnects.
 */
import type { Command } from 'commander';
import { Metrics, UsageError } from '../base/index.js';
import { VhostListener, VhostUserBackend, VirtioFsDevice } from '../transport/index.js';
import { getLogger, printJson, run } from './common.js';
import { onStopSignals } from './exit.js';
import { type ServeFlags, openServed, serveOptions } from './serve-args.js';

interface VirtiofsFlags extends ServeFlags {
  socketPath?: string;
  fd?: string;
}

export const READY_LINE = 'Waiting for vhost-user socket connection...';

export function register(program: Command): void {
  serveOptions(program.command('virtiofs').description('serve an image to a guest as a vhost-user-fs backend (exits when the VMM disconnects)'))
    .option('--socket-path <path>', 'create and listen on this vhost-user socket')
    .option('--fd <n>', 'accept on this inherited listening socket fd')
    .action((flags: VirtiofsFlags) =>
      run(async () => {
        if ((flags.socketPath === undefined) === (flags.fd === undefined)) throw new UsageError('give exactly one of --socket-path and --fd');
        const fd = flags.fd === undefined ? undefined : Number(flags.fd);
        if (fd !== undefined && !(Number.isInteger(fd) && fd >= 0)) throw new UsageError(`--fd must be a file descriptor number, not ${flags.fd}`);
        const log = getLogger();
        const metrics = new Metrics();
        const served = await openServed(flags, log, metrics);
        const { service } = served;
        const listener = VhostListener.listen({ ...(flags.socketPath !== undefined ? { socketPath: flags.socketPath } : {}), ...(fd !== undefined ? { fd } : {}) });
        const vhost = new VhostUserBackend({ device: new VirtioFsDevice({ server: service.server, log: log.child({ component: 'virtio-fs' }), metrics }), log: log.child({ component: 'vhost-user' }), metrics });
        const stop = (): void => {
          listener.close();
          vhost.close();
          process.exitCode = 0;
          if (!connected) void finish();
        };
        let connected = false;
        const finish = async (): Promise<void> => {
          await served.close();
          if (flags.stats) printJson(metrics.snapshot());
          process.exit();
        };
        onStopSignals(stop);
        // Ready only once a signal is handled: a supervisor that stops us on seeing it is obeyed.
        process.stderr.write(`${READY_LINE}\n`);
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
