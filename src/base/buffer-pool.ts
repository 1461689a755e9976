/**
 * A pool of large, reusable byte buffers (decoded chunks, backend reads). A fresh buffer of a
 * megabyte costs page faults on its first touch (glibc maps it anew) and counts towards V8's
 * external memory, whose growth schedules a full mark-compact every few tens of megabytes
 * allocated: reading a few hundred megabytes of chunks spent more CPU on those than on
 * decompression. Buffers handed back are reused instead.
 *
 * Sizes are rounded up to a power of two (at least `minSize`); requests smaller than `minSize` or
 * larger than `maxSize` get a plain allocation and are not pooled. A released buffer becomes
 * available again only on a later turn of the event loop (setImmediate), so that code which took a
 * reference in the same turn (a reader whose `await` resolved but has not yet copied) still sees
 * the bytes it was given. Idle buffers are dropped after a quiet spell (`trimAfterMs`, or `trim()`),
 * their memory handed back at once through `discard` where one is given: a daemon at rest keeps
 * no pool, even when its garbage collector has no reason to run.
 */
import { QuietTimer } from './quiet-timer.js';

export interface BufferPoolOptions {
  /** Smallest pooled request, bytes (default 64 KiB). */
  minSize?: number;
  /** Largest pooled request, bytes (default 16 MiB). */
  maxSize?: number;
  /** Bytes of idle buffers kept; releases beyond it are left to the garbage collector (default 32 MiB). */
  maxIdleBytes?: number;
  /** Idle buffers are dropped (left to the garbage collector) after this long without an acquire, ms (default 10 s). */
  trimAfterMs?: number;
  /** Makes a new pooled buffer of exactly `size` bytes (e.g. page-aligned memory for O_DIRECT); default: Node's, unzeroed. */
  allocate?: (size: number) => ArrayBuffer;
  /** Gives a dropped idle buffer's memory back to the system now rather than when it is collected. */
  discard?: (buffer: ArrayBuffer) => void;
}

export class BufferPool {
  private readonly minSize: number;
  private readonly maxSize: number;
  private readonly maxIdleBytes: number;
  private readonly allocate: (size: number) => ArrayBuffer;
  private readonly discard: ((buffer: ArrayBuffer) => void) | undefined;
  private readonly idle = new Map<number, ArrayBuffer[]>();
  private idleBytes = 0;
  /** Buffers lent out and not yet released: a release of anything else is ignored. */
  private readonly lent = new WeakSet<ArrayBuffer>();
  private pending: ArrayBuffer[] = [];
  private flushScheduled = false;
  /** Drops the idle buffers once nothing was acquired or released for `trimAfterMs`. */
  private readonly quiet: QuietTimer;
  /** Buffers created (not reused) so far. */
  created = 0;

  constructor(opts: BufferPoolOptions = {}) {
    this.minSize = opts.minSize ?? 64 << 10;
    this.maxSize = opts.maxSize ?? 16 << 20;
    this.maxIdleBytes = opts.maxIdleBytes ?? 32 << 20;
    // Not zero-filled (new ArrayBuffer would be): an unsafe buffer of its own, not a slice of Node's pool.
    this.allocate = opts.allocate ?? ((size) => Buffer.allocUnsafeSlow(size).buffer as ArrayBuffer);
    this.discard = opts.discard;
    this.quiet = new QuietTimer(opts.trimAfterMs ?? 10_000, () => this.trim());
  }

  /** A buffer of exactly `size` bytes (contents undefined). */
  acquire(size: number): Buffer {
    if (size < this.minSize || size > this.maxSize) return Buffer.allocUnsafe(size);
    const cls = sizeClass(size);
    this.quiet.touch();
    let ab = this.idle.get(cls)?.pop();
    if (ab !== undefined) {
      this.idleBytes -= cls;
    } else {
      ab = this.allocate(cls);
      this.created++;
    }
    this.lent.add(ab);
    return Buffer.from(ab, 0, size);
  }

  /**
   * Hands a buffer from `acquire` back (any view on it will do; others are ignored: false). The
   * caller must not use it afterwards, beyond the current turn of the event loop.
   */
  release(view: Uint8Array): boolean {
    const ab = view.buffer;
    if (!(ab instanceof ArrayBuffer) || !this.lent.has(ab)) return false;
    this.lent.delete(ab);
    this.pending.push(ab);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return true;
  }

  /** Bytes of idle buffers held. */
  get idleSize(): number {
    return this.idleBytes + this.pending.reduce((n, ab) => n + ab.byteLength, 0);
  }

  private flush(): void {
    this.flushScheduled = false;
    const released = this.pending;
    this.pending = [];
    for (const ab of released) {
      if (this.idleBytes + ab.byteLength > this.maxIdleBytes) {
        this.discard?.(ab);
        continue;
      }
      let list = this.idle.get(ab.byteLength);
      if (list === undefined) this.idle.set(ab.byteLength, (list = []));
      list.push(ab);
      this.idleBytes += ab.byteLength;
    }
    if (this.idleBytes > 0) this.quiet.touch();
  }

  /**
   * Drops the idle buffers now. Buffers released in this turn of the event loop are not idle yet
   * (their last user may still read them): they stay.
   */
  trim(): void {
    if (this.discard !== undefined) for (const list of this.idle.values()) for (const ab of list) this.discard(ab);
    this.idle.clear();
    this.idleBytes = 0;
  }
}

function sizeClass(size: number): number {
  let c = 1;
  while (c < size) c *= 2;
  return c;
}
