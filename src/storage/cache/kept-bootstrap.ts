/**
 * Files kept next to the chunk cache for the next daemon on the host: bootstraps (a registry
 * image's, by bootstrap layer digest) and the blob meta of batch blobs (`storage/blob-meta.ts`).
 * Each is written under a temporary name of the writing process and renamed; `cache gc` removes
 * the temporary files of processes that are gone.
 */
import { createHash } from 'node:crypto';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError } from '../../base/index.js';

const SUFFIX = '.image.boot';
const TEMP = /\.(?:image\.boot|blob_meta\.dfly)\.(\d+)\.tmp$/;

/** Where the bootstrap of the image whose bootstrap layer is `layerDigest` is kept. */
export function keptBootstrapPath(cacheDir: string, layerDigest: string): string {
  return join(cacheDir, `${layerDigest.replace(':', '-')}${SUFFIX}`);
}

/** The bootstrap layer digest a kept bootstrap's file name stands for; undefined for other names. */
export function keptBootstrapDigest(name: string): string | undefined {
  const m = /^(sha256|sha512)-([0-9a-f]{64,128})\.image\.boot$/.exec(name);
  return m === null ? undefined : `${m[1]}:${m[2]}`;
}

/** What ends a kept bootstrap: the SHA-256 of the bootstrap before it, then this. */
const SEAL = Buffer.from('DFLYKEPT');
const SEAL_SIZE = 32 + SEAL.length;

/**
 * Writes a kept bootstrap: the bootstrap and its SHA-256, synced under a temporary name, then
 * renamed (never half there, not even after a power loss).
 */
export async function writeKeptBootstrap(path: string, bootstrap: Uint8Array): Promise<void> {
  const temp = keptTemp(path);
  const fh = await open(temp, 'w');
  try {
    await fh.writev([bootstrap, createHash('sha256').update(bootstrap).digest(), SEAL]);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(temp, path);
}

/** The bootstrap in a kept file, checked against its SHA-256: a file changed or cut on disk is refused. */
export function openKeptBootstrap(file: Buffer): Buffer {
  const body = file.length - SEAL_SIZE;
  if (body <= 0 || !file.subarray(file.length - SEAL.length).equals(SEAL)) throw new FormatError('not a kept bootstrap (no checksum at its end)');
  const bootstrap = file.subarray(0, body);
  if (!createHash('sha256').update(bootstrap).digest().equals(file.subarray(body, body + 32))) throw new FormatError('the kept bootstrap does not match its checksum');
  return bootstrap;
}

/** The name this process writes `path` under before renaming it. */
export function keptTemp(path: string): string {
  return `${path}.${process.pid}.tmp`;
}

/** Whether `name` is a kept bootstrap's temporary file left by a process that no longer runs. */
export function isStaleKeptTemp(name: string): boolean {
  const m = TEMP.exec(name);
  if (m === null) return false;
  try {
    process.kill(Number(m[1]), 0);
    return false; // that process runs (or its pid was reused: the file waits for the next gc)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
