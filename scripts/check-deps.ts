/**
 * Enforces the layering of src/ (README "Architecture", after ../shared/spec/architecture.md):
 * which folder may import which, and no import cycles between files. Exits non-zero naming every
 * violation. Run by scripts/test.sh.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(dirname(new URL(import.meta.url).pathname), '..', 'src');

/** For each folder (or sub-folder), the src-relative path prefixes it may import. */
const ALLOWED: Record<string, string[]> = {
  base: [],
  native: ['base/', 'format/compression.ts'],
  config: ['base/'],
  format: ['base/'],
  fuse: ['base/', 'fs/types.ts'],
  'fs/types.ts': ['base/'],
  'fs/image': ['base/', 'format/', 'storage/', 'fs/types.ts'],
  'fs/passthrough': ['base/', 'native/', 'fs/types.ts'],
  'fs/vfs': ['base/', 'fs/'],
  fs: ['base/', 'format/', 'fs/types.ts'],
  storage: ['base/', 'config/', 'format/', 'native/', 'oci/registry/'],
  transport: ['base/', 'native/', 'fuse/'],
  'oci/registry': ['base/', 'config/'],
  oci: ['base/', 'config/', 'format/', 'builder/', 'native/', 'storage/', 'oci/registry/'],
  builder: ['base/', 'config/', 'format/', 'native/'],
  tools: ['base/', 'native/', 'format/', 'storage/'],
  daemon: ['base/', 'native/', 'config/', 'format/', 'fuse/', 'fs/', 'storage/', 'transport/', 'oci/', 'builder/', 'tools/'],
  api: ['base/', 'config/', 'daemon/'],
  cli: [''],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The most specific rule for a src-relative file path. */
function ruleFor(rel: string): { key: string; allowed: string[] } | undefined {
  const keys = Object.keys(ALLOWED).sort((a, b) => b.length - a.length);
  for (const key of keys) {
    if (rel === key || rel.startsWith(key + '/')) return { key, allowed: ALLOWED[key] as string[] };
  }
  return undefined;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const problems: string[] = [];
const graph = new Map<string, string[]>();

for (const file of files(SRC)) {
  const rel = relative(SRC, file);
  const rule = ruleFor(rel);
  if (rule === undefined) {
    problems.push(`${rel}: its folder is not in the layering table`);
    continue;
  }
  const text = readFileSync(file, 'utf8');
  const edges: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = (m[1] ?? m[2]) as string;
    if (!spec.startsWith('.')) continue; // packages and node: built-ins
    const target = relative(SRC, resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    edges.push(target);
    const sameFolder = target.startsWith(rule.key + '/') || target === rule.key;
    if (sameFolder) continue;
    if (!rule.allowed.some((prefix) => target.startsWith(prefix))) {
      problems.push(`${rel} imports ${target}: ${rule.key} may import only ${rule.allowed.join(', ') || 'nothing'}`);
    }
  }
  graph.set(rel, edges);
}

// Cycles between files (Tarjan's strongly connected components).
let index = 0;
const idx = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const strong = (v: string): void => {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue;
    if (!idx.has(w)) {
      strong(w);
      low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
    } else if (onStack.has(w)) {
      low.set(v, Math.min(low.get(v) as number, idx.get(w) as number));
    }
  }
  if (low.get(v) === idx.get(v)) {
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) problems.push(`import cycle: ${scc.join(' -> ')}`);
  }
};
for (const v of graph.keys()) if (!idx.has(v)) strong(v);

if (problems.length > 0) {
  process.stderr.write(`check-deps: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stderr.write(`check-deps: ${graph.size} files, layering and cycles OK\n`);
