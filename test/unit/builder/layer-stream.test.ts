/**
 * Layer streams as the converter reads them from a registry: gzip, zstd and plain tar bytes come
 * out decompressed, whatever the pieces they arrive in; a download that fails mid-way fails the
 * reader with that error (it used to escape as an uncaught error while the reader waited for
 * ever); a corrupt gzip stream is a FormatError.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { FormatError } from '../../../src/base/index.js';
import { decompressLayer } from '../../../src/builder/sources/layer-stream.js';
import { Compressor } from '../../../src/format/compression.js';
import { nativeCodecs } from '../../../src/native/index.js';

const DATA = Buffer.concat([randomBytes(100_000), Buffer.alloc(200_000, 7)]);

async function* pieces(b: Buffer, size = 3000, failAt?: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) {
    if (failAt !== undefined && i >= failAt) throw new Error('connection reset by the test');
    yield b.subarray(i, i + size);
  }
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

describe('layer streams', () => {
  test('gzip, zstd and plain bytes come out decompressed', async () => {
    assert.deepEqual(await collect(decompressLayer(pieces(gzipSync(DATA)))), DATA);
    assert.deepEqual(await collect(decompressLayer(pieces(Buffer.from(nativeCodecs.compress(Compressor.Zstd, DATA))))), DATA);
    assert.deepEqual(await collect(decompressLayer(pieces(DATA, 1))), DATA);
  });

  test('a gzip download that fails mid-way fails the reader with its own error', async () => {
    const gz = gzipSync(DATA);
    await assert.rejects(collect(decompressLayer(pieces(gz, 3000, gz.length >> 1))), (e: unknown) => !(e instanceof FormatError) && /connection reset by the test/.test((e as Error).message));
  });

  test('a corrupt gzip stream is a FormatError', async () => {
    const gz = gzipSync(DATA);
    gz.writeUInt8((gz.at(-6) as number) ^ 0xff, gz.length - 6); // the CRC-32 in the trailer
    await assert.rejects(collect(decompressLayer(pieces(gz))), (e: unknown) => e instanceof FormatError && /corrupt gzip layer/.test(e.message));
  });
});
