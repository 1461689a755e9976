/**
 * Runs a callback once a component has been quiet for a while: `touch()` on every use, and
 * `onQuiet` is called when `ms` have passed since the last one (then again only after the next
 * touch). One timer per quiet spell, not one per use; it never keeps the process alive.
 */
// Imported, not the global: the global loads perf_hooks at its first use (0.5 ms), which was in
// a first read's path.
import { performance } from 'node:perf_hooks';

export class QuietTimer {
  private last = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ms: number,
    private readonly onQuiet: () => void,
  ) {}

  touch(): void {
    this.last = performance.now();
    if (this.timer === undefined) this.arm(this.ms);
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const quiet = performance.now() - this.last;
      if (quiet < this.ms) this.arm(this.ms - quiet);
      else this.onQuiet();
    }, ms);
    this.timer.unref();
  }
}
