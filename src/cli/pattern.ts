/**
 * `damselfly pattern`: the access pattern a running daemon recorded for one RAFS mount (the
 * files the guest opened or read, first accessed first), asked of its control API
 * (`GET /api/v1/metrics/pattern`). By default printed as a prefetch list, one image path per
 * line, which `damselfly build --prefetch-files` and `convert --prefetch-files` take.
 */
import { request } from 'node:http';
import type { Command } from 'commander';
import { DamselflyError, ErrorCode } from '../base/index.js';
import { printJson, run } from './common.js';

interface PatternFlags {
  apisock: string;
  id?: string;
  json?: boolean;
}

interface PatternItem {
  ino: number;
  path: string | null;
  nr_read: number;
}

/** GET `path` on the API socket; resolves with the status and the body text (within `timeoutMs`). */
export function apiGet(socketPath: string, path: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', headers: { host: 'localhost' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    // A daemon that accepts but never answers: an error, not a wait for ever.
    req.on('timeout', () => req.destroy(new DamselflyError(ErrorCode.Backend, `the daemon at ${socketPath} did not answer within ${timeoutMs / 1000} s`)));
    req.end();
  });
}

export function register(program: Command): void {
  program
    .command('pattern')
    .description("print a daemon's recorded access pattern of a RAFS mount as a prefetch list (one path per line)")
    .requiredOption('--apisock <path>', 'the daemon API socket')
    .option('--id <mountpoint>', 'the mount, e.g. /rafs/<cid>/lowerdir (default: the only RAFS mount)')
    .option('--json', 'print the pattern as the API returns it')
    .action((flags: PatternFlags) =>
      run(async () => {
        const q = flags.id !== undefined ? `?id=${encodeURIComponent(flags.id)}` : '';
        const r = await apiGet(flags.apisock, `/api/v1/metrics/pattern${q}`);
        if (r.status !== 200) {
          let message = r.body;
          try {
            message = (JSON.parse(r.body) as { message?: string }).message ?? r.body;
          } catch {
            // not JSON: show it as it is
          }
          throw new DamselflyError(r.status === 404 ? ErrorCode.NotFound : ErrorCode.Backend, `the daemon answered ${r.status}: ${message}`);
        }
        const items = JSON.parse(r.body) as PatternItem[];
        if (flags.json === true) return printJson(items);
        for (const it of items) if (it.path !== null && !it.path.includes('\n')) process.stdout.write(`${it.path}\n`);
      }),
    );
}
