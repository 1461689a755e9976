/**
 * What to prefetch, in order: the files of the bootstrap's prefetch table (or of an explicit list
 * of paths), a directory meaning everything below it; then, with `prefetch_all`, every other chunk
 * of the image in blob order (spec §2.4, §3.6; nydus `fs_prefetch`).
 */
import { type ChunkInfo, extendsRun, sharedUnit } from '../format/chunk-info.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import { filesBelow } from '../format/prefetch.js';
import type { BlobRange } from '../storage/backend/types.js';
import { resolvePath } from '../tools/walk.js';

export interface PlanOptions {
  /** Paths to prefetch instead of the bootstrap's table. */
  files?: string[];
  /** Then every remaining chunk. */
  all: boolean;
  /** Called with each path of `files` that the image does not have (it is skipped). */
  onMissing?: (path: string) => void;
}

export function prefetchPlan(image: RafsImage, opts: PlanOptions): ChunkInfo[] {
  const roots: number[] = [];
  // Appended one by one here and below: spreading a list of 100,000s of entries (an image's
  // prefetch table, its chunks) into push() overflows the call stack.
  if (opts.files === undefined) for (const ino of image.prefetch) roots.push(ino);
  for (const p of opts.files ?? []) {
    const ino = resolvePath(image, p);
    if (ino === undefined) opts.onMissing?.(p);
    else roots.push(ino);
  }
  const chunks = filesBelow(image, roots).flatMap((ino) => image.fileChunks(ino));
  if (opts.all) {
    let rest: ChunkInfo[];
    if (image.allChunks !== undefined) {
      rest = image.allChunks();
    } else {
      rest = filesBelow(image, [image.rootIno]).flatMap((ino) => image.fileChunks(ino));
    }
    rest.sort((a, b) => a.blobIndex - b.blobIndex || a.compressedOffset - b.compressedOffset);
    for (const c of rest) chunks.push(c);
  }
  return chunks;
}

/**
 * The blob ranges (compressed bytes) a plan reads, in plan order: runs of chunks stored one after
 * the other merged, each chunk (each batch) once, up to `maxBytes` in all.
 */
export function planRanges(chunks: readonly ChunkInfo[], blobs: readonly BlobInfo[], maxBytes: number): BlobRange[] {
  const out: BlobRange[] = [];
  const seen = new Set<string>();
  let total = 0;
  let last: (BlobRange & { blobIndex: number }) | undefined;
  for (const c of chunks) {
    // The members of a batch (or ZRan context) are one stored unit: read once, whichever comes first.
    const k = sharedUnit(c) !== undefined ? `${c.blobIndex}@${c.compressedOffset}` : `${c.blobIndex}:${c.index}`;
    if (seen.has(k) || c.compressedSize === 0) continue;
    if (total + c.compressedSize > maxBytes) break;
    seen.add(k);
    total += c.compressedSize;
    const grows = last !== undefined && last.blobIndex === c.blobIndex ? extendsRun(last.offset, last.offset + last.length, c) : undefined;
    if (last !== undefined && grows !== undefined) {
      last.length += grows;
      continue;
    }
    const blob = blobs[c.blobIndex];
    if (blob === undefined) break;
    last = { id: blob.id, offset: c.compressedOffset, length: c.compressedSize, blobIndex: c.blobIndex };
    out.push(last);
  }
  return out.map(({ id, offset, length }) => ({ id, offset, length }));
}
