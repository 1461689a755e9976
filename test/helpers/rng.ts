/** A seeded pseudo-random generator for the fuzz tests: a run follows from its seed alone. */

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
}

/**
 * `DAMSELFLY_FUZZ_SALT` (a number, default 0) is mixed into every seed: CI runs the fixed cases,
 * a run with another salt explores new ones (a failure names the salt to reproduce it with).
 */
export const FUZZ_SALT = Number(process.env.DAMSELFLY_FUZZ_SALT ?? 0) >>> 0;

/** mulberry32 over a 32-bit seed. */
export function seededRng(seed: number): Rng {
  let s = (seed ^ Math.imul(FUZZ_SALT, 0x85ebca6b)) >>> 0;
  const next = (): number => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)] as T };
}

/** A generator for case `index` of the series `name`: case `i` is the same on every run and machine. */
export function caseRng(name: string, index: number): Rng {
  let s = 2166136261;
  for (const c of Buffer.from(name)) s = Math.imul(s ^ c, 16777619);
  return seededRng(s ^ Math.imul(index + 1, 0x9e3779b1));
}

/** Flips 1 to `max` random bits of `b` in place; says how many. */
export function flipBits(b: Buffer, rng: Rng, max: number): string {
  const n = 1 + rng.int(max);
  for (let i = 0; i < n; i++) {
    const at = rng.int(b.length);
    b[at] = (b[at] as number) ^ (1 << rng.int(8));
  }
  return `${n} bits flipped`;
}
