/**
 * An in-process vhost-user frontend for tests: "guest memory" is a memfd, rings are split
 * virtqueues laid out in it, kicks and calls are eventfds. It speaks the protocol as QEMU does
 * (or any way a test wants, including badly) and posts FUSE requests as descriptor chains.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readSync, writeSync } from 'node:fs';
import { native } from '../../src/native/index.js';
import type { MemoryTable } from '../../src/native/index.js';
import { Feature, ProtocolFeature, Request } from '../../src/transport/vhost-user/protocol.js';
import { Opcode } from '../../src/fuse/abi.js';
import { CLI } from './env.js';
import { request as fuseRequest } from './fuse-client.js';

/** Where the frontend maps guest memory in its own address space (the uaddr it sends, as QEMU's). */
export const UADDR_BASE = 0x7f00_0000_0000n;
const RING_AREA = 0x1000;
const RING_STRIDE = 0x20000;
const BUFFER_AREA = 0x100000;
export const DESC_NEXT = 1;
export const DESC_WRITE = 2;
export const DESC_INDIRECT = 4;

export interface Desc {
  addr: bigint | number;
  len: number;
  flags: number;
  next: number;
}

/**
 * Writes `descs` as a descriptor table (`struct virtq_desc`, 16 bytes each: addr, len, flags,
 * next) into `b` from byte `at`: a ring's table, or an indirect one.
 */
export function encodeDescs(b: Buffer, at: number, descs: readonly Desc[]): void {
  descs.forEach((d, i) => {
    const o = at + 16 * i;
    b.writeBigUInt64LE(BigInt(d.addr), o);
    b.writeUInt32LE(d.len, o + 8);
    b.writeUInt16LE(d.flags, o + 12);
    b.writeUInt16LE(d.next, o + 14);
  });
}

/** A chain as one list in an indirect table: each descriptor's `next` is the one after it. */
export function chained(descs: ReadonlyArray<Omit<Desc, 'next'>>): Desc[] {
  return descs.map((d, i) => ({ ...d, flags: i < descs.length - 1 ? d.flags | DESC_NEXT : d.flags, next: i + 1 }));
}

export interface Ring {
  index: number;
  size: number;
  desc: number;
  avail: number;
  used: number;
  kick: number;
  call: number;
  nextAvail: number;
  lastUsed: number;
  nextDesc: number;
}

export class TestFrontend {
  readonly fd: number;
  readonly memFd: number;
  readonly memSize: number;
  private readonly mem: MemoryTable;
  readonly rings: Ring[] = [];
  private rx: Buffer = Buffer.alloc(0);
  private bump = BUFFER_AREA;

  private constructor(fd: number, memSize: number) {
    this.fd = fd;
    this.memSize = memSize;
    this.memFd = native.memfd('test-guest', memSize);
    this.mem = new native.MemoryTable();
    this.mem.setTable([{ gpa: 0, size: memSize, uaddr: UADDR_BASE, offset: 0 }], [this.memFd]);
  }

  static connect(socketPath: string, memSize = 64 << 20): TestFrontend {
    return new TestFrontend(native.connectUnix(socketPath), memSize);
  }

  /** A view of guest memory (one region, so one piece). */
  view(gpa: number, len: number): Buffer {
    const [v] = this.mem.gpaView(gpa, len) as [Uint8Array];
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }

  /** Allocates guest memory for buffers (16-byte aligned). */
  alloc(len: number): number {
    // Tests reuse memory freely: past the end, start again at the buffer area (before taking the
    // range, so that the one that does not fit is not handed out).
    if (this.bump + len > this.memSize) this.bump = BUFFER_AREA;
    const at = this.bump;
    this.bump = (this.bump + len + 15) & ~15;
    return at;
  }

  send(request: Request | number, payload: Buffer = Buffer.alloc(0), fds: number[] = [], flags = 0x1): void {
    const h = Buffer.alloc(12);
    h.writeUInt32LE(request, 0);
    h.writeUInt32LE(flags, 4);
    h.writeUInt32LE(payload.length, 8);
    native.sendMsg(this.fd, Buffer.concat([h, payload]), fds);
  }

