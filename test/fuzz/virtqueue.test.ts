/**
 * Seeded fuzzing of the virtqueue reader (native/src/vring.cc) as a hostile guest drives it:
 * random descriptor chains — direct and through indirect tables, with addresses inside guest
 * memory, across region and ArrayBuffer-window boundaries, past its end and near 2^64, random
 * lengths, flags and next indexes, loops — taken with `popInto` into slots often too small for
 * them. Guest memory is two sparse regions, the first longer than one 1 GiB window, back to back in
 * guest-physical space, with a pattern written where descriptors point. Every pop must return a
 * defined result; a chain taken as usable must describe exactly the bytes its descriptors name
 * (a JavaScript walk of the same descriptors gives the expected bytes), its pieces inside their
 * windows; a chain too large for the slots must stay in the ring until they grow.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { POP_HEADER, PopResult, native, popSlots } from '../../src/native/index.js';
import { DESC_INDIRECT as INDIRECT, DESC_NEXT as NEXT, DESC_WRITE as WRITE, encodeDescs } from '../helpers/vhost-frontend.js';
import { seededRng } from '../helpers/rng.js';

const GIB = 1 << 30;
const MIB = 1 << 20;
/** Region A: guest-physical [0, 1 GiB + 4 MiB) (two windows); region B right after it, 4 MiB. */
const A_SIZE = GIB + 4 * MIB;
const B_SIZE = 4 * MIB;
const MEM_END = A_SIZE + B_SIZE;
const UADDR_A = 0x7000_0000_0000n;
const UADDR_B = 0x7100_0000_0000n;
const QUEUE = 64;
const DESC = 0x1000; // ring areas in region A
const AVAIL = DESC + 16 * QUEUE;
const USED = 0x4000;

/** A descriptor as this test makes them (the address always a bigint: some are past 2^53). */
interface Desc {
  addr: bigint;
  len: number;
  flags: number;
  next: number;
}

