/**
 * Names of the distribution API: repositories, tags, digests (OCI distribution-spec "Pulling
 * manifests" grammar), checked before they become URL paths, and digest computation.
 */
import { createHash } from 'node:crypto';
import { FormatError, IntegrityError, UsageError } from '../../base/index.js';

const REPO = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST_HEX: Record<string, number> = { sha256: 64, sha512: 128 };

export type DigestAlgorithm = 'sha256' | 'sha512';

export function checkRepository(repo: string): string {
  if (repo.length > 255 || !REPO.test(repo)) throw new UsageError(`invalid repository name ${JSON.stringify(repo)}`);
  return repo;
}

/** Splits `sha256:<hex>`; undefined when `s` is not a digest of a supported algorithm. */
export function parseDigest(s: string): { algorithm: DigestAlgorithm; hex: string } | undefined {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(s);
  if (!m) return undefined;
  const [, algorithm, hex] = m as unknown as [string, string, string];
  if (DIGEST_HEX[algorithm] !== hex.length) return undefined;
  return { algorithm: algorithm as DigestAlgorithm, hex };
}

export function checkDigest(digest: string): string {
  if (parseDigest(digest) === undefined) throw new UsageError(`invalid digest ${JSON.stringify(digest)} (want sha256:<64 hex> or sha512:<128 hex>)`);
  return digest;
}

/** A manifest reference: a tag, or a digest (anything with a colon must be a valid digest). */
export function checkReference(reference: string): string {
  if (reference.includes(':')) return checkDigest(reference);
  if (!TAG.test(reference)) throw new UsageError(`invalid tag ${JSON.stringify(reference)}`);
  return reference;
}

export function isDigest(reference: string): boolean {
  return parseDigest(reference) !== undefined;
}

export function digestOf(bytes: Buffer, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/**
 * The digest of a stream, as it passes, in the algorithm `digest` names (sha256 or sha512):
 * `check()` throws an `IntegrityError` naming `what` unless what passed hashes to `digest`.
 */
export class StreamDigest {
  private readonly hash: ReturnType<typeof createHash>;
  private readonly algorithm: DigestAlgorithm;

  constructor(
    private readonly digest: string,
    private readonly what: string,
  ) {
    const d = parseDigest(digest);
    if (d === undefined) throw new FormatError(`${what}: invalid digest ${JSON.stringify(digest)}`);
    this.algorithm = d.algorithm;
    this.hash = createHash(d.algorithm);
  }

  update(bytes: Uint8Array): void {
    this.hash.update(bytes);
  }

  check(): void {
    const actual = `${this.algorithm}:${this.hash.digest('hex')}`;
    if (actual !== this.digest) throw new IntegrityError(`${this.what} does not match its digest (content digest ${actual})`);
  }
}

/** Throws an `IntegrityError` naming `what` unless `bytes` hash to `digest`. */
export function verifyDigest(bytes: Buffer, digest: string, what: string): void {
  const d = parseDigest(digest);
  if (d === undefined) throw new UsageError(`invalid digest ${JSON.stringify(digest)}`);
  const actual = digestOf(bytes, d.algorithm);
  if (actual !== digest) throw new IntegrityError(`${what}: content digest ${actual} does not match ${digest}`);
}
