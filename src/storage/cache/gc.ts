/**
 * Cache garbage collection: evicts whole blobs (data file, chunk map, kept blob meta) and kept
 * bootstraps, least recently used first, until the cache directory fits a size limit. A blob some
 * process has open (its chunk map is flocked) is never removed; a kept bootstrap is read only when
 * a daemon starts, so removing one costs the next daemon of that image a fetch of it, never a
 * running daemon anything. Kept bootstraps and blob metas left half-written by a daemon that is
 * gone go too.
 */
import { open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, errorMessage } from '../../base/index.js';
import { LOCK_EX, LOCK_NB, native } from '../../native/index.js';
import { CACHE_DATA_SUFFIX as DATA, CACHE_MAP_SUFFIX as MAP, type CachedBlob, cacheName } from './blob-cache.js';
import type { CacheCipher } from './cache-cipher.js';
import { isStaleKeptTemp, keptBootstrapDigest, keptBootstrapPath } from './kept-bootstrap.js';
import { CACHE_META_SUFFIX as META } from '../blob-meta.js';

export interface CacheEntry {
  /** A blob's chunks, or an image's bootstrap kept for the next daemon of that image. */
  kind: 'blob' | 'bootstrap';
  /** The blob id, or the bootstrap layer's digest. */
  id: string;
  /** Bytes on disk (allocated blocks: cache files are sparse). */
  bytes: number;
  /** Last time a process opened the blob, or a daemon wrote or reused the bootstrap (ms since the epoch). */
  lastUsed: number;
  inUse: boolean;
}

async function isInUse(mapPath: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(mapPath, 'r');
  } catch {
    return false;
  }
  try {
    return !native.flock(fh.fd, LOCK_EX | LOCK_NB);
  } finally {
    await fh.close(); // closing releases the probe's lock
  }
}

/** Everything the cache directory holds, least recently used first. */
export async function listCache(dir: string): Promise<CacheEntry[]> {
  const out: CacheEntry[] = [];
  const names = await readdir(dir);
  const present = new Set(names);
  for (const name of names) {
    const digest = keptBootstrapDigest(name);
    if (digest !== undefined) {
      const st = await stat(join(dir, name)).catch(() => undefined);
      if (st !== undefined) out.push({ kind: 'bootstrap', id: digest, bytes: st.blocks * 512, lastUsed: st.mtimeMs, inUse: false });
      continue;
    }
    // A blob: its data file, chunk map and kept blob meta; or a kept meta alone (read for an
    // image whose chunks were never fetched), which is the blob's entry until data comes.
    const suffix = name.endsWith(DATA) ? DATA : name.endsWith(META) ? META : undefined;
    if (suffix === undefined) continue;
    const id = name.slice(0, -suffix.length);
    if (suffix === META && present.has(id + DATA)) continue; // counted with its data
    const [data, map, meta] = await Promise.all([DATA, MAP, META].map((s) => stat(join(dir, id + s)).catch(() => undefined)));
    if (data === undefined && meta === undefined) continue; // removed meanwhile
    out.push({
      kind: 'blob',
      id,
      bytes: [data, map, meta].reduce((n, st) => n + (st ? st.blocks * 512 : 0), 0),
      lastUsed: Math.max(map?.mtimeMs ?? 0, data?.mtimeMs ?? 0, meta?.mtimeMs ?? 0),
      inUse: await isInUse(join(dir, id + MAP)),
    });
  }
  return out.sort((a, b) => a.lastUsed - b.lastUsed);
}

export interface GcResult {
  /** Ids of the blobs removed, least recently used first. */
  removed: string[];
  /** Bootstrap layer digests of the kept bootstraps removed, least recently used first. */
  removedBootstraps: string[];
  freedBytes: number;
  remainingBytes: number;
  /** Blobs kept only because they are in use. */
  busy: string[];
}

/** Removes a file; false (after a warning) when it is still there. */
async function removed(path: string, log: Logger): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true;
    log.warn({ file: path, err: errorMessage(e) }, 'cache gc could not remove a file');
    return false;
  }
}

/**
 * Evicts until the directory holds at most `maxBytes`. `keep`: blob ids (or cache file names) not
 * to evict whatever their age, those of an image about to be served (its blobs are not open yet,
 * and may well be the oldest).
 */
export async function gcCache(dir: string, maxBytes: number, log: Logger, keep: ReadonlySet<string> = new Set()): Promise<GcResult> {
  for (const name of await readdir(dir)) {
    if (isStaleKeptTemp(name) && (await unlink(join(dir, name)).then(() => true, () => false))) {
      log.info({ file: name }, 'removed a kept file left half-written by a daemon that is gone');
    }
  }
  const entries = await listCache(dir);
  let total = entries.reduce((n, b) => n + b.bytes, 0);
  const result: GcResult = { removed: [], removedBootstraps: [], freedBytes: 0, remainingBytes: total, busy: [] };
  for (const b of entries) {
    if (total <= maxBytes) break;
    if (b.kind === 'bootstrap') {
      if (!(await removed(keptBootstrapPath(dir, b.id), log))) continue;
      total -= b.bytes;
      result.removedBootstraps.push(b.id);
      result.freedBytes += b.bytes;
      log.info({ bootstrapLayer: b.id, bytes: b.bytes }, 'evicted a kept bootstrap from the cache');
      continue;
    }
    if (keep.has(b.id)) {
      result.busy.push(b.id);
      continue;
    }
    const mapPath = join(dir, b.id + MAP);
    // Hold the exclusive lock while removing, so that no process opens the blob half-way.
    let fh;
    try {
      fh = await open(mapPath, 'r');
    } catch {
      fh = undefined;
    }
    try {
      if (fh !== undefined && !native.flock(fh.fd, LOCK_EX | LOCK_NB)) {
        result.busy.push(b.id);
        continue;
      }
      // The data file first: while it stays, so does the blob's entry (and its map, which says
      // what of it is good).
      if (!(await removed(join(dir, b.id + DATA), log))) continue;
      await removed(mapPath, log);
      if (!(await removed(join(dir, b.id + META), log))) continue;
    } finally {
      await fh?.close();
    }
    total -= b.bytes;
    result.removed.push(b.id);
    result.freedBytes += b.bytes;
    log.info({ blob: b.id, bytes: b.bytes }, 'evicted a blob from the cache');
  }
  result.remainingBytes = total;
  return result;
}

/**
 * A daemon's cache size limit (filecache `max_size`), applied before it serves an image: the
 * directory trimmed as `cache gc --max-size` trims it, but for the image's own blobs (its cache
 * files, encrypted ones with `cipher`), which it has not opened yet.
 */
export async function trimCacheFor(dir: string, maxBytes: number, blobs: readonly CachedBlob[], cipher: CacheCipher | undefined, log: Logger): Promise<GcResult> {
  const own = new Set(blobs.map((b) => cacheName(b, cipher)));
  const r = await gcCache(dir, maxBytes, log, own);
  log.info({ maxSize: maxBytes, removed: r.removed.length, removedBootstraps: r.removedBootstraps.length, freedBytes: r.freedBytes, remainingBytes: r.remainingBytes, busy: r.busy.length }, 'cache trimmed to its size limit');
  return r;
}
