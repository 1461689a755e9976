/**
 * Reads started before anyone asks for them: the start of a prefetch (blob ranges the daemon
 * knows will be wanted first) is requested at once, in pieces read one after the other, each
 * streamed. A read inside them waits only until the bytes it wants have arrived, and needs no
 * request of its own; a reader's read requests a piece it needs that is still queued at once,
 * while the prefetch's background reads wait their turn. A piece all handed out is dropped.
 * Anything else, and anything after a piece failed or after `release()`, goes to the backend as
 * before.
 *
 * The bytes are only ever handed to the chunk device, which verifies every chunk: when data from
 * a piece fails verification, every piece is dropped (`reportCorrupt`) and the device reads the
 * chunk again from the backend (`readOrigin`), so a bad answer costs a second read, never wrong
 * bytes.
 */
import type { Logger, Metrics } from '../../base/index.js';
import { errorMessage, untilAborted } from '../../base/index.js';
import type { BlobBackend, BlobRange, ReadOptions } from './types.js';

export interface EarlyReadsOptions {
  /** Bytes per backend read; default 8 MiB. */
  pieceBytes?: number;
  /**
   * Backend reads in flight at once, in order; default 1. A piece arrives in order, and a reader
   * waits only until the bytes it wants are in (`ReadOptions.onProgress`): one stream at a time
   * keeps the first bytes first. (With several, all shared the link and finished together, at the
   * end; with pieces of 1 MiB two at a time, the link idled a round trip between pairs.)
   */
  concurrency?: number;
  metrics: Metrics;
  log: Logger;
}

type PieceState = 'queued' | 'reading' | 'done' | 'failed';

class Piece {
  state: PieceState = 'queued';
  buf: Buffer | undefined;
  /** Bytes from the piece's start that are in `buf`. */
  received = 0;
  /** Bytes of it handed to reads, and reads between waiting for it and copying from it. */
  handedOut = 0;
  readers = 0;
  readonly abort = new AbortController();
  private waiters: { need: number; wake: (ok: boolean) => void }[] = [];
  private readonly finished: Promise<void>;
  private finish: () => void = () => undefined;

  constructor(
    readonly id: string,
    readonly offset: number,
    readonly length: number,
  ) {
    this.finished = new Promise((resolve) => (this.finish = resolve));
  }

  /** Settles when the piece is done, failed or dropped. */
  settled(): Promise<void> {
    return this.finished;
  }

  /** Resolves true once the piece's first `need` bytes are in, false if they never will be. */
  upTo(need: number): Promise<boolean> {
    if (this.received >= need) return Promise.resolve(true);
    if (this.state === 'failed') return Promise.resolve(false);
    return new Promise((wake) => this.waiters.push({ need, wake }));
  }

  /** Takes the bytes received so far; returns how many are new. */
  progress(bytes: number): number {
    const before = this.received;
    if (bytes <= before) return 0;
    this.received = Math.min(bytes, this.length);
    this.waiters = this.waiters.filter((w) => (w.need <= this.received ? (w.wake(true), false) : true));
    return this.received - before;
  }

  succeed(buf: Buffer): number {
    this.buf = buf;
    this.state = 'done';
    const fresh = this.progress(this.length);
    this.finish();
    return fresh;
  }

  fail(): void {
    if (this.state === 'done') return;
    this.state = 'failed';
    for (const w of this.waiters.splice(0)) w.wake(false);
    this.finish();
  }
}

export class EarlyReadsBackend implements BlobBackend {
  readonly kind: string;
  readonly readOrigin: (id: string, offset: number, length: number, opts?: ReadOptions) => Promise<Buffer>;
  private pieces: Piece[] = [];
  private released = false;
  /** Buffers `read` answered from pieces (for `reportCorrupt`). */
  private readonly served = new WeakSet<Buffer>();

  constructor(
    private readonly inner: BlobBackend,
    ranges: readonly BlobRange[],
    private readonly opts: EarlyReadsOptions,
  ) {
    this.kind = inner.kind;
    this.readOrigin = (id, offset, length, o) => (inner.readOrigin ?? inner.read.bind(inner))(id, offset, length, o);
    const size = opts.pieceBytes ?? 8 << 20;
    for (const r of ranges) {
      for (let at = r.offset; at < r.offset + r.length; at += size) this.pieces.push(new Piece(r.id, at, Math.min(size, r.offset + r.length - at)));
    }
    const queue = [...this.pieces];
    const next = (): void => {
      const p = queue.shift();
      if (p === undefined || this.released) return;
      this.start(p);
      void p.settled().then(next);
    };
    for (let i = 0; i < (opts.concurrency ?? 1); i++) next();
  }

