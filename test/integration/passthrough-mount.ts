/**
 * Test helper (not a test file): runs `damselfly passthrough` from the sources (tsx, so no build
 * is needed) in a child process, so that the test process can use the mount with blocking calls
 * without deadlocking the server, and stops it by unmounting.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { REPO } from '../helpers/env.js';

export interface PassthroughMount {
  proc: ChildProcess;
  mountpoint: string;
  stderr(): string;
  /** Unmounts (the server then exits); SIGKILL and a lazy unmount if it does not. */
  stop(): Promise<void>;
}

export async function startPassthrough(share: string, mountpoint: string, extra: string[] = [], timeoutMs = 90_000): Promise<PassthroughMount> {
  const args = ['--import', 'tsx', join(REPO, 'src', 'cli', 'main.ts'), '--log-level', 'warn', 'passthrough', '--shared-dir', share, ...extra, mountpoint];
  const proc = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(proc, 'exit');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`passthrough mount not ready in ${timeoutMs} ms\n${stderr}`)), timeoutMs);
    proc.stderr?.on('data', () => {
      if (stderr.includes('mounted on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`damselfly passthrough exited ${code} before it was ready\n${stderr}`));
    });
  });
  return {
    proc,
    mountpoint,
    stderr: () => stderr,
    async stop() {
      if (proc.exitCode !== null) {
        // A crashed server leaves its mount behind.
        try {
          execFileSync('umount', ['-l', mountpoint], { stdio: 'ignore' });
        } catch {
          // not mounted
        }
        return;
      }
      try {
        execFileSync('umount', [mountpoint], { stdio: 'ignore' });
      } catch {
        execFileSync('umount', ['-l', mountpoint], { stdio: 'ignore' });
      }
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
