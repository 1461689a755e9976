/**
 * Background prefetch (nydus `fs_prefetch`): fetches a planned list of chunks into the cache with a
 * bounded number of workers, adjacent chunks merged into one backend read (`merging_size`), and an
 * optional bandwidth limit. Chunks already cached are skipped, so a restarted daemon resumes where
 * it stopped. Reads never wait behind it: a missing chunk a reader needs is fetched at once.
 */
import { type Logger, type Metrics, errorMessage } from '../../base/index.js';
import { type ChunkInfo, extendsRun } from '../../format/chunk-info.js';
import type { BlobDevice } from '../device.js';

export interface PrefetchOptions {
  /** Concurrent backend reads (nydus `threads_count` / `threads`). */
  threads: number;
  /** Largest merged read, bytes (nydus `merging_size` / `batch_size`). */
  mergeBytes: number;
  /** Bytes per second, 0 for no limit (nydus `bandwidth_rate` / `bandwidth_limit`). */
  bandwidthLimit: number;
  metrics: Metrics;
  log: Logger;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Splits an ordered chunk list into batches of one blob's chunks stored together (one after the
 * other, a batch's members, overlapping ZRan contexts), up to `maxBytes` of stored bytes each.
 */
export function batches(chunks: ChunkInfo[], maxBytes: number): ChunkInfo[][] {
  const out: ChunkInfo[][] = [];
  let cur: ChunkInfo[] = [];
  let end = 0;
  for (const c of chunks) {
    const first = cur[0];
    const grows = first !== undefined && first.blobIndex === c.blobIndex ? extendsRun(first.compressedOffset, end, c) : undefined;
    if (grows !== undefined && end + grows - (first as ChunkInfo).compressedOffset <= maxBytes) {
      cur.push(c);
      end += grows;
      continue;
    }
    if (cur.length > 0) out.push(cur);
    cur = [c];
    end = c.compressedOffset + c.compressedSize;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** A token bucket over bytes, one second deep. */
class Limiter {
  private available: number;
  private last = Date.now();

  constructor(private readonly rate: number) {
    this.available = rate;
  }

  /** Waits until `bytes` may go; at once when `stop` fires (the wait too: a stop does not sit out a second). */
  async take(bytes: number, stop: AbortSignal): Promise<void> {
    if (this.rate <= 0) return;
    for (;;) {
      const now = Date.now();
      this.available = Math.min(this.rate, this.available + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      // A batch larger than the whole bucket waits for a full bucket and goes.
      if (this.available >= Math.min(bytes, this.rate) || stop.aborted) {
        this.available -= bytes;
        return;
      }
      const ms = Math.min(1000, ((Math.min(bytes, this.rate) - this.available) / this.rate) * 1000);
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          stop.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        stop.addEventListener('abort', done, { once: true });
      });
    }
  }
}

export interface PrefetchResult {
  chunks: number;
  failed: number;
  stopped: boolean;
}

export class Prefetcher {
  private stopped = false;
  private readonly stopping = new AbortController();
  private running: Promise<PrefetchResult> | undefined;

  constructor(
    private readonly device: BlobDevice,
    private readonly opts: PrefetchOptions,
  ) {}

  /** Starts fetching `chunks` in order (duplicates skipped); resolves when all were tried. */
  start(chunks: ChunkInfo[]): Promise<PrefetchResult> {
    if (this.running !== undefined) return this.running;
    const seen = new Set<string>();
    const unique = chunks.filter((c) => {
      const k = `${c.blobIndex}:${c.index}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    this.running = this.run(batches(unique, this.opts.mergeBytes), unique.length);
    return this.running;
  }

  private async run(work: ChunkInfo[][], total: number): Promise<PrefetchResult> {
    const { metrics, log } = this.opts;
    const limiter = new Limiter(this.opts.bandwidthLimit);
    let done = 0;
    let failed = 0;
    let next = 0;
    const started = Date.now();
    metrics.inc('prefetch.planned_chunks', total);
    const worker = async (): Promise<void> => {
      while (!this.stopped && next < work.length) {
        const batch = work[next++] as ChunkInfo[];
        await limiter.take(
          batch.reduce((n, c) => n + c.compressedSize, 0),
          this.stopping.signal,
        );
        if (this.stopped) return;
        try {
          await this.device.prefetch(batch, { background: true });
        } catch (e) {
          // Stopped (the daemon is closing its device): the batch was cut short, nothing failed.
          if (this.stopped) return;
          failed += batch.length;
          metrics.inc('prefetch.failed_chunks', batch.length);
          log.warn({ err: errorMessage(e) }, 'prefetch of a batch failed; readers will fetch it on demand');
        }
        done += batch.length;
        metrics.inc('prefetch.done_chunks', batch.length);
        this.opts.onProgress?.(done, total);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.opts.threads) }, worker));
    log.info({ chunks: total, failed, ms: Date.now() - started, stopped: this.stopped }, 'prefetch finished');
    return { chunks: total, failed, stopped: this.stopped };
  }

  stop(): void {
    this.stopped = true;
    this.stopping.abort();
  }
}
