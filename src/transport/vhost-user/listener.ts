/**
 * Where the VMM connects: a unix socket the backend creates (`--socket-path`) or a listening
 * socket inherited from the launcher (`--fd`, as Kata's Go runtime passes fd 3). One connection
 * is accepted per process lifetime, as virtiofsd does.
 */
import { isSysError } from '../../base/index.js';
import { native } from '../../native/index.js';

const UV_READABLE = 1;

export class VhostListener {
  private constructor(private readonly fd: number) {}

  static listen(opts: { socketPath?: string; fd?: number }): VhostListener {
    if ((opts.socketPath === undefined) === (opts.fd === undefined)) throw new Error('give exactly one of a socket path and an fd');
    if (opts.socketPath !== undefined) return new VhostListener(native.listenUnix(opts.socketPath, 1));
    native.setNonBlocking(opts.fd as number);
    return new VhostListener(opts.fd as number);
  }

  /** Waits for the frontend to connect; resolves with the connection's fd. */
  accept(): Promise<number> {
    return new Promise((resolve, reject) => {
      const poller = new native.Poller(this.fd, (events) => {
        if (events < 0) {
          poller.close();
          return reject(new Error(`waiting for the vhost-user connection failed (${events})`));
        }
        let fd: number;
        try {
          fd = native.accept(this.fd);
        } catch (e) {
          if (isSysError(e, 'ECONNABORTED')) return;
          poller.close();
          return reject(e as Error);
        }
        if (fd < 0) return;
        poller.close();
        resolve(fd);
      });
      poller.start(UV_READABLE);
    });
  }

  close(): void {
    native.closeFd(this.fd);
  }
}
