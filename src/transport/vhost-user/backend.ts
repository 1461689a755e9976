/**
 * The vhost-user backend: feature negotiation, the guest memory table (replaced or changed at any
 * time, also while rings run), ring set-up in either message order (QEMU and cloud-hypervisor),
 * kick and call eventfds, ring enable/stop, and REPLY_ACK for every NEED_REPLY. Mechanism only:
 * what a ring's buffers mean is the `VirtioDevice`'s business.
 */
import { DamselflyError, ErrorCode, type Logger, type Metrics, errorMessage } from '../../base/index.js';
import { type MemoryTable, POP_HEADER, type Poller, type PopSlots, PopResult, type Virtqueue, native, popSlots } from '../../native/index.js';
import { VhostConnection } from './connection.js';
import {
  FLAG_NEED_REPLY,
  Feature,
  type Message,
  ProtocolFeature,
  Request,
  VRING_IDX_MASK,
  VRING_NOFD_MASK,
  decodeMemTable,
  decodeSingleRegion,
  decodeU64,
  decodeVringAddr,
  decodeVringState,
  encodeReply,
  encodeVringState,
  u64Payload,
} from './protocol.js';

const UV_READABLE = 1;
export const MAX_QUEUE_SIZE = 32768;
/** Memory slots offered with CONFIGURE_MEM_SLOTS (as the C virtiofsd). */
export const MAX_MEM_SLOTS = 32;

/** A ring as the device sees it. */
export interface QueueHandle {
  readonly index: number;
  /** The next available chain, or null. */
  pop(): Chain | null;
  /** Stops kicks while draining; `enableNotify` re-enables them and says whether more arrived. */
  disableNotify(): void;
  enableNotify(): boolean;
}

export interface VirtioDevice {
  /** Rings the device supports (GET_QUEUE_NUM). */
  readonly maxQueues: number;
  /** Device-specific feature bits to offer. */
  readonly deviceFeatures: bigint;
  /** Handles the available buffers of a ring (kicked and enabled). */
  process(queue: QueueHandle): void;
}

const EAGAIN = 11;
const RESOLVED = Promise.resolve();

/**
 * A descriptor chain taken from a ring: its guest buffers, read and written in place, and
 * `complete`, which returns it to the driver exactly once (a second call is ignored).
 */
export class Chain {
  readonly head: number;
  readonly readable: Uint8Array[];
  readonly writable: Uint8Array[];
  readonly readBytes: number;
  readonly writeBytes: number;
  /** Why the chain cannot be used (it is still completed, with length 0). */
  readonly error: string | undefined;
  private done = false;

  constructor(
    private readonly ring: { completed(head: number, len: number, epoch: number): void; readonly started: boolean; readonly epoch: number },
    private readonly epoch: number,
    slots: PopSlots,
    windows: ArrayBuffer[],
    error: string | undefined,
    /** Fires when the ring stops with this chain still in flight (see `stale`). */
    readonly signal: AbortSignal,
  ) {
    this.head = slots[0] as number;
    this.readBytes = slots[1] as number;
    this.writeBytes = slots[2] as number;
    const readable = slots[3] as number;
    this.readable = views(slots, POP_HEADER, readable, windows);
    this.writable = views(slots, POP_HEADER + 3 * readable, slots[4] as number, windows);
    this.error = error;
  }

  /**
   * The ring was stopped (or stopped and started again) since this chain was popped: the guest
   * may have reused its buffers, and nothing may be written into them any more.
   */
  get stale(): boolean {
    return !this.ring.started || this.ring.epoch !== this.epoch;
  }

  complete(len: number): void {
    if (this.done) return;
    this.done = true;
    this.ring.completed(this.head, len, this.epoch);
  }
}

/** Views of `count` pieces of `slots` from `at` (window, offset, length each; see PopSlots). */
function views(slots: PopSlots, at: number, count: number, windows: ArrayBuffer[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = at, end = at + 3 * count; i < end; i += 3) {
    out.push(new Uint8Array(windows[slots[i] as number] as ArrayBuffer, slots[i + 1], slots[i + 2]));
  }
  return out;
}

/**
 * The memory table's windows (ArrayBuffers over guest memory), taken again when the table
 * changes: what `popInto`'s pieces index.
 */
class GuestWindows {
  private generation = -1;
  private list: ArrayBuffer[] = [];

  constructor(private readonly table: MemoryTable) {}

