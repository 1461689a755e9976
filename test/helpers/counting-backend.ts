/** A backend wrapper for tests: counts every read, answers after a delay (as a network would), and can be made to fail. */
import type { BlobBackend } from '../../src/storage/backend/types.js';

export class CountingBackend implements BlobBackend {
  readonly kind = 'counting';
  /** [offset, length] of every read, in order. */
  readonly reads: Array<[number, number]> = [];
  /** Every read throws while set (the backend is gone). */
  fail = false;
  /** Reads under way now, and the most there were at once. */
  inFlight = 0;
  maxInFlight = 0;

  constructor(
    private readonly inner: BlobBackend,
    private readonly delayMs = 5,
  ) {}

  async read(id: string, offset: number, length: number): Promise<Buffer> {
    if (this.fail) throw new Error('the backend is gone');
    this.reads.push([offset, length]);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, this.delayMs));
      return await this.inner.read(id, offset, length);
    } finally {
      this.inFlight--;
    }
  }

  size(id: string): Promise<number> {
    return this.inner.size(id);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
