import { native } from '../src/native/addon.js';
const SIZE = 64 << 20;
const fd = native.memfd('vb', SIZE);
const table = new native.MemoryTable();
table.setTable([{ gpa: 0, size: SIZE, uaddr: 0x7000_0000_0000n, offset: 0 }], [fd]);
const ab = (table.gpaView(0, 16) as Uint8Array[])[0]!.buffer;
const offs = new Float64Array(33 * 2);
for (let j = 0; j < 33; j++) { offs[2 * j] = 0x100000 + j * 8192; offs[2 * j + 1] = 4096; }
let sink = 0;
const N = 200000;
for (let round = 0; round < 2; round++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const out: Uint8Array[] = new Array(33);
    for (let j = 0; j < 33; j++) out[j] = new Uint8Array(ab, offs[2 * j]!, offs[2 * j + 1]!);
    sink += out[32]!.length;
  }
  console.log(`JS: 33 views ${(Number(process.hrtime.bigint() - t0) / N / 1000).toFixed(2)} us`, sink > 0);
}
// subarray of a whole-window view
const whole = new Uint8Array(ab);
for (let round = 0; round < 2; round++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const out: Uint8Array[] = new Array(33);
    for (let j = 0; j < 33; j++) out[j] = whole.subarray(offs[2 * j]!, offs[2 * j]! + offs[2 * j + 1]!);
    sink += out[32]!.length;
  }
  console.log(`JS subarray: 33 views ${(Number(process.hrtime.bigint() - t0) / N / 1000).toFixed(2)} us`);
}
