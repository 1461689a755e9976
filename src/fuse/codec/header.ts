/**
 * Request and reply headers.
 *
 * `fuse_in_header`, 40 bytes:
 * | off | size | type | field       |
 * |-----|------|------|-------------|
 * | 0   | 4    | u32  | len         |
 * | 4   | 4    | u32  | opcode      |
 * | 8   | 8    | u64  | unique      |
 * | 16  | 8    | u64  | nodeid      |
 * | 24  | 4    | u32  | uid         |
 * | 28  | 4    | u32  | gid         |
 * | 32  | 4    | u32  | pid         |
 * | 36  | 2    | u16  | total_extlen|
 * | 38  | 2    | u16  | padding     |
 *
 * `fuse_out_header`, 16 bytes: u32 len @0, i32 error @4, u64 unique @8.
 */
import { ByteReader, FormatError } from '../../base/index.js';
import { Size } from '../abi.js';

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  /** The node id; NaN-free: ids above 2^53 are reported as -1 (no such node). */
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
  totalExtlen: number;
}

export interface Request {
  header: InHeader;
  /** The bytes after the header, up to `len`; extension headers (total_extlen) excluded. */
  body: ByteReader;
  /** The extension headers (the last total_extlen × 8 bytes of `len`; empty when none). */
  extensions: Uint8Array;
}

/**
 * Where a request's trailing data starts when the transport may leave it in place (in guest
 * memory) instead of copying it with the headers: a WRITE's data, after `fuse_in_header` and
 * `fuse_write_in`. Undefined for every other request (and for a WRITE too short to have data).
 * `head` needs only the 40 bytes of `fuse_in_header`.
 */
export function inPlaceDataAt(head: Uint8Array, length: number): number | undefined {
  if (head.length < Size.IN_HEADER) return undefined;
  const v = new DataView(head.buffer, head.byteOffset, Size.IN_HEADER);
  const at = Size.IN_HEADER + Size.WRITE_IN;
  // WRITE (16), without extension headers (which would follow the data).
  return v.getUint32(4, true) === 16 && v.getUint16(36, true) === 0 && length > at ? at : undefined;
}

/**
 * Decodes one request from `bytes`, which must hold at least `len` bytes, or `len - tailLength`
 * when the request's last `tailLength` bytes stayed with the transport (a WRITE's data: see
 * `inPlaceDataAt`; the body then ends where `bytes` does). Throws a FormatError when the header is
 * short or its lengths lie; `unique` is returned on the error when it could be read.
 */
const NO_EXTENSIONS = new Uint8Array(0);

export function decodeRequest(bytes: Uint8Array, tailLength = 0): Request {
  const r = new ByteReader(bytes, 'FUSE request');
  if (bytes.length < Size.IN_HEADER) throw new FormatError(`FUSE request of ${bytes.length} bytes is shorter than its header`);
  // The node id as a number (two u32s: no BigInt on every request); -1 past 2^53, which no node
  // id given out here reaches.
  const nodeHigh = r.u32(20);
  const header: InHeader = {
    len: r.u32(0),
    opcode: r.u32(4),
    unique: r.u64n(8),
    nodeid: nodeHigh > 0x1f_ffff ? -1 : nodeHigh * 0x1_0000_0000 + r.u32(16),
    uid: r.u32(24),
    gid: r.u32(28),
    pid: r.u32(32),
    totalExtlen: r.u16(36),
  };
  if (header.len < Size.IN_HEADER || header.len > bytes.length + tailLength) {
    throw new RequestError(header.unique, `FUSE request says len ${header.len} but ${bytes.length + tailLength} bytes arrived`);
  }
  const ext = header.totalExtlen * 8;
  if (Size.IN_HEADER + ext > header.len) throw new RequestError(header.unique, 'FUSE request extensions exceed its length');
  if (tailLength > 0 && (ext !== 0 || header.len !== bytes.length + tailLength)) {
    throw new RequestError(header.unique, 'FUSE request with data in place has extensions or a length that does not match');
  }
  const args = bytes.subarray(Size.IN_HEADER, Math.min(header.len - ext, bytes.length));
  const extensions = ext === 0 ? NO_EXTENSIONS : bytes.subarray(header.len - ext, header.len);
  return { header, body: new ArgsReader(args, `FUSE opcode ${header.opcode} arguments`), extensions };
}

/** Request arguments that are short or malformed: answered with EINVAL. */
export class BadArguments extends FormatError {}

/**
 * A reader of request arguments whose errors (a field past the bytes sent, a u64 too large for the
 * number it stands for) are `BadArguments`: the peer's mistake, answered with EINVAL.
 */
class ArgsReader extends ByteReader {
  protected override fail(message: string): never {
    throw new BadArguments(message);
  }
}

/** A malformed request whose `unique` is known, so that it can still get an error reply. */
export class RequestError extends FormatError {
  constructor(
    readonly unique: bigint,
    message: string,
  ) {
    super(message);
  }
}

export function encodeOutHeader(dst: Uint8Array, len: number, error: number, unique: bigint): void {
  const v = new DataView(dst.buffer, dst.byteOffset, Size.OUT_HEADER);
  v.setUint32(0, len, true);
  v.setInt32(4, error, true);
  v.setBigUint64(8, unique, true);
}
