/**
 * The vhost-user protocol (QEMU docs/interop/vhost-user.rst; ../shared/spec/virtio-fs-interop.md
 * §3): message codes, feature bits, the 12-byte header and the payload layouts.
 *
 * Header, 12 bytes: u32 request @0, u32 flags @4 (bits 0-1 version = 1, 0x4 REPLY, 0x8 NEED_REPLY),
 * u32 size @8 (payload bytes that follow).
 * vring state, 8: u32 index, u32 num.   vring addr, 40: u32 index, u32 flags, u64 desc, u64 used,
 * u64 avail, u64 log (note the order: desc, used, avail).   memory table: u32 nregions, u32 pad,
 * then nregions × {u64 guest_phys_addr, u64 memory_size, u64 userspace_addr, u64 mmap_offset}.
 * single region (ADD/REM_MEM_REG), 40: u64 padding, then one region.
 */
import { ByteReader, FormatError } from '../../base/index.js';
import type { MemoryRegionSpec } from '../../native/index.js';

export enum Request {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  CREATE_CRYPTO_SESSION = 26,
  CLOSE_CRYPTO_SESSION = 27,
  POSTCOPY_ADVISE = 28,
  POSTCOPY_LISTEN = 29,
  POSTCOPY_END = 30,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GPU_SET_SOCKET = 33,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
}

export const HEADER_SIZE = 12;
export const VERSION = 0x1;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;
/** Largest payload accepted (a memory table of 509 regions is 16 KiB). */
export const MAX_PAYLOAD = 64 * 1024;

/** Virtio and vhost feature bits. */
export const Feature = {
  NOTIFY_ON_EMPTY: 1n << 24n,
  LOG_ALL: 1n << 26n,
  INDIRECT_DESC: 1n << 28n,
  EVENT_IDX: 1n << 29n,
  PROTOCOL_FEATURES: 1n << 30n,
  VERSION_1: 1n << 32n,
} as const;

export const ProtocolFeature = {
  MQ: 1n << 0n,
  LOG_SHMFD: 1n << 1n,
  REPLY_ACK: 1n << 3n,
  BACKEND_REQ: 1n << 5n,
  CONFIG: 1n << 9n,
  BACKEND_SEND_FD: 1n << 10n,
  HOST_NOTIFIER: 1n << 11n,
  INFLIGHT_SHMFD: 1n << 12n,
  RESET_DEVICE: 1n << 13n,
  CONFIGURE_MEM_SLOTS: 1n << 15n,
  STATUS: 1n << 16n,
} as const;

/** Bit 8 of a vring-fd message's u64: no fd is attached (polling mode). */
export const VRING_NOFD_MASK = 0x100n;
export const VRING_IDX_MASK = 0xffn;

export interface Header {
  request: number;
  flags: number;
  size: number;
}

export interface Message {
  header: Header;
  payload: Buffer;
  fds: number[];
}

export function decodeHeader(b: Buffer): Header {
  return { request: b.readUInt32LE(0), flags: b.readUInt32LE(4), size: b.readUInt32LE(8) };
}

export function encodeReply(request: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32LE(request, 0);
  h.writeUInt32LE(VERSION | FLAG_REPLY, 4);
  h.writeUInt32LE(payload.length, 8);
  return Buffer.concat([h, payload]);
}

export function u64Payload(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v, 0);
  return b;
}

function reader(m: Message, min: number): ByteReader {
  const r = new ByteReader(m.payload, `vhost-user ${Request[m.header.request] ?? m.header.request} payload`);
  r.check(0, min, 'payload');
  return r;
}

export function decodeU64(m: Message): bigint {
  return reader(m, 8).u64n(0);
}

export function decodeVringState(m: Message): { index: number; num: number } {
  const r = reader(m, 8);
  return { index: r.u32(0), num: r.u32(4) };
}

export function encodeVringState(index: number, num: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(num, 4);
  return b;
}

export function decodeVringAddr(m: Message): { index: number; flags: number; desc: bigint; used: bigint; avail: bigint; log: bigint } {
  const r = reader(m, 40);
  return { index: r.u32(0), flags: r.u32(4), desc: r.u64n(8), used: r.u64n(16), avail: r.u64n(24), log: r.u64n(32) };
}

function decodeRegion(r: ByteReader, at: number): MemoryRegionSpec {
  return { gpa: r.u64n(at), size: r.u64n(at + 8), uaddr: r.u64n(at + 16), offset: r.u64n(at + 24) };
}

export function decodeMemTable(m: Message): MemoryRegionSpec[] {
  const r = reader(m, 8);
  const n = r.u32(0);
  if (n > 509) throw new FormatError(`memory table with ${n} regions`);
  r.check(8, n * 32, 'regions');
  return Array.from({ length: n }, (_, i) => decodeRegion(r, 8 + i * 32));
}

export function decodeSingleRegion(m: Message): MemoryRegionSpec {
  return decodeRegion(reader(m, 40), 8);
}
