/**
 * Byte cursors for wire and disk structures: `ByteReader` never trusts a length (every read is
 * checked against the buffer and fails with a FormatError naming the structure), `ByteWriter`
 * grows as it is written. All integers are little-endian, as in RAFS, EROFS, FUSE and virtio.
 */
import { FormatError } from './errors.js';

export class ByteReader {
  readonly bytes: Uint8Array;
  readonly length: number;
  /** What these bytes are, for error messages ("v6 bootstrap", "blob meta of blob 0"). */
  readonly what: string;
  private readonly view: DataView;

  constructor(bytes: Uint8Array, what: string) {
    this.bytes = bytes;
    this.length = bytes.byteLength;
    this.what = what;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Throws unless `[off, off + len)` lies inside the buffer. */
  check(off: number, len: number, field = 'field'): void {
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > this.length) {
      this.fail(`${this.what}: ${field} at offset ${off} (${len} bytes) lies outside its ${this.length} bytes`);
    }
  }

  /** How every malformation is reported: a FormatError, unless a subclass says otherwise. */
  protected fail(message: string): never {
    throw new FormatError(message);
  }

  has(off: number, len: number): boolean {
    return Number.isSafeInteger(off) && Number.isSafeInteger(len) && off >= 0 && len >= 0 && off + len <= this.length;
  }

  u8(off: number, field?: string): number {
    this.check(off, 1, field);
    return this.view.getUint8(off);
  }

  u16(off: number, field?: string): number {
    this.check(off, 2, field);
    return this.view.getUint16(off, true);
  }

  u32(off: number, field?: string): number {
    this.check(off, 4, field);
    return this.view.getUint32(off, true);
  }

  /** A u64 that must fit a JavaScript number exactly (sizes, offsets, counts). */
  u64(off: number, field = 'u64 field'): number {
    const v = this.u64n(off, field);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${this.what}: ${field} at offset ${off} is too large (${v})`);
    return Number(v);
  }

  u64n(off: number, field?: string): bigint {
    this.check(off, 8, field);
    return this.view.getBigUint64(off, true);
  }

  /** A signed 64-bit value (a time before 1970) that must fit a JavaScript number exactly. */
  i64(off: number, field = 'i64 field'): number {
    this.check(off, 8, field);
    const v = this.view.getBigInt64(off, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${this.what}: ${field} at offset ${off} is out of range (${v})`);
    return Number(v);
  }

  /** A view (not a copy) of `len` bytes at `off`. */
  slice(off: number, len: number, field?: string): Uint8Array {
    this.check(off, len, field);
    return this.bytes.subarray(off, off + len);
  }

  /** A reader over a checked sub-range, named `what`. */
  sub(off: number, len: number, what: string): ByteReader {
    return new ByteReader(this.slice(off, len, what), what);
  }

  /** An ASCII string stored NUL-padded in a fixed field. */
  paddedString(off: number, len: number, field?: string): string {
    const b = this.slice(off, len, field);
    let end = b.indexOf(0);
    if (end < 0) end = b.length;
    return Buffer.from(b.buffer, b.byteOffset, end).toString('latin1');
  }

  /** True when every byte of the range is zero. */
  isZero(off: number, len: number): boolean {
    const b = this.slice(off, len);
    for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
    return true;
  }
}

/** An append-only little-endian writer with in-place patching. */
export class ByteWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initialCapacity = 4096) {
    this.buf = Buffer.alloc(Math.max(16, initialCapacity));
  }

  get length(): number {
    return this.len;
  }

  private reserve(n: number): number {
    const at = this.len;
    const need = at + n;
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = Buffer.alloc(cap);
      this.buf.copy(next, 0, 0, at);
      this.buf = next;
    }
    this.len = need;
    return at;
  }

  // Each method reserves first, then writes: `this.buf` may be replaced by the reservation.
  u8(v: number): this {
    const at = this.reserve(1);
    this.buf.writeUInt8(v, at);
    return this;
  }

  u16(v: number): this {
    const at = this.reserve(2);
    this.buf.writeUInt16LE(v, at);
    return this;
  }

  u32(v: number): this {
    const value = v >>> 0 === v ? v : checkU32(v);
    const at = this.reserve(4);
    this.buf.writeUInt32LE(value, at);
    return this;
  }

  u64(v: number | bigint): this {
    const value = BigInt(v);
    const at = this.reserve(8);
    this.buf.writeBigUInt64LE(value, at);
    return this;
  }

  /** A signed 64-bit value, two's complement (a time before 1970). */
  i64(v: number | bigint): this {
    const value = BigInt(v);
    const at = this.reserve(8);
    this.buf.writeBigInt64LE(value, at);
    return this;
  }

  bytes(b: Uint8Array): this {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
    return this;
  }

  zeros(n: number): this {
    this.reserve(n); // Buffer.alloc memory is already zero and never reused
    return this;
  }

  /** Pads with zeros up to a multiple of `a`. */
  align(a: number): this {
    return this.zeros(alignUp(this.len, a) - this.len);
  }

  /** Pads with zeros up to absolute offset `off`. */
  padTo(off: number): this {
    if (off < this.len) throw new RangeError(`padTo(${off}) is behind the write position ${this.len}`);
    return this.zeros(off - this.len);
  }

  setU32(off: number, v: number): void {
    if (off + 4 > this.len) throw new RangeError('setU32 past the end');
    this.buf.writeUInt32LE(v, off);
  }

  /** The bytes written so far (a view; the writer must not be used afterwards). */
  finish(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

function checkU32(v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${v} is not a u32`);
  return v;
}

export function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

export function divRoundUp(x: number, a: number): number {
  return Math.ceil(x / a);
}

export function isPowerOfTwo(x: number): boolean {
  return Number.isSafeInteger(x) && x > 0 && 2 ** Math.round(Math.log2(x)) === x;
}

/** memcmp order: byte-wise, a proper prefix sorts first (the order of RAFS and EROFS names). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}