  /** The windows of `generation`, the table's current one (a chain was just popped against it). */
  at(generation: number): ArrayBuffer[] {
    if (generation !== this.generation) {
      this.list = this.table.windows();
      this.generation = generation;
    }
    return this.list;
  }

  /** Lets go of the windows, so that the mappings of removed regions can go too. */
  reset(): void {
    this.generation = -1;
    this.list = [];
  }
}

class Vring implements QueueHandle {
  size = 0;
  base = 0;
  addr: { desc: bigint; used: bigint; avail: bigint } | undefined;
  kickFd = -1;
  callFd = -1;
  errFd = -1;
  poller: Poller | undefined;
  enabled = false;
  started = false;
  /** Bumped when the ring stops: completions of older requests are discarded. */
  epoch = 0;
  /** Aborted when the ring stops: requests still in flight stop waiting and write nothing more. */
  private stopping = new AbortController();
  /** Chains popped and not yet completed. */
  inflight = 0;
  /** The driver had more chains out than the ring holds (logged once a ring). */
  private overcommitted = false;
  /** `pop` stopped at the limit: the ring is processed again once one is returned. */
  private full = false;
  /** Processes the ring (the device's `process`), set by the backend. */
  process: () => void = () => undefined;
  private drained: Array<() => void> = [];
  private notifyScheduled = false;
  broken = false;
  /**
   * A memory table change left part of the ring outside guest memory (a region removed, to be
   * added again): nothing is popped meanwhile, and completions wait here for its return.
   */
  private unmapped = false;
  private heldUsed: Array<{ head: number; len: number; epoch: number }> = [];
  /** Where `popInto` puts each chain (one array for every pop, grown for a chain of more pieces). */
  private slots = popSlots();
  /** The metric counting this ring's kicks. */
  readonly kickMetric: string;
  private readonly flushNotify = (): void => {
    this.notifyScheduled = false;
    this.notify();
  };

  constructor(
    readonly index: number,
    readonly vq: Virtqueue,
    private readonly windows: GuestWindows,
    private readonly log: Logger,
  ) {
    this.kickMetric = `vhost.kicks.${index}`;
  }

  pop(): Chain | null {
    if (!this.started || !this.enabled || this.broken) return null;
    // A driver cannot have more chains out than the ring has entries: one that publishes a head
    // again while it is in flight gets no more until some are returned (each would hold memory,
    // and wait, as long as a slow request does). Its ring is corrupt to it once it runs ahead.
    if (this.inflight >= this.size) {
      if (!this.overcommitted) this.log.warn({ ring: this.index, inflight: this.inflight }, 'the driver published more chains than its ring holds (a head again while in flight); no more are taken until some are returned');
      this.overcommitted = true;
      this.full = true;
      return null;
    }
    let r = this.guarded(() => this.vq.popInto(this.slots), PopResult.None);
    // A chain of more pieces than the slots hold (each time more than before: bounded by the ring).
    while (r === PopResult.NeedRoom) {
      this.slots = popSlots(this.slots[0] as number);
      r = this.guarded(() => this.vq.popInto(this.slots), PopResult.None);
    }
    if (r === PopResult.None) return null;
    if (r === PopResult.CorruptRing) {
      this.broken = true;
      this.log.error({ ring: this.index, err: this.vq.lastError() }, 'the ring is corrupt; it is no longer served');
      return null;
    }
    const slots = this.slots;
    this.inflight++;
    return new Chain(this, this.epoch, slots, this.windows.at(slots[6] as number), slots[5] === 1 ? undefined : this.vq.lastError(), this.stopping.signal);
  }

  /** A popped chain was completed (once). */
  completed(head: number, len: number, epoch: number): void {
    this.inflight--;
    if (this.inflight === 0) for (const w of this.drained.splice(0)) w();
    this.complete(head, len, epoch);
    if (this.full && this.inflight < this.size) {
      // The chains left on the ring would wait for a kick that a driver with EVENT_IDX may not
      // send: they are taken now (after this completion's turn, not inside it).
      this.full = false;
      setImmediate(() => {
        if (this.started && this.enabled && !this.broken) this.process();
      });
    }
  }

  disableNotify(): void {
    if (this.started && !this.broken) this.guarded(() => this.vq.disableNotify(), undefined);
  }

