/**
 * Per-request cost of the vhost-user path, without a guest: the in-process test frontend
 * (test/helpers/vhost-frontend.ts: memfd guest memory, eventfds, the QEMU handshake) drives a
 * daemon over its socket with batches of FUSE requests on one queue (the batch published, one
 * kick, every reply awaited), and the daemon's CPU (the scheduler's runtime of all its threads,
 * and of its children: the C virtiofsd forks a sandbox child) is divided by the number of requests.
 * The same run measures the reference C virtiofsd (/usr/lib/qemu/virtiofsd) and `damselfly` as
 * Kata starts it (virtiofsd-compatible argv) on the same shared directory, with GETATTR of the
 * root, LOOKUP of a missing name (the negative lookup before every create), GETXATTR of an absent
 * security.capability (asked before writes; the last two are error replies) and READ of 128 KiB of
 * a file in the host page cache into 32 separate 4 KiB pages (one indirect descriptor table, as a
 * Linux guest's page-cache read sends it); then CREATE of a new file, WRITE of 4 KiB and UNLINK
 * (what a guest creating small files sends besides the LOOKUP). BENCH_BATCH=1 sends one request
 * per kick, as a guest that waits for each reply does: then the daemon's wake-up is part of every
 * request's cost.
 * Last, the FORGET line: FORGETs on the hiprio ring paced as a guest deleting files sends them
 * (kicked only when the ring asks for kicks), for the CPU each costs a daemon that is kicked for
 * each against one that polls the ring while they come.
 * BENCH_IMAGE=1 measures the image path instead: `damselfly virtiofs` serving a RAFS image built from
 * the share (warm chunk cache, in the host page cache) against virtiofsd serving the share itself,
 * with the read-only lines, READ walking a 32 MiB file 128 KiB at a time.
 * A guest under TCG hides these costs behind its own; this shows what each request costs the host.
 *
 * Usage: node --import tsx scripts/bench/vhost-requests.ts [BATCHES]   (root: virtiofsd's sandbox)
 * BENCH_NODE_ARGS adds Node options to the Damselfly daemon, e.g. "--cpu-prof --cpu-prof-dir=DIR"
 * (read the profile with scripts/bench/cpuprof-top.ts) or "--perf-basic-prof" (for perf record);
 * BENCH_ONLY=PREFIX runs only the lines whose name starts with it (BENCH_ONLY=READ for a profile).
 * BENCH_PIN=same runs this benchmark and each daemon on CPU 0; BENCH_PIN=other runs the benchmark on
 * CPU 0 and the daemons on CPU 1, where the scheduler puts a daemon whose CPU idles between
 * requests: with BENCH_BATCH=1 the two show what a wake-up on an idle CPU costs each daemon.
 * Prints microseconds of daemon CPU per request and the ratio virtiofsd / Damselfly (> 1:
 * Damselfly uses less). Machines here are shared and noisy: only the ratios mean something.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Opcode } from '../../src/fuse/index.js';
import { CLI } from '../../test/helpers/env.js';
import { processTree } from './proc.js';
import { cstr, initArgs, parseReply, request } from '../../test/helpers/fuse-client.js';
import { DESC_INDIRECT, DESC_NEXT, DESC_WRITE, type Ring, TestFrontend, chained } from '../../test/helpers/vhost-frontend.js';

const BATCH = Number(process.env.BENCH_BATCH ?? 64);
const IMAGE = process.env.BENCH_IMAGE === '1';
const BATCHES = Number(process.argv[2] ?? 300);
const PIN = process.env.BENCH_PIN;
if (PIN !== undefined && PIN !== 'same' && PIN !== 'other') throw new Error(`BENCH_PIN must be same or other, not ${PIN}`);
if (PIN !== undefined && process.env.BENCH_PINNED !== '1') {
  if (PIN === 'other' && availableParallelism() < 2) throw new Error('BENCH_PIN=other needs two CPUs');
  // The benchmark itself on CPU 0: run again under taskset (Node cannot set its own affinity).
  const r = spawnSync('taskset', ['-c', '0', process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, BENCH_PINNED: '1' } });
  if (r.error !== undefined) throw r.error;
  process.exit(r.status ?? 1);
}
/** A daemon's command line, on its CPU when BENCH_PIN asks for one. */
const pinned = (argv: string[]): string[] => (PIN === undefined ? argv : ['taskset', '-c', PIN === 'same' ? '0' : '1', ...argv]);
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/**
 * CPU time of a process in microseconds: the runtime the scheduler accounted to each of its live
 * threads (/proc/PID/task/TID/schedstat, nanoseconds, exact), not the tick-sampled utime + stime
 * of /proc/PID/stat, which misjudges a process that runs in short bursts between sleeps.
 */
