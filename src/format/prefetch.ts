/**
 * The files a prefetch table (spec §2.4, §3.6) or a prefetch list names: a directory means every
 * file below it.
 */
import type { RafsImage } from './image.js';

/** The regular files at or below `roots`, each once, in the order met (depth first). */
export function filesBelow(image: RafsImage, roots: readonly number[]): number[] {
  const out: number[] = [];
  const seen = new Set<number>();
  const visit = (ino: number): void => {
    if (seen.has(ino)) return;
    seen.add(ino);
    const attr = image.getAttr(ino);
    if (attr.kind === 'file') out.push(ino);
    else if (attr.kind === 'dir') for (const e of image.readdir(ino)) visit(e.ino);
  };
  for (const ino of roots) visit(ino);
  return out;
}
