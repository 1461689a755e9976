/**
 * Seeded fuzzing of `damselfly virtiofs` with hostile vhost-user message streams, as a broken or
 * malicious VMM would send them: every request code (and unknown ones) with payloads built from
 * the message layouts and boundary values — ring indexes and sizes out of range, ring addresses
 * inside, across and outside guest memory, memory tables with too many, overlapping, empty or
 * oversized regions and files shorter than their regions, missing, extra and wrong kinds of fds —
 * with lying payload sizes and flags now and then, and kicks on whatever rings there are. Half the
 * sessions first set the device up properly and post FUSE requests, so the stream meets live rings.
 *
 * Each session is one daemon: a vhost-user backend serves one frontend and exits when it goes.
 * Invariants: the daemon never dies of a signal, never exits with an error or an uncaught
 * exception, and after the frontend closes the socket it exits cleanly within a bound (no hang).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Opcode } from '../../src/fuse/abi.js';
import { native } from '../../src/native/index.js';
import { Request } from '../../src/transport/vhost-user/protocol.js';
import { damselflyOk, within } from '../helpers/env.js';
import { cstr, initArgs, request } from '../helpers/fuse-client.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { DESC_NEXT, DESC_WRITE, type Ring, TestFrontend, startVirtiofsDaemon } from '../helpers/vhost-frontend.js';

const SESSIONS = 32;
const MESSAGES = 400;
/** After the frontend hangs up, the daemon must be gone within this. */
const EXIT_LIMIT_MS = 10_000;
/** Where the test frontend maps guest memory (its `uaddr`). */
const UADDR = 0x7f00_0000_0000n;
const MEM = 64 << 20;

const U32_EDGES = [0, 1, 2, 3, 7, 8, 255, 256, 1024, 1025, 32768, 65535, 65536, 0x7fff_ffff, 0xffff_ffff];
const U64_EDGES = [0n, 1n, 0xfffn, 0x1000n, 0xffff_ffffn, 2n ** 46n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 0x1000n];
const KNOWN = Object.values(Request).filter((v): v is number => typeof v === 'number');

function u32(rng: Rng): number {
  return rng.next() < 0.7 ? rng.pick(U32_EDGES) : rng.int(2 ** 32);
}

function u64(rng: Rng): bigint {
  return rng.next() < 0.7 ? rng.pick(U64_EDGES) : BigInt(rng.int(2 ** 31)) * BigInt(rng.int(2 ** 31));
}

/** A user address: mostly inside the frontend's guest memory (aligned or not), else anywhere. */
function uaddr(rng: Rng): bigint {
  const r = rng.next();
  if (r < 0.5) return UADDR + BigInt(rng.int(MEM / 64) * 64);
  if (r < 0.7) return UADDR + BigInt(MEM - rng.int(4096));
  if (r < 0.8) return UADDR + BigInt(rng.int(MEM));
  return u64(rng);
}

function le(...parts: Array<[4, number] | [8, bigint]>): Buffer {
  const b = Buffer.alloc(parts.reduce((n, [w]) => n + w, 0));
  let at = 0;
  for (const [w, v] of parts) {
    if (w === 4) b.writeUInt32LE(v >>> 0, at);
    else b.writeBigUInt64LE(BigInt.asUintN(64, v), at);
    at += w;
  }
  return b;
}

const ringIndex = (rng: Rng): number => (rng.next() < 0.8 ? rng.int(3) : u32(rng));

/** A memory region (gpa, size, uaddr, offset) with its file, often but not always consistent. */
function region(rng: Rng, fds: number[]): Buffer {
  const size = rng.next() < 0.7 ? rng.pick([4096, 1 << 20, 8 << 20]) : Number(u64(rng) & 0xffff_ffffn);
  const fileSize = rng.next() < 0.8 ? size : rng.pick([0, 4096, Math.floor(size / 2)]);
  const r = rng.next();
  fds.push(r < 0.85 ? native.memfd('fuzz-region', Math.min(fileSize, 16 << 20)) : r < 0.95 ? native.eventfd(0) : -1);
  const gpa = rng.next() < 0.6 ? BigInt(rng.int(8)) << 26n : u64(rng);
  return le([8, gpa], [8, BigInt(size)], [8, rng.next() < 0.8 ? 0x7e00_0000_0000n + (gpa & 0xffff_ffffn) : u64(rng)], [8, rng.next() < 0.8 ? 0n : u64(rng)]);
}

