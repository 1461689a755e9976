/** Starting `damselfly mount` for tests: waits until the mount is ready; stops it cleanly or by SIGKILL. */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { CLI, sh } from './env.js';

export interface RunningMount {
  proc: ChildProcess;
  mountpoint: string;
  /** Unmounts with SIGTERM; returns the exit code and stdout (the --stats JSON). */
  stop(): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** SIGKILL, as a crash; the kernel mount is then detached by the test. */
  kill(): Promise<void>;
  stderr(): string;
}

export async function startMount(args: string[], mountpoint: string, timeoutMs = 20_000, env?: NodeJS.ProcessEnv): Promise<RunningMount> {
  const proc = spawn(process.execPath, [CLI, '--log-level', 'warn', 'mount', ...args, mountpoint], { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env: { ...process.env, ...env } } : {}) });
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(proc, 'exit');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mount not ready in ${timeoutMs} ms\n${stderr}`)), timeoutMs);
    const check = (): void => {
      if (stderr.includes('mounted on')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stderr?.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`damselfly mount exited ${code} before it was ready\n${stderr}`));
    });
  });
  return {
    proc,
    mountpoint,
    async stop() {
      proc.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      return { code, stdout, stderr };
    },
    async kill() {
      proc.kill('SIGKILL');
      await exited;
    },
    stderr: () => stderr,
  };
}

/**
 * The kernel's EROFS over a v6 bootstrap: the bootstrap and its blobs' uncompressed views (spec
 * §10, from `damselfly export --blob-views`) on read-only loop devices, mounted at `mountpoint`
 * (made here) for `body`, then unmounted and the loop devices detached, whatever `body` did.
 */
export async function withKernelErofs(boot: string, views: string[], mountpoint: string, body: (mnt: string) => Promise<void>): Promise<void> {
  await mkdir(mountpoint);
  const loops: string[] = [];
  try {
    for (const f of [boot, ...views]) loops.push(sh(`losetup -f --show -r '${f}'`).trim());
    const [main, ...extra] = loops;
    sh(`mount -t erofs -o ro${extra.map((d) => `,device=${d}`).join('')} ${main} '${mountpoint}'`);
    try {
      await body(mountpoint);
    } finally {
      sh(`umount '${mountpoint}'`);
    }
  } finally {
    for (const l of loops) sh(`losetup -d ${l}`);
  }
}

/**
 * A tmpfs of its own (`size` MiB) at `dir`, which must exist: user.* xattrs, and nothing else on
 * it. The returned function detaches it (lazily, so that a mount left busy by a failed test does
 * not block the clean-up).
 */
export function privateTmpfs(dir: string, name: string, size: number): () => void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}m,mode=755`, name, dir]);
  return () => {
    try {
      execFileSync('umount', ['-l', dir]);
    } catch {
      // not mounted
    }
  };
}
