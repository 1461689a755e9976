/**
 * Requests in flight while their ring changes under them, served in-process (the real backend,
 * device, FUSE server and image filesystem; an image READ held by a slow backend):
 * - the ring stopped (SET_VRING_ENABLE 0, GET_VRING_BASE: QEMU at a guest reboot): once the wait
 *   for requests in flight runs out, the READ is abandoned, and when its chunk comes in nothing is
 *   written into the guest buffers it was given, which the rebooted guest may own by then: neither
 *   the data nor the reply header (both used to land there);
 * - the memory region holding the ring removed and added again (REM_MEM_REG, ADD_MEM_REG, as a
 *   frontend changing a region may send): the READ completing in between is returned once the region is back, and
 *   requests kicked meanwhile are served (the ring used to be given up for good, the guest hung).
 * - a driver publishing a head again while it is in flight, a thousand times: no more requests in
 *   flight than the ring has entries.
 * All found by review.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { build } from '../../../src/builder/build.js';
import { Compressor } from '../../../src/format/compression.js';
import { Digester } from '../../../src/format/constants.js';
import { openBootstrap } from '../../../src/format/open.js';
import { ImageFs } from '../../../src/fs/image/image-fs.js';
import { Opcode } from '../../../src/fuse/abi.js';
import { FuseServer } from '../../../src/fuse/index.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { LocalFsBackend } from '../../../src/storage/backend/localfs.js';
import type { BlobBackend, ReadOptions } from '../../../src/storage/backend/types.js';
import { BlobDevice } from '../../../src/storage/device.js';
import { VhostListener, VhostUserBackend, VirtioFsDevice } from '../../../src/transport/index.js';
import { Request } from '../../../src/transport/vhost-user/protocol.js';
import { cstr, initArgs, parseEntry, parseReply, readArgs, request } from '../../helpers/fuse-client.js';
import { type Ring, TestFrontend, UADDR_BASE } from '../../helpers/vhost-frontend.js';

let work: string;
const content = randomBytes(100_000);

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-vhost-stop-'));
  await mkdir(join(work, 'src'));
  await writeFile(join(work, 'src', 'f'), content);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The daemon's parts in-process over a socket, an image of one file `f` (100 kB, 64 KiB chunks) whose backend answers when `release()` is called. */
