/**
 * Compression algorithms and the stored-raw rule (spec §1.1, §1.6). The codecs themselves are
 * injected (`Codecs`, implemented by `native/codecs.ts`) so that `format` stays pure.
 */
import { FormatError, UnsupportedError } from '../base/index.js';

/** Compression algorithm numbers (spec §1.1). */
export enum Compressor {
  None = 0,
  Lz4Block = 1,
  Gzip = 2,
  Zstd = 3,
}

export const COMPRESSOR_NAMES: Record<string, Compressor> = {
  none: Compressor.None,
  lz4_block: Compressor.Lz4Block,
  gzip: Compressor.Gzip,
  zstd: Compressor.Zstd,
};

export function compressorName(c: Compressor): string {
  switch (c) {
    case Compressor.None:
      return 'none';
    case Compressor.Lz4Block:
      return 'lz4_block';
    case Compressor.Gzip:
      return 'gzip';
    case Compressor.Zstd:
      return 'zstd';
    default:
      return `unknown(${c as number})`;
  }
}

export function compressorFromNumber(n: number, where: string): Compressor {
  if (n === 0 || n === 1 || n === 2 || n === 3) return n as Compressor;
  throw new FormatError(`${where}: unknown compression algorithm ${n}`);
}

/**
 * The most bytes that `storedSize` bytes of `algo` data can decode to, from each format's best
 * ratio: a zstd RLE block (4 bytes) holds up to 128 KiB, every LZ4 length byte adds at most 255,
 * deflate peaks at 1032:1. An untrusted "uncompressed size" above it is a lie, and must never
 * become the size of an allocation.
 */
export function maxDecompressedSize(algo: Compressor, storedSize: number): number {
  switch (algo) {
    case Compressor.None:
      return storedSize;
    case Compressor.Lz4Block:
      return storedSize * 255 + 255;
    case Compressor.Gzip:
      return storedSize * 1032 + 1032;
    case Compressor.Zstd:
      return storedSize * 32768 + 131072;
    default:
      return 0;
  }
}

/** zstd's default level: zstd::bulk::compress(src, 3), as Nydus. */
export const ZSTD_DEFAULT_LEVEL = 3;
/** zstd's highest level (ZSTD_maxCLevel()). */
export const ZSTD_MAX_LEVEL = 22;

/**
 * A place in a gzip stream where inflation can start afresh (a ZRan context, spec §5.5): the bits
 * of the byte before it that belong to the deflate block there, and the window it may refer to.
 */
export interface InflatePoint {
  dict: Uint8Array;
  bits: number;
  byte: number;
}

/** A deflate block boundary of a gzip stream: its compressed and uncompressed stream offsets. */
export interface GzipPoint extends InflatePoint {
  in: number;
  out: number;
}

/** Inflates a whole gzip stream (any number of members), reporting its block boundaries. */
export interface GzipIndexer {
  /**
   * Inflates from `input` (the stream's next bytes): `consumed` of them were used (push the rest
   * again), giving `output` and passing the boundaries `points`.
   */
  push(input: Uint8Array): { consumed: number; output: Uint8Array; points: GzipPoint[] };
  /** Throws a FormatError unless the stream ended with a whole member. */
  finish(): void;
}

/** Byte codecs; `decompress` must produce exactly `size` bytes or throw a FormatError. */
export interface Codecs {
  /** `level`: zstd's compression level (default 3, as Nydus); other algorithms have none. */
  compress(algo: Compressor, src: Uint8Array, level?: number): Uint8Array;
  compressAsync(algo: Compressor, src: Uint8Array, level?: number): Promise<Uint8Array>;
  decompress(algo: Compressor, src: Uint8Array, size: number, dst?: Uint8Array): Uint8Array;
  decompressAsync(algo: Compressor, src: Uint8Array, size: number, dst?: Uint8Array): Promise<Uint8Array>;
  /** The first `size` bytes inflated from `at`, where `src` (a gzip stream's bytes from there) starts. */
  inflateFrom(src: Uint8Array, at: InflatePoint, size: number): Uint8Array;
  inflateFromAsync(src: Uint8Array, at: InflatePoint, size: number): Promise<Uint8Array>;
  /**
   * A new indexer of a gzip stream (for ZRan contexts), reporting the block boundaries at least
   * `span.in` compressed or `span.out` uncompressed bytes after the previous one it reported.
   */
  gzipIndexer(span: { in: number; out: number }): GzipIndexer;
}

export interface Stored {
  data: Uint8Array;
  compressed: boolean;
}

/**
 * Compresses with the stored-raw rule: when the output is not strictly smaller than the input
 * (or the input is empty, or the algorithm is `none`), the input is stored as is.
 */
export function storeCompressed(codecs: Codecs, algo: Compressor, src: Uint8Array, level?: number): Stored {
  if (algo === Compressor.None || src.length === 0) return { data: src, compressed: false };
  if (algo === Compressor.Gzip) throw new UnsupportedError('gzip is supported for reading only');
  const out = codecs.compress(algo, src, level);
  return out.length < src.length ? { data: out, compressed: true } : { data: src, compressed: false };
}

export async function storeCompressedAsync(codecs: Codecs, algo: Compressor, src: Uint8Array, level?: number): Promise<Stored> {
  if (algo === Compressor.None || src.length === 0) return { data: src, compressed: false };
  if (algo === Compressor.Gzip) throw new UnsupportedError('gzip is supported for reading only');
  const out = await codecs.compressAsync(algo, src, level);
  return out.length < src.length ? { data: out, compressed: true } : { data: src, compressed: false };
}

/** Undoes `storeCompressed`: returns exactly `size` bytes or throws a FormatError. */
export function loadStored(codecs: Codecs, algo: Compressor, src: Uint8Array, compressed: boolean, size: number, what: string): Uint8Array {
  if (!compressed || algo === Compressor.None) {
    if (src.length !== size) throw new FormatError(`${what}: stored size ${src.length} differs from the expected ${size}`);
    return src;
  }
  try {
    return codecs.decompress(algo, src, size);
  } catch (e) {
    throw new FormatError(`${what}: ${(e as Error).message}`, { cause: e });
  }
}
