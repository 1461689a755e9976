/**
 * nydus-snapshotter's supervisor, as tests need it (`pkg/supervisor/supervisor.go`): a unix socket
 * the daemon connects to. `fetch(trigger)` listens, runs `trigger` (the API's sendfd) and keeps
 * the bytes and the fd the daemon sends; `serve()` listens and hands what it keeps to the next
 * daemon that connects (the API's takeover). The kept fd holds the FUSE connection open while no
 * daemon does. Through the addon: Node's net module passes no fds.
 */
import { rmSync } from 'node:fs';
import { native } from '../../src/native/index.js';

async function acceptWithin(listenFd: number, ms: number, what: string): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const fd = native.accept(listenFd);
    if (fd >= 0) return fd;
    if (Date.now() > deadline) throw new Error(`supervisor: no daemon connected to ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export class TestSupervisor {
  data: Buffer | undefined;
  fd: number | undefined;
  /** Every fd received, for the test to close. */
  private readonly received: number[] = [];

  constructor(readonly path: string) {}

  private listen(): number {
    rmSync(this.path, { force: true });
    return native.listenUnix(this.path);
  }

  /** Listens, runs `trigger`, and keeps what the daemon sends (to the end of its stream). */
  async fetch(trigger: () => Promise<void>, ms = 10_000): Promise<void> {
    const l = this.listen();
    try {
      const [conn] = await Promise.all([acceptWithin(l, ms, 'send its state'), trigger()]);
      const parts: Buffer[] = [];
      const fds: number[] = [];
      const deadline = Date.now() + ms;
      try {
        for (;;) {
          const m = native.recvMsg(conn, 256 << 10);
          if (m === null) {
            if (Date.now() > deadline) throw new Error('supervisor: the daemon did not finish sending its state');
            await new Promise((r) => setTimeout(r, 5));
            continue;
          }
          fds.push(...m.fds);
          if (m.data.length === 0) break;
          parts.push(m.data);
        }
      } finally {
        native.closeFd(conn);
      }
      this.received.push(...fds);
      if (fds.length !== 1) throw new Error(`supervisor: ${fds.length} fds received, 1 expected`);
      this.data = Buffer.concat(parts);
      this.fd = fds[0];
    } finally {
      native.closeFd(l);
      rmSync(this.path, { force: true });
    }
  }

  /** Listens and sends what it keeps (or `override`) to the next daemon that connects; resolves once sent. */
  async serve(opts: { ms?: number; override?: { data: Buffer; fd?: number } } = {}): Promise<void> {
    const data = opts.override?.data ?? this.data;
    const fd = opts.override !== undefined ? opts.override.fd : this.fd;
    if (data === undefined) throw new Error('supervisor: nothing kept to serve');
    const l = this.listen();
    try {
      const conn = await acceptWithin(l, opts.ms ?? 10_000, 'take over');
      try {
        let sent = 0;
        while (sent < data.length || (sent === 0 && data.length === 0)) {
          const n = native.sendMsg(conn, data.subarray(sent), sent === 0 && fd !== undefined ? [fd] : []);
          if (n === 0 && data.length === 0) break;
          if (n === 0) await new Promise((r) => setTimeout(r, 5));
          sent += n;
        }
      } finally {
        native.closeFd(conn);
      }
    } finally {
      native.closeFd(l);
      rmSync(this.path, { force: true });
    }
  }

  close(): void {
    for (const fd of this.received.splice(0)) {
      try {
        native.closeFd(fd);
      } catch {
        // already closed
      }
    }
    rmSync(this.path, { force: true });
  }
}
