/**
 * What to prefetch, in order: the files of the bootstrap's prefetch table (or of an explicit list
 * of paths), a directory meaning everything below it; then, with `prefetch_all`, every other chunk
 * of the image in blob order (spec §2.4, §3.6; nydus `fs_prefetch`).
 */
import type { ChunkInfo } from '../format/chunk-info.js';
import type { RafsImage } from '../format/image.js';
import { resolvePath } from '../tools/walk.js';

function filesBelow(image: RafsImage, ino: number, out: number[], seen: Set<number>): void {
  if (seen.has(ino)) return;
  seen.add(ino);
  const attr = image.getAttr(ino);
  if (attr.kind === 'file') out.push(ino);
  else if (attr.kind === 'dir') for (const e of image.readdir(ino)) filesBelow(image, e.ino, out, seen);
}

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
  if (opts.files === undefined) roots.push(...image.prefetch);
  for (const p of opts.files ?? []) {
    const ino = resolvePath(image, p);
    if (ino === undefined) opts.onMissing?.(p);
    else roots.push(ino);
  }
  const files: number[] = [];
  const seen = new Set<number>();
  for (const ino of roots) filesBelow(image, ino, files, seen);
  const chunks = files.flatMap((ino) => image.fileChunks(ino));
  if (opts.all) {
    let rest: ChunkInfo[];
    if (image.allChunks !== undefined) {
      rest = image.allChunks();
    } else {
      const everything: number[] = [];
      filesBelow(image, image.rootIno, everything, new Set());
      rest = everything.flatMap((ino) => image.fileChunks(ino));
    }
    rest.sort((a, b) => a.blobIndex - b.blobIndex || a.compressedOffset - b.compressedOffset);
    chunks.push(...rest);
  }
  return chunks;
}