  /** Sends raw bytes (for malformed frames). */
  sendRaw(bytes: Buffer, fds: number[] = []): void {
    native.sendMsg(this.fd, bytes, fds);
  }

  /**
   * Waits for one reply message; resolves with its payload. Any other message first is an error,
   * or, with `skipOthers`, dropped (the replies a test did not wait for).
   */
  async reply(request: number, timeoutMs = 5000, skipOthers = false): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let m = this.nextMessage(); m !== undefined; m = this.nextMessage()) {
        if (m.request === request && (m.flags & 0x4) !== 0) return m.payload;
        if (!skipOthers) throw new Error(`expected a reply to ${request}, got request ${m.request} flags ${m.flags}`);
      }
      const more = this.receive();
      if (more === 'closed') throw new Error('the backend closed the connection');
      if (more === 'none') {
        if (Date.now() > deadline) throw new Error(`no reply to request ${request}`);
        await new Promise((res) => setTimeout(res, 2));
      }
    }
  }

  /** Reads and drops the messages the backend sent so far, without waiting; false once it hung up. */
  discardReplies(): boolean {
    for (;;) {
      const more = this.receive();
      while (this.nextMessage() !== undefined);
      if (more !== 'some') return more !== 'closed';
    }
  }

  /** The next whole message received, if any (a partial one stays for later). */
  private nextMessage(): { request: number; flags: number; payload: Buffer } | undefined {
    if (this.rx.length < 12) return undefined;
    const size = this.rx.readUInt32LE(8);
    if (this.rx.length < 12 + size) return undefined;
    const m = { request: this.rx.readUInt32LE(0), flags: this.rx.readUInt32LE(4), payload: Buffer.from(this.rx.subarray(12, 12 + size)) };
    this.rx = this.rx.subarray(12 + size);
    return m;
  }

  /** One non-blocking read of the socket into `rx` (fds that come with it are closed). */
  private receive(): 'some' | 'none' | 'closed' {
    let r;
    try {
      r = native.recvMsg(this.fd, 65536);
    } catch {
      return 'closed';
    }
    if (r === null) return 'none';
    for (const fd of r.fds) native.closeFd(fd);
    if (r.data.length === 0) return 'closed';
    this.rx = Buffer.concat([this.rx, r.data]);
    return 'some';
  }

  async call(request: Request, payload?: Buffer, fds?: number[], flags = 0x1): Promise<Buffer> {
    this.send(request, payload, fds, flags);
    return this.reply(request);
  }

  static u64(v: bigint | number): Buffer {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v), 0);
    return b;
  }

  static state(index: number, num: number): Buffer {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(index, 0);
    b.writeUInt32LE(num, 4);
    return b;
  }

  /** The QEMU-like handshake and the start of `queues` rings; REPLY_ACK on every message when `ack`. */
  async start(opts: { queues?: number; size?: number; eventIdx?: boolean; ack?: boolean } = {}): Promise<void> {
    const queues = opts.queues ?? 2;
    const size = opts.size ?? 256;
    const features = (await this.call(Request.GET_FEATURES)).readBigUInt64LE(0);
    const proto = (await this.call(Request.GET_PROTOCOL_FEATURES)).readBigUInt64LE(0);
    this.send(Request.SET_PROTOCOL_FEATURES, TestFrontend.u64(proto & (ProtocolFeature.MQ | ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIGURE_MEM_SLOTS)));
    const qn = (await this.call(Request.GET_QUEUE_NUM)).readBigUInt64LE(0);
    if (qn < BigInt(queues)) throw new Error(`backend offers ${qn} queues`);
    this.send(Request.SET_OWNER);
    let want = Feature.VERSION_1 | Feature.INDIRECT_DESC | Feature.PROTOCOL_FEATURES;
    if (opts.eventIdx !== false) want |= Feature.EVENT_IDX;
    this.send(Request.SET_FEATURES, TestFrontend.u64(features & want));
    const table = Buffer.alloc(8 + 32);
    table.writeUInt32LE(1, 0);
    table.writeBigUInt64LE(0n, 8);
    table.writeBigUInt64LE(BigInt(this.memSize), 16);
    table.writeBigUInt64LE(UADDR_BASE, 24);
    table.writeBigUInt64LE(0n, 32);
    const ack = (await this.call(Request.SET_MEM_TABLE, table, [this.memFd], 0x1 | 0x8)).readBigUInt64LE(0);
    if (ack !== 0n) throw new Error('SET_MEM_TABLE failed');
    for (let i = 0; i < queues; i++) this.startRing(i, size);
  }

  startRing(index: number, size: number): Ring {
    const desc = RING_AREA + index * RING_STRIDE;
    const avail = desc + 16 * size;
    const used = (avail + 6 + 2 * size + 63) & ~63;
    this.view(desc, used + 6 + 8 * size - desc).fill(0);
    const ring: Ring = { index, size, desc, avail, used, kick: native.eventfd(0), call: native.eventfd(0), nextAvail: 0, lastUsed: 0, nextDesc: 0 };
    this.rings[index] = ring;
    this.send(Request.SET_VRING_CALL, TestFrontend.u64(index), [ring.call]);
    this.send(Request.SET_VRING_NUM, TestFrontend.state(index, size));
    this.send(Request.SET_VRING_BASE, TestFrontend.state(index, 0));
    const addr = Buffer.alloc(40);
    addr.writeUInt32LE(index, 0);
    addr.writeBigUInt64LE(UADDR_BASE + BigInt(desc), 8);
    addr.writeBigUInt64LE(UADDR_BASE + BigInt(used), 16);
    addr.writeBigUInt64LE(UADDR_BASE + BigInt(avail), 24);
    this.send(Request.SET_VRING_ADDR, addr);
    this.send(Request.SET_VRING_KICK, TestFrontend.u64(index), [ring.kick]);
    this.send(Request.SET_VRING_ENABLE, TestFrontend.state(index, 1));
    return ring;
  }

  writeDesc(ring: Ring, i: number, d: Desc): void {
    encodeDescs(this.view(ring.desc + 16 * i, 16), 0, [d]);
  }

  /** Writes an indirect descriptor table at `gpa`; returns its length in bytes. */
  writeTable(gpa: number, descs: readonly Desc[]): number {
    encodeDescs(this.view(gpa, 16 * descs.length), 0, descs);
    return 16 * descs.length;
  }

  /** Publishes a chain head in the avail ring and kicks. */
  publish(ring: Ring, head: number, kick = true): void {
    this.view(ring.avail + 4 + 2 * (ring.nextAvail % ring.size), 2).writeUInt16LE(head, 0);
    ring.nextAvail = (ring.nextAvail + 1) & 0xffff;
    this.view(ring.avail + 2, 2).writeUInt16LE(ring.nextAvail, 0);
    if (kick) this.kick(ring);
  }

  /** Signals the ring's kick eventfd. */
  kick(ring: Ring): void {
    writeSync(ring.kick, TestFrontend.u64(1));
  }

  /**
   * Publishes a chain head as a Linux driver does with EVENT_IDX: kicks only when the new avail
   * index passes the device's avail event (vring_need_event). Returns whether it kicked.
   */
  publishAsDriver(ring: Ring, head: number): boolean {
    const old = ring.nextAvail;
    this.publish(ring, head, false);
    const event = this.view(ring.used + 4 + 8 * ring.size, 2).readUInt16LE(0);
    const kick = ((ring.nextAvail - event - 1) & 0xffff) < ((ring.nextAvail - old) & 0xffff);
    if (kick) this.kick(ring);
    return kick;
  }

  /**
   * Sends FORGET(nodeid, nlookup) on the hiprio ring (ring 0) as one readable descriptor and waits
   * for the device to return it: a FORGET has no reply, its used element has length 0.
   */
  async forget(nodeid: number, nlookup: number): Promise<{ id: number; len: number }> {
    const hp = this.rings[0] as Ring;
    const args = Buffer.alloc(8);
    args.writeBigUInt64LE(BigInt(nlookup), 0);
    const bytes = fuseRequest(Opcode.FORGET, nodeid, args).bytes;
    const at = this.alloc(bytes.length);
    this.view(at, bytes.length).set(bytes);
    const head = hp.nextDesc;
    this.writeDesc(hp, head, { addr: at, len: bytes.length, flags: 0, next: 0 });
    hp.nextDesc = (head + 1) % hp.size;
    this.publish(hp, head);
    const u = await this.used(hp);
    if (u.id !== head) throw new Error(`hiprio used id ${u.id}, expected ${head}`);
    return u;
  }

  /** Sets the raw avail index (hostile rings). */
  setAvailIdx(ring: Ring, idx: number): void {
    this.view(ring.avail + 2, 2).writeUInt16LE(idx & 0xffff, 0);
    writeSync(ring.kick, TestFrontend.u64(1));
  }

  /** Waits for the next used element; resolves with {id, len}. */
  async used(ring: Ring, timeoutMs = 10_000): Promise<{ id: number; len: number }> {
    const deadline = Date.now() + timeoutMs;
    while (this.view(ring.used + 2, 2).readUInt16LE(0) === ring.lastUsed) {
      if (Date.now() > deadline) throw new Error(`ring ${ring.index}: no used element`);
      try {
        readSync(ring.call, Buffer.alloc(8));
      } catch {
        // EAGAIN: nothing signalled yet
      }
      await new Promise((res) => setTimeout(res, 1));
    }
    const e = this.view(ring.used + 4 + 8 * (ring.lastUsed % ring.size), 8);
    ring.lastUsed = (ring.lastUsed + 1) & 0xffff;
    return { id: e.readUInt32LE(0), len: e.readUInt32LE(4) };
  }

  /** Sends one FUSE request as a chain (readable request, writable reply) and returns the reply. */
  async fuse(ring: Ring, request: Buffer, replyCapacity = 4096, split = 1): Promise<Buffer> {
    const { head, outAt } = this.post(ring, request, replyCapacity, split);
    const u = await this.used(ring);
    if (u.id !== head) throw new Error(`used id ${u.id}, expected ${head}`);
    return Buffer.from(this.view(outAt, u.len));
  }

  /**
   * Publishes a FUSE request without waiting for it: its reply room (`replyCapacity` bytes at
   * `outAt`, filled with 0xee) in `split` writable descriptors. Returns the chain's head.
   */
  post(ring: Ring, request: Buffer, replyCapacity = 4096, split = 1): { head: number; outAt: number } {
    const inAt = this.alloc(request.length);
    this.view(inAt, request.length).set(request);
    const outAt = this.alloc(replyCapacity);
    this.view(outAt, replyCapacity).fill(0xee);
    const head = ring.nextDesc;
    const n = 1 + split;
    const pieces = Array.from({ length: split }, (_, k) => Math.floor((replyCapacity * (k + 1)) / split) - Math.floor((replyCapacity * k) / split));
    const idx = (k: number): number => (head + k) % ring.size;
    this.writeDesc(ring, idx(0), { addr: inAt, len: request.length, flags: DESC_NEXT, next: idx(1) });
    let off = 0;
    pieces.forEach((len, k) => {
      this.writeDesc(ring, idx(1 + k), { addr: outAt + off, len, flags: DESC_WRITE | (k + 1 < split ? DESC_NEXT : 0), next: idx(2 + k) });
      off += len;
    });
    ring.nextDesc = (head + n) % ring.size;
    this.publish(ring, head);
    return { head, outAt };
  }

  close(): void {
    for (const r of this.rings) {
      if (r === undefined) continue;
      native.closeFd(r.kick);
      native.closeFd(r.call);
    }
    native.closeFd(this.fd);
    native.closeFd(this.memFd);
  }
}

export interface VirtiofsDaemon {
  proc: ChildProcess;
  socket: string;
  stderr: () => string;
  exit: Promise<[number | null, string | null]>;
}

/**
 * `damselfly virtiofs --socket-path SOCKET ARGS…` (warnings and worse on stderr), once it says it
 * waits for the VMM, as Kata's runtime waits for it.
 */
export async function startVirtiofsDaemon(socket: string, args: string[]): Promise<VirtiofsDaemon> {
  const proc = spawn(process.execPath, [CLI, '--log-level', 'warn', 'virtiofs', '--socket-path', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = once(proc, 'exit') as Promise<[number | null, string | null]>;
  const deadline = Date.now() + 20_000;
  while (!err.includes('Waiting for vhost-user socket connection')) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`virtiofs did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, socket, stderr: () => err, exit };
}
