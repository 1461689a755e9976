/**
 * Seeded fuzzing of the FUSE server with hostile request streams, over both filesystems a guest
 * reaches: the read-only image filesystem (a RAFS image built in-process) and the passthrough
 * shared directory (on a private tmpfs, nodev and 64 MiB, so that nothing a request does can reach
 * a device or fill a disk). Requests are made per opcode from the `fuse_kernel.h` 7.38 layouts,
 * with boundary values, node ids and handles the server gave out (and ones it never did), names
 * that try to leave the directory, lengths that lie (the header's, truncated and overlong
 * arguments), byte-flipped copies, opcodes that do not exist, a few requests in flight at once,
 * and now and then a second INIT or a DESTROY.
 *
 * Invariants, for every request: it completes within a bound, with exactly one reply or (FORGET,
 * BATCH_FORGET, INTERRUPT, a header too short to answer) one drop; a reply's `out.len` is its
 * length, its `unique` the request's, its error 0 or a negated Linux errno, with no payload after
 * an error, and a READ's data never more than the room given (a larger reply of another kind is
 * the transport's to refuse: virtio-fs answers ERANGE); nothing is logged as an internal failure. On the
 * image, every reply about a file whose path is known is checked against the source: a LOOKUP's
 * type and size, and a READ's bytes. Afterwards the server still serves a fresh session: the
 * image's whole tree reads back exactly, the shared directory still creates, writes and reads a
 * file, and nothing outside it changed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:os';
import { lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync, linkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import pino from 'pino';
import { type Logger, Metrics } from '../../src/base/index.js';
import { silentLogger } from '../../src/base/log.js';
import { build } from '../../src/builder/build.js';
import { Compressor } from '../../src/format/compression.js';
import { Digester } from '../../src/format/constants.js';
import { openBootstrap } from '../../src/format/open.js';
import { ImageFs } from '../../src/fs/image/image-fs.js';
import { PassthroughFs } from '../../src/fs/passthrough/index.js';
import { Vfs } from '../../src/fs/vfs/index.js';
import type { FileSystem } from '../../src/fs/types.js';
import { FuseServer, Opcode, type ReplyChannel, SetattrValid } from '../../src/fuse/index.js';
import { native, nativeCodecs } from '../../src/native/index.js';
import { LocalFsBackend } from '../../src/storage/backend/localfs.js';
import { BlobDevice } from '../../src/storage/device.js';
import { cstr, initArgs, parseAttr, parseDirents, parseEntry, parseReply, readArgs, request, u32Args } from '../helpers/fuse-client.js';
import { withTempDir, within } from '../helpers/env.js';
import { treeOf } from '../integration/passthrough-posix-suite.js';
import { type Rng, seededRng } from '../helpers/rng.js';

/** A request that has not completed after this long is a hang. */
const REQUEST_LIMIT_MS = 10_000;
const KNOWN_ERRNOS = new Set(Object.values(constants.errno));

// ---------------------------------------------------------------------------------------------
// Values

