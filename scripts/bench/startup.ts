/**
 * What a daemon costs Kata before and after it serves: Kata starts one for every sandbox and waits
 * until it listens, and it stays for the sandbox's life. For the reference C virtiofsd
 * (/usr/lib/qemu/virtiofsd) and for `damselfly` as Kata starts it (virtiofsd-compatible argv, then
 * nydusd's `virtiofs --apisock … --sock …`), each started RUNS times on the same shared directory:
 *
 * - ready: from spawn until the daemon says it listens ("Waiting for vhost-user socket
 *   connection..." on stderr, which runtime-rs waits for; for nydusd mode, until
 *   GET /api/v1/daemon on the API socket answers RUNNING, which the runtime polls for);
 * - RSS at rest: resident memory once ready (VmRSS; RssAnon, the part no other process shares —
 *   the node binary's pages are shared by every daemon on the host).
 *
 * The process environment is passed as it is, except NODE_EXTRA_CA_CERTS (some CI images set it;
 * Node then reads the CA bundle at start, 40 ms here, which no Kata host would pay).
 *
 * Usage: node --import tsx scripts/bench/startup.ts [RUNS]   (default 10; best and median printed)
 * Machines here are shared and noisy: only the ratios mean something (x > 1: Damselfly is faster
 * or smaller).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from '../../test/helpers/env.js';
import { memoryKb } from './proc.js';

const RUNS = Number(process.argv[2] ?? 10);
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const READY_LINE = 'Waiting for vhost-user socket connection';

interface Sample {
  readyMs: number;
  rssKb: number;
  anonKb: number;
}


function apiRunning(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: sock, path: '/api/v1/daemon', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve(body.includes('RUNNING')));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** SIGKILL to the daemon's process group (the C virtiofsd forks; Kata ends daemons with SIGKILL too). */
async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  try {
    process.kill(-(p.pid as number), 'SIGKILL');
  } catch {
    p.kill('SIGKILL');
  }
  await exited;
}

/** One start: spawn, wait until ready, read the memory, stop. */
async function once(argv: string[], ready: { line: string } | { api: string }): Promise<Sample> {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const t0 = performance.now();
  const p = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env, detached: true });
  let err = '';
  try {
    const readyMs = await new Promise<number>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`${argv[0]} not ready within 20 s: ${err}`)), 20_000);
      p.once('exit', (code) => reject(new Error(`${argv[0]} exited (${code}): ${err}`)));
      const done = (): void => {
        clearTimeout(deadline);
        resolve(performance.now() - t0);
      };
      if ('line' in ready) {
        p.stderr?.on('data', (d: Buffer) => {
          err += d.toString();
          if (err.includes(ready.line)) done();
        });
      } else {
        p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
        const poll = async (): Promise<void> => {
          while (!(await apiRunning(ready.api))) await new Promise((r) => setTimeout(r, 2));
          done();
        };
        void poll();
      }
    });
    return { readyMs, ...memoryKb(p.pid as number) };
  } finally {
    await stop(p);
  }
}

function summary(xs: number[]): { best: number; median: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { best: s[0] as number, median: s[Math.floor(s.length / 2)] as number };
}

const work = mkdtempSync(join(tmpdir(), 'damselfly-startup-'));
try {
  if (!existsSync(VIRTIOFSD)) throw new Error(`${VIRTIOFSD} is missing (qemu-system-common; scripts/setup.sh installs it)`);
  const sock = join(work, 'vu.sock');
  const api = join(work, 'api.sock');
  const daemons: Array<{ name: string; argv: string[]; ready: { line: string } | { api: string } }> = [
    { name: 'virtiofsd (C)', argv: [VIRTIOFSD, `--socket-path=${sock}`, '-o', `source=${work}`], ready: { line: READY_LINE } },
    { name: 'damselfly as virtiofsd', argv: [process.execPath, CLI, `--socket-path=${sock}`, `--shared-dir=${work}`, '--cache=auto'], ready: { line: READY_LINE } },
    { name: 'damselfly as nydusd', argv: [process.execPath, CLI, 'virtiofs', '--apisock', api, '--sock', sock], ready: { api } },
  ];
  const results = new Map<string, Sample[]>();
  // Interleaved, so that a noisy spell of the machine falls on all of them alike.
  for (let i = 0; i < RUNS; i++) {
    for (const d of daemons) {
      rmSync(sock, { force: true });
      rmSync(api, { force: true });
      const s = await once(d.argv, d.ready);
      results.set(d.name, [...(results.get(d.name) ?? []), s]);
    }
  }
  const ref = results.get('virtiofsd (C)') as Sample[];
  const refReady = summary(ref.map((s) => s.readyMs));
  const refAnon = summary(ref.map((s) => s.anonKb));
  console.log(`== daemon start: spawn to ready, and memory once ready; ${RUNS} starts each (best / median) ==`);
  console.log(`${'daemon'.padEnd(24)} ${'ready ms'.padStart(15)} ${'x'.padStart(6)} ${'RSS KiB'.padStart(15)} ${'RssAnon KiB'.padStart(15)} ${'x anon'.padStart(7)}`);
  for (const [name, xs] of results) {
    const r = summary(xs.map((s) => s.readyMs));
    const rss = summary(xs.map((s) => s.rssKb));
    const anon = summary(xs.map((s) => s.anonKb));
    const pair = (a: number, b: number): string => `${a.toFixed(0)} / ${b.toFixed(0)}`;
    console.log(
      `${name.padEnd(24)} ${pair(r.best, r.median).padStart(15)} ${(refReady.median / r.median).toFixed(2).padStart(6)} ${pair(rss.best, rss.median).padStart(15)} ${pair(anon.best, anon.median).padStart(15)} ${(refAnon.median / anon.median).toFixed(2).padStart(7)}`,
    );
  }
  console.log('x: virtiofsd / the daemon, medians (> 1: the daemon is faster or smaller)');
} finally {
  rmSync(work, { recursive: true, force: true });
}
