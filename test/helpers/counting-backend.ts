/** A backend wrapper for tests: counts every read, answers after a delay (as a network would), and can be made to fail. */
import type { BlobBackend } from '../../src/storage/backend/types.js';

export class CountingBackend implements BlobBackend {
  readonly kind = 'counting';
  /** [offset, length] of every read, in order. */
  readonly reads: Array<[number, number]> = [];
  /** Every read throws while set (the backend is gone). */
  fail = false;

  constructor(
    private readonly inner: BlobBackend,
    private readonly delayMs = 5,
  ) {}

  async read(id: string, offset: number, length: number): Promise<Buffer> {
    if (this.fail) throw new Error('the backend is gone');
    this.reads.push([offset, length]);
    await new Promise((r) => setTimeout(r, this.delayMs));
    return this.inner.read(id, offset, length);
  }

  size(id: string): Promise<number> {
    return this.inner.size(id);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
