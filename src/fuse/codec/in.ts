/**
 * Request argument decoders, one per argument struct. Every decoder checks its lengths against the
 * request body; a short body is a FormatError (the server answers EINVAL).
 */
import type { ByteReader } from '../../base/index.js';
import { BadArguments as FormatError } from './header.js';
import { Size } from '../abi.js';

/** A NUL-terminated name at `off` (the terminator must be inside the body). */
export function cstring(r: ByteReader, off: number, what: string): { bytes: Uint8Array; end: number } {
  const rest = r.slice(off, r.length - off, what);
  const nul = rest.indexOf(0);
  if (nul < 0) throw new FormatError(`${what} is not NUL-terminated`);
  return { bytes: rest.subarray(0, nul), end: off + nul + 1 };
}

export function decodeName(r: ByteReader): Uint8Array {
  return cstring(r, 0, 'name').bytes;
}

/** Two consecutive names (RENAME's old and new, SYMLINK's name and target). */
export function decodeTwoNames(r: ByteReader, off: number): [Uint8Array, Uint8Array] {
  const a = cstring(r, off, 'first name');
  const b = cstring(r, a.end, 'second name');
  return [a.bytes, b.bytes];
}

export function decodeInitIn(r: ByteReader): { major: number; minor: number; maxReadahead: number; flags: bigint } {
  // Old kernels send 16 bytes (no flags2); 7.36+ send 64.
  r.check(0, 16, 'fuse_init_in');
  const flags2 = r.has(16, 4) ? BigInt(r.u32(16)) : 0n;
  return { major: r.u32(0), minor: r.u32(4), maxReadahead: r.u32(8), flags: BigInt(r.u32(12)) | (flags2 << 32n) };
}

/**
 * A u64 that counts or locates (FORGET's nlookup, a file offset), as a number: past 2^53 it is
 * `Number.MAX_SAFE_INTEGER`, not wrapped around. A lookup count that large forgets everything; an
 * offset that large (or a negative loff_t, which arrives as one) is past the end of any file, so
 * READ and READDIR answer empty and LSEEK ENXIO, as the host's filesystems answer it.
 */
