/**
 * Reads started before anyone asks for them: a blob range known in advance to be wanted first
 * (the head of a blob that holds the image's prefetch data, as the image's manifest announces;
 * see `Annotation.PREFETCH_BYTES`) is fetched while the bootstrap is still on its way, in pieces
 * read in order, a few at a time. A read that falls inside the pieces waits for them and is
 * answered from them, without a request of its own (a piece it needs that is still queued is
 * requested at once: a reader does not wait behind the queue); anything else, and anything after
 * a piece failed or after `release()`, goes to the backend as before.
 *
 * The bytes are only ever handed to the chunk device, which verifies every chunk: a piece whose
 * data fails verification is dropped (`reportCorrupt`), and the device reads it again from the
 * backend (`readOrigin`), so a bad answer costs a second read, never wrong bytes.
 */
import type { Logger, Metrics } from '../../base/index.js';
import { errorMessage } from '../../base/index.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface EarlyRange {
  /** Blob id. */
  id: string;
  offset: number;
  length: number;
}

export interface EarlyReadsOptions {
  /** Bytes per backend read; default 1 MiB. */
  pieceBytes?: number;
  /**
   * Backend reads in flight at once (in blob order); default 8. Enough that the link does not
   * wait for the next request while the daemon is busy setting up (a cold start's busiest time).
   */
  concurrency?: number;
  metrics: Metrics;
  log: Logger;
}

interface Piece {
  id: string;
  offset: number;
  length: number;
  /** Settles when the piece's read settles; undefined until the read is started. */
  data?: Promise<Buffer | undefined>;
  /** Starts the read (once). */
  start(): Promise<Buffer | undefined>;
}

export class EarlyReadsBackend implements BlobBackend {
  readonly kind: string;
  readonly readOrigin: (id: string, offset: number, length: number, opts?: ReadOptions) => Promise<Buffer>;
  private pieces: Piece[] = [];
  /** Buffers `read` answered from pieces (for `reportCorrupt`). */
  private readonly served = new WeakSet<Buffer>();
  private readonly abort = new AbortController();

  constructor(
    private readonly inner: BlobBackend,
    ranges: EarlyRange[],
    private readonly opts: EarlyReadsOptions,
  ) {
    this.kind = inner.kind;
    this.readOrigin = (id, offset, length, o) => (inner.readOrigin ?? inner.read.bind(inner))(id, offset, length, o);
    const size = opts.pieceBytes ?? 1 << 20;
    for (const r of ranges) {
      for (let at = r.offset; at < r.offset + r.length; at += size) {
        this.pieces.push(this.piece(r.id, at, Math.min(size, r.offset + r.length - at)));
      }
    }
    // A few reads at a time, in order: the first pieces arrive first instead of all at the end.
    const queue = [...this.pieces];
    const next = (): void => {
      const p = queue.shift();
      if (p !== undefined && !this.abort.signal.aborted) void p.start().then(next);
    };
    for (let i = 0; i < (opts.concurrency ?? 8); i++) next();
  }

  private piece(id: string, offset: number, length: number): Piece {
    const p: Piece = {
      id,
      offset,
      length,
      start: () =>
        (p.data ??= this.inner.read(id, offset, length, { signal: this.abort.signal }).then(
          (b) => {
            this.opts.metrics.inc('storage.early_read_bytes', b.length);
            return b;
          },
          (e: unknown) => {
            // The reads that wanted it go to the backend themselves.
            if (!this.abort.signal.aborted) this.opts.log.warn({ blob: id, offset, length, err: errorMessage(e) }, 'early read failed');
            return undefined;
          },
        )),
    };
    return p;
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

  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    const pieces = length > 0 ? this.covering(id, offset, length) : undefined;
    if (pieces !== undefined) {
      const parts = await Promise.all(pieces.map((p) => p.start()));
      if (parts.every((b): b is Buffer => b !== undefined && this.pieces.length > 0)) {
        const out = opts?.allocate?.(length) ?? Buffer.allocUnsafe(length);
        let pos = 0;
        for (const [i, b] of parts.entries()) {
          const p = pieces[i] as Piece;
          const from = Math.max(0, offset - p.offset);
          const to = Math.min(p.length, offset + length - p.offset);
          pos += b.copy(out, pos, from, to);
        }
        this.opts.metrics.inc('storage.early_read_hits');
        this.served.add(out);
        return out;
      }
    }
    return this.inner.read(id, offset, length, opts);
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
    this.abort.abort();
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
