/**
 * A FUSE server offered to one VMM as a vhost-user-fs device: listen on a socket path (a stale
 * socket file is replaced, as virtiofsd and nydusd do) or on an inherited listening fd (Kata's
 * Go runtime passes fd 3), accept one frontend, serve it until it disconnects.
 */
import { lstatSync, unlinkSync } from 'node:fs';
import type { Logger, Metrics } from '../base/index.js';
import type { FuseServer } from '../fuse/index.js';
import { VhostListener, VhostUserBackend, VirtioFsDevice } from '../transport/index.js';

export interface VhostServiceOptions {
  server: FuseServer;
  log: Logger;
  metrics: Metrics;
}

export type ListenTarget = { socketPath: string } | { fd: number };

/** Removes a socket file left by a previous run (never any other kind of file). */
export function removeStaleSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // absent: nothing to do
  }
}

export class VhostService {
  private listener: VhostListener | undefined;
  private readonly backend: VhostUserBackend;
  private connected = false;

  constructor(private readonly opts: VhostServiceOptions) {
    this.backend = new VhostUserBackend({
      device: new VirtioFsDevice({ server: opts.server, log: opts.log.child({ component: 'virtio-fs' }), metrics: opts.metrics }),
      log: opts.log.child({ component: 'vhost-user' }),
      metrics: opts.metrics,
    });
  }

  /** Binds (or takes over) the listening socket; the VMM may connect from now on. */
  listen(target: ListenTarget): void {
    if ('socketPath' in target) {
      removeStaleSocket(target.socketPath);
      this.listener = VhostListener.listen({ socketPath: target.socketPath });
    } else {
      this.listener = VhostListener.listen({ fd: target.fd });
    }
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Accepts the frontend and serves it; resolves with the reason it went away. */
  async run(): Promise<string> {
    const listener = this.listener;
    if (listener === undefined) throw new Error('VhostService.run before listen');
    const fd = await listener.accept();
    this.connected = true;
    listener.close();
    this.listener = undefined;
    this.opts.log.info('vhost-user frontend connected');
    return this.backend.serve(fd);
  }

  /** Stops listening and ends the connection. */
  close(): void {
    this.listener?.close();
    this.listener = undefined;
    this.backend.close();
  }
}
