/**
 * Compression codecs for RAFS chunks, blob meta and ToC items (spec §1.6), implementing the
 * `Codecs` interface that `format` defines: raw LZ4 blocks and zstd frames through the addon,
 * gzip through node:zlib (read only, as in Nydus for legacy stargz blobs).
 */
import { gunzipSync } from 'node:zlib';
import { FormatError, UnsupportedError } from '../base/index.js';
import { Compressor, type Codecs, type GzipIndexer, type InflatePoint, ZSTD_DEFAULT_LEVEL } from '../format/compression.js';
import { native } from './addon.js';


/**
 * Chunks up to this size are decompressed on the calling thread even when asked asynchronously:
 * their decompression takes less than the thread pool's hand-off and wake-up (a small file's
 * chunk, read by `tar` through a cold cache).
 */
const SYNC_DECOMPRESS_MAX = 64 << 10;

function checkedDecompress(algo: Compressor, src: Uint8Array, size: number, dst: Uint8Array, n: number): Uint8Array {
  if (n !== size) {
    throw new FormatError(`${Compressor[algo]} data decompressed to ${n} bytes, expected ${size}`);
  }
  return dst;
}

export const nativeCodecs: Codecs = {
  compress(algo: Compressor, src: Uint8Array, level = ZSTD_DEFAULT_LEVEL): Uint8Array {
    switch (algo) {
      case Compressor.Lz4Block:
        return native.compress(1, src);
      case Compressor.Zstd:
        return native.compress(3, src, level);
      default:
        throw new UnsupportedError(`compression with ${Compressor[algo] ?? algo} is not supported`);
    }
  },

  compressAsync(algo: Compressor, src: Uint8Array, level = ZSTD_DEFAULT_LEVEL): Promise<Uint8Array> {
    switch (algo) {
      case Compressor.Lz4Block:
        return native.compressAsync(1, src);
      case Compressor.Zstd:
        return native.compressAsync(3, src, level);
      default:
        return Promise.reject(new UnsupportedError(`compression with ${Compressor[algo] ?? algo} is not supported`));
    }
  },

  decompress(algo: Compressor, src: Uint8Array, size: number, dst = Buffer.allocUnsafe(size)): Uint8Array {
    if (dst.length !== size) throw new RangeError('destination length must equal the expected size');
    switch (algo) {
      case Compressor.Lz4Block:
      case Compressor.Zstd:
        try {
          return checkedDecompress(algo, src, size, dst, native.decompressInto(algo, src, dst));
        } catch (e) {
          if (e instanceof FormatError) throw e;
          throw new FormatError(String((e as Error).message), { cause: e });
        }
      case Compressor.Gzip: {
        let out: Buffer;
        try {
          // maxOutputLength bounds a hostile stream (a "gzip bomb").
          out = gunzipSync(src, { maxOutputLength: Math.max(size, 1) });
        } catch (e) {
          throw new FormatError(`corrupt gzip data: ${(e as Error).message}`, { cause: e });
        }
        dst.set(out);
        return checkedDecompress(algo, src, size, dst, out.length);
      }
      default:
        throw new UnsupportedError(`decompression of ${Compressor[algo] ?? algo} is not supported`);
    }
  },

  async decompressAsync(algo: Compressor, src: Uint8Array, size: number, dst = Buffer.allocUnsafe(size)): Promise<Uint8Array> {
    if ((algo !== Compressor.Lz4Block && algo !== Compressor.Zstd) || size <= SYNC_DECOMPRESS_MAX) return this.decompress(algo, src, size, dst);
    if (dst.length !== size) throw new RangeError('destination length must equal the expected size');
    let n: number;
    try {
      n = await native.decompressIntoAsync(algo, src, dst);
    } catch (e) {
      throw new FormatError(String((e as Error).message), { cause: e });
    }
    return checkedDecompress(algo, src, size, dst, n);
  },

  inflateFrom(src: Uint8Array, at: InflatePoint, size: number): Uint8Array {
    const dst = Buffer.allocUnsafe(size);
    try {
      native.zranInflate(src, at.dict, at.bits, at.byte, dst);
    } catch (e) {
      throw new FormatError(String((e as Error).message), { cause: e });
    }
    return dst;
  },

  async inflateFromAsync(src: Uint8Array, at: InflatePoint, size: number): Promise<Uint8Array> {
    if (size <= SYNC_DECOMPRESS_MAX) return this.inflateFrom(src, at, size);
    const dst = Buffer.allocUnsafe(size);
    try {
      await native.zranInflateAsync(src, at.dict, at.bits, at.byte, dst);
    } catch (e) {
      throw new FormatError(String((e as Error).message), { cause: e });
    }
    return dst;
  },

  gzipIndexer(span: { in: number; out: number }): GzipIndexer {
    const ix = new native.ZranIndexer(span.in, span.out);
    const formatError = (e: unknown): FormatError => new FormatError(String((e as Error).message), { cause: e });
    return {
      push(input) {
        try {
          return ix.push(input);
        } catch (e) {
          throw formatError(e);
        }
      },
      finish() {
        try {
          ix.finish();
        } catch (e) {
          throw formatError(e);
        }
      },
    };
  },
};
