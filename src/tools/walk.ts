/**
 * Walking an untrusted image: every directory once (a directory reached twice is a loop in the
 * tree and is reported, never followed), entries in name order, parents before children.
 */
import { FormatError } from '../base/index.js';
import type { DirEntry, InodeAttr, RafsImage } from '../format/image.js';
import { pathToString } from '../format/image.js';

export interface WalkItem {
  /** Raw path components from the root (empty for the root). */
  components: Uint8Array[];
  path: string;
  entry: DirEntry | undefined;
  attr: InodeAttr;
}

export function* walkImage(image: RafsImage): Generator<WalkItem> {
  const seenDirs = new Set<number>();
  const rootAttr = image.getAttr(image.rootIno);
  seenDirs.add(image.rootIno);
  yield { components: [], path: '/', entry: undefined, attr: rootAttr };
  const stack: Array<{ ino: number; components: Uint8Array[] }> = [{ ino: image.rootIno, components: [] }];
  while (stack.length > 0) {
    const { ino, components } = stack.pop() as { ino: number; components: Uint8Array[] };
    const subdirs: Array<{ ino: number; components: Uint8Array[] }> = [];
    for (const entry of image.readdir(ino)) {
      const c = [...components, entry.name];
      const attr = image.getAttr(entry.ino);
      if (attr.kind !== entry.kind) {
        throw new FormatError(`${pathToString(c)}: the directory entry says ${entry.kind}, the inode ${attr.kind}`);
      }
      if (attr.kind === 'dir') {
        if (seenDirs.has(entry.ino)) throw new FormatError(`${pathToString(c)}: directory inode ${entry.ino} is reached twice (a loop)`);
        seenDirs.add(entry.ino);
        subdirs.push({ ino: entry.ino, components: c });
      }
      yield { components: c, path: pathToString(c), entry, attr };
    }
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i] as { ino: number; components: Uint8Array[] });
  }
}

/** Resolves a path inside the image to an inode number. */
export function resolvePath(image: RafsImage, path: string): number | undefined {
  let ino = image.rootIno;
  for (const part of path.split('/').filter((p) => p !== '' && p !== '.')) {
    if (image.getAttr(ino).kind !== 'dir') return undefined;
    const e = image.lookup(ino, Buffer.from(part, 'utf8'));
    if (e === undefined) return undefined;
    ino = e.ino;
  }
  return ino;
}
