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

export interface WalkOptions {
  /**
   * `levels` (default): a directory's entries, then the contents of its subdirectories.
   * `tar`: each directory followed at once by everything below it, as `tar c` lists a tree; an
   * extracting tar restores a directory's times when it leaves it, so only this order keeps them.
   */
  order?: 'levels' | 'tar';
}

/**
 * The deepest entry a walk goes to: PATH_MAX / 2, as no path of more components fits in PATH_MAX
 * bytes (what unpack writes could not be named). Each item carries its whole path, so a chain of
 * directories costs the square of its depth: 10,000 levels (a 1.3 MB bootstrap) took `check` 37 s
 * and 800 MB.
 */
export const MAX_WALK_DEPTH = 2048;

export function* walkImage(image: RafsImage, opts: WalkOptions = {}): Generator<WalkItem> {
  const seenDirs = new Set<number>();
  const rootAttr = image.getAttr(image.rootIno);
  seenDirs.add(image.rootIno);
  yield { components: [], path: '/', entry: undefined, attr: rootAttr };
  const item = (entry: DirEntry, components: Uint8Array[]): WalkItem => {
    if (components.length >= MAX_WALK_DEPTH) throw new FormatError(`${pathToString(components)}: the tree is deeper than ${MAX_WALK_DEPTH} directories`);
    const c = [...components, entry.name];
    const attr = image.getAttr(entry.ino);
    if (attr.kind !== entry.kind) {
      throw new FormatError(`${pathToString(c)}: the directory entry says ${entry.kind}, the inode ${attr.kind}`);
    }
    if (attr.kind === 'dir') {
      if (seenDirs.has(entry.ino)) throw new FormatError(`${pathToString(c)}: directory inode ${entry.ino} is reached twice (a loop)`);
      seenDirs.add(entry.ino);
    }
    return { components: c, path: pathToString(c), entry, attr };
  };
  if (opts.order === 'tar') {
    // One level per open directory: its entries and the next one to visit.
    const open: Array<{ components: Uint8Array[]; entries: DirEntry[]; next: number }> = [{ components: [], entries: [...image.readdir(image.rootIno)], next: 0 }];
    while (open.length > 0) {
      const dir = open[open.length - 1] as (typeof open)[number];
      const entry = dir.entries[dir.next++];
      if (entry === undefined) {
        open.pop();
        continue;
      }
      const it = item(entry, dir.components);
      yield it;
      if (it.attr.kind === 'dir') open.push({ components: it.components, entries: [...image.readdir(entry.ino)], next: 0 });
    }
    return;
  }
  const stack: Array<{ ino: number; components: Uint8Array[] }> = [{ ino: image.rootIno, components: [] }];
  while (stack.length > 0) {
    const { ino, components } = stack.pop() as { ino: number; components: Uint8Array[] };
    const subdirs: Array<{ ino: number; components: Uint8Array[] }> = [];
    for (const entry of image.readdir(ino)) {
      const it = item(entry, components);
      if (it.attr.kind === 'dir') subdirs.push({ ino: entry.ino, components: it.components });
      yield it;
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
