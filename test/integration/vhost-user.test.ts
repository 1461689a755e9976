/**
 * `damselfly virtiofs` driven by an in-process vhost-user frontend (memfd guest memory, eventfds):
 * the normal path (QEMU's and cloud-hypervisor's message orders, READ straight into guest buffers
 * split across descriptors, indirect tables, memory added while rings run, ring stop and restart)
 * and hostile cases (addresses outside guest memory, descriptor loops, oversized chains, lying
 * FUSE lengths, missing and extra fds, a corrupt avail index, a socket closed mid-message, a
 * running ring changed wrongly, a flood of messages, a call fd that takes no signal). The
 * backend never crashes, keeps serving well-formed requests, and exits cleanly on disconnect.
 */
import assert from 'node:assert/strict';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Opcode } from '../../src/fuse/abi.js';
import { native } from '../../src/native/index.js';
import { Request } from '../../src/transport/vhost-user/protocol.js';
import { damselflyOk } from '../helpers/env.js';
import { cstr, initArgs, parseAttr, parseEntry, parseReply, readArgs, request } from '../helpers/fuse-client.js';
import { prng } from '../helpers/tree.js';
import { DESC_INDIRECT, DESC_NEXT, DESC_WRITE, type Desc, type Ring, TestFrontend, UADDR_BASE, type VirtiofsDaemon, startVirtiofsDaemon } from '../helpers/vhost-frontend.js';

function startDaemon(work: string, name: string): Promise<VirtiofsDaemon> {
  return startVirtiofsDaemon(join(work, `${name}.sock`), ['--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs')]);
}

