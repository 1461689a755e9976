/**
 * Prints the functions with the most self time in a V8 CPU profile (`node --cpu-prof`), for
 * scripts/bench/build.sh with BENCH_PROFILE=1.
 *
 * Usage: node --import tsx scripts/bench/cpuprof-top.ts PROFILE.cpuprofile [COUNT]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

function main(): void {
  const [path, countArg] = process.argv.slice(2);
  if (path === undefined) {
    process.stderr.write('usage: cpuprof-top.ts PROFILE.cpuprofile [COUNT]\n');
    process.exit(2);
  }
  const count = Number(countArg ?? '20');
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  // Self time per node from the sample deltas (microseconds); hit counts when there are none.
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  if (samples.length > 0 && deltas.length === samples.length) {
    for (let i = 0; i < samples.length; i++) {
      // A sample's time is the delta to the next sample.
      const dt = i + 1 < deltas.length ? (deltas[i + 1] as number) : 0;
      const id = samples[i] as number;
      self.set(id, (self.get(id) ?? 0) + dt);
    }
  } else {
    const perHit = (p.endTime - p.startTime) / Math.max(1, p.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0));
    for (const n of p.nodes) self.set(n.id, (n.hitCount ?? 0) * perHit);
  }
  // Aggregate by function (name + location), as DevTools' bottom-up view does.
  const agg = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const file = url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/');
    const key = `${functionName || '(anonymous)'}  ${file ? `${file}:${lineNumber + 1}` : ''}`.trim();
    agg.set(key, (agg.get(key) ?? 0) + us);
    total += us;
  }
  const rows = [...agg.entries()].sort((a, b) => b[1] - a[1]).slice(0, count);
  process.stdout.write(`profile: ${(total / 1e6).toFixed(2)} s sampled on the main thread\n`);
  process.stdout.write('  self s   self %  function\n');
  for (const [key, us] of rows) {
    process.stdout.write(`${(us / 1e6).toFixed(2).padStart(8)} ${((100 * us) / total).toFixed(1).padStart(7)}%  ${key}\n`);
  }
}

main();