async function rig(): Promise<{ f: TestFrontend; ring: Ring; nodeid: number; release: () => void; answered: () => number; metrics: Metrics; close: () => Promise<void> }> {
  const r = await build({ sources: [join(work, 'src')], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
  const image = openBootstrap(r.bootstrap);
  const local = new LocalFsBackend({ dir: join(work, 'blobs') });
  let release = (): void => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let answered = 0;
  const backend: BlobBackend = {
    kind: 'slow',
    read: async (id: string, offset: number, length: number, o?: ReadOptions) => {
      await gate;
      const b = await local.read(id, offset, length, o);
      answered++;
      return b;
    },
    size: async () => 0,
    close: async () => local.close(),
  };
  const metrics = new Metrics();
  const device = new BlobDevice({ blobs: image.blobs, backend, codecs: nativeCodecs, metrics, log: silentLogger });
  const server = new FuseServer(new ImageFs({ image, device, metrics, log: silentLogger }), { log: silentLogger, metrics });
  const vhost = new VhostUserBackend({ device: new VirtioFsDevice({ server, log: silentLogger, metrics }), log: silentLogger, metrics, stopWaitMs: 200 });
  const sock = join(work, `v${socket++}.sock`);
  const listener = VhostListener.listen({ socketPath: sock });
  const accepted = listener.accept();
  const f = TestFrontend.connect(sock);
  const served = vhost.serve(await accepted);
  listener.close();
  await f.start({ queues: 2, size: 128, ack: true });
  const ring = f.rings[1] as Ring;
  assert.equal(parseReply(await f.fuse(ring, request(Opcode.INIT, 0, initArgs()).bytes, 256)).error, 0);
  const entry = parseReply(await f.fuse(ring, request(Opcode.LOOKUP, 1, cstr('f')).bytes, 256));
  assert.equal(entry.error, 0);
  return {
    f,
    ring,
    nodeid: parseEntry(entry.payload).nodeid,
    release,
    answered: () => answered,
    metrics,
    close: async () => {
      f.close();
      await served.catch(() => undefined);
      vhost.close();
      await device.close();
    },
  };
}
let socket = 0;

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

test('a ring stopped with an image READ waiting for its chunk: the chunk that comes in later is not written into the guest buffers, nor is a reply header', async () => {
  const { f, ring, nodeid, release, answered, metrics, close } = await rig();
  try {
    const { outAt } = f.post(ring, request(Opcode.READ, nodeid, readArgs(0n, 0, 8192)).bytes, 16 + 8192);
    await sleep(50);
    // QEMU stops the ring; GET_VRING_BASE answers once the wait for the READ runs out.
    f.send(Request.SET_VRING_ENABLE, TestFrontend.state(1, 0));
    const base = await f.call(Request.GET_VRING_BASE, TestFrontend.state(1, 0));
    assert.equal(base.readUInt32LE(4), ring.nextAvail, 'the READ was popped');
    // The rebooted guest owns that memory now.
    f.view(outAt, 16 + 8192).fill(0x11);
    release();
    for (let i = 0; i < 100 && answered() === 0; i++) await sleep(20);
    assert.equal(answered(), 1, 'the chunk came in');
    await sleep(100); // its decode, and anything that would follow
    assert.ok(Buffer.from(f.view(outAt, 16 + 8192)).every((b) => b === 0x11), "written into the stopped ring's buffers");
    assert.equal(f.view(ring.used + 2, 2).readUInt16LE(0), 2, 'only INIT and LOOKUP were returned');
    // The fetch itself was not wasted: the chunk is there for the next reader.
    assert.equal(metrics.get('storage.backend_requests'), 1);
  } finally {
    await close();
  }
});

test('the region holding a running ring removed and added again: the READ completing in between and a request kicked meanwhile are both answered once it is back', async () => {
  const { f, ring, nodeid, release, close } = await rig();
  try {
    const { outAt } = f.post(ring, request(Opcode.READ, nodeid, readArgs(0n, 0, 8192)).bytes, 16 + 8192);
    await sleep(50);
    const region = Buffer.alloc(40);
    region.writeBigUInt64LE(0n, 8); // gpa
    region.writeBigUInt64LE(BigInt(f.memSize), 16);
    region.writeBigUInt64LE(UADDR_BASE, 24);
    assert.equal((await f.call(Request.REM_MEM_REG, region, [], 0x1 | 0x8)).readBigUInt64LE(0), 0n);
    release();
    await sleep(200); // the READ completes while the ring is outside guest memory
    // Kicked while the ring is away: nothing can be popped.
    const { head, outAt: attrAt } = f.post(ring, request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes, 256);
    await sleep(50);
    assert.equal(f.view(ring.used + 2, 2).readUInt16LE(0), 2, 'nothing returned while the region is away');
    assert.equal((await f.call(Request.ADD_MEM_REG, region, [f.memFd], 0x1 | 0x8)).readBigUInt64LE(0), 0n);
    const read = await f.used(ring, 3000);
    assert.equal(read.len, 16 + 8192);
    const page = Buffer.from(f.view(outAt, 16 + 8192));
    assert.equal(parseReply(page).error, 0);
    assert.deepEqual(page.subarray(16), content.subarray(0, 8192));
    assert.deepEqual(await f.used(ring, 3000), { id: head, len: 16 + 104 });
    assert.equal(parseReply(Buffer.from(f.view(attrAt, 16 + 104))).error, 0);
  } finally {
    await close();
  }
});

test('a driver that publishes a head again and again while it is in flight gets no more requests in flight than its ring has entries; the rest are taken as they are returned', async () => {
  const { f, ring, nodeid, release, metrics, close } = await rig();
  try {
    const reads = (): number => metrics.get('fuse.requests.READ');
    const { head } = f.post(ring, request(Opcode.READ, nodeid, readArgs(0n, 0, 8192)).bytes, 16 + 8192);
    for (let i = 0; i < 100 && reads() === 0; i++) await sleep(10);
    // The same head 177 times more, 59 at a time (a jump by more than the ring size is a corrupt ring).
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < 59; i++) f.view(ring.avail + 4 + 2 * ((ring.nextAvail + i) % ring.size), 2).writeUInt16LE(head, 0);
      ring.nextAvail = (ring.nextAvail + 59) & 0xffff;
      f.setAvailIdx(ring, ring.nextAvail);
      await sleep(20);
    }
    assert.equal(reads(), ring.size, 'requests taken while the first waits');
    release();
    // Those complete, and the 50 left on the ring are taken then, with no kick.
    for (let i = 0; i < 300 && f.view(ring.used + 2, 2).readUInt16LE(0) < 2 + 178; i++) await sleep(10);
    assert.equal(reads(), 178);
    assert.equal(f.view(ring.used + 2, 2).readUInt16LE(0), 2 + 178, 'every chain returned');
    assert.deepEqual(await f.used(ring), { id: head, len: 16 + 8192 }, 'the first READ (after INIT and LOOKUP)');
  } finally {
    await close();
  }
});