function saturated(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

export function decodeForgetIn(r: ByteReader): number {
  r.check(0, Size.FORGET_IN, 'fuse_forget_in');
  return saturated(r.u64n(0));
}

export function decodeBatchForget(r: ByteReader): Array<{ nodeid: number; nlookup: number }> {
  r.check(0, Size.BATCH_FORGET_IN, 'fuse_batch_forget_in');
  const count = r.u32(0);
  if (count > (r.length - Size.BATCH_FORGET_IN) / Size.FORGET_ONE) throw new FormatError('BATCH_FORGET count exceeds the request');
  const out: Array<{ nodeid: number; nlookup: number }> = [];
  for (let i = 0; i < count; i++) {
    const at = Size.BATCH_FORGET_IN + i * Size.FORGET_ONE;
    const nodeid = r.u64n(at);
    out.push({ nodeid: nodeid > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(nodeid), nlookup: saturated(r.u64n(at + 8)) });
  }
  return out;
}

export function decodeGetattrIn(r: ByteReader): { flags: number; fh: bigint } {
  if (r.length < Size.GETATTR_IN) return { flags: 0, fh: 0n }; // protocol < 7.9
  return { flags: r.u32(0), fh: r.u64n(8) };
}

export function decodeOpenIn(r: ByteReader): { flags: number; openFlags: number } {
  r.check(0, Size.OPEN_IN, 'fuse_open_in');
  return { flags: r.u32(0), openFlags: r.u32(4) };
}

export function decodeReadIn(r: ByteReader): { fh: bigint; offset: number; size: number; flags: number } {
  r.check(0, Size.READ_IN, 'fuse_read_in');
  return { fh: r.u64n(0), offset: saturated(r.u64n(8)), size: r.u32(16), flags: r.u32(32) };
}

export interface WriteIn {
  fh: bigint;
  offset: number;
  size: number;
  writeFlags: number;
  flags: number;
}

/** `fuse_write_in` alone (the data left in place by the transport). */
export function decodeWriteInHeader(r: ByteReader): WriteIn {
  r.check(0, Size.WRITE_IN, 'fuse_write_in');
  const offset = r.u64n(8);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('WRITE offset too large');
  return { fh: r.u64n(0), offset: Number(offset), size: r.u32(16), writeFlags: r.u32(20), flags: r.u32(32) };
}

export function decodeWriteIn(r: ByteReader): WriteIn & { data: Uint8Array } {
  const w = decodeWriteInHeader(r);
  return { ...w, data: r.slice(Size.WRITE_IN, w.size, 'write data') };
}

export function decodeReleaseIn(r: ByteReader): { fh: bigint; flags: number; releaseFlags: number } {
  r.check(0, Size.RELEASE_IN, 'fuse_release_in');
  return { fh: r.u64n(0), flags: r.u32(8), releaseFlags: r.u32(12) };
}

export function decodeFhIn(r: ByteReader, what: string): bigint {
  r.check(0, 8, what);
  return r.u64n(0);
}

export function decodeFsyncIn(r: ByteReader): { fh: bigint; datasync: boolean } {
  r.check(0, Size.FSYNC_IN, 'fuse_fsync_in');
  return { fh: r.u64n(0), datasync: (r.u32(8) & 1) !== 0 };
}

export function decodeGetxattrIn(r: ByteReader): { size: number; name: Uint8Array } {
  r.check(0, Size.GETXATTR_IN, 'fuse_getxattr_in');
  return { size: r.u32(0), name: cstring(r, Size.GETXATTR_IN, 'xattr name').bytes };
}

export function decodeListxattrIn(r: ByteReader): number {
  r.check(0, Size.GETXATTR_IN, 'fuse_getxattr_in');
  return r.u32(0);
}

/** SETXATTR: the struct is 16 bytes with FUSE_SETXATTR_EXT negotiated, else 8. */
/**
 * fuse_setxattr_in: the short form, or under FUSE_SETXATTR_EXT the long one whose `setxattr_flags`
 * (FUSE_SETXATTR_ACL_KILL_SGID) says what the server must do beyond setting the value.
 */
export function decodeSetxattrIn(r: ByteReader, ext: boolean): { size: number; flags: number; setxattrFlags: number; name: Uint8Array; value: Uint8Array } {
  const head = ext ? Size.SETXATTR_IN : Size.SETXATTR_IN_COMPAT;
  r.check(0, head, 'fuse_setxattr_in');
  const size = r.u32(0);
  const name = cstring(r, head, 'xattr name');
  return { size, flags: r.u32(4), setxattrFlags: ext ? r.u32(8) : 0, name: name.bytes, value: r.slice(name.end, size, 'xattr value') };
}

/** The security context a creating request carries under FUSE_SECURITY_CTX. */
export interface SecurityContext {
  /** The xattr the kernel's LSM wants set on the new node (e.g. security.selinux). */
  name: Uint8Array;
  value: Uint8Array;
}

/** The highest fuse_ext_header type that is a fuse_secctx_header (its nr_secctx). */
const FUSE_MAX_NR_SECCTX = 31;

/**
 * fuse_secctx_header (size u32, the whole block's; nr_secctx u32), then per context fuse_secctx
 * (size u32, the value's; padding u32), the NUL-terminated xattr name and the value, each record
 * padded to 8 bytes. Linux sends one context at most (none when no LSM labels new files); a
 * block with more is refused, as virtiofsd refuses it.
 */
export function decodeSecctx(block: Uint8Array): SecurityContext | undefined {
  if (block.length < 8) throw new FormatError('fuse_secctx_header is short');
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const size = v.getUint32(0, true);
  const nr = v.getUint32(4, true);
  if (size < 8 || size > block.length) throw new FormatError(`fuse_secctx_header says ${size} bytes of ${block.length}`);
  if (nr === 0) return undefined;
  if (nr > 1) throw new FormatError(`${nr} security contexts (one is served)`);
  if (size < 16) throw new FormatError('fuse_secctx is short');
  const valueLength = v.getUint32(8, true);
  const rest = block.subarray(16, size);
  const nul = rest.indexOf(0);
  if (nul <= 0) throw new FormatError('security context name is empty or not NUL-terminated');
  if (valueLength > rest.length - nul - 1) throw new FormatError(`security context value of ${valueLength} bytes exceeds its block`);
  return { name: rest.subarray(0, nul), value: rest.subarray(nul + 1, nul + 1 + valueLength) };
}

/** FUSE_EXT_GROUPS: fuse_supp_groups (nr_groups u32, then that many gids). */
const FUSE_EXT_GROUPS = 32;

/** What a request's extensions carry that the server uses. */
export interface Extensions {
  /** The fuse_secctx_header block (decodeSecctx). */
  secctx?: Uint8Array;
  /** Supplementary groups of the caller (FUSE_EXT_GROUPS). */
  groups?: number[];
}

/**
 * A request's extensions (FUSE 7.38+): each starts with fuse_ext_header (size u32, its whole
 * length, a multiple of 8; type u32). A type up to FUSE_MAX_NR_SECCTX is the security context
 * block (its nr_secctx); FUSE_EXT_GROUPS the caller's supplementary groups; others are skipped.
 */
export function decodeExtensions(ext: Uint8Array): Extensions {
  const v = new DataView(ext.buffer, ext.byteOffset, ext.byteLength);
  const out: Extensions = {};
  for (let at = 0; at < ext.length; ) {
    if (ext.length - at < 8) throw new FormatError('fuse_ext_header is short');
    const size = v.getUint32(at, true);
    if (size < 8 || size % 8 !== 0 || size > ext.length - at) throw new FormatError(`request extension of ${size} bytes`);
    const type = v.getUint32(at + 4, true);
    if (type <= FUSE_MAX_NR_SECCTX) out.secctx = ext.subarray(at, at + size);
    else if (type === FUSE_EXT_GROUPS) {
      const nr = size >= 12 ? v.getUint32(at + 8, true) : -1;
      if (nr < 0 || nr > (size - 12) / 4) throw new FormatError(`fuse_supp_groups of ${nr} groups in ${size} bytes`);
      out.groups = Array.from({ length: nr }, (_, i) => v.getUint32(at + 12 + 4 * i, true));
    }
    at += size;
  }
  return out;
}

export function decodeAccessIn(r: ByteReader): number {
  r.check(0, Size.ACCESS_IN, 'fuse_access_in');
  return r.u32(0);
}

export function decodeLseekIn(r: ByteReader): { fh: bigint; offset: number; whence: number } {
  r.check(0, Size.LSEEK_IN, 'fuse_lseek_in');
  return { fh: r.u64n(0), offset: saturated(r.u64n(8)), whence: r.u32(16) };
}

export function decodeInterruptIn(r: ByteReader): bigint {
  r.check(0, Size.INTERRUPT_IN, 'fuse_interrupt_in');
  return r.u64n(0);
}

export function decodeIoctlIn(r: ByteReader): { fh: bigint; flags: number; cmd: number; arg: bigint; inSize: number; outSize: number; input: Uint8Array } {
  r.check(0, Size.IOCTL_IN, 'fuse_ioctl_in');
  const inSize = r.u32(24);
  return {
    fh: r.u64n(0),
    flags: r.u32(8),
    cmd: r.u32(12),
    arg: r.u64n(16),
    inSize,
    outSize: r.u32(28),
    input: r.has(Size.IOCTL_IN, inSize) ? r.slice(Size.IOCTL_IN, inSize) : new Uint8Array(),
  };
}
