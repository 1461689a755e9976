/**
 * The counters of one mount: every increment also goes to the daemon's `Metrics`, so the daemon
 * totals (and `--stats`) stay whole while the API can answer per mount (`?id=<mountpoint>`).
 */
import { Metrics } from '../base/index.js';

export class ScopedMetrics extends Metrics {
  constructor(private readonly parent: Metrics) {
    super();
  }

  override inc(name: string, n = 1): void {
    super.inc(name, n);
    this.parent.inc(name, n);
  }
}