  /** Asks for kicks again; whether chains came meanwhile that `pop` would take. */
  enableNotify(): boolean {
    if (!this.started || this.broken) return false;
    const more = this.guarded(() => this.vq.enableNotify(), false);
    // At the limit of chains in flight `pop` takes none: more to do would be a loop that spins.
    return more && this.inflight < this.size;
  }

  /**
   * Runs a ring access. While the ring's memory is away (a region removed under a running ring,
   * as a frontend changing a region may do before it adds it again) it answers `fallback`, until
   * `memoryChanged` finds the ring whole again; any other failure means the ring is no longer
   * served until the frontend sets it up again.
   */
  private guarded<T>(access: () => T, fallback: T): T {
    try {
      return access();
    } catch (e) {
      this.accessFailed(e);
      return fallback;
    }
  }

  /** What a failed ring access means: its memory is away for now (`unmapped`), or it is `broken`. */
  private accessFailed(e: unknown): void {
    if ((e as { code?: unknown }).code === 'E_RING_UNMAPPED') {
      if (!this.unmapped) this.log.warn({ ring: this.index }, 'the ring is outside guest memory for now: waiting for its region to come back');
      this.unmapped = true;
      return;
    }
    this.broken = true;
    this.log.error({ ring: this.index, err: errorMessage(e) }, 'the ring cannot be read; it is no longer served');
  }

  /**
   * After a memory table change: a ring that was outside guest memory and is whole again returns
   * the completions it held and is served again (kicks that came meanwhile popped nothing).
   * Whether it should be processed now.
   */
  memoryChanged(): boolean {
    if (!this.unmapped || !this.started || !this.vq.mapped()) return false;
    this.unmapped = false;
    for (const u of this.heldUsed.splice(0)) this.complete(u.head, u.len, u.epoch);
    this.log.info({ ring: this.index }, 'the ring is back in guest memory');
    return !this.broken;
  }

  /** The ring stops: requests in flight are told so (their replies are discarded already). */
  abandonInflight(): void {
    this.stopping.abort(new DamselflyError(ErrorCode.Aborted, `ring ${this.index} stopped`));
    this.stopping = new AbortController();
    this.unmapped = false;
    this.heldUsed = [];
  }

  /** Resolves when every popped chain was completed, or after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.drained.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private complete(head: number, len: number, epoch: number): void {
    if (!this.started || epoch !== this.epoch) return; // the ring was stopped or restarted meanwhile
    // Once per request: a try block, no closure (`guarded`).
    if (!this.unmapped) {
      try {
        this.vq.push(head, len);
      } catch (e) {
        this.accessFailed(e);
        if (!this.unmapped) return; // broken
      }
    }
    if (this.unmapped) {
      this.heldUsed.push({ head, len, epoch });
      return;
    }
    // One interrupt for all completions of this turn of the event loop. A promise reaction, not
    // queueMicrotask, which wraps every callback in an async resource: this runs per batch.
    if (!this.notifyScheduled) {
      this.notifyScheduled = true;
      void RESOLVED.then(this.flushNotify);
    }
  }

  notify(): void {
    if (!this.started || this.callFd < 0) return;
    let r;
    try {
      if (!this.vq.shouldNotify()) return;
      r = native.eventfdSignal(this.callFd);
    } catch (e) {
      this.log.warn({ ring: this.index, err: errorMessage(e) }, 'signalling the call eventfd failed');
      return;
    }
    if (r < 0 && r !== -EAGAIN) this.log.warn({ ring: this.index, errno: -r }, 'signalling the call eventfd failed');
  }

  closeFds(): void {
    this.poller?.close();
    this.poller = undefined;
    for (const fd of [this.kickFd, this.callFd, this.errFd]) if (fd >= 0) native.closeFd(fd);
    this.kickFd = this.callFd = this.errFd = -1;
  }
}

export interface BackendOptions {
  device: VirtioDevice;
  log: Logger;
  metrics: Metrics;
  /** How long GET_VRING_BASE waits for the ring's requests in flight (default 10 s); see `drainBeforeStop`. */
  stopWaitMs?: number;
}

export class VhostUserBackend {
  private readonly device: VirtioDevice;
  private readonly log: Logger;
  private readonly metrics: Metrics;
  private readonly stopWaitMs: number;
  private readonly memory: MemoryTable = new native.MemoryTable();
  /** Its windows, shared by the rings (they index them). */
  private readonly windows = new GuestWindows(this.memory);
  private readonly rings: Vring[];
  private features = 0n;
  private protocolFeatures = 0n;
  private conn: VhostConnection | undefined;

