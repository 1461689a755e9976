/**
 * The 512-byte GNU tar headers that follow each section of a v6 blob (spec §5.8): name, size as
 * 11 octal digits, typeflag '0', magic "ustar  \0", checksum; everything else zero.
 */
import { ByteReader, FormatError } from '../../base/index.js';

export const TAR_HEADER_SIZE = 512;

export function encodeTarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(TAR_HEADER_SIZE);
  if (name.length > 100) throw new RangeError('tar name too long');
  h.write(name, 0, 'latin1');
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`tar size ${size}`);
  if (size < 2 ** 33) {
    h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  } else {
    // 8 GiB and more do not fit 11 octal digits: GNU's base-256 form (which GNU tar and the Rust
    // tar crate read), a set top bit and the value big-endian in the field's 12 bytes.
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(size), 128);
  }
  h.write('00000000000\0', 136, 'latin1'); // mtime 0, as Nydus writes it; mode/uid/gid stay zero bytes
  h.write('0', 156, 'latin1');
  h.write('ustar  \0', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < TAR_HEADER_SIZE; i++) sum += h[i] as number;
  h.write(sum.toString(8).padStart(7, '0') + '\0', 148, 'latin1');
  return h;
}

export interface TarHeaderInfo {
  name: string;
  size: number;
}

/** Decodes and checks a section tar header (name, octal size, checksum). */
export function decodeTarHeader(bytes: Uint8Array, what: string): TarHeaderInfo {
  const r = new ByteReader(bytes, what);
  r.check(0, TAR_HEADER_SIZE, 'tar header');
  const name = r.paddedString(0, 100);
  let size: number;
  if (((bytes[124] as number) & 0x80) !== 0) {
    // GNU base-256 (8 GiB and more), positive: the top byte's other bits and bytes 125-127 zero here.
    if (bytes[124] !== 0x80 || bytes[125] !== 0 || bytes[126] !== 0 || bytes[127] !== 0) throw new FormatError(`${what}: bad tar size field`);
    const v = Buffer.from(bytes.buffer, bytes.byteOffset + 128, 8).readBigUInt64BE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${what}: tar size too large`);
    size = Number(v);
  } else {
    const sizeField = r.paddedString(124, 12).trim();
    if (!/^[0-7]+$/.test(sizeField)) throw new FormatError(`${what}: bad tar size field`);
    size = parseInt(sizeField, 8);
  }
  let sum = 0;
  for (let i = 0; i < TAR_HEADER_SIZE; i++) sum += i >= 148 && i < 156 ? 0x20 : (bytes[i] as number);
  const stored = parseInt(r.paddedString(148, 8).trim(), 8);
  if (stored !== sum) throw new FormatError(`${what}: tar header checksum mismatch`);
  if (!Number.isSafeInteger(size)) throw new FormatError(`${what}: tar size too large`);
  return { name, size };
}
