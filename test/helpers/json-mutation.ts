/** Seeded mutation of JSON documents for the fuzz tests: values replaced, keys removed, renamed and added. */
import type { Rng } from './rng.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Values of every JSON type, boundaries and awkward strings; undefined means "remove the key". */
export const AWKWARD_VALUES: ReadonlyArray<Json | undefined> = [
  undefined,
  null,
  true,
  false,
  0,
  -1,
  1.5,
  2 ** 31,
  2 ** 53,
  -(2 ** 63),
  1e308,
  '',
  'abc',
  '5',
  '-1',
  'x'.repeat(5000),
  '/',
  '../..',
  'http://[::1',
  '\u0000',
  [],
  [1, 'a', null],
  [{}],
  {},
  { a: 1 },
];

/** Every path to a value in `o`: [[key, ...], ...], the root's included as []. */
export function jsonPaths(o: Json, at: Array<string | number> = []): Array<Array<string | number>> {
  if (o === null || typeof o !== 'object') return [at];
  const keys: Array<string | number> = Array.isArray(o) ? o.map((_, i) => i) : Object.keys(o);
  return [at, ...keys.flatMap((k) => jsonPaths((o as Record<string | number, Json>)[k] as Json, [...at, k]))];
}

export interface JsonMutationOptions {
  /** Replacement values (default AWKWARD_VALUES); undefined removes the key. */
  value?: (rng: Rng) => Json | undefined;
  /** Keys to add with a replacement value, besides renamed ones. */
  keys: readonly string[];
}

/** A copy of `seed` with one to three mutations. */
export function mutateJson(seed: unknown, rng: Rng, opts: JsonMutationOptions): Json {
  const value = opts.value ?? ((r: Rng) => r.pick(AWKWARD_VALUES));
  const doc = structuredClone(seed) as Json;
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const all = jsonPaths(doc).filter((p) => p.length > 0);
    if (all.length === 0) break;
    const p = rng.pick(all);
    let parent = doc as Record<string | number, Json>;
    for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
    const last = p[p.length - 1] as string | number;
    const r = rng.next();
    if (r < 0.6) {
      const v = value(rng);
      if (v === undefined && !Array.isArray(parent)) delete parent[last];
      else parent[last] = structuredClone(v ?? null); // a copy: the values are shared constants
    } else if (r < 0.75 && !Array.isArray(parent)) {
      parent[`${String(last)}_x`] = parent[last] as Json; // a key the reader does not know
      delete parent[last];
    } else if (r < 0.9 && !Array.isArray(parent)) {
      parent[rng.pick(opts.keys)] = structuredClone(value(rng) ?? 1);
    } else {
      parent[last] = structuredClone(doc); // a whole document where a value was
    }
  }
  return doc;
}
