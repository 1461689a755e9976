/**
 * Mounts and unmounts racing the guest, seeded: `damselfly virtiofs --apisock … --sock …` (nydusd's
 * hybrid mode, as Kata runs it) while an API client mounts three RAFS images (one shared chunk
 * cache, `digest_validate` on or off) at four `/rafs/<cid>/lowerdir` places and unmounts them at
 * random, and three request rings walk into those places, read files at random offsets and forget
 * what they looked up, as a guest does.
 *
 * Every answer is a well-formed reply: data, or ENOENT / ESTALE where the mount went away. Every
 * read returns exactly the bytes of the image the node id belongs to: each image carries its own
 * name in `/id`, and node ids of one mount slot (the id's high bits) must never lead to two images
 * (an id outliving its mount and naming the next one would). Afterwards, with everything unmounted
 * and forgotten, the daemon holds no more fds than before (cache files, blob files), still answers,
 * and exits cleanly when the VMM goes.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Opcode } from '../../src/fuse/abi.js';
import { apiCall } from '../helpers/api-client.js';
import { CLI, damselflyOk } from '../helpers/env.js';
import { cstr, initArgs, parseEntry, parseReply, readArgs, request as fuseRequest, u32Args } from '../helpers/fuse-client.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { prng } from '../helpers/tree.js';
import { type Ring, TestFrontend } from '../helpers/vhost-frontend.js';

const ENOENT = 2;
const ESTALE = 116;
const SEEDS = 3;
const CHAINS = 80;
/** Reads that must have answered with data for a run to count (the walks go on until then, to a bound). */
const MIN_READS = 50;
const WORKERS = 3;
const IMAGES = ['alpha', 'beta', 'gamma'];
const CIDS = ['c0', 'c1', 'c2', 'c3'];
const FILES = 5;
const SLOT_SPAN = 2 ** 40;

/** The content of file `k` of `image` (sizes from empty to several 64 KiB chunks). */
function content(image: string, k: number): Buffer {
  const seed = image.charCodeAt(0) * 100 + k;
  const size = [0, 1, 4_095, 65_536 * 3 + 17, 300_000][k % 5] as number;
  return prng(seed, size);
}

async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

class Guest {
  private forgets: Promise<void> = Promise.resolve();
  /** Per mount slot (a node id's high bits), the image its ids led to. */
  readonly slotImage = new Map<number, string>();
  readonly counts = { chains: 0, reads: 0, stale: 0 };

  constructor(private readonly f: TestFrontend) {}

  async fuse(ring: Ring, op: Opcode, nodeid: number, args: Buffer, cap = 4096): Promise<ReturnType<typeof parseReply>> {
    const r = parseReply(await this.f.fuse(ring, fuseRequest(op, nodeid, args).bytes, cap));
    if (r.error !== 0) assert.ok([-ENOENT, -ESTALE].includes(r.error), `${Opcode[op]} of node ${nodeid}: errno ${-r.error}`);
    return r;
  }

  /** FORGETs go one at a time through the hiprio ring (shared by the workers). */
  forget(nodeid: number, n: number): Promise<void> {
    this.forgets = this.forgets.then(async () => {
      assert.equal((await this.f.forget(nodeid, n)).len, 0);
    });
    return this.forgets;
  }

  private async lookup(ring: Ring, parent: number, name: string, held: number[]): Promise<number | undefined> {
    const r = await this.fuse(ring, Opcode.LOOKUP, parent, cstr(name), 256);
    if (r.error !== 0) return undefined;
    const id = parseEntry(r.payload).nodeid;
    held.push(id);
    return id;
  }