test('random descriptor chains: defined results, exact pieces, no chain lost to small slots', () => {
  const table = new native.MemoryTable();
  table.setTable(
    [
      { gpa: 0, size: A_SIZE, uaddr: UADDR_A, offset: 0 },
      { gpa: A_SIZE, size: B_SIZE, uaddr: UADDR_B, offset: 0 },
    ],
    [native.memfd('fuzz-a', A_SIZE), native.memfd('fuzz-b', B_SIZE)],
  );
  const at = (gpa: number, len: number): Buffer => {
    const [v] = table.gpaView(gpa, len) as [Uint8Array];
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  };
  /** Guest bytes [gpa, gpa + len), across regions (the caller checked they are in memory). */
  const bytes = (gpa: number, len: number): Buffer => Buffer.concat((table.gpaView(gpa, len) as Uint8Array[]).map((v) => Buffer.from(v)));
  const vq = new native.Virtqueue(table);
  vq.setup(QUEUE, UADDR_A + BigInt(DESC), UADDR_A + BigInt(AVAIL), UADDR_A + BigInt(USED), false);
  const windows = table.windows();
  assert.equal(windows.length, 3, 'region A has two windows, B one');

  // Where descriptors point: places that matter, each filled with a pattern where it is memory.
  const spots = [0x10_0000, 0x20_0000 + 4093, GIB - 8192, GIB - 100, A_SIZE - 5000, A_SIZE - 1, A_SIZE + 777, MEM_END - 4096];
  for (const s of spots) {
    const len = Math.min(16384, MEM_END - s);
    const p = Buffer.alloc(len);
    for (let i = 0; i < len; i++) p[i] = (s + i * 7) & 0xff;
    let done = 0;
    for (const v of table.gpaView(s, len) as Uint8Array[]) {
      v.set(p.subarray(done, done + v.length));
      done += v.length;
    }
  }
  // Indirect tables live in region B's first megabyte, one slot of 2 KiB per chain.
  const tableAt = (k: number): number => A_SIZE + 2048 * (k % 256);

  const { next: random } = seededRng(0x5eed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const address = (): bigint => {
    const r = random();
    if (r < 0.75) return BigInt(pick(spots) + Math.floor(random() * 4096) - 2048);
    if (r < 0.85) return BigInt(MEM_END + Math.floor(random() * 8192)); // past the end
    if (r < 0.92) return 0xffff_ffff_ffff_f000n + BigInt(Math.floor(random() * 4096)); // wraps
    return BigInt(Math.floor(random() * MEM_END));
  };
  const length = (): number => pick([0, 1, 15, 16, 40, 4096, 4097, 8192, 16384, Math.floor(random() * 20000), 0xffff_ffff]);
  const descriptor = (i: number, count: number): Desc => {
    const r = random();
    let flags = (r < 0.5 ? WRITE : 0) | (i < count - 1 || random() < 0.05 ? NEXT : 0);
    if (random() < 0.02) flags |= INDIRECT;
    const next = random() < 0.9 ? i + 1 : Math.floor(random() * (count + 2)); // sometimes back (a loop) or beyond
    return { addr: address(), len: length(), flags, next };
  };
  const writeDescs = (base: number, descs: readonly Desc[]): void => encodeDescs(at(base, 16 * descs.length), 0, descs);
  /** The bytes a usable chain's descriptors name (readable, writable), walked as a device would. */
  const expected = (ring: Desc[], head: number): { readable: Buffer; writable: Buffer } => {
    const rd: Buffer[] = [];
    const wr: Buffer[] = [];
    let list = ring;
    let i = head;
    for (let steps = 0; steps < 10_000; steps++) {
      const d = list[i] as Desc;
      if (d.flags & INDIRECT) {
        // The table as guest memory holds it (untouched memory reads as zeros: a chain of one
        // empty readable descriptor).
        const t = bytes(Number(d.addr), d.len);
        list = Array.from({ length: d.len / 16 }, (_, k) => ({
          addr: t.readBigUInt64LE(16 * k),
          len: t.readUInt32LE(16 * k + 8),
          flags: t.readUInt16LE(16 * k + 12),
          next: t.readUInt16LE(16 * k + 14),
        }));
        i = 0;
        continue;
      }
      // A zero-length descriptor names no memory, wherever it points.
      if (d.len > 0) (d.flags & WRITE ? wr : rd).push(bytes(Number(d.addr), d.len));
      if (!(d.flags & NEXT)) return { readable: Buffer.concat(rd), writable: Buffer.concat(wr) };
      i = d.next;
    }
    throw new Error('a chain taken as usable loops');
  };

  const avail = at(AVAIL, 4 + 2 * QUEUE);
  let availIdx = 0;
  let slots = popSlots(2); // small: chains of more pieces must wait for larger slots
  const counts = { usable: 0, unusable: 0, grown: 0, pieces: 0 };
  for (let round = 0; round < 20_000; round++) {
    // A ring of random descriptors; the head at a random index; sometimes an indirect table.
    const ring: Desc[] = [];
    const count = 1 + Math.floor(random() * 6);
    for (let i = 0; i < QUEUE; i++) ring.push(descriptor(i % count, count));
    const head = Math.floor(random() * Math.min(QUEUE, count + 1));
    if (random() < 0.3) {
      const t = tableAt(round);
      const n = 1 + Math.floor(random() * 40);
      const list = Array.from({ length: n }, (_, i) => ({ ...descriptor(i, n), flags: descriptor(i, n).flags & ~(random() < 0.97 ? INDIRECT : 0) }));
      writeDescs(t, list);
      ring[head] = { addr: BigInt(t), len: random() < 0.9 ? 16 * n : pick([0, 17, 16 * n + 16, 16 * 5000]), flags: INDIRECT, next: 0 };
    }
    writeDescs(DESC, ring);
    avail.writeUInt16LE(head, 4 + 2 * (availIdx % QUEUE));
    availIdx = (availIdx + 1) & 0xffff;
    avail.writeUInt16LE(availIdx, 2);

    let r = vq.popInto(slots);
    while (r === PopResult.NeedRoom) {
      const need = slots[0] as number;
      assert.ok(need > (slots.length - POP_HEADER) / 3, 'NeedRoom only for more pieces than the slots hold');
      counts.grown++;
      // Nothing was taken: the same chain is still there for the larger slots.
      slots = popSlots(need);
      r = vq.popInto(slots);
    }
    assert.equal(r, PopResult.Chain, `round ${round}: a chain was published`);
    assert.equal(slots[0], head);
    assert.equal(vq.popInto(slots), PopResult.None, 'one chain per publication');
    const nRead = slots[3] as number;
    const nWrite = slots[4] as number;
    if (slots[5] !== 1) {
      counts.unusable++;
      assert.equal(nRead + nWrite, 0, 'an unusable chain has no pieces');
      assert.equal(typeof vq.lastError(), 'string');
    } else {
      counts.usable++;
      const views = (from: number, n: number): Buffer =>
        Buffer.concat(
          Array.from({ length: n }, (_, k) => {
            const w = windows[slots[from + 3 * k] as number] as ArrayBuffer;
            const off = slots[from + 3 * k + 1] as number;
            const len = slots[from + 3 * k + 2] as number;
            assert.ok(off + len <= w.byteLength, 'a piece lies inside its window');
            return Buffer.from(w, off, len);
          }),
        );
      const got = { readable: views(POP_HEADER, nRead), writable: views(POP_HEADER + 3 * nRead, nWrite) };
      assert.equal(got.readable.length, slots[1]);
      assert.equal(got.writable.length, slots[2]);
      const want = expected(ring, head);
      assert.ok(got.readable.equals(want.readable), `round ${round}: readable bytes`);
      assert.ok(got.writable.equals(want.writable), `round ${round}: writable bytes`);
      counts.pieces += nRead + nWrite;
    }
    vq.push(head, 0);
    if (random() < 0.1) slots = popSlots(1 + Math.floor(random() * 3)); // small again
  }
  // The run exercised every kind of outcome.
  assert.ok(counts.usable > 1000 && counts.unusable > 1000 && counts.grown > 100 && counts.pieces > counts.usable, JSON.stringify(counts));
});
