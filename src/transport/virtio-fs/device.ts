/**
 * The virtio-fs device (virtio 1.2 §5.11; ../shared/spec/virtio-fs-interop.md §4): ring 0 is the
 * hiprio queue (FORGETs: consumed without a reply, the buffer still returned), rings 1..N carry
 * FUSE requests. Each request's readable part is the FUSE request (a byte stream across
 * descriptors); the reply is written into its writable part with `out.len` exact. Requests are
 * served concurrently and complete in any order; READ data goes straight into guest buffers.
 */
import { LogLimiter, type Logger, type Metrics, gather, iovLength, scatter, scatterAt, sliceViews } from '../../base/index.js';
import { type FuseServer, type ReplyChannel, inPlaceDataAt } from '../../fuse/index.js';
import type { Chain, QueueHandle, VirtioDevice } from '../vhost-user/backend.js';

const OUT_HEADER = 16;
const IN_HEADER = 40;
/**
 * Requests up to this size are copied out of guest memory in one step, data included (a name is
 * at most 255 bytes); only larger WRITEs leave their data in place.
 */
const SMALL_REQUEST = 1024;
/** The largest request accepted: a WRITE of max_write with its headers. */
const MAX_REQUEST = (1 << 20) + 4096;
/**
 * While FORGETs keep coming, the hiprio ring is polled this often instead of kicked: a guest
 * sends one FORGET per inode it evicts (one per file `rm -r` deletes), and each kick would wake
 * the daemon, and each completion interrupt the guest, for a message that needs no answer. A
 * poll that finds the ring empty asks for kicks again. (Polls are short enough that a ring of
 * 128, QEMU's default, holds what a fast guest sends meanwhile; a full one the guest retries.)
 */
const HIPRIO_POLL_MS = 2;

/** A reply written into the guest's writable descriptors. */
class GuestReply implements ReplyChannel {
  readonly capacity: number;

  constructor(
    private readonly chain: Chain,
    private readonly log: Logger,
    private readonly limiter: LogLimiter,
  ) {
    this.capacity = Math.max(0, chain.writeBytes - OUT_HEADER);
  }

  get signal(): AbortSignal {
    return this.chain.signal;
  }

  reserve(size: number): Uint8Array[] {
    return sliceViews(this.chain.writable, OUT_HEADER, Math.min(size, this.capacity));
  }

  send(header: Uint8Array, payload: Uint8Array[] | number): void {
    const w = this.chain.writable;
    if (this.chain.stale) return this.chain.complete(0); // its ring stopped: the buffers are not ours
    if (this.chain.writeBytes < OUT_HEADER) {
      this.limiter.log(this.log, 'warn', 'no room', { writable: this.chain.writeBytes }, 'a request left no room for its reply header');
      return this.chain.complete(0);
    }
    const payloadLen = typeof payload === 'number' ? payload : iovLength(payload);
    if (payloadLen > this.capacity) {
      // The guest gave too little room: answer with an error header alone.
      const h = Buffer.from(header);
      h.writeUInt32LE(OUT_HEADER, 0);
      h.writeInt32LE(-34, 4); // ERANGE
      scatter(h, 0, OUT_HEADER, w);
      return this.chain.complete(OUT_HEADER);
    }
    scatter(header, 0, OUT_HEADER, w);
    if (typeof payload !== 'number') {
      let at = OUT_HEADER;
      for (const p of payload) at += scatterAt(p, w, at);
    }
    this.chain.complete(OUT_HEADER + payloadLen);
  }

  drop(): void {
    this.chain.complete(0);
  }
}

export interface VirtioFsDeviceOptions {
  server: FuseServer;
  log: Logger;
  metrics: Metrics;
  /** Request queues supported (the VMM chooses how many it uses). */
  requestQueues?: number;
}

export class VirtioFsDevice implements VirtioDevice {
  readonly maxQueues: number;
  readonly deviceFeatures = 0n;
  private readonly opts: VirtioFsDeviceOptions;
  /** A guest can send malformed chains in a loop: one line a minute of each kind. */
  private readonly limiter = new LogLimiter();

  constructor(opts: VirtioFsDeviceOptions) {
    this.opts = opts;
    this.maxQueues = 1 + (opts.requestQueues ?? 8);
  }

  /** The pending poll of the hiprio ring (ring 0), while FORGETs keep coming. */
  private hiprioPoll: NodeJS.Timeout | undefined;

  process(q: QueueHandle): void {
    if (q.index === 0) return this.processHiprio(q);
    for (;;) {
      q.disableNotify();
      this.drain(q);
      if (!q.enableNotify()) return;
    }
  }

  /** Serves what the ring holds; returns how many chains that was. */
  private drain(q: QueueHandle): number {
    let n = 0;
    for (let c = q.pop(); c !== null; c = q.pop(), n++) this.serve(q.index, c);
    return n;
  }

  /** A kick of the hiprio ring: serve it, and poll it from now on instead of taking kicks. */
  private processHiprio(q: QueueHandle): void {
    q.disableNotify();
    this.drain(q);
    this.hiprioPoll ??= setTimeout(() => this.pollHiprio(q), HIPRIO_POLL_MS);
  }

  private pollHiprio(q: QueueHandle): void {
    this.hiprioPoll = undefined;
    // Found empty (or the ring stopped): kicks again, unless a chain arrived in between.
    if (this.drain(q) === 0 && !q.enableNotify()) return;
    this.processHiprio(q);
  }

  private serve(queue: number, c: Chain): void {
    const { log, metrics } = this.opts;
    if (c.error !== undefined) {
      metrics.inc('virtiofs.bad_chains');
      this.limiter.log(log, 'warn', 'malformed', { queue, head: c.head, err: c.error }, 'dropping a malformed descriptor chain');
      return c.complete(0);
    }
    if (c.readBytes > MAX_REQUEST) {
      metrics.inc('virtiofs.bad_chains');
      this.limiter.log(log, 'warn', 'oversized', { queue, bytes: c.readBytes }, 'dropping an oversized request');
      return c.complete(0);
    }
    // The request is copied out of guest memory before it is parsed (the guest may change it);
    // a WRITE's data is not: it goes from the guest's pages to the file (a guest that changes it
    // meanwhile changes only what is written, as with any DMA), sparing a copy of up to 1 MiB.
    // A small request (any but a WRITE with data, a SETXATTR with a large value) is copied whole.
    if (c.readBytes <= SMALL_REQUEST) {
      void this.opts.server.handle(gather(c.readable, c.readBytes), new GuestReply(c, log, this.limiter));
      return;
    }
    const head = gather(c.readable, IN_HEADER);
    const dataAt = inPlaceDataAt(head, c.readBytes);
    if (dataAt === undefined) {
      void this.opts.server.handle(gather(c.readable, c.readBytes), new GuestReply(c, log, this.limiter));
    } else {
      const tail = sliceViews(c.readable, dataAt, c.readBytes - dataAt);
      void this.opts.server.handle(gather(c.readable, dataAt), new GuestReply(c, log, this.limiter), tail);
    }
  }
}