  /** OPEN, READs at `places` (or random ones), RELEASE; undefined when the node went away. */
  private async readFile(ring: Ring, node: number, size: number, rng: Rng, places?: Array<[number, number]>): Promise<Array<{ off: number; len: number; bytes: Buffer }> | undefined> {
    const open = await this.fuse(ring, Opcode.OPEN, node, u32Args(0, 0), 256);
    if (open.error !== 0) return undefined;
    const fh = open.payload.readBigUInt64LE(0);
    const out: Array<{ off: number; len: number; bytes: Buffer }> = [];
    const wanted = places ?? Array.from({ length: 3 }, (): [number, number] => [rng.int(size + 2), 1 + rng.int(rng.int(2) === 0 ? 4096 : 131_072)]);
    for (const [off, len] of wanted) {
      const r = await this.fuse(ring, Opcode.READ, node, readArgs(fh, off, len), len + 16);
      if (r.error !== 0) return undefined;
      out.push({ off, len, bytes: r.payload });
      this.counts.reads++;
    }
    const release = Buffer.alloc(24);
    release.writeBigUInt64LE(fh, 0);
    await this.fuse(ring, Opcode.RELEASE, node, release, 256);
    return out;
  }

  /** One walk: /rafs/<cid>/lowerdir, its /id, then a file read at random places; all forgotten. */
  async chain(ring: Ring, rng: Rng): Promise<void> {
    this.counts.chains++;
    const held: number[] = [];
    try {
      const rafs = await this.lookup(ring, 1, 'rafs', held);
      const cid = rafs === undefined ? undefined : await this.lookup(ring, rafs, rng.pick(CIDS), held);
      const lower = cid === undefined ? undefined : await this.lookup(ring, cid, 'lowerdir', held);
      const idNode = lower === undefined ? undefined : await this.lookup(ring, lower, 'id', held);
      const idRead = idNode === undefined ? undefined : await this.readFile(ring, idNode, 64, rng, [[0, 64]]);
      if (lower === undefined || idRead === undefined) {
        this.counts.stale++;
        return;
      }
      const image = (idRead[0] as { bytes: Buffer }).bytes.toString();
      assert.ok(IMAGES.includes(image), `/id reads ${JSON.stringify(image)}`);
      const slot = Math.floor(lower / SLOT_SPAN);
      const seen = this.slotImage.get(slot);
      assert.ok(seen === undefined || seen === image, `mount slot ${slot}: ids led to ${seen} and now to ${image}`);
      this.slotImage.set(slot, image);
      const k = rng.int(FILES);
      const d = await this.lookup(ring, lower, 'd', held);
      const file = d === undefined ? undefined : await this.lookup(ring, d, `f${k}`, held);
      if (file === undefined) return;
      const want = content(image, k);
      for (const { off, len, bytes } of (await this.readFile(ring, file, want.length, rng)) ?? []) {
        assert.ok(bytes.equals(want.subarray(off, off + len)), `${image} /d/f${k}: READ ${len} at ${off} gave ${bytes.length} bytes, not the image's`);
      }
    } finally {
      await Promise.all(held.map((id) => this.forget(id, 1)));
    }
  }
}

