/**
 * Memory of the daemons over long runs and at rest, without a guest: the in-process test frontend
 * (test/helpers/vhost-frontend.ts) drives each daemon over its socket, and the anonymous resident
 * memory (RssAnon, of the daemon and its children: the C virtiofsd forks a sandbox child) is read
 * after every round. The reference C virtiofsd (/usr/lib/qemu/virtiofsd) runs the same requests.
 *
 *   share   the shared directory, Damselfly as Kata starts it (virtiofsd argv) against virtiofsd:
 *           per round BENCH_FILES files each created, written (4 KiB), released, looked up,
 *           stat'ed, unlinked and forgotten (8 requests a file); then BENCH_REST_S seconds idle
 *           (Damselfly collects garbage after 10 s without a request), and the memory once more
 *   image   `damselfly virtiofs` on a RAFS image of BENCH_FILES small files (chunk cache) against
 *           virtiofsd on the same tree: per round each file looked up, stat'ed, read and
 *           forgotten, and a READDIRPLUS of their directory; then BENCH_REST_S seconds idle
 *           (Damselfly goes to rest after 10 s without a read), and the memory once more
 *
 * A daemon whose memory grows with the rounds leaks; the figures at rest show what an idle daemon
 * keeps. Prints each daemon's RssAnon after round 1, its highest, after the last round and at
 * rest, and the ratio virtiofsd / Damselfly (> 1: Damselfly keeps less). Damselfly's collection
 * at rest is timed from its debug log ("at rest: … garbage collected").
 *
 * Usage: node --import tsx scripts/bench/memory.ts [ROUNDS]   (root: virtiofsd's sandbox)
 * BENCH_FILES (default 2000), BENCH_REST_S (default 15).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Opcode } from '../../src/fuse/index.js';
import { CLI, within } from '../../test/helpers/env.js';
import { cstr, initArgs, parseReply, request } from '../../test/helpers/fuse-client.js';
import { type Ring, TestFrontend } from '../../test/helpers/vhost-frontend.js';
import { memoryKb, processTree } from './proc.js';

const ROUNDS = Number(process.argv[2] ?? 10);
const FILES = Number(process.env.BENCH_FILES ?? 2000);
const REST_S = Number(process.env.BENCH_REST_S ?? 15);
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/** RssAnon of the process tree, MB. */
function rssAnonMb(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    try {
      kb += memoryKb(p).anonKb;
    } catch {
      // ended meanwhile
    }
  }
  return kb / 1024;
}

interface Daemon {
  proc: ChildProcess;
  stderr: () => string;
}