  constructor(opts: BackendOptions) {
    this.device = opts.device;
    this.log = opts.log;
    this.metrics = opts.metrics;
    this.stopWaitMs = opts.stopWaitMs ?? 10_000;
    this.rings = Array.from({ length: opts.device.maxQueues }, (_, i) => {
      const r = new Vring(i, new native.Virtqueue(this.memory), this.windows, opts.log);
      r.process = () => this.device.process(r);
      return r;
    });
  }

  get offeredFeatures(): bigint {
    return Feature.VERSION_1 | Feature.INDIRECT_DESC | Feature.EVENT_IDX | Feature.PROTOCOL_FEATURES | this.device.deviceFeatures;
  }

  readonly offeredProtocolFeatures = ProtocolFeature.MQ | ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS;

  /** Serves one connected frontend until it disconnects; resolves with the reason. */
  serve(fd: number): Promise<string> {
    return new Promise((resolve) => {
      this.conn = new VhostConnection(
        fd,
        this.log,
        (m) => this.handle(m),
        (reason) => {
          for (const r of this.rings) this.stopRing(r);
          for (const r of this.rings) r.closeFds();
          resolve(reason);
        },
      );
    });
  }

  /** Ends the connection (the daemon is shutting down). */
  close(): void {
    this.conn?.close('the backend is shutting down');
  }

  private async handle(m: Message): Promise<void> {
    const name = Request[m.header.request] ?? `REQUEST_${m.header.request}`;
    this.metrics.inc(`vhost.messages.${name}`);
    this.log.debug({ request: name, size: m.header.size, fds: m.fds.length, flags: m.header.flags }, 'vhost-user message');
    let reply: Buffer | undefined;
    let ok = true;
    try {
      if (m.header.request === Request.GET_VRING_BASE) await this.drainBeforeStop(m);
      reply = this.dispatch(m);
    } catch (e) {
      ok = false;
      this.metrics.inc('vhost.errors');
      this.log.error({ request: name, err: errorMessage(e) }, 'vhost-user request failed');
    } finally {
      for (const fd of m.fds) if (fd >= 0) native.closeFd(fd); // every fd not taken by a handler
    }
    if (reply !== undefined) {
      this.conn?.send(encodeReply(m.header.request, reply));
    } else if (m.header.flags & FLAG_NEED_REPLY && this.protocolFeatures & ProtocolFeature.REPLY_ACK) {
      this.conn?.send(encodeReply(m.header.request, u64Payload(ok ? 0n : 1n)));
    } else if (!ok && hasNaturalReply(m.header.request)) {
      // The frontend waits for a reply: give it a zeroed one rather than hang it.
      this.conn?.send(encodeReply(m.header.request, Buffer.alloc(8)));
    }
  }

  /**
   * Requests in flight write into guest memory (READ replies go straight into guest buffers): a
   * ring is stopped only once they are done, so that a rebooted guest's memory is never written
   * with stale replies. A request stuck longer than this is abandoned when the ring stops: an
   * image READ waiting for a chunk stops waiting and writes nothing more, any reply's header is
   * not written (`Chain.stale`); a host read already in the kernel may still complete into place.
   */
  private async drainBeforeStop(m: Message): Promise<void> {
    const r = this.rings[decodeVringState(m).index];
    if (r === undefined || r.inflight === 0) return;
    if (!(await r.drain(this.stopWaitMs))) this.log.warn({ ring: r.index, inflight: r.inflight }, 'stopping a ring with requests still in flight');
  }

  /** After memory came (back): rings that were outside guest memory are served again. */
  private ringsBack(): void {
    for (const r of this.rings) if (r.memoryChanged() && r.enabled) this.device.process(r);
  }

  /** Takes `n` fds from the message (the rest are closed by `handle`). */
  private takeFds(m: Message, n: number): number[] {
    if (m.fds.length < n) throw new Error(`expected ${n} file descriptor(s), got ${m.fds.length}`);
    if (m.fds.length > n) this.log.warn({ extra: m.fds.length - n }, 'vhost-user message carried extra file descriptors; closing them');
    const taken = m.fds.slice(0, n);
    m.fds.splice(0, n, ...taken.map(() => -1));
    return taken;
  }

  private ring(index: number): Vring {
    const r = this.rings[index];
    if (r === undefined) throw new Error(`ring ${index} does not exist (${this.rings.length} rings)`);
    return r;
  }