const U32_EDGES = [0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x1000, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];
const U64_EDGES = [0n, 1n, 2n, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
const SIZES = [0, 1, 8, 16, 4095, 4096, 4097, 65536, 131072, 1 << 20, (1 << 20) + 1, 0xffff_ffff];
const S_IF = [0o100000, 0o040000, 0o120000, 0o010000, 0o140000, 0o020000, 0o060000, 0, 0o170000];
const OPEN_FLAGS = [0, 1, 2, 3, 0o100, 0o200, 0o1000, 0o2000, 0o40000, 0o200000, 0o400000, 0o10000000, 0o20200000, 0o4010000];
/** Names that try to leave the directory or break a parser (a NUL ends a FUSE name early). */
const HOSTILE_NAMES = ['', '.', '..', '../..', '/', 'a/b', '../outside', '..\0x', 'x'.repeat(255), 'x'.repeat(256), 'y'.repeat(4096), '\u00ff\u00fe', 'new0', 'new1', 'new2', 'new3'];

/** What the fuzzer knows about a target: node ids and handles it was given, names worth trying. */
interface Known {
  nodes: number[];
  /** The node ids among them that were regular files when looked up. */
  files: number[];
  handles: bigint[];
  names: string[];
}

function u64(rng: Rng): bigint {
  const r = rng.next();
  if (r < 0.7) return rng.pick(U64_EDGES);
  return BigInt(rng.int(2 ** 31)) * BigInt(rng.int(2 ** 31)) + BigInt(rng.int(4));
}

function u32(rng: Rng): number {
  return rng.next() < 0.7 ? rng.pick(U32_EDGES) : rng.int(2 ** 32);
}

function nodeid(rng: Rng, k: Known): bigint {
  return rng.next() < 0.8 ? BigInt(rng.pick(k.nodes)) : u64(rng);
}

function fh(rng: Rng, k: Known): bigint {
  return rng.next() < 0.75 && k.handles.length > 0 ? rng.pick(k.handles) : u64(rng);
}

function offset(rng: Rng): bigint {
  return rng.next() < 0.75 ? BigInt(rng.int(400_000)) : u64(rng);
}

function size(rng: Rng): number {
  return rng.next() < 0.6 ? rng.pick(SIZES) : rng.int(300_000);
}

function mode(rng: Rng): number {
  return rng.next() < 0.85 ? rng.pick(S_IF) | rng.int(0o10000) : u32(rng);
}

function flags(rng: Rng): number {
  if (rng.next() < 0.2) return u32(rng);
  let f = 0;
  for (let i = rng.int(3); i >= 0; i--) f |= rng.pick(OPEN_FLAGS);
  return f;
}

function name(rng: Rng, k: Known): Buffer {
  if (rng.next() < 0.05) return Buffer.from(rng.pick(k.names)); // no terminating NUL
  return cstr(rng.next() < 0.6 ? rng.pick(k.names) : rng.pick(HOSTILE_NAMES));
}

/** Little-endian fields, in order. */
function fields(...parts: Array<['u32', number] | ['u64', bigint] | ['bytes', Buffer]>): Buffer {
  return Buffer.concat(
    parts.map(([kind, v]) => {
      if (kind === 'bytes') return v;
      const b = Buffer.alloc(kind === 'u32' ? 4 : 8);
      if (kind === 'u32') b.writeUInt32LE(v >>> 0);
      else b.writeBigUInt64LE(BigInt.asUintN(64, v));
      return b;
    }),
  );
}

/** A request's arguments as `fuse_kernel.h` 7.38 lays them out, with hostile values. */
function args(op: number, rng: Rng, k: Known): Buffer {
  const F = (): ['u64', bigint] => ['u64', fh(rng, k)];
  const N = (): ['u64', bigint] => ['u64', nodeid(rng, k)];
  const O = (): ['u64', bigint] => ['u64', offset(rng)];
  const W = (n: number): ['u32', number] => ['u32', n];
  const data = (): ['bytes', Buffer] => ['bytes', Buffer.alloc(rng.pick([0, 1, 100, 4096, 70_000]), rng.int(256))];
  switch (op) {
    case Opcode.LOOKUP:
    case Opcode.UNLINK:
    case Opcode.RMDIR:
    case Opcode.REMOVEXATTR:
      return name(rng, k);
    case Opcode.FORGET:
      return fields(['u64', BigInt(rng.int(4))]);
    case Opcode.BATCH_FORGET: {
      const n = rng.pick([0, 1, 2, 5, 0xffff_ffff]);
      const items = Array.from({ length: Math.min(n, 5) }, () => fields(N(), ['u64', BigInt(rng.int(3))]));
      return fields(W(n), W(0), ['bytes', Buffer.concat(items)]);
    }
    case Opcode.GETATTR:
      return fields(W(rng.pick([0, 1, u32(rng)])), W(0), F());
    case Opcode.SETATTR: // valid, padding, fh, size, lock_owner, atime, mtime, ctime, 3 nsec, mode, unused, uid, gid, unused
      return fields(W(rng.next() < 0.5 ? rng.int(0x4000) : u32(rng)), W(0), F(), O(), ['u64', 0n], ['u64', u64(rng)], ['u64', u64(rng)], ['u64', 0n], W(u32(rng)), W(u32(rng)), W(0), W(mode(rng)), W(0), W(rng.pick([0, 1000, u32(rng)])), W(rng.pick([0, 1000, u32(rng)])), W(0));
    case Opcode.READLINK:
    case Opcode.STATFS:
    case Opcode.DESTROY:
      return rng.next() < 0.9 ? Buffer.alloc(0) : data()[1];
    case Opcode.SYMLINK:
      return Buffer.concat([name(rng, k), name(rng, k)]);
    case Opcode.MKNOD:
      return fields(W(mode(rng)), W(u32(rng)), W(rng.pick([0, 0o22])), W(0), ['bytes', name(rng, k)]);
    case Opcode.MKDIR:
      return fields(W(mode(rng)), W(rng.pick([0, 0o22])), ['bytes', name(rng, k)]);
    case Opcode.RENAME:
      return fields(N(), ['bytes', name(rng, k)], ['bytes', name(rng, k)]);
    case Opcode.RENAME2:
      return fields(N(), W(rng.pick([0, 1, 2, 4, 6, u32(rng)])), W(0), ['bytes', name(rng, k)], ['bytes', name(rng, k)]);
    case Opcode.LINK:
      return fields(N(), ['bytes', name(rng, k)]);
    case Opcode.OPEN:
    case Opcode.OPENDIR:
      return fields(W(flags(rng)), W(rng.pick([0, 1, u32(rng)])));
    case Opcode.READ:
    case Opcode.READDIR:
    case Opcode.READDIRPLUS:
      return fields(F(), O(), W(size(rng)), W(0), ['u64', 0n], W(rng.pick([0, 2, u32(rng)])), W(0));
    case Opcode.WRITE: {
      const [, d] = data();
      return fields(F(), O(), W(rng.next() < 0.8 ? d.length : size(rng)), W(rng.pick([0, 1, 4, u32(rng)])), ['u64', 0n], W(flags(rng)), W(0), ['bytes', d]);
    }
    case Opcode.RELEASE:
    case Opcode.RELEASEDIR:
      return fields(F(), W(flags(rng)), W(rng.pick([0, 1, 2])), ['u64', 0n]);
    case Opcode.FSYNC:
    case Opcode.FSYNCDIR:
      return fields(F(), W(rng.pick([0, 1, u32(rng)])), W(0));
    case Opcode.SETXATTR:
      return fields(W(rng.next() < 0.8 ? 5 : u32(rng)), W(rng.pick([0, 1, 2, 3, u32(rng)])), ['bytes', name(rng, k)], ['bytes', Buffer.from('value')]);
    case Opcode.GETXATTR:
      return fields(W(size(rng)), W(0), ['bytes', name(rng, k)]);
    case Opcode.LISTXATTR:
      return fields(W(size(rng)), W(0));
    case Opcode.FLUSH:
      return fields(F(), W(0), W(0), ['u64', u64(rng)]);
    case Opcode.INIT:
      return rng.next() < 0.7 ? initArgs(rng.pick([27, 31, 36, 38, 40]), BigInt(u32(rng)) | (BigInt(u32(rng)) << 32n), u32(rng)) : data()[1];
    case Opcode.ACCESS:
      return fields(W(rng.pick([0, 1, 2, 4, 7, u32(rng)])), W(0));
    case Opcode.CREATE:
    case Opcode.TMPFILE:
      return fields(W(flags(rng)), W(mode(rng)), W(rng.pick([0, 0o22])), W(rng.pick([0, 1, u32(rng)])), ['bytes', name(rng, k)]);
    case Opcode.INTERRUPT:
      return fields(['u64', u64(rng)]);
    case Opcode.BMAP:
      return fields(['u64', u64(rng)], W(rng.pick([0, 512, 4096, u32(rng)])), W(0));
    case Opcode.IOCTL:
      return fields(F(), W(rng.pick([0, 1, 4, 16, u32(rng)])), W(u32(rng)), ['u64', u64(rng)], W(rng.pick([0, 8, 4096, u32(rng)])), W(rng.pick([0, 8, 4096, u32(rng)])), data());
    case Opcode.POLL:
      return fields(F(), ['u64', u64(rng)], W(u32(rng)), W(u32(rng)));
    case Opcode.FALLOCATE:
      return fields(F(), O(), ['u64', rng.next() < 0.7 ? BigInt(rng.int(1 << 20)) : u64(rng)], W(rng.pick([0, 1, 2, 3, 0x10, 0x20, u32(rng)])), W(0));
    case Opcode.LSEEK:
      return fields(F(), O(), W(rng.pick([0, 1, 2, 3, 4, 5, u32(rng)])), W(0));
    case Opcode.COPY_FILE_RANGE:
      return fields(F(), O(), N(), F(), O(), ['u64', BigInt(size(rng))], ['u64', rng.next() < 0.8 ? 0n : u64(rng)]);
    case Opcode.SYNCFS:
      return fields(['u64', 0n]);
    case Opcode.STATX:
      return fields(W(rng.pick([0, 1, u32(rng)])), W(0), F(), W(u32(rng)), W(u32(rng)));
    default:
      return data()[1];
  }
}

/** Every opcode but the two that reset the session (sent less often: each forgets every node id). */
const OPCODES = Object.values(Opcode).filter((v): v is number => typeof v === 'number' && v !== Opcode.INIT && v !== Opcode.DESTROY);
/** Opcodes about a file's data, sent more often about a file than about any node. */
const FILE_OPCODES = new Set<number>([Opcode.OPEN, Opcode.READ, Opcode.WRITE, Opcode.SETATTR, Opcode.FALLOCATE, Opcode.LSEEK, Opcode.COPY_FILE_RANGE, Opcode.FLUSH, Opcode.FSYNC, Opcode.RELEASE, Opcode.GETXATTR, Opcode.IOCTL]);
/** Opcodes that exist nowhere, or not for this server (CUSE_INIT, NOTIFY_REPLY's neighbours). */
const UNKNOWN_OPCODES = [0, 7, 19, 53, 54, 100, 4096, 0x7fff_ffff, 0xffff_ffff];

interface Made {
  bytes: Buffer;
  opcode: number;
  nodeid: bigint;
  /** Reply room the channel offers. */
  capacity: number;
  /** Built as the kernel would (no lie, no flip): its decoded meaning is what was generated. */
  wellFormed: boolean;
}

function makeRequest(rng: Rng, k: Known): Made {
  // A fifth is traffic a kernel sends (lookups of real names, reads of files looked up), so that
  // the hostile rest meets a session with node ids and data in use.
  const plausible = rng.next();
  if (plausible < 0.1) {
    const parent = rng.pick(k.nodes);
    return { bytes: request(Opcode.LOOKUP, parent, cstr(rng.pick(k.names))).bytes, opcode: Opcode.LOOKUP, nodeid: BigInt(parent), capacity: 1 << 20, wellFormed: true };
  }
  if (plausible < 0.2 && k.files.length > 0) {
    const node = rng.pick(k.files);
    const a = readArgs(fh(rng, k), rng.int(320_000), rng.pick([4096, 65536, 131072, 1 << 20]));
    return { bytes: request(Opcode.READ, node, a).bytes, opcode: Opcode.READ, nodeid: BigInt(node), capacity: 1 << 20, wellFormed: true };
  }
  const r = rng.next();
  let opcode: number;
  if (r < 0.005) opcode = Opcode.INIT;
  else if (r < 0.007) opcode = Opcode.DESTROY;
  else if (r < 0.03) opcode = rng.pick(UNKNOWN_OPCODES);
  else opcode = rng.pick(OPCODES);
  const r2 = rng.next();
  const node = r2 < 0.4 && k.files.length > 0 && FILE_OPCODES.has(opcode) ? BigInt(rng.pick(k.files)) : r2 < 0.9 ? BigInt(rng.pick(k.nodes)) : u64(rng);
  let a = opcode === Opcode.INIT && rng.next() < 0.5 ? initArgs() : args(opcode, rng, k);
  const header = request(opcode, 0, Buffer.alloc(0), { uid: rng.next() < 0.8 ? 0 : u32(rng), gid: rng.next() < 0.8 ? 0 : u32(rng), unique: rng.next() < 0.95 ? undefined : u64(rng) }).bytes;
  header.writeBigUInt64LE(node, 16);
  let wellFormed = true;
  const lie = rng.next();
  let len = header.length + a.length;
  if (lie < 0.06) {
    a = a.subarray(0, rng.int(a.length + 1)); // truncated arguments, the header's length true
    len = header.length + a.length;
    wellFormed = false;
  } else if (lie < 0.1) {
    a = Buffer.concat([a, Buffer.alloc(rng.pick([1, 7, 100]), 0xee)]); // trailing garbage
    len = header.length + a.length;
    wellFormed = false;
  } else if (lie < 0.16) {
    len = rng.pick([0, 1, 39, 40, len - 1, len + 1, len + 4096, 0xffff_ffff]); // the header lies
    wellFormed = false;
  }
  header.writeUInt32LE(len >>> 0, 0);
  let bytes = Buffer.concat([header, a]);
  if (rng.next() < 0.05) {
    bytes = Buffer.from(bytes);
    for (let i = 1 + rng.int(4); i > 0; i--) {
      const at = rng.int(bytes.length);
      bytes[at] = (bytes[at] as number) ^ (1 << rng.int(8));
    }
    wellFormed = false;
  }
  if (rng.next() < 0.02) {
    bytes = bytes.subarray(0, rng.int(Math.min(bytes.length, 60))); // a short read of the request
    wellFormed = false;
  }
  const capacity = rng.next() < 0.85 ? 1 << 20 : rng.pick([0, 1, 8, 15, 16, 100, 4096]);
  return { bytes, opcode, nodeid: node, capacity, wellFormed };
}

// ---------------------------------------------------------------------------------------------
// Replies

class FuzzReply implements ReplyChannel {
  private room: Buffer | undefined;
  reply: Buffer | undefined;
  completions = 0;
  dropped = false;
  constructor(readonly capacity: number) {}
  reserve(n: number): Uint8Array[] {
    assert.ok(n <= this.capacity, `reserved ${n} bytes of ${this.capacity}`);
    this.room = Buffer.alloc(n);
    return n > 1 ? [this.room.subarray(0, n >> 1), this.room.subarray(n >> 1)] : [this.room];
  }
  send(header: Uint8Array, payload: Uint8Array[] | number): void {
    this.completions++;
    this.reply = typeof payload === 'number' ? Buffer.concat([header, (this.room ?? Buffer.alloc(0)).subarray(0, payload)]) : Buffer.concat([header, ...payload]);
  }
  drop(): void {
    this.completions++;
    this.dropped = true;
  }
}

interface Outcome {
  made: Made;
  error: number | undefined;
  payload: Buffer;
}

function describeRequest(m: Made): string {
  return `opcode ${m.opcode}, node ${m.nodeid}, ${m.bytes.length} bytes, capacity ${m.capacity}: ${m.bytes.subarray(0, 96).toString('hex')}`;
}

/** Sends one request; checks that it completes once, in time, with a well-formed reply. */
async function send(server: FuseServer, made: Made): Promise<Outcome> {
  const channel = new FuzzReply(made.capacity);
  const what = describeRequest(made);
  await within(REQUEST_LIMIT_MS, `no completion: ${what}`, server.handle(made.bytes, channel));
  assert.equal(channel.completions, 1, `completed ${channel.completions} times: ${what}`);
  if (channel.dropped) {
    const silent = [Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT].includes(made.opcode);
    assert.ok(silent || made.bytes.length < 40 || !made.wellFormed, `dropped without a reason: ${what}`);
    return { made, error: undefined, payload: Buffer.alloc(0) };
  }
  const reply = channel.reply as Buffer;
  const r = parseReply(reply);
  assert.equal(r.len, reply.length, `out.len is not the reply's length: ${what}`);
  if (made.bytes.length >= 16) assert.equal(r.unique, made.bytes.readBigUInt64LE(8), `unique: ${what}`);
  assert.ok(r.error === 0 || KNOWN_ERRNOS.has(-r.error), `error ${r.error} is no negated errno: ${what}`);
  if (r.error !== 0) assert.equal(reply.length, 16, `payload after error ${r.error}: ${what}`);
  return { made, error: r.error, payload: r.payload };
}

// ---------------------------------------------------------------------------------------------
// The run

interface Target {
  server: FuseServer;
  known: Known;
  /** Checks a successful reply against what the target knows; remembers what it gave out. */
  learn(o: Outcome): void;
  /** The session was reset (INIT, DESTROY): what it gave out is gone. */
  reset(): void;
  /** Called after each batch of requests has completed. */
  afterBatch?(): void;
}

/** A logger that keeps error-level lines: a FUSE server logs a request failing for no errno reason there. */
function errorLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: pino({ level: 'error' }, { write: (s: string) => void lines.push(s) }), lines };
}