describe('mounts and unmounts racing the guest (nydusd hybrid mode)', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-churn-'));
    for (const image of IMAGES) {
      const dir = join(work, 'src', image);
      await mkdir(join(dir, 'd'), { recursive: true });
      await writeFile(join(dir, 'id'), image);
      for (let k = 0; k < FILES; k++) await writeFile(join(dir, 'd', `f${k}`), content(image, k));
      await damselflyOk(['build', '--chunk-size', '64K', '--bootstrap', join(work, `${image}.boot`), '--blob-dir', join(work, 'blobs'), dir]);
    }
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  for (let seed = 0; seed < SEEDS; seed++) {
    test(`seed ${seed}`, async (t) => {
      const rng = caseRng('mount-churn', seed);
      const api = join(work, `api-${seed}.sock`);
      const sock = join(work, `vhost-${seed}.sock`);
      const cache = join(work, `cache-${seed}`);
      const proc: ChildProcess = spawn(process.execPath, [CLI, 'virtiofs', '--hybrid-mode', '--log-level', 'warn', '--apisock', api, '--sock', sock], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      proc.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
      proc.stdout?.on('data', (b: Buffer) => (stderr += b.toString()));
      const exit = once(proc, 'exit') as Promise<[number | null, string | null]>;
      const pid = proc.pid as number;
      try {
        for (const deadline = Date.now() + 20_000; !existsSync(api) || !existsSync(sock); ) {
          assert.ok(Date.now() < deadline && proc.exitCode === null, `daemon did not start: ${stderr}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        const f = TestFrontend.connect(sock);
        await f.start({ queues: 1 + WORKERS, size: 256 });
        const guest = new Guest(f);
        const rings = f.rings.slice(1) as Ring[];
        assert.equal((await guest.fuse(rings[0] as Ring, Opcode.INIT, 0, initArgs(), 256)).error, 0);

        const mounted = new Map<string, string>();
        const mountAt = (cid: string, image: string): Promise<{ status: number; text: string }> => {
          const config = JSON.stringify({
            device: { backend: { type: 'localfs', config: { dir: join(work, 'blobs') } }, cache: { type: 'blobcache', config: { work_dir: cache } } },
            mode: 'direct',
            digest_validate: rng.int(2) === 0,
            fs_prefetch: { enable: rng.int(3) === 0, threads_count: 2, merging_size: 131072, prefetch_all: true },
          });
          return apiCall(api, 'POST', `/api/v1/mount?mountpoint=${encodeURIComponent(`/rafs/${cid}/lowerdir`)}`, JSON.stringify({ fs_type: 'rafs', source: join(work, `${image}.boot`), config }));
        };
        const umountAt = (cid: string): Promise<{ status: number; text: string }> => apiCall(api, 'DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent(`/rafs/${cid}/lowerdir`)}`);

        // One cycle before counting fds: what a first mount and read load for good.
        assert.equal((await mountAt('c0', 'alpha')).status, 204);
        await guest.chain(rings[0] as Ring, caseRng('mount-churn-warm', seed));
        assert.equal((await umountAt('c0')).status, 204);
        await new Promise((r) => setTimeout(r, 200));
        const fdsBefore = await fdCount(pid);

        let running = true;
        const churn = (async (): Promise<number> => {
          let changes = 0;
          while (running) {
            const cid = rng.pick(CIDS);
            const image = mounted.get(cid);
            if (image === undefined) {
              const pick = rng.pick(IMAGES);
              const r = await mountAt(cid, pick);
              assert.equal(r.status, 204, `mount ${pick} at ${cid}: ${r.text}`);
              mounted.set(cid, pick);
            } else {
              const r = await umountAt(cid);
              assert.equal(r.status, 204, `umount ${cid}: ${r.text}`);
              mounted.delete(cid);
            }
            changes++;
            await new Promise((r) => setTimeout(r, rng.int(15)));
          }
          return changes;
        })();
        try {
          await Promise.all(
            rings.map(async (ring, w) => {
              const wr = caseRng(`mount-churn-${seed}-worker`, w);
              // Walks go on past CHAINS (to a bound) until some have read data: how many meet a
              // mount still there depends on the schedule the seed and the timing make.
              for (let n = 0; n < CHAINS || (guest.counts.reads <= MIN_READS && n < 4 * CHAINS); n++) await guest.chain(ring, wr);
            }),
          );
        } finally {
          running = false;
          await churn.catch(() => undefined);
        }
        const changes = await churn;
        for (const cid of [...mounted.keys()]) assert.equal((await umountAt(cid)).status, 204);
        await new Promise((r) => setTimeout(r, 300));

        const reads = guest.counts.reads;
        t.diagnostic(`${changes} mount changes; ${guest.counts.chains} walks, ${guest.counts.stale} of them met a removed mount; ${reads} reads; ${guest.slotImage.size} slots`);
        assert.ok(changes >= 10, `only ${changes} mount changes`);
        assert.ok(reads > MIN_READS, `only ${reads} reads answered with data`);
        assert.ok(guest.counts.stale > 0, 'no walk ever met a mount that was gone');
        const info = await apiCall(api, 'GET', '/api/v1/daemon');
        assert.equal(info.status, 200);
        assert.match(info.text, /"state":"RUNNING"/);
        assert.equal(await fdCount(pid), fdsBefore, `fds of the daemon after ${changes} mount changes`);
        f.close();
        const [code] = await exit;
        assert.equal(code, 0, stderr);
        assert.doesNotMatch(stderr, /TypeError|RangeError|unhandled|uncaught/i);
      } finally {
        proc.kill('SIGKILL');
      }
    });
  }
});