  private dispatch(m: Message): Buffer | undefined {
    switch (m.header.request as Request) {
      case Request.GET_FEATURES:
        return u64Payload(this.offeredFeatures);
      case Request.SET_FEATURES: {
        const f = decodeU64(m);
        if (f & ~this.offeredFeatures) this.log.warn({ features: `0x${f.toString(16)}` }, 'the frontend acked features that were not offered');
        this.features = f & this.offeredFeatures;
        return undefined;
      }
      case Request.GET_PROTOCOL_FEATURES:
        return u64Payload(this.offeredProtocolFeatures);
      case Request.SET_PROTOCOL_FEATURES:
        this.protocolFeatures = decodeU64(m) & this.offeredProtocolFeatures;
        return undefined;
      case Request.SET_OWNER:
      case Request.RESET_OWNER:
        return undefined;
      case Request.GET_QUEUE_NUM:
        return u64Payload(BigInt(this.rings.length));
      case Request.GET_MAX_MEM_SLOTS:
        return u64Payload(BigInt(MAX_MEM_SLOTS));
      case Request.SET_MEM_TABLE: {
        const regions = decodeMemTable(m);
        const fds = this.takeFds(m, regions.length);
        try {
          this.memory.setTable(regions, fds);
          this.windows.reset();
        } finally {
          for (const fd of fds) native.closeFd(fd); // the mappings stay valid
        }
        this.log.info({ regions: regions.map((r) => ({ gpa: `0x${r.gpa.toString(16)}`, size: `0x${r.size.toString(16)}` })) }, 'memory table set');
        this.ringsBack();
        return undefined;
      }
      case Request.ADD_MEM_REG: {
        const region = decodeSingleRegion(m);
        const [fd] = this.takeFds(m, 1) as [number];
        try {
          this.memory.addRegion(region, fd);
        } finally {
          native.closeFd(fd);
        }
        this.log.info({ gpa: `0x${region.gpa.toString(16)}`, size: `0x${region.size.toString(16)}` }, 'memory region added');
        this.ringsBack();
        return undefined;
      }
      case Request.REM_MEM_REG: {
        const region = decodeSingleRegion(m);
        if (!this.memory.removeRegion(region)) throw new Error(`no memory region at 0x${region.gpa.toString(16)} to remove`);
        this.windows.reset();
        this.log.info({ gpa: `0x${region.gpa.toString(16)}` }, 'memory region removed');
        return undefined;
      }
      case Request.SET_VRING_NUM: {
        const { index, num } = decodeVringState(m);
        if (num < 1 || num > MAX_QUEUE_SIZE) throw new Error(`ring size ${num} is not supported (1..${MAX_QUEUE_SIZE})`);
        const r = this.ring(index);
        // Requests in flight hold heads of the size the ring has (no VMM resizes a running ring).
        if (r.started && num !== r.size) throw new Error(`ring ${index} is running: its size stays ${r.size}, not ${num}`);
        r.size = num;
        return undefined;
      }
      case Request.SET_VRING_ADDR: {
        const a = decodeVringAddr(m);
        const r = this.ring(a.index);
        const old = r.addr;
        r.addr = { desc: a.desc, used: a.used, avail: a.avail };
        if (r.started) {
          // New addresses for a running ring: keep its position. Refused, the ring runs on where
          // it was (the setup changes nothing it refuses).
          r.base = r.vq.base();
          try {
            this.setupRing(r);
          } catch (e) {
            r.addr = old;
            throw e;
          }
        }
        return undefined;
      }
      case Request.SET_VRING_BASE: {
        const { index, num } = decodeVringState(m);
        if (num > 0xffff) throw new Error(`ring base ${num} out of range`);
        const r = this.ring(index);
        r.base = num;
        if (r.started) r.vq.setBase(num);
        return undefined;
      }
      case Request.GET_VRING_BASE: {
        const { index } = decodeVringState(m);
        const r = this.ring(index);
        const base = r.started ? r.vq.base() : r.base;
        this.stopRing(r);
        r.closeFds();
        return encodeVringState(index, base);
      }
      case Request.SET_VRING_KICK:
        return this.setKick(m);
      case Request.SET_VRING_CALL:
      case Request.SET_VRING_ERR: {
        const v = decodeU64(m);
        const r = this.ring(Number(v & VRING_IDX_MASK));
        const fd = v & VRING_NOFD_MASK ? -1 : (this.takeFds(m, 1)[0] as number);
        // Signalled from the event loop thread: a write must never block it (an eventfd's count
        // at its limit, or a pipe a frontend passed in its place, gives EAGAIN instead).
        if (fd >= 0) native.setNonBlocking(fd);
        if (m.header.request === Request.SET_VRING_CALL) {
          if (r.callFd >= 0) native.closeFd(r.callFd);
          r.callFd = fd;
        } else {
          if (r.errFd >= 0) native.closeFd(r.errFd);
          r.errFd = fd;
        }
        return undefined;
      }
      case Request.SET_VRING_ENABLE: {
        const { index, num } = decodeVringState(m);
        const r = this.ring(index);
        r.enabled = num === 1;
        // Buffers that arrived while the ring was disabled are still on it: serve them now.
        if (r.enabled && r.started) this.device.process(r);
        return undefined;
      }
      case Request.SET_BACKEND_REQ_FD:
        this.log.warn('SET_BACKEND_REQ_FD without BACKEND_REQ; ignoring it');
        return undefined;
      case Request.GET_CONFIG:
        // CONFIG is not offered (QEMU serves the virtio-fs config space): echo an empty config.
        return m.payload.subarray(0, Math.min(12, m.payload.length));
      case Request.GET_STATUS:
        return u64Payload(0n);
      case Request.SET_STATUS:
      case Request.SET_CONFIG:
      case Request.SET_VRING_ENDIAN:
        return undefined;
      default:
        throw new Error(`unsupported vhost-user request ${m.header.request}`);
    }
  }

