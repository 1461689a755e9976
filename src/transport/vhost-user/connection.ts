/**
 * One vhost-user connection: reads messages (header, payload and the fds sent with them) from a
 * non-blocking unix socket as it becomes readable, and writes replies. A malformed frame or a
 * socket closed in the middle of a message ends the connection; nothing here crashes the process.
 */
import { type Logger } from '../../base/index.js';
import { type Poller, native } from '../../native/index.js';
import { HEADER_SIZE, MAX_PAYLOAD, type Message, VERSION, decodeHeader } from './protocol.js';

const UV_READABLE = 1;
/**
 * Messages read ahead of their handling. Past this the socket is left unread until they are
 * handled: a frontend writing without pause can neither make the daemon queue without bound nor
 * keep its event loop in one read loop (signals, kicks and timers wait for that loop to end).
 */
const MAX_QUEUED = 64;

export class VhostConnection {
  private readonly fd: number;
  private readonly poller: Poller;
  private buf: Buffer = Buffer.alloc(0);
  /** Stream offset of `buf[0]`. */
  private consumed = 0;
  /**
   * Fds received, with the stream offset just past the bytes they came with. The kernel ends a
   * read right after the sendmsg that carried fds, so they belong to the message that holds the
   * last byte of that read (earlier messages of the same read carried none).
   */
  private pendingFds: Array<{ end: number; fds: number[] }> = [];
  private closed = false;
  /** Messages are handled one at a time, in order (a handler may wait, e.g. to drain a ring). */
  private queue: Message[] = [];
  private busy = false;
  /** The socket is not polled until the queue is handled (`MAX_QUEUED`). */
  private paused = false;

  constructor(
    fd: number,
    private readonly log: Logger,
    private readonly onMessage: (m: Message) => void | Promise<void>,
    private readonly onClose: (reason: string) => void,
  ) {
    this.fd = fd;
    this.poller = new native.Poller(fd, (events) => this.onReadable(events));
    this.poller.start(UV_READABLE);
  }

  private onReadable(events: number): void {
    if (events < 0) return this.close(`socket poll error ${events}`);
    for (;;) {
      if (this.closed) return;
      if (this.queue.length >= MAX_QUEUED) {
        this.paused = true;
        this.poller.stop();
        return;
      }
      let r;
      try {
        r = native.recvMsg(this.fd, 65536);
      } catch (e) {
        return this.close(`recvmsg failed: ${(e as Error).message}`);
      }
      if (r === null) return;
      if (r.data.length === 0) {
        for (const f of r.fds) native.closeFd(f);
        return this.close(this.buf.length > 0 ? 'the frontend closed the socket in the middle of a message' : 'the frontend disconnected');
      }
      if (r.truncatedFds) this.log.warn('a message carried more file descriptors than accepted; the rest were dropped by the kernel');
      this.buf = this.buf.length === 0 ? r.data : Buffer.concat([this.buf, r.data]);
      if (r.fds.length > 0) this.pendingFds.push({ end: this.consumed + this.buf.length, fds: r.fds });
      this.parse();
    }
  }

  private parse(): void {
    while (!this.closed && this.buf.length >= HEADER_SIZE) {
      const header = decodeHeader(this.buf);
      if ((header.flags & 0x3) !== VERSION) return this.close(`bad vhost-user version in flags 0x${header.flags.toString(16)}`);
      if (header.size > MAX_PAYLOAD) return this.close(`vhost-user payload of ${header.size} bytes is too large`);
      if (this.buf.length < HEADER_SIZE + header.size) return;
      const payload = Buffer.from(this.buf.subarray(HEADER_SIZE, HEADER_SIZE + header.size));
      const start = this.consumed;
      const end = start + HEADER_SIZE + header.size;
      this.buf = this.buf.subarray(HEADER_SIZE + header.size);
      this.consumed = end;
      const fds: number[] = [];
      while (this.pendingFds.length > 0 && (this.pendingFds[0] as { end: number }).end <= end) {
        const g = this.pendingFds.shift() as { end: number; fds: number[] };
        // Fds that arrived with bytes ending inside this message are its own.
        if (g.end > start) fds.push(...g.fds);
        else for (const f of g.fds) native.closeFd(f);
      }
      this.queue.push({ header, payload, fds });
    }
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (let m = this.queue.shift(); m !== undefined && !this.closed; m = this.queue.shift()) {
        try {
          await this.onMessage(m);
        } catch (e) {
          this.log.error({ err: (e as Error).message }, 'vhost-user message handler failed');
        }
      }
    } finally {
      this.busy = false;
      if (this.paused && !this.closed) {
        this.paused = false;
        this.poller.start(UV_READABLE);
      }
    }
  }

  /** Sends a whole reply (replies are small and carry no fds). */
  send(data: Buffer): void {
    if (this.closed) return;
    let n: number;
    try {
      n = native.sendMsg(this.fd, data);
    } catch (e) {
      return this.close(`sendmsg failed: ${(e as Error).message}`);
    }
    if (n !== data.length) this.close('the frontend does not read its replies');
  }

  close(reason = 'closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.close();
    for (const g of this.pendingFds) for (const f of g.fds) native.closeFd(f);
    this.pendingFds = [];
    for (const m of this.queue) for (const f of m.fds) native.closeFd(f);
    this.queue = [];
    native.closeFd(this.fd);
    this.onClose(reason);
  }
}
