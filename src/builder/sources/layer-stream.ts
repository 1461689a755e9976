/**
 * OCI layer streams: detects gzip and zstd by their magic bytes (OCI media types
 * `tar`, `tar+gzip`, `tar+zstd`) and yields the uncompressed tar bytes.
 */
import { createReadStream } from 'node:fs';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { FormatError } from '../../base/index.js';
import { native } from '../../native/index.js';

const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];

function startsWith(b: Uint8Array, magic: number[]): boolean {
  return magic.every((m, i) => b[i] === m);
}

/** Whether a layer's first bytes are those of a gzip stream (as `decompressLayer` tells). */
export function isGzip(head: Uint8Array): boolean {
  return startsWith(head, GZIP);
}

/** A zstd skippable frame (magic 0x184D2A50..5F, RFC 8878 §3.1.2) may open a zstd stream too. */
function isZstdSkippable(b: Uint8Array): boolean {
  return b.length >= 4 && ((b[0] as number) & 0xf0) === 0x50 && b[1] === 0x2a && b[2] === 0x4d && b[3] === 0x18;
}

/**
 * Gunzips a byte stream as it arrives. An error of the input itself (a download cut short) comes
 * out as it is; a corrupt gzip stream as a FormatError starting with `what`. (With `pipe`, an
 * input error escaped as an uncaught one and the reader waited for ever.)
 */
export async function* gunzipStream(input: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<Buffer> {
  const source = Readable.from(input);
  const gunzip = createGunzip();
  let inputError: unknown;
  source.once('error', (e) => {
    inputError = e;
  });
  pipeline(source, gunzip, () => undefined); // errors reach the loop below through `gunzip`
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (e) {
    if (inputError !== undefined) throw inputError;
    throw new FormatError(`${what}: ${(e as Error).message}`, { cause: e });
  } finally {
    gunzip.destroy(); // a reader that stops early stops the input too
  }
}

/** Yields the decompressed bytes of a (possibly compressed) layer. */
export async function* decompressLayer(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const it = input[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  while (head.length < 4) {
    const r = await it.next();
    if (r.done) break;
    head = Buffer.concat([head, r.value]);
  }
  async function* rest(): AsyncGenerator<Uint8Array> {
    if (head.length > 0) yield head;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  if (isGzip(head)) {
    yield* gunzipStream(rest(), 'corrupt gzip layer');
  } else if (startsWith(head, ZSTD) || isZstdSkippable(head)) {
    const dec = new native.ZstdDecoder();
    const decode = (chunk?: Uint8Array): Buffer => {
      try {
        return dec.decode(chunk);
      } catch (e) {
        throw new FormatError(`corrupt zstd layer: ${(e as Error).message}`, { cause: e });
      }
    };
    // At most 1 MiB of output a call: what a chunk expands to comes out as the reader takes it.
    for await (const chunk of rest()) for (let out = decode(chunk); out.length > 0; out = decode()) yield out;
    try {
      dec.finish();
    } catch (e) {
      throw new FormatError(`corrupt zstd layer: ${(e as Error).message}`, { cause: e });
    }
  } else {
    yield* rest();
  }
}

export function openLayerFile(path: string): AsyncGenerator<Uint8Array> {
  return decompressLayer(createReadStream(path, { highWaterMark: 1 << 20 }));
}