/** One message: request code, payload and the fds that go with it (-1: leave that fd out). */
function message(rng: Rng): { code: number; payload: Buffer; fds: number[] } {
  const code = rng.next() < 0.95 ? rng.pick(KNOWN) : rng.pick([0, 41, 99, 1000, 0xffff_ffff]);
  const fds: number[] = [];
  let payload: Buffer;
  switch (code) {
    case Request.SET_FEATURES:
    case Request.SET_PROTOCOL_FEATURES:
    case Request.SET_LOG_BASE:
    case Request.SET_STATUS:
      payload = le([8, u64(rng)]);
      break;
    case Request.SET_VRING_NUM:
    case Request.SET_VRING_BASE:
    case Request.GET_VRING_BASE:
    case Request.SET_VRING_ENABLE:
    case Request.VRING_KICK:
      payload = le([4, ringIndex(rng)], [4, rng.next() < 0.5 ? rng.pick([0, 1, 2, 256, 1024]) : u32(rng)]);
      break;
    case Request.SET_VRING_ADDR:
      payload = le([4, ringIndex(rng)], [4, rng.next() < 0.9 ? 0 : u32(rng)], [8, uaddr(rng)], [8, uaddr(rng)], [8, uaddr(rng)], [8, u64(rng)]);
      break;
    case Request.SET_VRING_KICK:
    case Request.SET_VRING_CALL:
    case Request.SET_VRING_ERR: {
      const noFd = rng.next() < 0.15;
      payload = le([8, BigInt(ringIndex(rng)) | (noFd ? 0x100n : 0n)]);
      const r = rng.next();
      if (r < 0.75) fds.push(native.eventfd(0));
      else if (r < 0.85) fds.push(native.memfd('fuzz-not-an-eventfd', 4096));
      else if (r < 0.9) fds.push(native.eventfd(0), native.eventfd(0));
      break;
    }
    case Request.SET_MEM_TABLE: {
      const n = rng.pick([0, 1, 1, 2, 3, 9, 0xffff_ffff]);
      const regions = Array.from({ length: Math.min(n, 4) }, () => region(rng, fds));
      payload = Buffer.concat([le([4, n], [4, 0]), ...regions]);
      break;
    }
    case Request.ADD_MEM_REG:
    case Request.REM_MEM_REG:
      payload = Buffer.concat([le([8, 0n]), region(rng, fds)]);
      if (code === Request.REM_MEM_REG && rng.next() < 0.8) fds.length = 0;
      break;
    case Request.GET_CONFIG:
    case Request.SET_CONFIG:
      payload = Buffer.concat([le([4, u32(rng)], [4, rng.pick([0, 4, 36, 256, u32(rng)])], [4, u32(rng)]), Buffer.alloc(rng.pick([0, 36, 256]))]);
      break;
    case Request.SET_BACKEND_REQ_FD:
    case Request.SET_LOG_FD:
    case Request.SET_INFLIGHT_FD:
    case Request.GET_INFLIGHT_FD:
      payload = Buffer.alloc(rng.pick([0, 8, 24, 32]));
      if (rng.next() < 0.7) fds.push(native.memfd('fuzz-fd', 4096));
      break;
    default:
      payload = rng.next() < 0.8 ? Buffer.alloc(0) : Buffer.alloc(rng.pick([1, 8, 40, 4096]), rng.int(256));
  }
  if (rng.next() < 0.05) payload = payload.subarray(0, rng.int(payload.length + 1));
  return { code, payload, fds };
}

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-vhost-fuzz-'));
  await mkdir(join(work, 'src'));
  await writeFile(join(work, 'src', 'hello'), 'hello guest\n');
  await writeFile(join(work, 'src', 'data'), Buffer.alloc(200_000, 0x33));
  await damselflyOk(['build', '--chunk-size', '64K', '--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), join(work, 'src')]);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test(`hostile vhost-user message streams (${SESSIONS} sessions of ${MESSAGES}): no crash, no hang, a clean exit`, async (t) => {
  const outcomes = new Map<string, number>();
  let total = 0;
  for (let session = 0; session < SESSIONS; session++) {
    const rng = caseRng('vhost-messages', session);
    const d = await startVirtiofsDaemon(join(work, `s${session}.sock`), ['--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs')]);
    const f = TestFrontend.connect(d.socket, MEM);
    let sent = 0;
    let closedBy = 'frontend';
    // One session in four ends with a frame the backend must refuse, at a random point.
    const fatalAt = session % 4 === 3 ? rng.int(MESSAGES) : -1;
    try {
      if (session % 2 === 0) {
        await f.start({ queues: 2, size: 256, ack: rng.next() < 0.5 });
        await f.fuse(f.rings[1] as Ring, request(Opcode.INIT, 0, initArgs()).bytes, 256);
      }
      for (; sent < MESSAGES; sent++) {
        const m = message(rng);
        const flags = rng.next() < 0.8 ? 0x1 : 0x1 | 0x8;
        try {
          if (sent === fatalAt) {
            // A wrong version or a size that lies about the payload: the backend hangs up.
            if (rng.next() < 0.5) {
              f.send(m.code, m.payload, [], rng.pick([0, 0x2, 0x3, 0x10000, u32(rng) & ~0x3]));
              continue;
            }
            // A header whose size lies about the payload that follows.
            const h = le([4, m.code], [4, flags], [4, rng.pick([m.payload.length + 1, 0x1_0000, 0x1_0001, 0xffff_ffff])]);
            f.sendRaw(Buffer.concat([h, m.payload]), m.fds.filter((x) => x >= 0));
          } else {
            f.send(m.code, m.payload, m.fds.filter((x) => x >= 0), flags);
          }
        } catch {
          closedBy = 'daemon'; // the daemon dropped the connection (EPIPE, ECONNRESET)
          break;
        } finally {
          for (const fd of m.fds) if (fd >= 0) native.closeFd(fd);
        }
        for (const r of f.rings) {
          if (r === undefined || rng.next() > 0.1) continue;
          // A chain of whatever the descriptor table holds now, or a well-formed LOOKUP.
          if (rng.next() < 0.5) {
            const inp = f.alloc(64);
            const out = f.alloc(256);
            f.view(inp, 64).set(request(Opcode.LOOKUP, 1, cstr('hello')).bytes.subarray(0, 64));
            const head = r.nextDesc;
            f.writeDesc(r, head, { addr: inp, len: 46, flags: DESC_NEXT, next: (head + 1) % r.size });
            f.writeDesc(r, (head + 1) % r.size, { addr: out, len: 256, flags: DESC_WRITE, next: 0 });
            r.nextDesc = (head + 2) % r.size;
            f.publish(r, head);
          } else {
            f.publish(r, rng.int(r.size));
          }
        }
        // Drain replies (NEED_REPLY, GET_*), so that the socket never fills.
        if (!f.discardReplies()) {
          closedBy = 'daemon';
          break;
        }
        if (sent % 25 === 0) await new Promise((r) => setTimeout(r, 2));
      }
      // A backend still connected still answers, after whatever replies it owed (unless a size
      // that lied has it waiting for the rest of a message, as any stream peer would).
      if (closedBy === 'frontend' && fatalAt < 0) {
        f.send(Request.GET_QUEUE_NUM);
        const queues = await f.reply(Request.GET_QUEUE_NUM, 5000, true).catch((e: Error) => {
          throw new Error(`session ${session}: ${e.message}\n${d.stderr()}`);
        });
        assert.ok(queues.readBigUInt64LE(0) >= 2n, `session ${session}: GET_QUEUE_NUM`);
      }
    } finally {
      f.close();
      for (const r of f.rings) if (r !== undefined) for (const fd of [r.kick, r.call]) native.closeFd(fd);
    }
    const [code, signal] = await within(EXIT_LIMIT_MS, () => `session ${session}: the daemon did not exit after the frontend left:\n${d.stderr()}`, d.exit);
    assert.equal(signal, null, `session ${session}: killed by ${signal}\n${d.stderr()}`);
    assert.equal(code, 0, `session ${session}: exit ${code}\n${d.stderr()}`);
    assert.doesNotMatch(d.stderr(), /TypeError|ReferenceError|Segmentation|Aborted|Uncaught|at .*\.js:\d+/, `session ${session}`);
    outcomes.set(`${closedBy} hung up`, (outcomes.get(`${closedBy} hung up`) ?? 0) + 1);
    total += sent;
  }
  t.diagnostic(`${total} messages; ${[...outcomes].map(([k, n]) => `${k}: ${n}`).join(', ')}`);
});