/** A request made as the kernel makes it, checked as every other; `error` -1 when it was dropped. */
async function wellFormed(server: FuseServer, op: Opcode, node: number, a?: Buffer): Promise<{ error: number; payload: Buffer }> {
  const o = await send(server, { bytes: request(op, node, a).bytes, opcode: op, nodeid: BigInt(node), capacity: 1 << 20, wellFormed: true });
  return { error: o.error ?? -1, payload: o.payload };
}

/** Drives `target` with `count` requests from `seed`, up to six at once. */
async function fuzz(target: Target, seed: number, count: number): Promise<Map<string, number>> {
  const rng = seededRng(seed);
  const seen = new Map<string, number>();
  assert.equal((await wellFormed(target.server, Opcode.INIT, 0, initArgs())).error, 0);
  for (let done = 0; done < count; ) {
    const batch = Array.from({ length: 1 + rng.int(6) }, () => makeRequest(rng, target.known));
    done += batch.length;
    const outcomes = await Promise.all(batch.map((m) => send(target.server, m)));
    // A reset anywhere in the batch may have come before any other reply of it: learn nothing.
    const resets = outcomes.some((o) => o.made.wellFormed && (o.made.opcode === Opcode.INIT || o.made.opcode === Opcode.DESTROY));
    for (const o of outcomes) {
      const sent = o.made.bytes.length >= 8 ? o.made.bytes.readUInt32LE(4) : -1;
      const key = `${Opcode[sent] ?? 'unknown'} ${o.error === undefined ? 'dropped' : o.error === 0 ? 'ok' : 'error'}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (!resets && o.error === 0 && o.made.wellFormed) target.learn(o);
    }
    target.afterBatch?.();
    if (resets || outcomes.some((o) => o.made.opcode === Opcode.INIT || o.made.opcode === Opcode.DESTROY)) {
      target.reset();
      assert.equal((await wellFormed(target.server, Opcode.INIT, 0, initArgs())).error, 0);
    }
  }
  return seen;
}

/** The node id in an entry reply, and the handle in an open or create reply. */
function learnIds(k: Known, o: Outcome): void {
  const op = o.made.opcode;
  if ([Opcode.LOOKUP, Opcode.MKNOD, Opcode.MKDIR, Opcode.SYMLINK, Opcode.LINK, Opcode.CREATE, Opcode.TMPFILE].includes(op) && o.payload.length >= 128) {
    const { nodeid: id, attr } = parseEntry(o.payload);
    if (id !== 0 && !k.nodes.includes(id)) k.nodes.push(id);
    if (id !== 0 && (attr.mode & 0o170000) === 0o100000 && !k.files.includes(id)) k.files.push(id);
  }
  const openAt = op === Opcode.OPEN || op === Opcode.OPENDIR ? 0 : op === Opcode.CREATE || op === Opcode.TMPFILE ? 128 : -1;
  if (openAt >= 0 && o.payload.length >= openAt + 16) k.handles.push(o.payload.readBigUInt64LE(openAt));
}

/** A target that only learns the node ids and handles it is given (forgotten at a reset). */
function idTarget(server: FuseServer, names: string[]): Target {
  const known: Known = { nodes: [1], files: [], handles: [], names };
  return {
    server,
    known,
    learn: (o) => learnIds(known, o),
    reset() {
      known.nodes.splice(1);
      known.files.length = 0;
      known.handles.length = 0;
    },
  };
}

function summary(seen: Map<string, number>): string {
  return [...seen].sort().map(([k, n]) => `${k}: ${n}`).join(', ');
}

describe('FUSE request fuzzing', () => {
  test('the image filesystem: hostile requests get errors, READs exact bytes, the tree stays whole', async (t) => {
    await withTempDir('damselfly-fuse-fuzz-', async (work) => {
      const { src, files, image } = await sourceImage(work);
      const metrics = new Metrics();
      const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
      const device = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, metrics, log: silentLogger });
      const { log, lines } = errorLog();
      const server = new FuseServer(new ImageFs({ image, device, metrics, log }), { log, metrics });

      const names = ['file.bin', 'empty', 'dir', 'sub', 'small', 'deep', 'hard', 'link', 'e000', 'e017', 'e039', 'user.k', 'security.capability'];
      const known: Known = { nodes: [1], files: [], handles: [], names };
      /** Node id -> path in the source ('' the root), for node ids whose path is certain. */
      const paths = new Map<number, string>([[1, '']]);
      let readsChecked = 0;
      const target: Target = {
        server,
        known,
        learn(o) {
          learnIds(known, o);
          const m = o.made;
          const path = paths.get(Number(m.nodeid));
          if (path === undefined) return;
          const body = m.bytes.subarray(40);
          if (m.opcode === Opcode.LOOKUP) {
            const end = body.indexOf(0);
            if (end < 0) return;
            const n = body.subarray(0, end).toString('latin1');
            if (n.includes('/') || n === '.' || n === '..' || n === '') return;
            const child = path === '' ? n : `${path}/${n}`;
            const e = parseEntry(o.payload);
            if (e.nodeid === 0) {
              assert.equal(lstatOr(join(src, child)), undefined, `a negative entry for ${child}, which exists`);
              return;
            }
            const st = lstatSync(join(src, child));
            assert.equal(e.attr.mode & 0o170000, st.mode & 0o170000, `type of ${child}`);
            if (st.isFile()) assert.equal(e.attr.size, st.size, `size of ${child}`);
            paths.set(e.nodeid, child);
          } else if (m.opcode === Opcode.READ && files.has(path)) {
            const content = files.get(path) as Buffer;
            const off = body.readBigUInt64LE(8);
            const want = off >= BigInt(content.length) ? Buffer.alloc(0) : content.subarray(Number(off), Number(off) + Math.min(body.readUInt32LE(16), m.capacity));
            assert.ok(o.payload.equals(want), `READ of ${path} at ${off}: wrong bytes`);
            readsChecked++;
          } else if (m.opcode === Opcode.READLINK && path === 'link') {
            assert.equal(o.payload.toString(), 'dir/small');
          }
        },
        reset() {
          known.nodes.splice(1);
          known.files.length = 0;
          known.handles.length = 0;
          for (const id of [...paths.keys()]) if (id !== 1) paths.delete(id);
        },
      };
      const seen = await fuzz(target, 0xf05e, 100_000);
      t.diagnostic(`${readsChecked} READs checked; ${summary(seen)}`);
      // Every path a FORGET may have dropped is looked up again below: the tree must read back whole.
      assert.ok(readsChecked > 100, `only ${readsChecked} READs were checked against the source (${summary(seen)})`);
      await walkImage(server, src, files);
      assert.deepEqual(lines, [], 'internal failures were logged');
      await device.close();
      await backend.close();
    });
  });

  test('the passthrough shared directory: hostile requests stay inside it, and it still serves', async (t) => {
    await withTempDir('damselfly-fuse-fuzz-pt-', async (work) => {
      await withShare(work, async (share, outside) => {
        const before = treeOf(outside);
        const metrics = new Metrics();
        const { log, lines } = errorLog();
        const fs: FileSystem = new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: true, posixAcl: true, securityLabel: true, log, metrics });
        const server = new FuseServer(fs, { log, metrics });
        await edgeValues(server);
        const target = idTarget(server, ['file', 'dir', 'sub', 'small', 'escape', 'rootlink', 'outside', 'user.k', 'trusted.overlay.opaque', 'security.capability', 'system.posix_acl_access']);
        const seen = await fuzz(target, 0x5a4e, 50_000);
        t.diagnostic(summary(seen));
        assert.ok((seen.get('CREATE ok') ?? 0) + (seen.get('MKDIR ok') ?? 0) > 20, `few creates succeeded (${summary(seen)})`);
        assert.deepEqual(treeOf(outside), before, 'something outside the shared directory changed');
        assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), 'outside the share\n');
        assert.deepEqual(lines, [], 'internal failures were logged');
        await writeAndReadBack(server);
      });
    });
  });

  test('the nydusd mount table over both, mounts coming and going: errors, nothing outside, still serving', async (t) => {
    await withTempDir('damselfly-fuse-fuzz-vfs-', async (work) => {
      const { image } = await sourceImage(work);
      await withShare(work, async (share, outside) => {
        const before = treeOf(outside);
        const metrics = new Metrics();
        const { log, lines } = errorLog();
        const backend = new LocalFsBackend({ dir: join(work, 'blobs') });
        const device = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, metrics, log: silentLogger });
        const imageFs = (): FileSystem => new ImageFs({ image, device, metrics, log });
        const vfs = new Vfs();
        vfs.mount('/containers', new PassthroughFs({ root: share, xattr: true, cache: 'auto', announceSubmounts: true, log, metrics }));
        vfs.mount('/rafs/abc/lowerdir', imageFs());
        const server = new FuseServer(vfs, { log, metrics });
        let batches = 0;
        const target: Target = {
          ...idTarget(server, ['containers', 'rafs', 'abc', 'def', 'lowerdir', 'file', 'dir', 'sub', 'small', 'escape', 'file.bin', 'link', 'hard', 'user.k']),
          // Now and then an image goes, or comes, as the nydusd API's mount and umount do it.
          afterBatch() {
            if (++batches % 200 !== 0) return;
            const at = batches % 400 === 0 ? '/rafs/abc/lowerdir' : '/rafs/def/lowerdir';
            if (vfs.mounts().some((m) => m.path === at)) vfs.umount(at);
            else vfs.mount(at, imageFs());
          },
        };
        const seen = await fuzz(target, 0x7f5, 30_000);
        t.diagnostic(summary(seen));
        assert.deepEqual(treeOf(outside), before, 'something outside the shared directory changed');
        assert.deepEqual(lines, [], 'internal failures were logged');
        assert.equal((await wellFormed(server, Opcode.INIT, 0, initArgs())).error, 0);
        const c = await wellFormed(server, Opcode.LOOKUP, 1, cstr('containers'));
        assert.equal(c.error, 0, 'the shared directory is still there');
        const created = await wellFormed(server, Opcode.CREATE, parseEntry(c.payload).nodeid, Buffer.concat([u32Args(2, 0o100644, 0, 0), cstr('after-fuzz')]));
        assert.equal(created.error, 0, 'and creates');
        await device.close();
        await backend.close();
      });
    });
  });
});

/** The image's source tree, what each file holds, and the image built from it in `work`. */
async function sourceImage(work: string): Promise<{ src: string; files: Map<string, Buffer>; image: ReturnType<typeof openBootstrap> }> {
  // The source tree, and what each path holds.
  const src = join(work, 'src');
  const files = new Map<string, Buffer>();
  const put = (p: string, b: Buffer): void => {
    writeFileSync(join(src, p), b);
    files.set(p, b);
  };
  mkdirSync(join(src, 'dir', 'sub'), { recursive: true });
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 11)) & 0xff;
  put('file.bin', big);
  put('empty', Buffer.alloc(0));
  put('dir/small', Buffer.from('small file\n'));
  put('dir/sub/deep', Buffer.alloc(70_000, 0x42));
  for (let i = 0; i < 40; i++) put(`dir/e${String(i).padStart(3, '0')}`, Buffer.from(`entry ${i}\n`));
  linkSync(join(src, 'dir', 'small'), join(src, 'hard'));
  files.set('hard', files.get('dir/small') as Buffer);
  symlinkSync('dir/small', join(src, 'link'));
  native.lsetxattr(join(src, 'file.bin'), 'user.k', Buffer.from('value'));
  const r = await build({ sources: [src], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
  const image = openBootstrap(r.bootstrap);
  return { src, files, image };
}

/**
 * Runs `body` with a shared directory and a sibling outside it, on a private tmpfs of their own
 * (nodev, 64 MiB): no request can open a device or fill a disk.
 */
async function withShare(work: string, body: (share: string, outside: string) => Promise<void>): Promise<void> {
  const mnt = join(work, 'tmpfs');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,nodev,nosuid,mode=755', 'damselfly-fuzz', mnt]);
  try {
    const share = join(mnt, 'share');
    const outside = join(mnt, 'outside');
    mkdirSync(join(share, 'dir', 'sub'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), 'outside the share\n');
    writeFileSync(join(share, 'file'), Buffer.alloc(100_000, 0x61));
    writeFileSync(join(share, 'dir', 'small'), 'small\n');
    symlinkSync('../outside/secret', join(share, 'escape'));
    symlinkSync('/', join(share, 'rootlink'));
    await body(share, outside);
  } finally {
    execFileSync('umount', ['-l', mnt]);
  }
}

function lstatOr(path: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** A fresh session over the image: every file of the source looked up, opened and read whole. */
async function walkImage(server: FuseServer, src: string, files: Map<string, Buffer>): Promise<void> {
  const call = (op: Opcode, node: number, a?: Buffer): Promise<{ error: number; payload: Buffer }> => wellFormed(server, op, node, a);
  assert.equal((await call(Opcode.INIT, 0, initArgs())).error, 0);
  for (const [path, content] of files) {
    let node = 1;
    for (const part of path.split('/')) {
      const e = await call(Opcode.LOOKUP, node, cstr(part));
      assert.equal(e.error, 0, `lookup ${path}`);
      node = parseEntry(e.payload).nodeid;
    }
    const got: Buffer[] = [];
    for (let off = 0; ; ) {
      const r = await call(Opcode.READ, node, readArgs(0n, off, 65536));
      assert.equal(r.error, 0, `read ${path} at ${off}`);
      if (r.payload.length === 0) break;
      got.push(r.payload);
      off += r.payload.length;
    }
    assert.ok(Buffer.concat(got).equals(content), `${path} read back wrong`);
  }
  const dir = await call(Opcode.READDIR, 1, readArgs(0n, 0, 65536));
  assert.deepEqual(parseDirents(dir.payload, false).map((d) => d.name).filter((n) => n !== '.' && n !== '..').sort(), readdirSync(src).sort());
}

/**
 * What the fuzz first found: u64 arguments past what a number holds exactly are the peer's error
 * (EINVAL, not EIO) — but for offsets to read at, which are past the end of any file (an empty
 * READ) — and a time past it is held to it (the kernel clamps it further, as it would
 * the whole value), not refused.
 */
async function edgeValues(server: FuseServer): Promise<void> {
  assert.equal((await wellFormed(server, Opcode.INIT, 0, initArgs())).error, 0);
  const created = await wellFormed(server, Opcode.CREATE, 1, Buffer.concat([u32Args(2 /* O_RDWR */, 0o100644, 0, 0), cstr('edges')]));
  assert.equal(created.error, 0);
  const node = parseEntry(created.payload).nodeid;
  const handle = created.payload.readBigUInt64LE(128);
  const far = 2 ** 60;
  const read = readArgs(handle, 0, 4096);
  read.writeBigUInt64LE(BigInt(far), 8);
  // A read offset past any file's end reads nothing, as the host's pread there (and virtiofsd).
  const farRead = await wellFormed(server, Opcode.READ, node, read);
  assert.deepEqual([farRead.error, farRead.payload.length], [0, 0], 'READ at 2^60');
  assert.equal((await wellFormed(server, Opcode.LINK, 1, fields(['u64', BigInt(far)], ['bytes', cstr('l')]))).error, -constants.errno.EINVAL, 'LINK of node 2^60');
  const times = Buffer.alloc(88);
  times.writeUInt32LE(SetattrValid.ATIME | SetattrValid.MTIME, 0);
  times.writeBigUInt64LE(2n ** 62n, 32);
  times.writeBigUInt64LE(2n ** 62n, 40);
  const set = await wellFormed(server, Opcode.SETATTR, node, times);
  assert.equal(set.error, 0, 'SETATTR to 2^62 seconds');
  assert.ok(parseAttr(set.payload, 16).mtime >= 2 ** 33, `mtime ${parseAttr(set.payload, 16).mtime}: clamped by the kernel at most`);
  assert.equal((await wellFormed(server, Opcode.UNLINK, 1, cstr('edges'))).error, 0);
}

/** A fresh session on the share creates a file, writes it, reads it back and removes it. */
async function writeAndReadBack(server: FuseServer): Promise<void> {
  const call = (op: Opcode, node: number, a?: Buffer): Promise<{ error: number; payload: Buffer }> => wellFormed(server, op, node, a);
  assert.equal((await call(Opcode.INIT, 0, initArgs())).error, 0);
  const created = await call(Opcode.CREATE, 1, Buffer.concat([u32Args(2 /* O_RDWR */, 0o100644, 0, 0), cstr('after-fuzz')]));
  assert.equal(created.error, 0, 'CREATE after the fuzz');
  const node = parseEntry(created.payload).nodeid;
  const handle = created.payload.readBigUInt64LE(128);
  const data = Buffer.from('still serving\n');
  const w = Buffer.alloc(40);
  w.writeBigUInt64LE(handle, 0);
  w.writeUInt32LE(data.length, 16);
  assert.equal((await call(Opcode.WRITE, node, Buffer.concat([w, data]))).error, 0);
  const back = await call(Opcode.READ, node, readArgs(handle, 0, 4096));
  assert.ok(back.payload.equals(data), 'read back what was written');
  const attr = await call(Opcode.GETATTR, node, Buffer.alloc(16));
  assert.equal(parseAttr(attr.payload, 16).size, data.length);
  assert.equal((await call(Opcode.UNLINK, 1, cstr('after-fuzz'))).error, 0);
}
