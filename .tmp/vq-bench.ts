import { native, popSlots } from '../src/native/addon.js';
const SIZE = 64 << 20, UA = 0x7000_0000_0000n;
const fd = native.memfd('vqbench', SIZE);
const table = new native.MemoryTable();
table.setTable([{ gpa: 0, size: SIZE, uaddr: UA, offset: 0 }], [fd]);
const view = (gpa: number, len: number): Buffer => { const [v] = table.gpaView(gpa, len) as [Uint8Array]; return Buffer.from(v.buffer, v.byteOffset, v.byteLength); };
const Q = 256, DESC = 0x1000, AVAIL = DESC + 16 * Q, USED = 0x10000;
const vq = new native.Virtqueue(table);
vq.setup(Q, UA + BigInt(DESC), UA + BigInt(AVAIL), UA + BigInt(USED), false);
const PAGES = Number(process.env.PAGES ?? 32);
let bump = 0x100000;
const alloc = (n: number): number => { const a = bump; bump += (n + 4095) & ~4095; return a; };
for (let k = 0; k < 64; k++) {
  const t = alloc(16 * (3 + PAGES));
  const req = alloc(4096), hdr = alloc(4096);
  const entry = (j: number, addr: number, len: number, flags: number): void => {
    const b = view(t + 16 * j, 16); b.writeBigUInt64LE(BigInt(addr), 0); b.writeUInt32LE(len, 8); b.writeUInt16LE(flags, 12); b.writeUInt16LE(j + 1, 14);
  };
  entry(0, req, 40, 1); entry(1, req + 40, 40, 1); entry(2, hdr, 16, 3);
  for (let j = 0; j < PAGES; j++) { const p = alloc(8192); entry(3 + j, p, 4096, 2 | (j < PAGES - 1 ? 1 : 0)); }
  const d = view(DESC + 16 * k, 16); d.writeBigUInt64LE(BigInt(t), 0); d.writeUInt32LE(16 * (3 + PAGES), 8); d.writeUInt16LE(4, 12);
}
const avail = view(AVAIL, 4 + 2 * Q);
let idx = 0;
const slots = popSlots();
const ROUNDS = 20000;
let t0 = 0n;
for (let r = 0; r < ROUNDS + 2000; r++) {
  if (r === 2000) t0 = process.hrtime.bigint();
  for (let k = 0; k < 64; k++) { avail.writeUInt16LE(k, 4 + 2 * (idx % Q)); idx = (idx + 1) & 0xffff; }
  avail.writeUInt16LE(idx, 2);
  for (let k = 0; k < 64; k++) {
    if (vq.popInto(slots) !== 1) throw new Error('pop');
    vq.push(slots[0] as number, 16);
  }
}
const ns = Number(process.hrtime.bigint() - t0) / (ROUNDS * 64);
console.log(`pages ${PAGES}: popInto + push ${(ns / 1000).toFixed(2)} us per chain; pieces ${slots[3]} + ${slots[4]}`);
