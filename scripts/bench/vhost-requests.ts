/**
 * Per-request cost of the vhost-user path, without a guest: the in-process test frontend
 * (test/helpers/vhost-frontend.ts: memfd guest memory, eventfds, the QEMU handshake) drives a
 * daemon over its socket with batches of small FUSE requests on one queue (the batch published,
 * one kick, every reply awaited), and the daemon's CPU (user + system of all its threads, and of
 * its children: the C virtiofsd forks a sandbox child) is divided by the number of requests.
 * The same run measures the reference C virtiofsd (/usr/lib/qemu/virtiofsd) and `damselfly` as
 * Kata starts it (virtiofsd-compatible argv) on the same empty shared directory, with GETATTR of
 * the root, LOOKUP of a missing name (the negative lookup before every create) and GETXATTR of an
 * absent security.capability (asked before writes): the last two are error replies.
 * A guest under TCG hides these costs behind its own; this shows what each request costs the host.
 *
 * Usage: node --import tsx scripts/bench/vhost-requests.ts [BATCHES]   (root: virtiofsd's sandbox)
 * BENCH_NODE_ARGS adds Node options to the Damselfly daemon, e.g. "--cpu-prof --cpu-prof-dir=DIR"
 * (read the profile with scripts/bench/cpuprof-top.ts) or "--perf-basic-prof" (for perf record).
 * Prints microseconds of daemon CPU per request and the ratio virtiofsd / Damselfly (> 1:
 * Damselfly uses less). Machines here are shared and noisy: only the ratios mean something.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Opcode } from '../../src/fuse/index.js';
import { CLI } from '../../test/helpers/env.js';
import { cstr, initArgs, parseReply, request } from '../../test/helpers/fuse-client.js';
import { DESC_NEXT, DESC_WRITE, type Ring, TestFrontend } from '../../test/helpers/vhost-frontend.js';

const BATCH = Number(process.env.BENCH_BATCH ?? 64);
const BATCHES = Number(process.argv[2] ?? 300);
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const TICK_US = 1e6 / 100; // USER_HZ

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

/** The same from tick-sampled accounting (/proc/PID/stat utime + stime), all threads, exited ones included. */
function ticksUs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) * TICK_US;
  } catch {
    return 0;
  }
}

function tree(pid: number): number[] {
  const kids = readdirSync(`/proc/${pid}/task`).flatMap((t) => {
    try {
      return readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  return [pid, ...kids.flatMap(tree)];
}

async function waitFor(path: string, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 200 && !existsSync(path); i++) {
    if (proc.exitCode !== null) throw new Error(`daemon exited (${proc.exitCode}) before creating ${path}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!existsSync(path)) throw new Error(`no socket at ${path}`);
}

interface Line {
  name: string;
  make: () => Buffer;
  /** The reply's expected error (0 or a negative errno). */
  error: number;
}

const LINES: Line[] = [
  { name: 'GETATTR /', make: () => request(Opcode.GETATTR, 1, Buffer.alloc(16)).bytes, error: 0 },
  { name: 'LOOKUP missing', make: () => request(Opcode.LOOKUP, 1, cstr('missing')).bytes, error: -2 },
  // What the kernel asks before a write: security.capability, absent on most files (ENODATA).
  { name: 'GETXATTR absent', make: () => request(Opcode.GETXATTR, 1, Buffer.concat([Buffer.alloc(8), cstr('security.capability')])).bytes, error: -61 },
];

/** Microseconds of daemon CPU per request, per line. */
async function measure(label: string, argv: string[], socket: string): Promise<number[]> {
  const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  try {
    await waitFor(socket, proc);
    const f = TestFrontend.connect(socket);
    await f.start({ queues: 2, size: 256 });
    const ring = f.rings[1] as Ring;
    const init = parseReply(await f.fuse(ring, request(Opcode.INIT, 0, initArgs()).bytes, 256));
    if (init.error !== 0) throw new Error(`${label}: INIT failed (${init.error})`);
    const reqAt = Array.from({ length: BATCH }, () => f.alloc(256));
    const outAt = Array.from({ length: BATCH }, () => f.alloc(256));
    const slotOf = new Map<number, number>(); // chain head -> reply buffer
    const batch = async (line: Line): Promise<void> => {
      for (let k = 0; k < BATCH; k++) {
        const req = line.make();
        f.view(reqAt[k] as number, req.length).set(req);
        const head = ring.nextDesc;
        slotOf.set(head, k);
        f.writeDesc(ring, head, { addr: reqAt[k] as number, len: req.length, flags: DESC_NEXT, next: (head + 1) % ring.size });
        f.writeDesc(ring, (head + 1) % ring.size, { addr: outAt[k] as number, len: 256, flags: DESC_WRITE, next: 0 });
        ring.nextDesc = (head + 2) % ring.size;
        f.publish(ring, head, k === BATCH - 1);
      }
      for (let k = 0; k < BATCH; k++) {
        const u = await f.used(ring);
        const r = parseReply(f.view(outAt[slotOf.get(u.id) as number] as number, u.len));
        if (r.error !== line.error) throw new Error(`${label} ${line.name}: error ${r.error}, expected ${line.error}`);
      }
    };
    const out: number[] = [];
    for (const line of LINES) {
      for (let i = 0; i < Math.ceil(1280 / BATCH); i++) await batch(line); // warm-up (JIT, caches): 1280 requests
      const pids = tree(proc.pid as number);
      const t0 = pids.reduce((a, p) => a + cpuUs(p), 0);
      const k0 = pids.reduce((a, p) => a + ticksUs(p), 0);
      for (let i = 0; i < BATCHES; i++) await batch(line);
      const t1 = pids.reduce((a, p) => a + cpuUs(p), 0);
      const k1 = pids.reduce((a, p) => a + ticksUs(p), 0);
      process.stderr.write(`${label} ${line.name}: schedstat ${((t1 - t0) / (BATCHES * BATCH)).toFixed(1)} us, ticks ${((k1 - k0) / (BATCHES * BATCH)).toFixed(1)} us\n`);
      out.push((t1 - t0) / (BATCHES * BATCH));
    }
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

const work = mkdtempSync(join(tmpdir(), 'damselfly-vhost-requests-'));
try {
  const share = join(work, 'share');
  mkdirSync(share);
  if (!existsSync(VIRTIOFSD)) throw new Error(`${VIRTIOFSD} is missing (qemu-system-common; scripts/setup.sh installs it)`);
  const vfsd = await measure('virtiofsd', [VIRTIOFSD, `--socket-path=${join(work, 'v.sock')}`, '-o', `source=${share}`, '-o', 'xattr'], join(work, 'v.sock'));
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const dfly = await measure('damselfly', [process.execPath, ...nodeArgs, CLI, '--socket-path', join(work, 'd.sock'), '--shared-dir', share, '--thread-pool-size=1', '--xattr'], join(work, 'd.sock'));
  console.log(`== vhost-user requests: ${BATCHES} batches of ${BATCH} per line, one queue; daemon CPU per request ==`);
  console.log(`${'line'.padEnd(16)} ${'virtiofsd us'.padStart(13)} ${'damselfly us'.padStart(13)} ${'x'.padStart(6)}`);
  LINES.forEach((l, i) => {
    const v = vfsd[i] as number;
    const d = dfly[i] as number;
    console.log(`${l.name.padEnd(16)} ${v.toFixed(1).padStart(13)} ${d.toFixed(1).padStart(13)} ${(v / d).toFixed(2).padStart(6)}`);
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}
