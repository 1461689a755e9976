/**
 * Build information in nydusd's `BuildTimeInfo` shape: the package version from package.json, the
 * git commit of the checkout when there is one (else the `DAMSELFLY_GIT_COMMIT` environment
 * variable, else "unknown"), the time the code was built (the mtime of this module), the
 * profile, and — in the field nydusd fills with its rustc version — the Node.js version.
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildInfo } from './control.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** src/daemon or dist/daemon → the package root. */
const ROOT = join(HERE, '..', '..');

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

function gitCommit(): string {
  const env = process.env['DAMSELFLY_GIT_COMMIT'];
  if (env) return env;
  try {
    const head = readFileSync(join(ROOT, '.git', 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head;
    const ref = head.slice(5);
    try {
      return readFileSync(join(ROOT, '.git', ref), 'utf8').trim();
    } catch {
      const packed = readFileSync(join(ROOT, '.git', 'packed-refs'), 'utf8');
      const line = packed.split('\n').find((l) => l.endsWith(` ${ref}`));
      return line?.split(' ')[0] ?? 'unknown';
    }
  } catch {
    return 'unknown';
  }
}

function buildTime(): string {
  try {
    return statSync(fileURLToPath(import.meta.url)).mtime.toISOString();
  } catch {
    return 'unknown';
  }
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= {
    package_ver: packageVersion(),
    git_commit: gitCommit(),
    build_time: buildTime(),
    profile: 'release',
    rustc: `node ${process.version}`,
  };
  return cached;
}