function cpuUs(pid: number): number {
  let ns = 0;
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // the thread ended meanwhile
      }
    }
  } catch {
    // the process ended
  }
  return ns / 1000;
}

async function waitFor(path: string, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 200 && !existsSync(path); i++) {
    if (proc.exitCode !== null) throw new Error(`daemon exited (${proc.exitCode}) before creating ${path}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!existsSync(path)) throw new Error(`no socket at ${path}`);
}

/** What a line's requests refer to: the shared directory's test file, looked up and opened. */
interface Session {
  fileNode: number;
  fh: bigint;
  /** The same file opened for writing. */
  wfh: bigint;
}

/** Names for the CREATE line, removed again by the UNLINK line (same count, same order). */
let created = 0;
let unlinked = 0;

function createArgs(name: string): Buffer {
  const b = Buffer.alloc(16); // fuse_create_in: flags, mode, umask, open_flags
  b.writeUInt32LE(0o1 /* O_WRONLY */, 0);
  b.writeUInt32LE(0o100644, 4);
  return Buffer.concat([b, cstr(name)]);
}

function writeArgs(fh: bigint, offset: number, data: Buffer): Buffer {
  const b = Buffer.alloc(40); // fuse_write_in
  b.writeBigUInt64LE(fh, 0);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(data.length, 16);
  return Buffer.concat([b, data]);
}

const PAGE = Buffer.alloc(4096, 0x61);

interface Line {
  name: string;
  make: (s: Session) => Buffer;
  /** The reply's expected error (0 or a negative errno). */
  error: number;
  /** A negative entry (no error, node id 0) is a right answer too. */
  orNegativeEntry?: boolean;
  /** The reply's expected length (header included), when it is known. */
  replyLen?: number;
  /** At most this many measured batches: a created file keeps a descriptor open in each daemon. */
  maxBatches?: number;
  /**
   * The reply goes to separate 4 KiB pages, as a Linux guest's page-cache read sends it: one
   * indirect table of the request header, its arguments, the reply header and one descriptor per
   * page, the pages not adjacent in guest memory.
   */
  pages?: boolean;
}

const READ_SIZE = 128 << 10; // a guest's read-ahead window
/** The READ line's file: 1 MiB of one byte (page cache), or for the image 32 MiB of random bytes (32 chunks). */
const READ_FILE_SIZE = IMAGE ? 32 << 20 : 1 << 20;
/** READs walk the file: the image path's cost depends on where a chunk is (memory, cache file). */
let readAt = 0;
/** The file the READ line reads (in the host page cache: both daemons copy from memory). */
const READ_FILE = 'data';

function readArgs(fh: bigint, offset: number, size: number): Buffer {
  const b = Buffer.alloc(40); // fuse_read_in
  b.writeBigUInt64LE(fh, 0);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}

const LINES: Line[] = [
  { name: 'GETATTR /', make: () => request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes, error: 0 },
  // ENOENT, or from an image a negative entry (node id 0) that the kernel caches.
  { name: 'LOOKUP missing', make: () => request(Opcode.LOOKUP, 1, cstr('missing')).bytes, error: -2, orNegativeEntry: true },
  // What the kernel asks before a write: security.capability, absent on most files (ENODATA).
  { name: 'GETXATTR absent', make: () => request(Opcode.GETXATTR, 1, Buffer.concat([Buffer.alloc(8), cstr('security.capability')])).bytes, error: -61 },
  // A sequential reader's request: 128 KiB into the guest's buffer, straight from the page cache.
  {
    name: 'READ 128 KiB',
    make: (s) => {
      const at = readAt;
      readAt = (readAt + READ_SIZE) % READ_FILE_SIZE;
      return request(Opcode.READ, s.fileNode, readArgs(s.fh, at, READ_SIZE)).bytes;
    },
    error: 0,
    replyLen: 16 + READ_SIZE,
    pages: true,
  },
  // What creating a small file costs beyond the lookup: the file made and opened (its handle kept),
  // 4 KiB written to an open file, the file removed.
];
/** The lines that change the share: not for an image. */
const WRITE_LINES: Line[] = [
  { name: 'CREATE', make: () => request(Opcode.CREATE, 1, createArgs(`f${created++}`)).bytes, error: 0, maxBatches: 4096 / BATCH },
  { name: 'WRITE 4 KiB', make: (s) => request(Opcode.WRITE, s.fileNode, writeArgs(s.wfh, 0, PAGE)).bytes, error: 0 },
  { name: 'UNLINK', make: () => request(Opcode.UNLINK, 1, cstr(`f${unlinked++}`)).bytes, error: 0, maxBatches: 4096 / BATCH },
];
if (!IMAGE) LINES.push(...WRITE_LINES);
/** BENCH_ONLY=PREFIX: only the lines whose name starts with it (e.g. READ, for a profile). */
const ONLY = process.env.BENCH_ONLY;
if (ONLY !== undefined) LINES.splice(0, LINES.length, ...LINES.filter((l) => l.name.startsWith(ONLY)));

/**
 * The FORGET line: FORGETs on the hiprio ring (ring 0), one every 0.3 ms, as a guest deleting
 * files sends them — published as a Linux driver publishes, kicking only when the device's avail
 * event asks (vring_need_event) — each giving back one lookup of the READ line's file, looked up
 * that many times first (not measured). A daemon that leaves notifications on is kicked for each;
 * one that polls the ring while they come is not. Returns microseconds of daemon CPU per FORGET.
 */
const FORGET_COUNT = 4000;
const FORGET_GAP_MS = 0.3;
const FORGETS_TOO = ONLY === undefined || 'FORGET'.startsWith(ONLY);

async function forgetStream(f: TestFrontend, pid: number, node: number): Promise<number> {
  for (let i = 0; i < FORGET_COUNT; i++) {
    const r = parseReply(await f.fuse(f.rings[1] as Ring, request(Opcode.LOOKUP, 1, cstr(READ_FILE)).bytes, 256));
    if (r.error !== 0) throw new Error(`LOOKUP ${READ_FILE} for the FORGET line failed (${r.error})`);
  }
  const hp = f.rings[0] as Ring;
  const usedIdx = (): number => f.view(hp.used + 2, 2).readUInt16LE(0);
  const at = f.alloc(48 * hp.size);
  const pids = processTree(pid);
  const t0 = pids.reduce((a, p) => a + cpuUs(p), 0);
  let kicks = 0;
  for (let i = 0; i < FORGET_COUNT; i++) {
    const slot = i % hp.size;
    // The slot's previous FORGET must be back before it is used again.
    while (((hp.nextAvail - usedIdx()) & 0xffff) >= hp.size - 1) await new Promise((r) => setTimeout(r, 1));
    f.view(at + 48 * slot, 48).set(request(Opcode.FORGET, node, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])).bytes);
    f.writeDesc(hp, slot, { addr: at + 48 * slot, len: 48, flags: 0, next: 0 });
    if (f.publishAsDriver(hp, slot)) kicks++;
    for (const until = performance.now() + FORGET_GAP_MS; performance.now() < until; ) {
      // a guest between two evictions
    }
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  while (usedIdx() !== hp.nextAvail) await new Promise((r) => setTimeout(r, 1));
  const t1 = pids.reduce((a, p) => a + cpuUs(p), 0);
  forgetKicks.push(kicks);
  return (t1 - t0) / FORGET_COUNT;
}
/** Kicks the FORGET line sent, per daemon. */
const forgetKicks: number[] = [];

/** Microseconds of daemon CPU per request, per line. */
async function measure(label: string, argv: string[], socket: string): Promise<number[]> {
  const cmd = pinned(argv);
  const proc = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    await waitFor(socket, proc);
    const f = TestFrontend.connect(socket);
    await f.start({ queues: 2, size: 256 });
    const ring = f.rings[1] as Ring;
    const init = parseReply(await f.fuse(ring, request(Opcode.INIT, 0, initArgs()).bytes, 256));
    if (init.error !== 0) throw new Error(`${label}: INIT failed (${init.error})`);
    const looked = parseReply(await f.fuse(ring, request(Opcode.LOOKUP, 1, cstr(READ_FILE)).bytes, 256));
    if (looked.error !== 0) throw new Error(`${label}: LOOKUP ${READ_FILE} failed (${looked.error})`);
    const fileNode = Number(looked.payload.readBigUInt64LE(0));
    const opened = parseReply(await f.fuse(ring, request(Opcode.OPEN, fileNode, Buffer.alloc(8)).bytes, 256)); // O_RDONLY
    // An image answers ENOSYS (it asked for FUSE_NO_OPEN_SUPPORT): the kernel then reads with handle 0.
    const openless = IMAGE && opened.error === -38;
    if (opened.error !== 0 && !openless) throw new Error(`${label}: OPEN ${READ_FILE} failed (${opened.error})`);
    let wfh = 0n;
    if (!IMAGE) {
      const wopened = parseReply(await f.fuse(ring, request(Opcode.OPEN, fileNode, Buffer.from([2, 0, 0, 0, 0, 0, 0, 0])).bytes, 256)); // O_RDWR
      if (wopened.error !== 0) throw new Error(`${label}: OPEN ${READ_FILE} for writing failed (${wopened.error})`);
      wfh = wopened.payload.readBigUInt64LE(0);
    }
    const session: Session = { fileNode, fh: openless ? 0n : opened.payload.readBigUInt64LE(0), wfh };
    created = 0;
    unlinked = 0;
    const OUT = 16 + READ_SIZE;
    const reqAt = Array.from({ length: BATCH }, () => f.alloc(256));
    const outAt = Array.from({ length: BATCH }, () => f.alloc(OUT));
    const slotOf = new Map<number, number>(); // chain head -> reply buffer
    // For `pages` lines: per slot an indirect table and READ_SIZE / 4 KiB pages, a page apart.
    const PAGES = READ_SIZE / 4096;
    const tableAt = Array.from({ length: BATCH }, () => f.alloc(16 * (3 + PAGES)));
    const pageAt = Array.from({ length: BATCH }, () => Array.from({ length: PAGES }, () => (f.alloc(4096), f.alloc(4096))));
    const writeTable = (k: number, req: Buffer): number =>
      f.writeTable(
        tableAt[k] as number,
        chained([
          { addr: reqAt[k] as number, len: 40, flags: 0 }, // fuse_in_header
          { addr: (reqAt[k] as number) + 40, len: req.length - 40, flags: 0 }, // the arguments
          { addr: outAt[k] as number, len: 16, flags: DESC_WRITE }, // fuse_out_header
          ...(pageAt[k] as number[]).map((addr) => ({ addr, len: 4096, flags: DESC_WRITE })),
        ]),
      );
    const batch = async (line: Line): Promise<void> => {
      for (let k = 0; k < BATCH; k++) {
        const req = line.make(session);
        f.view(reqAt[k] as number, req.length).set(req);
        const head = ring.nextDesc;
        slotOf.set(head, k);
        if (line.pages === true) {
          f.writeDesc(ring, head, { addr: tableAt[k] as number, len: writeTable(k, req), flags: DESC_INDIRECT, next: 0 });
          ring.nextDesc = (head + 1) % ring.size;
        } else {
          f.writeDesc(ring, head, { addr: reqAt[k] as number, len: req.length, flags: DESC_NEXT, next: (head + 1) % ring.size });
          f.writeDesc(ring, (head + 1) % ring.size, { addr: outAt[k] as number, len: OUT, flags: DESC_WRITE, next: 0 });
          ring.nextDesc = (head + 2) % ring.size;
        }
        f.publish(ring, head, k === BATCH - 1);
      }
      for (let k = 0; k < BATCH; k++) {
        const u = await f.used(ring);
        const r = parseReply(f.view(outAt[slotOf.get(u.id) as number] as number, u.len));
        const negative = line.orNegativeEntry === true && r.error === 0 && r.payload.readBigUInt64LE(0) === 0n;
        if (r.error !== line.error && !negative) throw new Error(`${label} ${line.name}: error ${r.error}, expected ${line.error}`);
        if (line.replyLen !== undefined && u.len !== line.replyLen) throw new Error(`${label} ${line.name}: reply of ${u.len} bytes, expected ${line.replyLen}`);
      }
    };
    const out: number[] = [];
    for (const line of LINES) {
      for (let i = 0; i < Math.ceil(1280 / BATCH); i++) await batch(line); // warm-up (JIT, caches): 1280 requests
      const pids = processTree(proc.pid as number);
      const batches = Math.min(BATCHES, Math.ceil(line.maxBatches ?? BATCHES));
      const t0 = pids.reduce((a, p) => a + cpuUs(p), 0);
      for (let i = 0; i < batches; i++) await batch(line);
      const t1 = pids.reduce((a, p) => a + cpuUs(p), 0);
      out.push((t1 - t0) / (batches * BATCH));
    }
    if (FORGETS_TOO) out.push(await forgetStream(f, proc.pid as number, fileNode));
    f.close();
    return out;
  } catch (e) {
    process.stderr.write(`${label} stderr:\n${stderr}\n`);
    throw e;
  } finally {
    proc.kill('SIGTERM');
    if (proc.exitCode === null) await new Promise((r) => proc.once('exit', r));
  }
}

// On a memory file system where there is one: CREATE on ext4 costs both daemons 50-280 us, run to
// run, with its journal; this is to measure the daemons.
const work = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'damselfly-vhost-requests-'));
try {
  // A directory of its own for each daemon: the CREATE and UNLINK lines leave a directory that
  // thousands of files passed through, which makes the next daemon's creates slower.
  const share = (name: string): string => {
    const dir = join(work, name);
    mkdirSync(dir);
    writeFileSync(join(dir, READ_FILE), IMAGE ? randomBytes(READ_FILE_SIZE) : Buffer.alloc(READ_FILE_SIZE, 0x5a));
    return dir;
  };
  /** Damselfly's command line: as Kata starts it as virtiofsd, or serving an image of a share. */
  const damselflyArgs = (socket: string): string[] => {
    if (!IMAGE) return ['--socket-path', socket, '--shared-dir', share('d-share'), '--thread-pool-size=1', '--xattr'];
    const img = join(work, 'img');
    mkdirSync(join(img, 'blobs'), { recursive: true });
    execFileSync(process.execPath, [CLI, '--log-level', 'warn', 'build', '--bootstrap', join(img, 'boot'), '--blob-dir', join(img, 'blobs'), share('d-share')]);
    return ['virtiofs', '--bootstrap', join(img, 'boot'), '--blob-dir', join(img, 'blobs'), '--cache-dir', join(img, 'cache'), '--socket-path', socket];
  };
  if (!existsSync(VIRTIOFSD)) throw new Error(`${VIRTIOFSD} is missing (qemu-system-common; scripts/setup.sh installs it)`);
  const vfsd = await measure('virtiofsd', [VIRTIOFSD, `--socket-path=${join(work, 'v.sock')}`, '-o', `source=${share('v-share')}`, '-o', 'xattr'], join(work, 'v.sock'));
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const dfly = await measure('damselfly', [process.execPath, ...nodeArgs, CLI, ...damselflyArgs(join(work, 'd.sock'))], join(work, 'd.sock'));
  const what = IMAGE ? 'damselfly serving an image of the share (warm chunk cache)' : 'the shared directory (CREATE, UNLINK: 4096 requests)';
  const where = PIN === undefined ? '' : `, the daemons on ${PIN === 'same' ? "the benchmark's CPU 0" : 'CPU 1, the benchmark on CPU 0'}`;
  console.log(`== vhost-user requests: ${BATCHES} batches of ${BATCH} per line, ${what}, one queue${where}; daemon CPU per request ==`);
  console.log(`${'line'.padEnd(16)} ${'virtiofsd us'.padStart(13)} ${'damselfly us'.padStart(13)} ${'x'.padStart(6)}`);
  const names = [...LINES.map((l) => l.name), ...(FORGETS_TOO ? ['FORGET paced'] : [])];
  names.forEach((name, i) => {
    const v = vfsd[i] as number;
    const d = dfly[i] as number;
    console.log(`${name.padEnd(16)} ${v.toFixed(1).padStart(13)} ${d.toFixed(1).padStart(13)} ${(v / d).toFixed(2).padStart(6)}`);
  });
  if (FORGETS_TOO) console.log(`FORGET paced: ${FORGET_COUNT} FORGETs on the hiprio ring, one each ${FORGET_GAP_MS} ms, kicked when the avail event asks: virtiofsd was kicked ${forgetKicks[0]} times, damselfly ${forgetKicks[1]}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
