/**
 * `damselfly fuse` (nydusd's FUSE daemon) as a child process, and the host mount table, for the
 * tests of that mode.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { CLI } from './env.js';

export interface FuseDaemon {
  proc: ChildProcess;
  stderr: () => string;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

export function startFuseDaemon(args: string[]): FuseDaemon {
  const proc = spawn(process.execPath, [CLI, 'fuse', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return { proc, stderr: () => stderr, exited: once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]> };
}

/** The /proc/self/mounts lines of `mountpoint` (several when mounts are stacked). */
export async function mountLines(mountpoint: string): Promise<string[]> {
  return (await readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => l.split(' ')[1] === mountpoint);
}

/** The /proc/self/mounts line of `mountpoint`, if it is mounted. */
export async function mountLine(mountpoint: string): Promise<string | undefined> {
  return (await mountLines(mountpoint))[0];
}