  /** Requests a piece, if it is still queued. */
  private start(p: Piece): void {
    if (p.state !== 'queued') return;
    p.state = 'reading';
    const started = Date.now();
    const buf = Buffer.allocUnsafe(p.length);
    p.buf = buf;
    const count = (n: number): void => this.opts.metrics.inc('storage.early_read_bytes', n);
    // Through a promise's executor: a backend that throws instead of rejecting fails the piece too.
    new Promise<Buffer>((resolve) => resolve(this.inner.read(p.id, p.offset, p.length, { signal: p.abort.signal, allocate: () => buf, onProgress: (n) => count(p.progress(n)) })))
      .then(
        (b) => {
          count(p.succeed(b)); // b is buf, unless the backend answered with a buffer of its own
          this.retireIfSpent(p);
          this.opts.log.debug({ blob: p.id, offset: p.offset, length: p.length, ms: Date.now() - started }, 'early read done');
        },
        (e: unknown) => {
          // The reads that wanted it go to the backend themselves.
          if (!p.abort.signal.aborted) this.opts.log.warn({ blob: p.id, offset: p.offset, length: p.length, err: errorMessage(e) }, 'early read failed');
          p.fail();
        },
      );
  }

  /** The pieces that hold [offset, offset+length) of blob `id` whole, in order; else undefined. */
  private covering(id: string, offset: number, length: number): Piece[] | undefined {
    const end = offset + length;
    const out: Piece[] = [];
    let at = offset;
    for (const p of this.pieces) {
      if (p.id !== id || p.offset + p.length <= at || p.offset > at) continue;
      out.push(p);
      at = p.offset + p.length;
      if (at >= end) return out;
    }
    return undefined;
  }

  /**
   * A read inside the pieces is answered from them. A reader's read requests the pieces it needs
   * that are still queued (a reader does not wait behind the queue); a background read (the
   * prefetch) waits for them in queue order.
   */
  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    const pieces = length > 0 ? this.covering(id, offset, length) : undefined;
    if (pieces === undefined) return this.inner.read(id, offset, length, opts);
    if (opts?.background !== true) for (const p of pieces) this.start(p);
    const end = offset + length;
    for (const p of pieces) p.readers++;
    try {
      // The caller may give up while a piece is still coming (the device closing): it stops waiting.
      const ok = await untilAborted(Promise.all(pieces.map((p) => p.upTo(Math.min(p.length, end - p.offset)))), opts?.signal);
      if (ok.every(Boolean) && !this.released) {
        const out = opts?.allocate?.(length) ?? Buffer.allocUnsafe(length);
        let pos = 0;
        for (const p of pieces) {
          const n = (p.buf as Buffer).copy(out, pos, Math.max(0, offset - p.offset), Math.min(p.length, end - p.offset));
          pos += n;
          p.handedOut += n;
        }
        this.opts.metrics.inc('storage.early_read_hits');
        this.served.add(out);
        return out;
      }
    } finally {
      for (const p of pieces) {
        p.readers--;
        this.retireIfSpent(p);
      }
    }
    return this.inner.read(id, offset, length, opts);
  }

  /**
   * A piece all handed out (each chunk is fetched once; the cache has them now) is dropped, its
   * memory with it, rather than kept until the whole prefetch ends (with prefetch_all, minutes).
   */
  private retireIfSpent(p: Piece): void {
    if (p.state !== 'done' || p.readers > 0 || p.handedOut < p.length) return;
    this.pieces = this.pieces.filter((q) => q !== p);
    p.buf = undefined;
  }

  /** A reader waits for a range a background read is fetching: its pieces are requested now. */
  expedite(id: string, offset: number, length: number): void {
    for (const p of this.covering(id, offset, length) ?? []) this.start(p);
  }

  /**
   * Data a read returned failed verification. From a piece: every piece is dropped (the device
   * then reads the range again from the backend). Otherwise the backend's own answer.
   */
  readonly reportCorrupt = (data: Buffer): boolean => {
    if (this.served.has(data)) {
      this.opts.log.warn('data read early failed verification; reading from the backend instead');
      this.release();
      return true;
    }
    return this.inner.reportCorrupt?.(data) ?? false;
  };

  /** Stops the reads not yet started and frees the pieces; later reads go to the backend. */
  release(): void {
    this.released = true;
    for (const p of this.pieces) {
      // A piece all in already ends on its own (its answer is checked to its end).
      if (p.received < p.length) p.abort.abort();
      p.fail();
    }
    this.pieces = [];
  }

  size(id: string, opts?: ReadOptions): Promise<number> {
    return this.inner.size(id, opts);
  }

  async close(): Promise<void> {
    this.release();
    await this.inner.close();
  }
}
