/**
 * Digests (spec §1.7): BLAKE3-256 (default) or SHA-256 for chunks and v5 inodes; SHA-256 for
 * blob ids, ToC items and bootstrap names. Pure functions over bytes.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as BlakeHash from '@napi-rs/blake-hash';
import { FormatError } from '../base/index.js';
import { Digester } from './constants.js';

let blakeBinding: typeof BlakeHash | undefined;

/**
 * The BLAKE3 binding (a native module), loaded on first use: a daemon that starts in front of a
 * waiting guest sends its first registry request before paying for it, and a passthrough share or
 * a SHA-256 image never loads it. On Linux the glibc build npm installs is loaded directly: the
 * package's index first asks `process.report` whether libc is musl, which took 9.5 of the 16.6 ms
 * the load cost the first chunk read of a cold start (CPU profile). Anywhere else, or when that
 * build is absent or does not load (musl), the index chooses.
 */
function blake(): typeof BlakeHash {
  if (blakeBinding === undefined) {
    const load = createRequire(import.meta.url);
    if (process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) {
      try {
        blakeBinding = load(`@napi-rs/blake-hash-linux-${process.arch}-gnu`) as typeof BlakeHash;
      } catch {
        // not installed here, or not loadable with this libc
      }
    }
    blakeBinding ??= load('@napi-rs/blake-hash') as typeof BlakeHash;
  }
  return blakeBinding;
}

/**
 * Loads what verifying `algo` digests needs now rather than on the first chunk read: a daemon
 * calls it once it is ready and idle, before its first client request arrives. Errors are left
 * to that first use to report.
 */
export function warmDigest(algo: Digester): void {
  if (algo !== Digester.Blake3) return;
  try {
    blake();
  } catch {
    // reported by the first digest
  }
}

export const DIGEST_SIZE = 32;

export const DIGESTER_NAMES: Record<string, Digester> = { blake3: Digester.Blake3, sha256: Digester.Sha256 };

export function digesterName(d: Digester): string {
  return d === Digester.Blake3 ? 'blake3' : d === Digester.Sha256 ? 'sha256' : `unknown(${d as number})`;
}

export function digesterFromNumber(n: number, where: string): Digester {
  if (n === 0 || n === 1) return n as Digester;
  throw new FormatError(`${where}: unknown digest algorithm ${n}`);
}

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function digest(algo: Digester, ...parts: Uint8Array[]): Buffer {
  if (algo === Digester.Sha256) return sha256(...parts);
  const b = blake();
  if (parts.length === 1) return b.blake3(asBuffer(parts[0] as Uint8Array));
  const h = new b.Blake3Hasher();
  for (const p of parts) h.update(asBuffer(p));
  return h.digestBuffer();
}

const zeros = new Map<string, Buffer>();

/**
 * The digest of `size` zero bytes (a sparse file's hole as chunks), computed once for each
 * algorithm and size: chunk sizes are few.
 */
export function zerosDigest(algo: Digester, size: number): Buffer {
  const key = `${algo}:${size}`;
  let d = zeros.get(key);
  if (d === undefined) {
    d = digest(algo, Buffer.alloc(size));
    zeros.set(key, d);
  }
  return d;
}

/** An incremental hasher for either algorithm. */
export interface Hasher {
  update(b: Uint8Array): void;
  digest(): Buffer;
}

export function createHasher(algo: Digester): Hasher {
  if (algo === Digester.Sha256) {
    const h = createHash('sha256');
    return { update: (b) => void h.update(b), digest: () => h.digest() };
  }
  const h = new (blake().Blake3Hasher)();
  return { update: (b) => void h.update(asBuffer(b)), digest: () => h.digestBuffer() };
}
