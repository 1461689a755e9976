/**
 * Daemon counters kept in one place: every layer increments named counters on the `Metrics`
 * object it was given; `--stats` and the control API read snapshots.
 */
export class Metrics {
  private readonly counters = new Map<string, number>();

  inc(name: string, n = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + n);
  }

  get(name: string): number {
    return this.counters.get(name) ?? 0;
  }

  /** All counters, sorted by name. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counters].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** Counters whose name starts with `prefix.`, keyed by the rest of the name. */
  group(prefix: string): Record<string, number> {
    const p = `${prefix}.`;
    return Object.fromEntries([...this.counters].filter(([k]) => k.startsWith(p)).map(([k, v]) => [k.slice(p.length), v]));
  }
}