async function start(argv: string[], socket: string): Promise<Daemon> {
  const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-100_000)));
  for (let i = 0; i < 400 && !existsSync(socket); i++) {
    if (proc.exitCode !== null) throw new Error(`${argv[0]} exited (${proc.exitCode}): ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!existsSync(socket)) throw new Error(`no socket at ${socket}: ${err}`);
  return { proc, stderr: () => err };
}

type Call = (op: Opcode, node: bigint | number, args: Buffer, cap?: number) => Promise<{ error: number; payload: Buffer }>;

/** A connected session: INIT done; `call` sends a request and awaits its reply, `forget` one without. */
async function session(socket: string): Promise<{ f: TestFrontend; call: Call; forget: (node: bigint) => Promise<void> }> {
  const f = TestFrontend.connect(socket);
  await f.start({ queues: 2, size: 256 });
  const ring = f.rings[1] as Ring;
  const call: Call = async (op, node, args, cap = 4096) => parseReply(await f.fuse(ring, request(op, Number(node), args).bytes, cap));
  const forget = async (node: bigint): Promise<void> => {
    const n = Buffer.alloc(8);
    n.writeBigUInt64LE(1n);
    // No reply comes: the used element's length is 0, which the helper cannot view.
    await f.fuse(ring, request(Opcode.FORGET, Number(node), n).bytes, 64).catch(() => undefined);
  };
  if ((await call(Opcode.INIT, 0, initArgs())).error !== 0) throw new Error('INIT failed');
  return { f, call, forget };
}

function check(what: string, r: { error: number }): void {
  if (r.error !== 0) throw new Error(`${what}: error ${r.error}`);
}

async function shareRound(s: Awaited<ReturnType<typeof session>>, round: number): Promise<void> {
  const create = Buffer.alloc(16); // fuse_create_in: flags O_CREAT|O_RDWR, mode, umask, open_flags
  create.writeUInt32LE(0o102, 0);
  create.writeUInt32LE(0o100644, 4);
  create.writeUInt32LE(0o022, 8);
  for (let i = 0; i < FILES; i++) {
    const name = `f${round}-${i}`;
    const c = await s.call(Opcode.CREATE, 1, Buffer.concat([create, cstr(name)]));
    check('CREATE', c);
    const node = c.payload.readBigUInt64LE(0);
    const fh = c.payload.readBigUInt64LE(128);
    const w = Buffer.alloc(40); // fuse_write_in
    w.writeBigUInt64LE(fh, 0);
    w.writeUInt32LE(4096, 16);
    check('WRITE', await s.call(Opcode.WRITE, node, Buffer.concat([w, Buffer.alloc(4096, 0x61)])));
    const rel = Buffer.alloc(24);
    rel.writeBigUInt64LE(fh, 0);
    check('RELEASE', await s.call(Opcode.RELEASE, node, rel));
    check('LOOKUP', await s.call(Opcode.LOOKUP, 1, cstr(name)));
    check('GETATTR', await s.call(Opcode.GETATTR, node, Buffer.alloc(16)));
    check('UNLINK', await s.call(Opcode.UNLINK, 1, cstr(name)));
    await s.forget(node); // the CREATE's reference
    await s.forget(node); // the LOOKUP's
  }
}

async function imageRound(s: Awaited<ReturnType<typeof session>>): Promise<void> {
  const dir = await s.call(Opcode.LOOKUP, 1, cstr('d'));
  check('LOOKUP d', dir);
  const dnode = dir.payload.readBigUInt64LE(0);
  for (let i = 0; i < FILES; i++) {
    const l = await s.call(Opcode.LOOKUP, dnode, cstr(`f${i}`));
    check('LOOKUP', l);
    const node = l.payload.readBigUInt64LE(0);
    check('GETATTR', await s.call(Opcode.GETATTR, node, Buffer.alloc(16)));
    const open = await s.call(Opcode.OPEN, node, Buffer.alloc(8));
    const fh = open.error === 0 ? open.payload.readBigUInt64LE(0) : 0n; // an image answers ENOSYS (no open)
    const ra = Buffer.alloc(40); // fuse_read_in
    ra.writeBigUInt64LE(fh, 0);
    ra.writeUInt32LE(8192, 16);
    const rd = await s.call(Opcode.READ, node, ra, 16 + 8192);
    check('READ', rd);
    if (rd.payload.length !== 4096 + (i % 2048)) throw new Error(`READ of f${i}: ${rd.payload.length} bytes`);
    if (open.error === 0) {
      const rel = Buffer.alloc(24);
      rel.writeBigUInt64LE(fh, 0);
      check('RELEASE', await s.call(Opcode.RELEASE, node, rel));
    }
    await s.forget(node);
  }
  const od = await s.call(Opcode.OPENDIR, dnode, Buffer.alloc(8));
  const dfh = od.error === 0 ? od.payload.readBigUInt64LE(0) : 0n;
  for (let off = 0n, more = true; more; ) {
    const a = Buffer.alloc(40); // fuse_read_in for READDIRPLUS
    a.writeBigUInt64LE(dfh, 0);
    a.writeBigUInt64LE(off, 8);
    a.writeUInt32LE(65536, 16);
    const r = await s.call(Opcode.READDIRPLUS, dnode, a, 16 + 65536);
    check('READDIRPLUS', r);
    more = r.payload.length > 0;
    // fuse_direntplus: fuse_entry_out (128), then fuse_dirent (ino, off, namelen, type, name)
    for (let at = 0; at < r.payload.length; ) {
      const node = r.payload.readBigUInt64LE(at);
      off = r.payload.readBigUInt64LE(at + 136);
      const namelen = r.payload.readUInt32LE(at + 144);
      if (node !== 0n) await s.forget(node);
      at += 128 + 24 + ((namelen + 7) & ~7);
    }
  }
  const rel = Buffer.alloc(24);
  rel.writeBigUInt64LE(dfh, 0);
  if (od.error === 0) check('RELEASEDIR', await s.call(Opcode.RELEASEDIR, dnode, rel));
  await s.forget(dnode);
}

interface Figures {
  first: number;
  peak: number;
  last: number;
  rest?: number;
  restMs?: string;
}

async function run(label: string, argv: string[], socket: string, round: (s: Awaited<ReturnType<typeof session>>, r: number) => Promise<void>, rest: boolean): Promise<Figures> {
  const d = await start(argv, socket);
  const exited = once(d.proc, 'exit');
  try {
    const s = await session(socket);
    const seen: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      await round(s, r);
      seen.push(rssAnonMb(d.proc.pid as number));
      process.stderr.write(`bench: ${label} round ${r + 1}: ${(seen.at(-1) as number).toFixed(1)} MB\n`);
    }
    const out: Figures = { first: seen[0] as number, peak: Math.max(...seen), last: seen.at(-1) as number };
    if (rest) {
      await new Promise((r) => setTimeout(r, REST_S * 1000));
      out.rest = rssAnonMb(d.proc.pid as number);
    }
    // The frontend leaves: the daemon exits, its log written out (it is buffered until then).
    s.f.close();
    await within(10_000, `${label} did not exit`, exited);
    if (rest) out.restMs = /"ms":([\d.]+)[^\n]*at rest/.exec(d.stderr())?.[1];
    return out;
  } finally {
    d.proc.kill('SIGTERM');
  }
}

const work = mkdtempSync(join(tmpdir(), 'damselfly-memory-'));
try {
  if (!existsSync(VIRTIOFSD)) throw new Error(`${VIRTIOFSD} is missing (qemu-system-common; scripts/setup.sh installs it)`);
  const dfly = (args: string[]): string[] => [process.execPath, CLI, ...args];
  const shareDir = (name: string): string => {
    const dir = join(work, name);
    mkdirSync(dir);
    return dir;
  };
  const shareV = await run('virtiofsd share', [VIRTIOFSD, `--socket-path=${join(work, 'sv.sock')}`, '-o', `source=${shareDir('sv')}`, '-o', 'xattr'], join(work, 'sv.sock'), shareRound, true);
  const shareD = await run('damselfly share', dfly(['--socket-path', join(work, 'sd.sock'), '--shared-dir', shareDir('sd'), '--thread-pool-size=1', '--xattr']), join(work, 'sd.sock'), shareRound, true);

  const tree = join(work, 'tree');
  mkdirSync(join(tree, 'd'), { recursive: true });
  for (let i = 0; i < FILES; i++) writeFileSync(join(tree, 'd', `f${i}`), Buffer.alloc(4096 + (i % 2048), i & 0xff));
  mkdirSync(join(work, 'blobs'));
  execFileSync(process.execPath, [CLI, '--log-level', 'warn', 'build', '--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), tree]);
  const imageV = await run('virtiofsd tree', [VIRTIOFSD, `--socket-path=${join(work, 'iv.sock')}`, '-o', `source=${tree}`], join(work, 'iv.sock'), imageRound, true);
  const imageArgs = ['--log-level', 'debug', 'virtiofs', '--socket-path', join(work, 'id.sock'), '--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), '--cache-dir', join(work, 'cache')];
  const imageD = await run('damselfly image', dfly(imageArgs), join(work, 'id.sock'), imageRound, true);

  console.log(`== daemon memory: RssAnon MB (daemon and children), ${ROUNDS} rounds of ${FILES} files; at rest: ${REST_S} s after the last round ==`);
  console.log(`${'line'.padEnd(22)} ${'virtiofsd'.padStart(30)} ${'damselfly'.padStart(30)} ${'x last'.padStart(7)} ${'x rest'.padStart(7)}`);
  const fmt = (f: Figures): string => `${f.first.toFixed(1)} / ${f.peak.toFixed(1)} / ${f.last.toFixed(1)}${f.rest !== undefined ? ` / ${f.rest.toFixed(1)}` : ''}`;
  const line = (name: string, v: Figures, d: Figures): void => {
    const rest = v.rest !== undefined && d.rest !== undefined ? (v.rest / d.rest).toFixed(2) : '-';
    console.log(`${name.padEnd(22)} ${fmt(v).padStart(30)} ${fmt(d).padStart(30)} ${(v.last / d.last).toFixed(2).padStart(7)} ${rest.padStart(7)}`);
  };
  line('share (8 req/file)', shareV, shareD);
  line('image (5 req/file)', imageV, imageD);
  console.log('(per daemon: after round 1 / highest / after the last round [/ at rest])');
  console.log(`damselfly's collection at rest: ${imageD.restMs ?? '(none logged)'} ms`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
