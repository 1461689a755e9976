/**
 * What taking a descriptor chain off a virtqueue costs the daemon, in process and without a
 * frontend: `Virtqueue.popInto` (walking and checking the chain against the memory table) and the
 * views the backend then makes of its pieces (src/transport/vhost-user/backend.ts), and `push`.
 * Each chain is laid out as a Linux guest's page-cache read sends it: an indirect table of the
 * request header, its arguments, the reply header and PAGES separate 4 KiB pages (not adjacent,
 * so that no two merge into one piece).
 *
 * Usage: node --import tsx scripts/bench/vring-pop.ts [PAGES]   (default 32: a 128 KiB READ)
 * Prints microseconds per chain. Machines here are shared and noisy: compare runs of one machine.
 */
import { PopResult, native, popSlots } from '../../src/native/index.js';
import { DESC_INDIRECT, DESC_WRITE, chained, encodeDescs } from '../../test/helpers/vhost-frontend.js';

const PAGES = Number(process.argv[2] ?? 32);
const CHAINS = 64; // one batch: what a guest posts before a kick, at most
const ROUNDS = 20_000;
const WARMUP = 2_000;

const SIZE = 64 << 20;
const UADDR = 0x7000_0000_0000n;
const table = new native.MemoryTable();
table.setTable([{ gpa: 0, size: SIZE, uaddr: UADDR, offset: 0 }], [native.memfd('vring-pop', SIZE)]);
const view = (gpa: number, len: number): Buffer => {
  const [v] = table.gpaView(gpa, len) as [Uint8Array];
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
};

const QUEUE = 256;
const DESC = 0x1000;
const AVAIL = DESC + 16 * QUEUE;
const USED = 0x10000;
const vq = new native.Virtqueue(table);
vq.setup(QUEUE, UADDR + BigInt(DESC), UADDR + BigInt(AVAIL), UADDR + BigInt(USED), false);

let bump = 0x100000;
const alloc = (n: number): number => {
  const at = bump;
  bump += (n + 4095) & ~4095;
  return at;
};
for (let k = 0; k < CHAINS; k++) {
  const tableAt = alloc(16 * (3 + PAGES));
  const req = alloc(4096);
  const chain = chained([
    { addr: req, len: 40, flags: 0 }, // fuse_in_header
    { addr: req + 40, len: 40, flags: 0 }, // fuse_read_in
    { addr: alloc(4096), len: 16, flags: DESC_WRITE }, // fuse_out_header
    ...Array.from({ length: PAGES }, () => ({ addr: alloc(8192), len: 4096, flags: DESC_WRITE })),
  ]);
  encodeDescs(view(tableAt, 16 * chain.length), 0, chain);
  encodeDescs(view(DESC + 16 * k, 16), 0, [{ addr: tableAt, len: 16 * chain.length, flags: DESC_INDIRECT, next: 0 }]);
}

const avail = view(AVAIL, 4 + 2 * QUEUE);
const windows = table.windows();
const slots = popSlots();
let idx = 0;
let pieces = 0;
let t0 = 0n;
for (let round = 0; round < WARMUP + ROUNDS; round++) {
  if (round === WARMUP) t0 = process.hrtime.bigint();
  for (let k = 0; k < CHAINS; k++) {
    avail.writeUInt16LE(k, 4 + 2 * (idx % QUEUE));
    idx = (idx + 1) & 0xffff;
  }
  avail.writeUInt16LE(idx, 2);
  for (let k = 0; k < CHAINS; k++) {
    if (vq.popInto(slots) !== PopResult.Chain || slots[5] !== 1) throw new Error(`chain ${k}: ${vq.lastError() ?? 'not taken'}`);
    // The views, as the backend makes them.
    pieces = (slots[3] as number) + (slots[4] as number);
    for (let i = 0; i < pieces; i++) {
      const at = 7 + 3 * i;
      if (new Uint8Array(windows[slots[at] as number] as ArrayBuffer, slots[at + 1], slots[at + 2]).length === 0) throw new Error('empty piece');
    }
    vq.push(slots[0] as number, 16);
  }
}
const us = Number(process.hrtime.bigint() - t0) / (ROUNDS * CHAINS) / 1000;
console.log(`${PAGES} pages (${pieces} pieces): popInto, views and push ${us.toFixed(2)} us per chain`);