  private setKick(m: Message): undefined {
    const v = decodeU64(m);
    const r = this.ring(Number(v & VRING_IDX_MASK));
    if (v & VRING_NOFD_MASK) throw new Error('polling rings (no kick fd) are not supported');
    const [fd] = this.takeFds(m, 1) as [number];
    // A new kick fd for a running ring: it goes on from where it is, not from its SET_VRING_BASE
    // (which would pop, and answer, every request it served again).
    if (r.started) r.base = r.vq.base();
    try {
      this.setupRing(r);
    } catch (e) {
      // Refused (no size or addresses yet, or not in guest memory): the ring keeps the kick fd it
      // had, if any, and runs on as it was.
      native.closeFd(fd);
      throw e;
    }
    r.poller?.close();
    if (r.kickFd >= 0) native.closeFd(r.kickFd);
    r.kickFd = fd;
    native.setNonBlocking(fd);
    r.poller = new native.Poller(fd, (events) => this.onKick(r, events), true);
    r.poller.start(UV_READABLE);
    // Rings start enabled without PROTOCOL_FEATURES; otherwise they wait for SET_VRING_ENABLE.
    if (!(this.features & Feature.PROTOCOL_FEATURES)) r.enabled = true;
    if (r.enabled) this.device.process(r);
    return undefined;
  }

  private setupRing(r: Vring): void {
    if (r.addr === undefined || r.size === 0) throw new Error(`ring ${r.index} is started before its size and addresses are set`);
    r.vq.setup(r.size, r.addr.desc, r.addr.avail, r.addr.used, (this.features & Feature.EVENT_IDX) !== 0n);
    r.vq.setBase(r.base);
    r.started = true;
    this.log.debug({ ring: r.index, size: r.size, base: r.base }, 'ring started');
  }

  private stopRing(r: Vring): void {
    if (r.started) r.base = r.vq.base();
    r.started = false;
    r.broken = false;
    r.epoch++;
    r.abandonInflight();
    r.vq.reset();
  }

  private onKick(r: Vring, events: number): void {
    if (events < 0) {
      this.log.warn({ ring: r.index, errno: events }, 'kick fd poll failed');
      r.poller?.close();
      r.poller = undefined;
      return;
    }
    // The poller read (reset) the kick eventfd before calling back.
    this.metrics.inc(r.kickMetric);
    // A kick before SET_VRING_ENABLE leaves the buffers on the ring (never dropped).
    if (r.started && r.enabled) this.device.process(r);
  }
}

function hasNaturalReply(request: number): boolean {
  return [Request.GET_FEATURES, Request.GET_PROTOCOL_FEATURES, Request.GET_QUEUE_NUM, Request.GET_VRING_BASE, Request.GET_CONFIG, Request.GET_MAX_MEM_SLOTS, Request.GET_STATUS].includes(request);
}
