/**
 * Test environment: paths, the CLI as users run it (bin/damselfly.js over dist/), temp dirs, and
 * the shared reference vectors (read from ../shared, never copied).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO, 'bin', 'damselfly.js');
export const VECTORS = resolve(REPO, '..', 'shared', 'vectors', 'nydus');

/**
 * Fails the calling test file when a tool the suite needs is missing (pass the helper's reason,
 * e.g. `guestMissing()`). scripts/setup.sh installs every one, so an absent tool is a broken
 * set-up to be reported, never a reason to skip: only the reference vectors may be absent.
 */
export function requireTool(missing: string | false | undefined): void {
  if (missing) throw new Error(`${missing}: run scripts/setup.sh (these tests need it; they do not skip)`);
}

/** The reason to skip a vector test, or undefined when the vectors are present. */
export function vectorsMissing(): string | undefined {
  return existsSync(VECTORS) ? undefined : `${VECTORS} is absent`;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * What each thread of a process is doing, as the kernel sees it (name, state, wait channel, kernel
 * stack where readable): for a command that timed out, so that a hang says where it hangs.
 */
export function threadStates(pid: number): string {
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return `process ${pid} is gone`;
  }
  return tids
    .map((t) => {
      const at = `/proc/${pid}/task/${t}`;
      const state = read(`${at}/stat`).replace(/^.*\) /, '').split(' ')[0];
      const stack = read(`${at}/stack`).split('\n').slice(0, 6).join(' < ');
      return `thread ${t} ${read(`${at}/comm`)} state ${state} wchan ${read(`${at}/wchan`)}: ${stack}`;
    })
    .join('\n');
}

/** Runs `damselfly ARGS` to completion; one that outlives `timeoutMs` is killed, its threads' states reported. */
export function damselfly(args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, '--log-level', 'warn', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timeoutMs = opts.timeoutMs ?? 300_000;
    const timer = setTimeout(() => {
      stderr += `\n[test helper] killed after ${timeoutMs} ms; its threads then:\n${child.pid !== undefined ? threadStates(child.pid) : '?'}\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs damselfly and throws with its output unless it exits 0. */
export async function damselflyOk(args: string[]): Promise<RunResult> {
  const r = await damselfly(args);
  if (r.code !== 0) throw new Error(`damselfly ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

export async function withTempDir<T>(prefix: string, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), `damselfly-${prefix}-`));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `body`, or an error naming `what` once `ms` have passed without its result (a function: asked
 * then, e.g. for a daemon's stderr up to that moment).
 */
export async function within<T>(ms: number, what: string | (() => string), body: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${typeof what === 'string' ? what : what()}: no result after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([body, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a shell command synchronously; throws with its output on failure. */
/** Waits until `cond()` holds, polling; throws after `ms` with `what`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000, every = 50): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export function sh(cmd: string, opts: { cwd?: string } = {}): string {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', cwd: opts.cwd, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The files under `dir` this process has open (its fds in /proc/self/fd). */
export async function openPaths(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(`${dir}/`)) out.push(target);
  }
  return out;
}
