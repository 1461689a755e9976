/**
 * Files kept next to the chunk cache for the next daemon on the host: bootstraps (a registry
 * image's, by bootstrap layer digest) and the blob meta of batch blobs (`storage/blob-meta.ts`).
 * Each is written under a temporary name of the writing process and renamed; `cache gc` removes
 * the temporary files of processes that are gone.
 */
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';

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

/**
 * Writes a kept bootstrap, synced under a temporary name, then renamed: never half there, not even
 * after a power loss (it is read back as the chunks are: trusted, as the cache directory is).
 */
export async function writeKeptBootstrap(path: string, bootstrap: Uint8Array): Promise<void> {
  const temp = keptTemp(path);
  const fh = await open(temp, 'w');
  try {
    await fh.writeFile(bootstrap);
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(temp, path);
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
