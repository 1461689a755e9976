/** Digests against published vectors (BLAKE3 and SHA-256 of "" and "abc"), one-shot and incremental. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Digester } from '../../../src/format/constants.js';
import { createHasher, digest, warmDigest } from '../../../src/format/digest.js';

const VECTORS: Array<[Digester, string, string]> = [
  [Digester.Blake3, '', 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
  [Digester.Blake3, 'abc', '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85'],
  [Digester.Sha256, '', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
  [Digester.Sha256, 'abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
];

test('digests match the published vectors, one-shot, in parts and incrementally (after warming up)', () => {
  warmDigest(Digester.Blake3);
  warmDigest(Digester.Sha256);
  for (const [algo, input, hex] of VECTORS) {
    const b = Buffer.from(input);
    assert.equal(digest(algo, b).toString('hex'), hex);
    assert.equal(digest(algo, b.subarray(0, 1), b.subarray(1)).toString('hex'), hex);
    const h = createHasher(algo);
    for (const byte of b) h.update(Uint8Array.of(byte));
    assert.equal(h.digest().toString('hex'), hex);
  }
});
