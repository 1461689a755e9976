/**
 * Layer streams as the converter reads them from a registry: gzip, zstd and plain tar bytes come
 * out decompressed, whatever the pieces they arrive in; a download that fails mid-way fails the
 * reader with that error (it used to escape as an uncaught error while the reader waited for
 * ever); a corrupt gzip stream is a FormatError; a zstd stream comes out in pieces of at most
 * 1 MiB, however much one piece of input expands to (RLE blocks: 4 bytes for 128 KiB).
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

  test('a zstd bomb comes out 1 MiB at a time, as the reader takes it (one decode returned all of it)', async () => {
    // One zstd frame (RFC 8878 §3.1.1): magic, a frame header descriptor without content size and
    // a window of 2 MiB, then RLE blocks of 128 KiB of 'A', each 4 bytes long.
    const BLOCK = 128 << 10;
    const frame = (blocks: number): Buffer => {
      const parts = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58])];
      for (let i = 0; i < blocks; i++) {
        const header = (i === blocks - 1 ? 1 : 0) | (1 << 1) | (BLOCK << 3); // last?, RLE, size
        parts.push(Buffer.from([header & 0xff, (header >> 8) & 0xff, (header >> 16) & 0xff, 0x41]));
      }
      return Buffer.concat(parts);
    };
    // Two frames in one piece of input (8 KiB: 256 MiB of output), then a third in small pieces.
    const input = Buffer.concat([frame(1024), frame(1024), frame(64)]);
    const first = 2 * (6 + 4 * 1024);
    async function* feed(): AsyncGenerator<Uint8Array> {
      yield input.subarray(0, first);
      yield* pieces(input.subarray(first), 100);
    }
    const ones = Buffer.alloc(1 << 20, 0x41);
    let total = 0;
    let largest = 0;
    for await (const out of decompressLayer(feed())) {
      largest = Math.max(largest, out.length);
      assert.ok(ones.subarray(0, out.length).equals(out), 'only the RLE byte comes out');
      total += out.length;
    }
    assert.equal(total, (2 * 1024 + 64) * BLOCK);
    assert.ok(largest <= 1 << 20, `a piece of ${largest} bytes`);
  });

  test('a corrupt gzip stream is a FormatError', async () => {
    const gz = gzipSync(DATA);
    gz.writeUInt8((gz.at(-6) as number) ^ 0xff, gz.length - 6); // the CRC-32 in the trailer
    await assert.rejects(collect(decompressLayer(pieces(gz))), (e: unknown) => e instanceof FormatError && /corrupt gzip layer/.test(e.message));
  });
});
