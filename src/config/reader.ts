/**
 * A typed reader over one parsed configuration object (from JSON or TOML). It applies serde's
 * rules as nydus declares them: a key without a default is required; a key with a default may be
 * absent but, when present, must have the right type; optional sub-objects may be absent or null.
 * Errors are `UsageError`s naming the key path. Unknown keys are ignored, but the ones that look
 * like mistakes are reported through `onWarning`.
 */
import { UsageError } from '../base/index.js';
import type { Place } from './schema.js';

export const U8_MAX = 0xff;
export const U32_MAX = 0xffff_ffff;
/** u64/usize keys are limited to what a JavaScript number holds exactly. */
export const U64_MAX = Number.MAX_SAFE_INTEGER;
/** u64 seconds keys: limited so that the value in milliseconds stays exact. */
export const SECONDS_MAX = Math.floor(U64_MAX / 1000);

export interface ReadContext {
  /** Prefix of every error message (the file path and a colon), or ''. */
  readonly prefix: string;
  /** All the sections of the dialect being read, for "belongs in …" hints. */
  readonly places: readonly Place[];
  readonly onWarning?: (message: string) => void;
  /** Integers arrive as bigint (TOML), so a `number` is a float. */
  readonly bigintIntegers?: boolean;
}

export type Raw = Record<string, unknown>;

export function isPlainObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** A value's JSON-ish type name, for messages (never the value: it may be a secret). */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date || (typeof v === 'object' && v.constructor?.name === 'TomlDate')) return 'a date';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'bigint') return 'an integer';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return `a ${typeof v}`;
}

export class Section {
  private readonly read = new Set<string>();

  constructor(
    readonly path: string,
    private readonly raw: Raw,
    readonly place: Place,
    readonly ctx: ReadContext,
  ) {}

  keyPath(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  /** Throws a `UsageError` "<prefix><path>.<key>: <message>". */
  fail(key: string, message: string): never {
    throw new UsageError(`${this.ctx.prefix}${this.keyPath(key)}: ${message}`);
  }

  /** The value of an own key, or undefined if absent; marks the key as known. */
  private get(key: string): unknown {
    this.read.add(key);
    return Object.hasOwn(this.raw, key) ? this.raw[key] : undefined;
  }

  /** Whether the key is present (null counts as absent, as for serde `Option`). */
  has(key: string): boolean {
    const v = this.get(key);
    return v !== undefined && v !== null;
  }

  /** A string; required when `def` is undefined. */
  string(key: string, def?: string): string {
    const v = this.get(key);
    if (v === undefined) {
      if (def === undefined) this.fail(key, 'required');
      return def;
    }
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${typeName(v)}`);
    return v;
  }

  /** An optional string (`Option<String>`): absent or null gives undefined. */
  optString(key: string): string | undefined {
    const v = this.get(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${typeName(v)}`);
    return v;
  }

