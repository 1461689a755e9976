/**
 * Blob encryption as `nydus-image create --encrypt` writes it (spec §5.12): AES-128-XTS (two
 * AES-128 keys, one 32-byte key) with one key and one 16-byte tweak per blob, both recorded in the
 * blob table in the clear: this protects a blob stored apart from its bootstrap, not the image.
 * Every stored unit — a chunk after compression, a batch, the CI data, the CI header — is one XTS
 * data unit. XTS needs 16 bytes at least: a shorter unit is first padded to 18 bytes (the pad byte
 * `16 − n` repeated, then 0x78 0x90), and an 18-byte plaintext ending in those two bytes is read
 * back as `16 − pad` bytes, as nydus does. So an 18-byte unit that ends so by chance cannot be
 * stored encrypted (nydus-image stores it so all the same, and reads it back short): `encryptUnit`
 * returns nothing for it, and the writer stores that unit unencrypted (chunks and batch members
 * carry their own ENCRYPTED flag; the CI data is then stored uncompressed, never 18 bytes long).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { FormatError } from '../base/index.js';

/** A blob's key and tweak (the blob table's `blob_meta_digest`, `blob_meta_size` ‖ `cipher_iv`). */
export interface CipherContext {
  /** 32 bytes: the two AES-128 keys of XTS. */
  readonly key: Uint8Array;
  /** 16 bytes: the XTS tweak of every unit. */
  readonly iv: Uint8Array;
}

export const XTS_KEY_SIZE = 32;
export const XTS_IV_SIZE = 16;
const XTS_MIN = 16;
const PADDED = 18;
const MARK0 = 0x78;
const MARK1 = 0x90;
/** OpenSSL's XTS refuses data units of more than 2^20 blocks. */
const XTS_MAX = 16 << 20;

/** The size a unit of `n` plaintext bytes is stored in. */
export function encryptedSize(n: number): number {
  return n < XTS_MIN ? PADDED : n;
}

/** A fresh random key (its two halves differ, as XTS requires) and tweak, for one new blob. */
export function newCipherContext(): CipherContext {
  const key = randomBytes(XTS_KEY_SIZE);
  while (key.subarray(0, 16).equals(key.subarray(16))) randomBytes(16).copy(key, 16);
  return { key, iv: randomBytes(XTS_IV_SIZE) };
}

function checkContext(ctx: CipherContext): void {
  if (ctx.key.length !== XTS_KEY_SIZE || ctx.iv.length !== XTS_IV_SIZE) throw new RangeError('an AES-128-XTS context needs a 32-byte key and a 16-byte tweak');
}

/** Encrypts one unit (any length up to 16 MiB); undefined for the one it cannot (see above). */
export function encryptUnit(ctx: CipherContext, plain: Uint8Array): Buffer | undefined {
  checkContext(ctx);
  if (plain.length > XTS_MAX) throw new RangeError(`${plain.length} bytes exceed an XTS data unit (${XTS_MAX})`);
  if (plain.length === PADDED && plain[16] === MARK0 && plain[17] === MARK1) return undefined;
  let input = plain;
  if (plain.length < XTS_MIN) {
    const padded = Buffer.alloc(PADDED, XTS_MIN - plain.length);
    padded.set(plain);
    padded[16] = MARK0;
    padded[17] = MARK1;
    input = padded;
  }
  const c = createCipheriv('aes-128-xts', ctx.key, ctx.iv);
  return Buffer.concat([c.update(input), c.final()]);
}

/** Decrypts one stored unit; throws `FormatError` for bytes that cannot be one (`what` names it). */
export function decryptUnit(ctx: CipherContext, stored: Uint8Array, what: string): Buffer {
  checkContext(ctx);
  if (stored.length < XTS_MIN || stored.length > XTS_MAX) throw new FormatError(`${what}: ${stored.length} encrypted bytes cannot be an XTS unit`);
  let out: Buffer;
  try {
    const d = createDecipheriv('aes-128-xts', ctx.key, ctx.iv);
    out = Buffer.concat([d.update(stored), d.final()]);
  } catch (e) {
    throw new FormatError(`${what}: decryption failed: ${(e as Error).message}`, { cause: e });
  }
  if (out.length === PADDED && out[16] === MARK0 && out[17] === MARK1) {
    const pad = out[15] as number;
    if (pad >= XTS_MIN) throw new FormatError(`${what}: a short unit's padding of ${pad} bytes`);
    return out.subarray(0, XTS_MIN - pad);
  }
  return out;
}