describe('vhost-user backend with an in-process frontend', () => {
  let work: string;
  const data = prng(5, 300_000);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-vhost-'));
    await mkdir(join(work, 'src'));
    await writeFile(join(work, 'src', 'data.bin'), data);
    await writeFile(join(work, 'src', 'hello'), 'hello guest\n');
    await damselflyOk(['build', '--chunk-size', '64K', '--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), join(work, 'src')]);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function init(f: TestFrontend): Promise<void> {
    const r = parseReply(await f.fuse(f.rings[1] as Ring, request(Opcode.INIT, 0, initArgs()).bytes, 256));
    assert.equal(r.error, 0);
  }

  async function lookupOk(f: TestFrontend, name: string): Promise<number> {
    const r = parseReply(await f.fuse(f.rings[1] as Ring, request(Opcode.LOOKUP, 1, cstr(name)).bytes, 256));
    assert.equal(r.error, 0, `lookup ${name}`);
    assert.equal(r.len, 16 + 128);
    return parseEntry(r.payload).nodeid;
  }

  test('serves FUSE over the rings, READ into split guest buffers, memory added while running', async () => {
    const d = await startDaemon(work, 'normal');
    const f = TestFrontend.connect(d.socket);
    try {
      await f.start({ queues: 2, size: 1024 });
      await init(f);
      const attr = parseReply(await f.fuse(f.rings[1] as Ring, request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes, 256));
      assert.equal(attr.len, 16 + 104, 'out.len is exact');
      assert.equal(parseAttr(attr.payload, 16).ino, 1);
      const node = await lookupOk(f, 'data.bin');
      // A 128 KiB READ returned into 33 writable descriptors, as a Linux guest lays it out.
      const r = parseReply(await f.fuse(f.rings[1] as Ring, request(Opcode.READ, node, readArgs(0n, 70_000, 131072)).bytes, 16 + 131072, 33));
      assert.equal(r.error, 0);
      assert.ok(r.payload.equals(data.subarray(70_000, 70_000 + 131072)));
      // A reply into 100 pieces apart from each other (more than the backend's first pop slots
      // hold: they grow): each piece gets its part.
      const parts = 100;
      const rr = f.rings[1] as Ring;
      const readReq = request(Opcode.READ, node, readArgs(0n, 5_000, parts * 512)).bytes;
      const readAt = f.alloc(readReq.length);
      f.view(readAt, readReq.length).set(readReq);
      const hdrAt = f.alloc(16);
      const partAt = Array.from({ length: parts }, () => f.alloc(1024));
      const first = rr.nextDesc;
      const idx = (k: number): number => (first + k) % rr.size;
      f.writeDesc(rr, idx(0), { addr: readAt, len: readReq.length, flags: DESC_NEXT, next: idx(1) });
      f.writeDesc(rr, idx(1), { addr: hdrAt, len: 16, flags: DESC_WRITE | DESC_NEXT, next: idx(2) });
      partAt.forEach((at, k) => f.writeDesc(rr, idx(2 + k), { addr: at, len: 512, flags: DESC_WRITE | (k < parts - 1 ? DESC_NEXT : 0), next: idx(3 + k) }));
      rr.nextDesc = idx(2 + parts);
      f.publish(rr, first);
      assert.deepEqual(await f.used(rr), { id: first, len: 16 + parts * 512 });
      assert.equal(parseReply(Buffer.from(f.view(hdrAt, 16))).error, 0);
      assert.ok(Buffer.concat(partAt.map((at) => Buffer.from(f.view(at, 512)))).equals(data.subarray(5_000, 5_000 + parts * 512)));
      // The hiprio queue: FORGET gets its descriptor back with no reply.
      assert.deepEqual(await f.forget(node, 1), { id: 0, len: 0 });
      // Memory added while the rings run (Kata's hot-plug): a second region, then a request in it.
      const extra = native.memfd('hotplug', 1 << 20);
      const reg = Buffer.alloc(40);
      reg.writeBigUInt64LE(0x1_0000_0000n, 8);
      reg.writeBigUInt64LE(1n << 20n, 16);
      reg.writeBigUInt64LE(0x7e00_0000_0000n, 24);
      assert.equal((await f.call(Request.ADD_MEM_REG, reg, [extra], 0x1 | 0x8)).readBigUInt64LE(0), 0n);
      const t = new native.MemoryTable();
      t.setTable([{ gpa: 0x1_0000_0000, size: 1 << 20, uaddr: 0x7e00_0000_0000n, offset: 0 }], [extra]);
      const ring = f.rings[1] as Ring as Parameters<TestFrontend['writeDesc']>[0];
      const req = request(Opcode.LOOKUP, 1, cstr('hello')).bytes;
      (t.gpaView(0x1_0000_0000, req.length)[0] as Uint8Array).set(req);
      const head = ring.nextDesc;
      f.writeDesc(ring, head, { addr: 0x1_0000_0000, len: req.length, flags: DESC_NEXT, next: (head + 1) % ring.size });
      f.writeDesc(ring, (head + 1) % ring.size, { addr: 0x1_0000_1000, len: 256, flags: DESC_WRITE, next: 0 });
      ring.nextDesc = (head + 2) % ring.size;
      f.publish(ring, head);
      const u = await f.used(ring);
      assert.equal(u.len, 16 + 128);
      assert.equal(Buffer.from(t.gpaView(0x1_0000_1004, 4)[0] as Uint8Array).readInt32LE(0), 0);
      native.closeFd(extra);
      // An indirect table holding the whole chain.
      const tbl = f.alloc(32);
      const inAt = f.alloc(64);
      const outAt = f.alloc(256);
      const getattr = request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes;
      f.view(inAt, getattr.length).set(getattr);
      f.writeTable(tbl, [
        { addr: inAt, len: getattr.length, flags: DESC_NEXT, next: 1 },
        { addr: outAt, len: 256, flags: DESC_WRITE, next: 0 },
      ]);
      const h2 = ring.nextDesc;
      f.writeDesc(ring, h2, { addr: tbl, len: 32, flags: DESC_INDIRECT, next: 0 });
      ring.nextDesc = (h2 + 1) % ring.size;
      f.publish(ring, h2);
      assert.equal((await f.used(ring)).len, 16 + 104);
      // A new kick fd for the running ring, without GET_VRING_BASE first: the ring goes on from
      // where it is (it used to go back to its SET_VRING_BASE and answer every request again).
      const kick = native.eventfd(0);
      f.send(Request.SET_VRING_KICK, TestFrontend.u64(1), [kick]);
      native.closeFd(ring.kick);
      ring.kick = kick;
      await lookupOk(f, 'hello');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(f.view(ring.used + 2, 2).readUInt16LE(0), ring.nextAvail, 'the used index is the avail index: nothing answered twice');
      // Stop and restart the request ring (a guest reboot): GET_VRING_BASE returns next_avail.
      const base = await f.call(Request.GET_VRING_BASE, TestFrontend.state(1, 0));
      assert.equal(base.readUInt32LE(4), ring.nextAvail);
      f.startRing(1, 1024);
      await init(f); // a second INIT is a new session
      await lookupOk(f, 'hello');
    } finally {
      f.close();
    }
    const [code] = await d.exit;
    assert.equal(code, 0, 'exits cleanly when the frontend disconnects');
  });

  test('hostile chains and messages get errors; the backend keeps serving', async () => {
    const d = await startDaemon(work, 'hostile');
    const f = TestFrontend.connect(d.socket);
    const ring = (): Parameters<TestFrontend['writeDesc']>[0] => f.rings[1] as Ring;
    const bad = async (descs: Desc[]): Promise<void> => {
      const r = ring();
      const head = r.nextDesc;
      descs.forEach((desc, k) => f.writeDesc(r, (head + k) % r.size, desc));
      r.nextDesc = (head + descs.length) % r.size;
      f.publish(r, head);
      const u = await f.used(r);
      assert.deepEqual(u, { id: head, len: 0 }, 'a bad chain is returned unused');
      await lookupOk(f, 'hello'); // and the next good request still works
    };
    try {
      await f.start({ queues: 2, size: 256 });
      await init(f);
      const out = f.alloc(256);
      const inp = f.alloc(64);
      f.view(inp, 64).set(request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes);
      const h = (): number => ring().nextDesc;
      // Addresses outside guest memory, and wrapping around 2^64.
      await bad([{ addr: 0x4000_0000_0000n, len: 56, flags: DESC_NEXT, next: (h() + 1) % 256 }, { addr: out, len: 256, flags: DESC_WRITE, next: 0 }]);
      await bad([{ addr: inp, len: 56, flags: DESC_NEXT, next: (h() + 1) % 256 }, { addr: 0xffff_ffff_ffff_ff00n, len: 4096, flags: DESC_WRITE, next: 0 }]);
      await bad([{ addr: inp, len: 56, flags: DESC_NEXT, next: (h() + 1) % 256 }, { addr: f.memSize - 16, len: 256, flags: DESC_WRITE, next: 0 }]);
      // A descriptor loop, a next index beyond the table, readable after writable.
      await bad([{ addr: inp, len: 56, flags: DESC_NEXT, next: (h() + 1) % 256 }, { addr: out, len: 256, flags: DESC_WRITE | DESC_NEXT, next: h() }]);
      await bad([{ addr: inp, len: 56, flags: DESC_NEXT, next: 999 }]);
      await bad([{ addr: out, len: 256, flags: DESC_WRITE | DESC_NEXT, next: (h() + 1) % 256 }, { addr: inp, len: 56, flags: 0, next: 0 }]);
      // Oversized and malformed indirect tables.
      await bad([{ addr: f.alloc(16), len: 16 * 70_000, flags: DESC_INDIRECT, next: 0 }]);
      await bad([{ addr: f.alloc(16), len: 17, flags: DESC_INDIRECT, next: 0 }]);
      const loopTbl = f.alloc(32);
      f.writeTable(loopTbl, [
        { addr: inp, len: 56, flags: DESC_NEXT, next: 1 },
        { addr: out, len: 256, flags: DESC_WRITE | DESC_NEXT, next: 0 }, // back to the first
      ]);
      await bad([{ addr: loopTbl, len: 32, flags: DESC_INDIRECT, next: 0 }]);
      // A guest can send such chains in a loop: one warning line (a minute), not one per chain.
      assert.equal(d.stderr().split('\n').filter((l) => l.includes('dropping a malformed descriptor chain')).length, 1, d.stderr());
      assert.match(d.stderr(), /descriptor outside guest memory.*dropping a malformed descriptor chain/, 'the warning says why');
      // A FUSE header that claims more bytes than the chain holds: EINVAL, with the right unique.
      const lying = request(Opcode.GETATTR, 1, Buffer.alloc(16), { len: 5000 });
      const lr = parseReply(await f.fuse(ring(), lying.bytes, 256));
      assert.equal(lr.error, -22);
      assert.equal(lr.unique, lying.unique);
      // A reply buffer too small for the reply: an error header, never an overflow.
      const tiny = parseReply(await f.fuse(ring(), request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes, 20));
      assert.equal(tiny.error, -34);
      // Messages with missing fds (acked as failures) and extra fds (closed), then still serving.
      assert.equal((await f.call(Request.SET_VRING_KICK, TestFrontend.u64(1), [], 0x1 | 0x8)).readBigUInt64LE(0), 1n);
      const ev = native.eventfd(0);
      assert.equal((await f.call(Request.SET_FEATURES, TestFrontend.u64(0x1_7000_0000n), [ev], 0x1 | 0x8)).readBigUInt64LE(0), 0n);
      native.closeFd(ev);
      assert.equal((await f.call(Request.ADD_MEM_REG, Buffer.alloc(40), [], 0x1 | 0x8)).readBigUInt64LE(0), 1n);
      assert.equal((await f.call(Request.SET_VRING_NUM, TestFrontend.state(20, 256), [], 0x1 | 0x8)).readBigUInt64LE(0), 1n, 'no such ring');
      assert.equal((await f.call(Request.SET_VRING_NUM, TestFrontend.state(1, 70_000), [], 0x1 | 0x8)).readBigUInt64LE(0), 1n, 'ring too large');
      assert.equal((await f.call(99 as Request, Buffer.alloc(8), [], 0x1 | 0x8)).readBigUInt64LE(0), 1n, 'unknown request');
      // The kick fd of ring 1 was replaced by nothing: restart it properly and serve again.
      f.startRing(1, 256);
      await lookupOk(f, 'hello');
      // A region larger than its file (a VMM's mistake): refused, for touching the part past the
      // file's end would kill the daemon with SIGBUS; a chain into it is outside guest memory.
      const short = native.memfd('short', 4096);
      const past = Buffer.alloc(40); // padding, then gpa, size, uaddr, offset
      const pastGpa = BigInt(f.memSize) + 0x10_0000n;
      past.writeBigUInt64LE(pastGpa, 8);
      past.writeBigUInt64LE(0x10_0000n, 16);
      past.writeBigUInt64LE(0x7e00_0000_0000n, 24);
      assert.equal((await f.call(Request.ADD_MEM_REG, past, [short], 0x1 | 0x8)).readBigUInt64LE(0), 1n, 'a region past the end of its file');
      native.closeFd(short);
      // The daemon logs before it answers, but its stderr reaches this process by a pipe of its own.
      const pastEnd = /lies past the end of its 4096-byte file/;
      for (let i = 0; i < 100 && !pastEnd.test(d.stderr()); i++) await new Promise((r) => setTimeout(r, 20));
      assert.match(d.stderr(), pastEnd);
      await bad([{ addr: inp, len: 56, flags: DESC_NEXT, next: (h() + 1) % 256 }, { addr: pastGpa + 8192n, len: 256, flags: DESC_WRITE, next: 0 }]);
      // A corrupt avail index (moved by more than the ring size): that ring stops, the daemon lives.
      f.setAvailIdx(ring(), ring().nextAvail + 5000);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(d.proc.exitCode, null, 'still running');
      assert.match(d.stderr(), /avail index moved by more than the queue size.*the ring is corrupt/);
      assert.equal((await f.call(Request.GET_QUEUE_NUM)).readBigUInt64LE(0) > 1n, true);
      // The memory under a running ring removed (REM_MEM_REG of the only region), then a kick on
      // the hiprio ring: it waits for its region to come back, and the daemon lives (a C++
      // exception thrown through the event loop aborted it before; the region coming back is in
      // test/unit/transport/vhost-inflight.test.ts).
      const region = Buffer.alloc(40); // padding, then gpa 0, size, uaddr, offset
      region.writeBigUInt64LE(BigInt(f.memSize), 16);
      region.writeBigUInt64LE(0x7f00_0000_0000n, 24);
      f.send(Request.REM_MEM_REG, region);
      const hiprio = f.rings[0] as Ring;
      f.setAvailIdx(hiprio, hiprio.nextAvail + 1);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(d.proc.exitCode, null, 'still running');
      assert.match(d.stderr(), /the ring is outside guest memory for now: waiting for its region to come back/);
      assert.equal((await f.call(Request.GET_QUEUE_NUM)).readBigUInt64LE(0) > 1n, true);
      // Finally a frame cut short: a header announcing 40 payload bytes, then the socket closes.
      const h40 = Buffer.alloc(12);
      h40.writeUInt32LE(Request.SET_VRING_ADDR, 0);
      h40.writeUInt32LE(1, 4);
      h40.writeUInt32LE(40, 8);
      f.sendRaw(Buffer.concat([h40, Buffer.alloc(10)]));
    } finally {
      f.close();
    }
    const [code, signal] = await d.exit;
    assert.equal(signal, null, d.stderr());
    assert.equal(code, 0, d.stderr());
    assert.doesNotMatch(d.stderr(), /TypeError|RangeError|Segmentation|Aborted/);
  });

  test('a frontend changing a running ring wrongly is refused and the ring runs on as it was; a flood of messages waits its turn; a call fd that takes no signal blocks nothing', async () => {
    const d = await startDaemon(work, 'reconfigure');
    const f = TestFrontend.connect(d.socket, 2 << 20);
    const acked = async (request: Request, payload: Buffer, fds: number[] = []): Promise<bigint> => (await f.call(request, payload, fds, 0x1 | 0x8)).readBigUInt64LE(0);
    try {
      await f.start({ queues: 2, size: 256 });
      await init(f);
      const ring = f.rings[1] as Ring;
      // Where a 32768-entry ring's avail_event would be: far past this ring's areas. A refused
      // setup used to keep the new size over the old areas, and a kick wrote here.
      const sentinel = ring.used + 4 + 8 * 32768;
      f.view(sentinel, 2).writeUInt16LE(0xaaaa, 0);
      const addr = (desc: number): Buffer => {
        const a = Buffer.alloc(40);
        a.writeUInt32LE(1, 0);
        a.writeBigUInt64LE(UADDR_BASE + BigInt(desc), 8);
        a.writeBigUInt64LE(UADDR_BASE + BigInt(ring.used), 16);
        a.writeBigUInt64LE(UADDR_BASE + BigInt(ring.avail), 24);
        return a;
      };
      assert.equal(await acked(Request.SET_VRING_NUM, TestFrontend.state(1, 32768)), 1n, 'a running ring keeps its size');
      assert.equal(await acked(Request.SET_VRING_NUM, TestFrontend.state(1, 256)), 0n, 'the size it has is fine');
      assert.equal(await acked(Request.SET_VRING_ADDR, addr(ring.desc + 8)), 1n, 'misaligned');
      assert.equal(await acked(Request.SET_VRING_ADDR, addr(f.memSize - 16)), 1n, 'outside guest memory');
      f.kick(ring);
      await lookupOk(f, 'hello');
      assert.equal(f.view(sentinel, 2).readUInt16LE(0), 0xaaaa, 'nothing written past the ring');
      // A new kick fd the ring cannot take (its memory is away): refused, and the ring keeps the
      // kick fd it had (it closed that one first, and then had none).
      const region = Buffer.alloc(40);
      region.writeBigUInt64LE(BigInt(f.memSize), 16);
      region.writeBigUInt64LE(UADDR_BASE, 24);
      assert.equal(await acked(Request.REM_MEM_REG, region), 0n);
      const kick = native.eventfd(0);
      assert.equal(await acked(Request.SET_VRING_KICK, TestFrontend.u64(1), [kick]), 1n);
      assert.equal(await acked(Request.ADD_MEM_REG, region, [f.memFd]), 0n);
      await lookupOk(f, 'hello'); // kicked on the old fd
      native.closeFd(kick);
      // A flood of messages (SET_OWNER, harmless) written without pause: read as they are handled,
      // so a request after it is answered soon, not after the whole backlog (45 s after a 3 s
      // flood, when the socket was read into a queue without bound in one loop). The daemon's RSS
      // is not a measure of it: under the sanitized addon it counts ASan's quarantine.
      const owner = Buffer.alloc(12);
      owner.writeUInt32LE(Request.SET_OWNER, 0);
      owner.writeUInt32LE(1, 4);
      const burst = Buffer.concat(Array.from({ length: 4096 }, () => owner));
      const until = Date.now() + 2000;
      let sent = 0;
      let rest = Buffer.alloc(0); // what a short send left of the burst: sent first, whole messages
      while (Date.now() < until || rest.length > 0) {
        const chunk = rest.length > 0 ? rest : burst;
        const n = native.sendMsg(f.fd, chunk); // short (or 0) while the socket is full
        sent += n;
        rest = chunk.subarray(n);
        if (rest.length > 0) await new Promise((r) => setTimeout(r, 1));
      }
      assert.ok(sent > 100_000, `${sent} bytes sent`);
      assert.equal((await f.call(Request.GET_QUEUE_NUM)).readBigUInt64LE(0) > 1n, true);
      // A call fd that would block its writer (a blocking FIFO, full; an eventfd at its limit is
      // another): the daemon signals it without waiting, and goes on serving.
      const fifo = join(work, 'call.fifo');
      native.mknod(fifo, constants.S_IFIFO | 0o600, 0, 0);
      const full = openSync(fifo, 'r+'); // blocking, and a reader of its own: opens at once
      const filler = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
      try {
        for (;;) writeSync(filler, Buffer.alloc(4096));
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'EAGAIN');
      }
      closeSync(filler);
      f.send(Request.SET_VRING_CALL, TestFrontend.u64(1), [full]);
      for (const name of ['hello', 'data.bin']) {
        // used_event: the next completion is to be signalled (EVENT_IDX).
        f.view(ring.avail + 4 + 2 * ring.size, 2).writeUInt16LE(f.view(ring.used + 2, 2).readUInt16LE(0), 0);
        await lookupOk(f, name);
      }
      closeSync(full);
    } finally {
      f.close();
    }
    const [code, signal] = await d.exit;
    assert.equal(signal, null, d.stderr());
    assert.equal(code, 0, d.stderr());
  });

  test('FORGETs on the hiprio ring: kicked once, then polled while they keep coming, kicks asked for again when idle', async () => {
    const d = await startDaemon(work, 'hiprio');
    const f = TestFrontend.connect(d.socket);
    try {
      await f.start({ queues: 2, size: 256 }); // with EVENT_IDX, as QEMU and Linux use it
      await init(f);
      const hp = f.rings[0] as Ring;
      const availEvent = (): number => f.view(hp.used + 4 + 8 * hp.size, 2).readUInt16LE(0);
      let kicks = 0;
      const guestPublish = (head: number): void => {
        if (f.publishAsDriver(hp, head)) kicks++;
      };
      const forget = (i: number): void => {
        const args = Buffer.alloc(8);
        args.writeBigUInt64LE(1n, 0);
        const at = f.alloc(48);
        f.view(at, 48).set(request(Opcode.FORGET, 1000 + i, args).bytes);
        f.writeDesc(hp, i, { addr: at, len: 48, flags: 0, next: 0 });
        guestPublish(i);
      };
      // A burst, one FORGET every 0.2 ms (as `rm -r` evicts inodes): all served, few kicks.
      const burst = 60;
      for (let i = 0; i < burst; i++) {
        forget(i);
        await new Promise((r) => setTimeout(r, 0.2));
      }
      for (let i = 0; i < burst; i++) assert.deepEqual(await f.used(hp, 2000), { id: i, len: 0 }, `FORGET ${i}`);
      assert.ok(kicks < burst / 4, `${kicks} kicks for ${burst} FORGETs`);
      // Idle: the ring asks for a kick at the next FORGET again, and serves it.
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(availEvent(), hp.nextAvail, 'kicks re-enabled when the ring went idle');
      const before = kicks;
      forget(burst);
      assert.equal(kicks, before + 1);
      assert.deepEqual(await f.used(hp, 2000), { id: burst, len: 0 });
      // The request rings are not polled: a request still gets its answer at once.
      assert.equal(parseReply(await f.fuse(f.rings[1] as Ring, request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes, 256)).error, 0);
    } finally {
      f.close();
    }
    const [code] = await d.exit;
    assert.equal(code, 0, d.stderr());
  });

  test('a frontend that never completes the protocol cannot hang the backend', async () => {
    const d = await startDaemon(work, 'garbage');
    const fd = native.connectUnix(d.socket);
    // A wrong version and an absurd payload size: the connection is dropped, the daemon exits.
    native.sendMsg(fd, Buffer.from([1, 0, 0, 0, 7, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]));
    const [code] = await d.exit;
    native.closeFd(fd);
    assert.equal(code, 0);
  });
});