  /** A boolean; required when `def` is undefined. */
  bool(key: string, def?: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) {
      if (def === undefined) this.fail(key, 'required');
      return def;
    }
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${typeName(v)}`);
    return v;
  }

  /** A non-negative integer ≤ max; required when `def` is undefined. */
  int(key: string, max: number, def?: number): number {
    const v = this.get(key);
    if (v === undefined) {
      if (def === undefined) this.fail(key, 'required');
      return def;
    }
    const range = `must be an integer 0..${max}`;
    if (typeof v === 'bigint') {
      if (v < 0n || v > BigInt(max)) this.fail(key, `${range}, got ${v}`);
      return Number(v);
    }
    if (typeof v === 'number' && this.ctx.bigintIntegers) this.fail(key, `${range}, got a float (${v})`);
    if (typeof v !== 'number') this.fail(key, `${range}, got ${typeName(v)}`);
    if (!Number.isInteger(v) || v < 0 || v > max) this.fail(key, `${range}, got ${v}`);
    return v;
  }

  /** An array of strings, default []. */
  strings(key: string): string[] {
    const v = this.get(key);
    if (v === undefined) return [];
    if (!Array.isArray(v)) this.fail(key, `must be an array of strings, got ${typeName(v)}`);
    v.forEach((s, i) => {
      if (typeof s !== 'string') this.fail(`${key}[${i}]`, `must be a string, got ${typeName(s)}`);
    });
    return [...(v as string[])];
  }

  /** An object of string values (`HashMap<String, String>`); required when `required`. */
  stringMap(key: string, required = false): Record<string, string> {
    const v = this.get(key);
    if (v === undefined) {
      if (required) this.fail(key, 'required');
      return {};
    }
    if (!isPlainObject(v)) this.fail(key, `must be an object of strings, got ${typeName(v)}`);
    const entries = Object.entries(v);
    for (const [k, s] of entries) {
      if (typeof s !== 'string') this.fail(`${key}.${k}`, `must be a string, got ${typeName(s)}`);
    }
    return Object.fromEntries(entries) as Record<string, string>;
  }

  /** A sub-object; undefined when absent or null. */
  child(key: string, place: Place): Section | undefined {
    const v = this.get(key);
    if (v === undefined || v === null) return undefined;
    if (!isPlainObject(v)) this.fail(key, `must be an object (a table), got ${typeName(v)}`);
    return new Section(this.keyPath(key), v, place, this.ctx);
  }

  /** An array of sub-objects, default []. */
  children(key: string, place: Place): Section[] {
    const v = this.get(key);
    if (v === undefined) return [];
    if (!Array.isArray(v)) this.fail(key, `must be an array of objects, got ${typeName(v)}`);
    return v.map((item, i) => {
      if (!isPlainObject(item)) this.fail(`${key}[${i}]`, `must be an object, got ${typeName(item)}`);
      return new Section(`${this.keyPath(key)}[${i}]`, item, place, this.ctx);
    });
  }

  /** Reports the keys nobody read that look like mistakes. Call after reading the section. */
  warnUnknown(): void {
    const warn = this.ctx.onWarning;
    if (warn === undefined) return;
    for (const key of Object.keys(this.raw)) {
      if (this.read.has(key) || this.place.schema.keys.includes(key)) continue;
      const hint = this.hint(key);
      if (hint !== undefined) warn(`${this.ctx.prefix}${this.keyPath(key)}: unknown key ignored (${hint})`);
    }
  }

  private hint(key: string): string | undefined {
    const note = this.place.schema.notes?.[key];
    if (note !== undefined) return note;
    const near = this.place.schema.keys.find((k) => isTypo(key, k));
    if (near !== undefined) return `did you mean ${this.keyPath(near)}?`;
    const elsewhere = this.ctx.places
      .filter((p) => p.where !== this.place.where && p.schema.keys.includes(key))
      .map((p) => p.where || 'the top level');
    if (elsewhere.length > 0) return `it belongs in ${[...new Set(elsewhere)].slice(0, 3).join(' or ')}`;
    return undefined;
  }
}

/** A likely typo: close in edit distance, and not just a different short word. */
export function isTypo(a: string, b: string): boolean {
  if (a === b || a.length < 3 || b.length < 3) return false;
  const limit = Math.min(a.length, b.length) <= 5 ? 1 : 2;
  if (Math.abs(a.length - b.length) > limit) return false;
  return editDistance(a.toLowerCase(), b.toLowerCase()) <= limit;
}

/** Optimal-string-alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [];
    for (let j = 0; j <= b.length; j++) {
      if (i === 0 || j === 0) {
        row.push(i + j);
        continue;
      }
      const prev = rows[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (row[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, ((rows[i - 2] as number[])[j - 2] as number) + 1);
      }
      row.push(d);
    }
    rows.push(row);
  }
  return (rows[a.length] as number[])[b.length] as number;
}
