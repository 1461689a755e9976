/**
 * Blob encryption units (spec §5.12): AES-128-XTS over whole units, short units padded to 18 bytes
 * the way nydus pads them. The padding is checked with OpenSSL's XTS directly (not through
 * `decryptUnit`), so a reader and writer that agreed on a wrong layout would still fail here.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { FormatError } from '../../../src/base/index.js';
import { decryptUnit, encryptUnit, encryptedSize, newCipherContext } from '../../../src/format/cipher.js';

const ctx = newCipherContext();

/** OpenSSL's XTS alone, no padding rule. */
function createCipherivXts(c: { key: Uint8Array; iv: Uint8Array }, plain: Uint8Array): Buffer {
  const e = createCipheriv('aes-128-xts', c.key, c.iv);
  return Buffer.concat([e.update(plain), e.final()]);
}

function rawDecrypt(stored: Uint8Array): Buffer {
  const d = createDecipheriv('aes-128-xts', ctx.key, ctx.iv);
  return Buffer.concat([d.update(stored), d.final()]);
}

test('every length round-trips, and is stored in encryptedSize bytes', () => {
  for (const n of [1, 2, 15, 16, 17, 18, 19, 31, 32, 33, 4095, 4096, 4097, 1 << 20, 16 << 20]) {
    const plain = randomBytes(n);
    if (n === 18) plain[16] = 0; // not the one ambiguous form (below)
    const stored = encryptUnit(ctx, plain) as Buffer;
    assert.equal(stored.length, encryptedSize(n), `${n} bytes`);
    assert.notDeepEqual(stored.subarray(0, Math.min(n, 64)), plain.subarray(0, 64), `${n} bytes: not stored in the clear`);
    assert.deepEqual(decryptUnit(ctx, stored, 't'), plain, `${n} bytes`);
  }
});

test('a short unit is padded to 18 bytes: data, the pad byte 16 − n repeated, 0x78 0x90', () => {
  for (let n = 1; n < 16; n++) {
    const plain = randomBytes(n);
    const stored = encryptUnit(ctx, plain) as Buffer;
    assert.equal(stored.length, 18);
    const expected = Buffer.alloc(18, 16 - n);
    plain.copy(expected);
    expected[16] = 0x78;
    expected[17] = 0x90;
    assert.deepEqual(rawDecrypt(stored), expected, `${n} bytes`);
  }
});

test('one key and tweak for every unit: equal units encrypt alike (nydus uses no per-unit tweak)', () => {
  const plain = randomBytes(4096);
  assert.deepEqual(encryptUnit(ctx, plain), encryptUnit(ctx, Buffer.from(plain)));
  assert.notDeepEqual(encryptUnit(newCipherContext(), plain), encryptUnit(ctx, plain), 'another blob, another key');
});

test('an 18-byte unit ending in 0x78 0x90 cannot be stored encrypted (it would read back short)', () => {
  const plain = Buffer.concat([randomBytes(16), Buffer.from([0x78, 0x90])]);
  assert.equal(encryptUnit(ctx, plain), undefined);
  // What nydus would make of it: the pad byte (here byte 15) says how much of it to drop.
  plain[15] = 3;
  const c = newCipherContext();
  const sealed = createCipherivXts(c, plain);
  assert.deepEqual(decryptUnit(c, sealed, 't'), plain.subarray(0, 13));
});


test('bytes that cannot be a unit, or a padding that cannot be, are FormatErrors', () => {
  assert.throws(() => decryptUnit(ctx, randomBytes(15), 'unit'), FormatError);
  assert.throws(() => decryptUnit(ctx, new Uint8Array(0), 'unit'), FormatError);
  // An 18-byte plaintext marked short, with a pad byte of 16 or more.
  const bad = Buffer.alloc(18, 0);
  bad[15] = 16;
  bad[16] = 0x78;
  bad[17] = 0x90;
  assert.throws(() => decryptUnit(ctx, createCipherivXts(ctx, bad), 'unit'), /padding/);
});

test('keys have distinct halves (XTS refuses equal ones); a context needs 32 + 16 bytes', () => {
  for (let i = 0; i < 100; i++) {
    const c = newCipherContext();
    assert.equal(c.key.length, 32);
    assert.equal(c.iv.length, 16);
    assert.notDeepEqual(Buffer.from(c.key.subarray(0, 16)), Buffer.from(c.key.subarray(16)));
  }
  assert.throws(() => encryptUnit({ key: new Uint8Array(16), iv: new Uint8Array(16) }, randomBytes(32)), RangeError);
  assert.throws(() => decryptUnit({ key: new Uint8Array(32), iv: new Uint8Array(8) }, randomBytes(32), 't'), RangeError);
});
