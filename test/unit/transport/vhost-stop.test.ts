/**
 * A request ring stopped (SET_VRING_ENABLE 0, GET_VRING_BASE: QEMU at a guest reboot) while an
 * image READ still waits for its chunk from a slow backend: once the wait for requests in flight
 * runs out, the ring stops and the READ is abandoned. When its chunk comes in later, nothing is
 * written into the guest buffers it was given, which the rebooted guest may own by then: neither
 * the data nor the reply header (both used to land there; found by review).
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
import { DESC_NEXT, DESC_WRITE, type Ring, TestFrontend } from '../../helpers/vhost-frontend.js';

let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'damselfly-vhost-stop-'));
  await mkdir(join(work, 'src'));
  await writeFile(join(work, 'src', 'f'), randomBytes(100_000));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('a ring stopped with an image READ waiting for its chunk: the chunk that comes in later is not written into the guest buffers, nor is a reply header', async () => {
  const r = await build({ sources: [join(work, 'src')], blobDir: join(work, 'blobs'), bootstrapPath: join(work, 'boot'), codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 65536, log: silentLogger });
  const image = openBootstrap(r.bootstrap);
  const local = new LocalFsBackend({ dir: join(work, 'blobs') });
  // The backend answers only when the test lets it.
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
  const sock = join(work, 'v.sock');
  const listener = VhostListener.listen({ socketPath: sock });
  const accepted = listener.accept();
  const f = TestFrontend.connect(sock);
  const served = vhost.serve(await accepted);
  listener.close();
  try {
    await f.start({ queues: 2, size: 128, ack: true });
    const ring = f.rings[1] as Ring;
    assert.equal(parseReply(await f.fuse(ring, request(Opcode.INIT, 0, initArgs()).bytes, 256)).error, 0);
    const entry = parseReply(await f.fuse(ring, request(Opcode.LOOKUP, 1, cstr('f')).bytes, 256));
    assert.equal(entry.error, 0);
    const { nodeid } = parseEntry(entry.payload);
    // A READ of 8 KiB across nothing cached: it waits for the backend.
    const req = request(Opcode.READ, nodeid, readArgs(0n, 0, 8192)).bytes;
    const inAt = f.alloc(req.length);
    f.view(inAt, req.length).set(req);
    const outAt = f.alloc(16 + 8192);
    f.view(outAt, 16 + 8192).fill(0xee);
    const head = ring.nextDesc;
    f.writeDesc(ring, head, { addr: inAt, len: req.length, flags: DESC_NEXT, next: (head + 1) % ring.size });
    f.writeDesc(ring, (head + 1) % ring.size, { addr: outAt, len: 16 + 8192, flags: DESC_WRITE, next: 0 });
    ring.nextDesc = (head + 2) % ring.size;
    f.publish(ring, head);
    await new Promise((res) => setTimeout(res, 50));
    // QEMU stops the ring; GET_VRING_BASE answers once the wait for the READ runs out.
    f.send(Request.SET_VRING_ENABLE, TestFrontend.state(1, 0));
    const base = await f.call(Request.GET_VRING_BASE, TestFrontend.state(1, 0));
    assert.equal(base.readUInt32LE(4), ring.nextAvail, 'the READ was popped');
    // The rebooted guest owns that memory now.
    f.view(outAt, 16 + 8192).fill(0x11);
    release();
    for (let i = 0; i < 100 && answered === 0; i++) await new Promise((res) => setTimeout(res, 20));
    assert.equal(answered, 1, 'the chunk came in');
    await new Promise((res) => setTimeout(res, 100)); // its decode, and anything that would follow
    assert.ok(Buffer.from(f.view(outAt, 16 + 8192)).every((b) => b === 0x11), 'written into the stopped ring\'s buffers');
    assert.equal(f.view(ring.used + 2, 2).readUInt16LE(0), 2, 'only INIT and LOOKUP were returned');
    // The fetch itself was not wasted: the chunk is there for the next reader.
    assert.equal(metrics.get('storage.backend_requests'), 1);
  } finally {
    f.close();
    await served.catch(() => undefined);
    vhost.close();
    await device.close();
  }
});
