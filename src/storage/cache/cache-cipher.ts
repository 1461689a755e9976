/**
 * An encrypted chunk cache (nydusd filecache `enable_encryption`, `encryption_key`,
 * `enable_convergent_encryption`): the cache file keeps the uncompressed layout, each chunk's
 * 4 KiB pages encrypted one by one with AES-128-XTS, the last page zero-filled first.
 *
 * - The key: `encryption_key` (two AES-128 keys); convergent, a key derived from the chunk's
 *   digest instead (as nydusd: equal chunks encrypt alike, and whoever has the bootstrap has the
 *   keys).
 * - The tweak: the page's number in the cache file, as disk encryption does. nydusd uses a tweak of
 *   zeros for every page, so that equal pages anywhere encrypt alike; this cache is Damselfly's own
 *   (nydusd never reads it), so it need not copy that.
 * - The files are named after the blob and a fingerprint of the key (`<blob id>.xts-<8 hex>`, or
 *   `.xts-ce` convergent): a daemon with another key, or none, never takes them for its own, so it
 *   cannot serve one cache's ciphertext as data (nydusd records nothing, and would).
 * - Chunks must start on a 4 KiB boundary (v6 blobs do; `ALIGNED`): a page belongs to one chunk.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { alignUp } from '../../base/index.js';
import type { CacheConfig } from '../../config/index.js';
import type { ChunkInfo } from '../../format/chunk-info.js';

export const CACHE_PAGE = 4096;

export class CacheCipher {
  private constructor(
    /** The configured key, or undefined for convergent encryption. */
    private readonly key: Buffer | undefined,
    private readonly tag: string,
  ) {}

  /** The cipher a cache configuration asks for, or undefined (validated by the config parser). */
  static fromConfig(cache: Pick<CacheConfig, 'enableEncryption' | 'enableConvergentEncryption' | 'encryptionKey'>): CacheCipher | undefined {
    if (!cache.enableEncryption) return undefined;
    if (cache.enableConvergentEncryption) return new CacheCipher(undefined, 'ce');
    const key = Buffer.from(cache.encryptionKey, 'hex');
    if (key.length !== 32 || key.subarray(0, 16).equals(key.subarray(16))) throw new RangeError('a cache encryption key is 32 bytes of two different halves');
    return new CacheCipher(key, createHash('sha256').update('damselfly cache key').update(key).digest('hex').slice(0, 8));
  }

  /** The name (in place of the blob id) of the blob's encrypted cache files. */
  cacheName(blobId: string): string {
    return `${blobId}.xts-${this.tag}`;
  }

  private keyOf(c: ChunkInfo): Buffer {
    if (this.key !== undefined) return this.key;
    // Two different halves whatever the digest (XTS refuses equal ones).
    const k = createHash('sha512').update('damselfly convergent cache key').update(c.digest).digest().subarray(0, 32);
    if (k.subarray(0, 16).equals(k.subarray(16))) k[31] = (k[31] as number) ^ 1;
    return k;
  }

  private static tweak(page: number): Buffer {
    const t = Buffer.alloc(16);
    t.writeBigUInt64LE(BigInt(page));
    return t;
  }

  private static check(c: ChunkInfo): void {
    if (c.uncompressedOffset % CACHE_PAGE !== 0) throw new Error(`chunk ${c.index} is not 4 KiB aligned: an encrypted cache needs an aligned blob`);
  }

  /** What the cache file holds for chunk `c` (its whole pages, encrypted), for `data`. */
  seal(c: ChunkInfo, data: Uint8Array): Buffer {
    CacheCipher.check(c);
    const out = Buffer.alloc(alignUp(data.length, CACHE_PAGE));
    out.set(data);
    return this.pages(c, c.uncompressedOffset, out, true);
  }

  /** The pages of chunk `c` that bytes [from, from + length) of it lie in: offset and length in the file. */
  pagesOf(c: ChunkInfo, from: number, length: number): { offset: number; length: number; skip: number } {
    CacheCipher.check(c);
    const start = Math.floor(from / CACHE_PAGE) * CACHE_PAGE;
    return { offset: c.uncompressedOffset + start, length: alignUp(from + length, CACHE_PAGE) - start, skip: from - start };
  }

  /** Decrypts, in place, pages of chunk `c` read from the file at `offset` (from `pagesOf`). */
  open(c: ChunkInfo, offset: number, pages: Buffer): Buffer {
    return this.pages(c, offset, pages, false);
  }

  /** Encrypts or decrypts, in place, whole pages that lie at `offset` in the file. */
  private pages(c: ChunkInfo, offset: number, buf: Buffer, encrypt: boolean): Buffer {
    const key = this.keyOf(c);
    const first = offset / CACHE_PAGE;
    for (let at = 0; at < buf.length; at += CACHE_PAGE) {
      const tweak = CacheCipher.tweak(first + at / CACHE_PAGE);
      const x = encrypt ? createCipheriv('aes-128-xts', key, tweak) : createDecipheriv('aes-128-xts', key, tweak);
      const page = buf.subarray(at, at + CACHE_PAGE);
      x.update(page).copy(page);
      x.final();
    }
    return buf;
  }
}

/** The `cacheCipher` option of a service for a cache configuration (none when not encrypted). */
export function cacheCipherOption(cache: Pick<CacheConfig, 'enableEncryption' | 'enableConvergentEncryption' | 'encryptionKey'>): { cacheCipher?: CacheCipher } {
  const cipher = CacheCipher.fromConfig(cache);
  return cipher !== undefined ? { cacheCipher: cipher } : {};
}
