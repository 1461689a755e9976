/** What the benchmarks read of a daemon in /proc: its process tree and its memory. */
import { readFileSync, readdirSync } from 'node:fs';

/** The process and its descendants (the C virtiofsd forks a sandbox child that does the work). */
export function processTree(pid: number): number[] {
  const kids = readdirSync(`/proc/${pid}/task`).flatMap((t) => {
    try {
      return readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  });
  return [pid, ...kids.flatMap(processTree)];
}

/** A process's resident memory, KiB: all of it (VmRSS) and the part no other process shares (RssAnon). */
export function memoryKb(pid: number): { rssKb: number; anonKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: kb('VmRSS'), anonKb: kb('RssAnon') };
}
