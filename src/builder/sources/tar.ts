/**
 * OCI layer source: streams a layer tar into a `TreeNode` tree, storing file contents in the
 * chunk store as they pass (tar order), and recording OCI whiteouts (`.wh.NAME`, opaque
 * `.wh..wh..opq`) for the merge with lower layers.
 */
import { FormatError, type Logger, observed } from '../../base/index.js';
import { type InodeKind, Limits, encodeDev } from '../../format/constants.js';
import type { Xattr } from '../../format/image.js';
import { type TarEntry, TarParser } from '../../format/tar.js';
import { splitXattrName } from '../../format/v6/inode.js';
import type { ChunkRef, ChunkStore } from '../chunk-store.js';
import { MAX_TREE_DEPTH, TreeNode, recordWhiteout } from '../tree.js';
import { checkXattrLimits } from '../xattr-limits.js';


/** Splits a tar path into validated components ("./a//b/" → ["a", "b"]). */
export function tarPathComponents(path: Buffer): string[] {
  const parts = path.toString('latin1').split('/').filter((p) => p !== '' && p !== '.');
  // Refused before the layer's tree is built: a 16 MiB PAX path would be millions of directories.
  if (parts.length > MAX_TREE_DEPTH) throw new FormatError(`tar entry ${JSON.stringify(path.subarray(0, 64).toString())}… is ${parts.length} components deep (at most ${MAX_TREE_DEPTH})`);
  for (const p of parts) {
    if (p === '..') throw new FormatError(`tar entry ${JSON.stringify(path.toString())} escapes the layer with '..'`);
    if (p.length > Limits.MAX_NAME) throw new FormatError(`tar entry name longer than ${Limits.MAX_NAME} bytes`);
    if (p.includes('\0')) throw new FormatError('tar entry name contains NUL');
  }
  return parts;
}

function kindOf(e: TarEntry): InodeKind {
  switch (e.type) {
    case 'file':
      return 'file';
    case 'dir':
      return 'dir';
    case 'symlink':
      return 'symlink';
    case 'char':
      return 'char';
    case 'block':
      return 'block';
    case 'fifo':
      return 'fifo';
    case 'hardlink':
      throw new Error('hardlinks are resolved separately');
  }
}

/**
 * The entry's xattrs that RAFS can store, one per name (the last wins), sorted. Names without a
 * RAFS prefix are skipped with a warning, as for directory sources; what no filesystem could
 * hold is a FormatError here rather than a failure of the bootstrap writer.
 */
function entryXattrs(e: TarEntry, log: Logger): Xattr[] {
  const byName = new Map<string, Xattr>();
  for (const [name, value] of e.xattrs) {
    if (splitXattrName(name) === undefined) {
      log.warn({ path: e.path.toString(), xattr: name.toString() }, 'skipping an xattr RAFS cannot store');
      continue;
    }
    byName.set(name.toString('latin1'), { name, value });
  }
  const xattrs = [...byName.values()].sort((a, b) => Buffer.compare(a.name, b.name));
  checkXattrLimits(`tar entry ${e.path.toString()}`, xattrs);
  return xattrs;
}

function applyEntry(node: TreeNode, e: TarEntry, log: Logger): void {
  if (e.uid > 0xffff_ffff || e.gid > 0xffff_ffff) throw new FormatError(`tar entry ${e.path.toString()}: uid or gid past 32 bits`);
  node.mode = e.mode;
  node.uid = e.uid;
  node.gid = e.gid;
  node.mtimeSec = e.mtimeSec;
  node.mtimeNsec = e.mtimeNsec;
  node.xattrs = entryXattrs(e, log);
  if (node.kind === 'char' || node.kind === 'block') {
    // Linux device numbers: 12-bit major, 20-bit minor (what a 32-bit rdev holds).
    if (e.devmajor > 0xfff || e.devminor > 0xf_ffff) throw new FormatError(`tar entry ${e.path.toString()}: device ${e.devmajor},${e.devminor} out of range`);
    node.rdev = encodeDev(e.devmajor, e.devminor);
  }
}

/** Where a file's data goes as the layer streams past. */
export interface FileSink {
  /** `offset`: where `bytes` start in the layer's (uncompressed) tar stream. */
  write(bytes: Uint8Array, offset: number): Promise<void>;
  /** `length` zeros a sparse file's map places here, which the tar stream does not hold. */
  hole(length: number): Promise<void>;
  end(): Promise<void>;
  /** The file's chunks, in file order (complete once `end` resolved). */
  readonly refs: Array<Promise<ChunkRef>>;
}

export interface TarLayerOptions {
  /** Where files' chunks are stored, unless `files` says otherwise. */
  store?: ChunkStore;
  /**
   * The sink of each regular file's data (`size` bytes); by default its bytes are cut into chunks
   * and stored in `store`. A ZRan build records where they are in the tar stream instead.
   */
  files?: (size: number) => FileSink;
  /** The merged tree of the lower layers, for hardlinks to files below this layer. */
  lower?: TreeNode;
  log: Logger;
  onBytes?: (n: number) => void;
}

/**
 * Cuts one file's bytes into chunks as they stream past and submits each full chunk to the store
 * (waiting while the store is busy); `end` submits the last, partial one.
 */
class ChunkCutter implements FileSink {
  readonly refs: Array<Promise<ChunkRef>> = [];
  private buf: Buffer;
  private filled = 0;

  constructor(
    private readonly store: ChunkStore,
    private readonly size: number,
  ) {
    this.buf = Buffer.allocUnsafe(Math.min(store.opts.chunkSize, Math.max(size, 1)));
  }

  async write(bytes: Uint8Array): Promise<void> {
    const chunkSize = this.store.opts.chunkSize;
    while (bytes.length > 0) {
      const n = Math.min(bytes.length, this.buf.length - this.filled);
      if (n === 0) throw new FormatError('tar entry has more data than its size'); // the parser bounds it
      this.buf.set(bytes.subarray(0, n), this.filled);
      this.filled += n;
      bytes = bytes.subarray(n);
      if (this.filled === chunkSize) {
        await this.submit(this.buf);
        this.buf = Buffer.allocUnsafe(chunkSize);
        this.filled = 0;
      }
    }
  }

  async hole(length: number): Promise<void> {
    const chunkSize = this.store.opts.chunkSize;
    while (length > 0) {
      if (this.filled === 0 && length >= chunkSize && this.buf.length === chunkSize) {
        // A whole chunk of zeros: stored without being written out or hashed again.
        const wait = this.store.ready();
        if (wait !== undefined) await wait;
        this.refs.push(observed(this.store.submitZeros(chunkSize, chunkSize === this.size)));
        length -= chunkSize;
        continue;
      }
      const n = Math.min(length, this.buf.length - this.filled);
      if (n === 0) throw new FormatError('tar entry has more data than its size'); // the parser bounds it
      this.buf.fill(0, this.filled, this.filled + n);
      this.filled += n;
      length -= n;
      if (this.filled === chunkSize) {
        await this.submit(this.buf);
        this.buf = Buffer.allocUnsafe(chunkSize);
        this.filled = 0;
      }
    }
  }

  async end(): Promise<void> {
    if (this.filled > 0) await this.submit(this.filled === this.buf.length ? this.buf : this.buf.subarray(0, this.filled));
    this.filled = 0;
  }

  private async submit(data: Buffer): Promise<void> {
    const wait = this.store.ready();
    if (wait !== undefined) await wait;
    this.refs.push(observed(this.store.submit(data, data.length === this.size)));
  }
}

/**
 * What eStargz layers add at their root, their table of contents and prefetch landmarks: not part
 * of the image's tree. nydus-image leaves these names out of every tar it reads, and so does this.
 */
const ESTARGZ_FILES: ReadonlySet<string> = new Set(['stargz.index.json', '.prefetch.landmark', '.no.prefetch.landmark']);

/** Reads one layer (uncompressed tar bytes) into a tree with whiteout markers. */
export async function readTarLayer(input: AsyncIterable<Uint8Array>, opts: TarLayerOptions): Promise<TreeNode> {
  const { store, log } = opts;
  const root = TreeNode.dir();
  root.implicit = true;
  const pending: Array<Promise<void>> = [];
  const parser = new TarParser();
  let current: { node: TreeNode; cutter: FileSink } | undefined;
  const sink =
    opts.files ??
    ((size: number): FileSink => {
      if (store === undefined) throw new TypeError('readTarLayer needs a chunk store or a file sink');
      return new ChunkCutter(store, size);
    });

  const parentOf = (parts: string[]): TreeNode => {
    let dir = root;
    for (const p of parts) {
      let child = dir.children?.get(p);
      if (child === undefined || child.kind !== 'dir') {
        child = TreeNode.dir();
        child.implicit = true;
        (dir.children as Map<string, TreeNode>).set(p, child);
      }
      dir = child;
    }
    return dir;
  };
  const find = (tree: TreeNode | undefined, parts: string[]): TreeNode | undefined => {
    let n = tree;
    for (const p of parts) n = n?.children?.get(p);
    return n;
  };

  const onEntry = (e: TarEntry): void => {
    const parts = tarPathComponents(e.path);
    if (parts.length === 0) {
      if (e.type !== 'dir') throw new FormatError('tar entry for the layer root is not a directory');
      applyEntry(root, e, log);
      root.implicit = false;
      return;
    }
    const name = parts[parts.length - 1] as string;
    if (parts.length === 1 && ESTARGZ_FILES.has(name)) return;
    const parent = parentOf(parts.slice(0, -1));
    if (recordWhiteout(parent, name)) return;
    const children = parent.children as Map<string, TreeNode>;
    if (e.type === 'hardlink') {
      const targetParts = tarPathComponents(e.linkpath);
      const target = find(root, targetParts) ?? find(opts.lower, targetParts);
      if (target === undefined) throw new FormatError(`tar hardlink ${e.path.toString()} points at the missing ${e.linkpath.toString()}`);
      if (target.kind === 'dir') throw new FormatError(`tar hardlink ${e.path.toString()} points at a directory`);
      if (find(root, targetParts) === target) {
        children.set(name, target); // one inode, of any kind but a directory (as nydus-image)
      } else {
        // A link to a file of a lower layer: a copy with the same content.
        const copy = Object.assign(new TreeNode(target.kind, target.mode), target, { children: undefined });
        children.set(name, copy);
      }
      return;
    }
    const kind = kindOf(e);
    const existing = children.get(name);
    let node: TreeNode;
    if (kind === 'dir' && existing?.kind === 'dir') {
      node = existing; // a directory listed again keeps its children
      node.implicit = false;
    } else {
      node = new TreeNode(kind, e.mode);
      children.set(name, node);
    }
    applyEntry(node, e, log);
    if (kind === 'symlink') {
      if (e.linkpath.length === 0) throw new FormatError(`tar symlink ${e.path.toString()} has an empty target`);
      if (e.linkpath.includes(0)) throw new FormatError(`tar symlink ${e.path.toString()} has a target with a NUL byte`);
      if (e.linkpath.length > Limits.MAX_LINUX_SYMLINK) throw new FormatError(`tar symlink ${e.path.toString()} has a ${e.linkpath.length}-byte target (at most ${Limits.MAX_LINUX_SYMLINK}, as Linux)`);
      node.symlink = e.linkpath;
    } else if (kind === 'file') {
      node.size = e.size;
      // A sparse entry's size is backed by no bytes: its chunks are bounded before any is made.
      store?.checkFileSize(e.size, `tar entry ${JSON.stringify(e.path.toString())}`);
      current = { node, cutter: sink(e.size) };
    }
  };

  let at = 0; // stream offset of `chunk`
  for await (const chunk of input) {
    for (const ev of parser.write(chunk)) {
      if (ev.kind === 'entry') {
        onEntry(ev.entry);
      } else if (ev.kind === 'data' && current !== undefined) {
        // Data events are views of the chunk written (TarParser).
        await current.cutter.write(ev.bytes, at + ev.bytes.byteOffset - chunk.byteOffset);
        opts.onBytes?.(ev.bytes.length);
      } else if (ev.kind === 'hole' && current !== undefined) {
        await current.cutter.hole(ev.length);
      } else if (ev.kind === 'entry-end' && current !== undefined) {
        const { node, cutter } = current;
        current = undefined;
        await cutter.end();
        pending.push(
          observed(
            Promise.all(cutter.refs).then((rs) => {
              node.chunks = rs;
            }),
          ),
        );
      }
    }
    at += chunk.length;
  }
  parser.end();
  await Promise.all(pending);
  log.debug({ entries: root.children?.size }, 'layer read');
  return root;
}

export interface TarPrefetchOptions {
  store: ChunkStore;
  log: Logger;
  /** Prefetch files held in memory to be stored in pattern order; past it, tar order. */
  bufferBytes?: number;
}

/**
 * The first of two passes over a layer built with a prefetch list: stores the data of the regular
 * files the patterns select (a path, or a directory for everything below it) before any other
 * file's, in pattern order (spec §5.2: "files selected by the prefetch policy first"), so that a
 * prefetch reads them as one run from the start of the blob. `readTarLayer` then stores every
 * file as usual, and the chunk store's deduplication points the selected files at these first
 * copies. A tar streams in its own order: the selected files are held in memory up to
 * `bufferBytes` (256 MiB) and stored at the end in pattern order; files past that bound are stored
 * as they come, ahead of those. Resolves with the number of files and bytes selected.
 */
export async function storeTarPrefetchFiles(input: AsyncIterable<Uint8Array>, patterns: readonly string[], opts: TarPrefetchOptions): Promise<{ files: number; bytes: number }> {
  const { store } = opts;
  const rank = new Map<string, number>();
  let depth = 0; // of the deepest pattern: no longer prefix of an entry's path can match
  patterns.forEach((p, i) => {
    const parts = p.split('/').filter((c) => c !== '' && c !== '.');
    depth = Math.max(depth, parts.length);
    const key = parts.join('/');
    if (!rank.has(key)) rank.set(key, i);
  });
  const rankOf = (parts: string[]): number | undefined => {
    let best: number | undefined;
    for (let n = 0; n <= Math.min(parts.length, depth); n++) {
      const r = rank.get(parts.slice(0, n).join('/'));
      if (r !== undefined && (best === undefined || r < best)) best = r;
    }
    return best;
  };
  const refs: Array<Promise<ChunkRef>> = [];
  const held: Array<{ rank: number; seq: number; size: number; parts: Buffer[] }> = [];
  const budget = opts.bufferBytes ?? 256 << 20;
  let heldBytes = 0;
  let files = 0;
  let bytes = 0;
  // The selected file being read: held whole, or cut and stored as it streams.
  let cur: { hold: Buffer[] } | { cutter: ChunkCutter } | undefined;
  const parser = new TarParser();
  for await (const chunk of input) {
    for (const ev of parser.write(chunk)) {
      if (ev.kind === 'entry') {
        cur = undefined;
        if (ev.entry.type !== 'file' || ev.entry.size === 0) continue;
        const r = rankOf(tarPathComponents(ev.entry.path));
        if (r === undefined) continue;
        store.checkFileSize(ev.entry.size, `tar entry ${JSON.stringify(ev.entry.path.toString())}`);
        files++;
        bytes += ev.entry.size;
        if (heldBytes + ev.entry.size <= budget) {
          heldBytes += ev.entry.size;
          const parts: Buffer[] = [];
          held.push({ rank: r, seq: held.length, size: ev.entry.size, parts });
          cur = { hold: parts };
        } else {
          cur = { cutter: new ChunkCutter(store, ev.entry.size) };
        }
      } else if (ev.kind === 'data' && cur !== undefined) {
        if ('hold' in cur) cur.hold.push(Buffer.from(ev.bytes));
        else await cur.cutter.write(ev.bytes);
      } else if (ev.kind === 'hole' && cur !== undefined) {
        // A held file's holes are held as zeros: its size, holes included, is within the budget.
        if ('hold' in cur) cur.hold.push(Buffer.alloc(ev.length));
        else await cur.cutter.hole(ev.length);
      } else if (ev.kind === 'entry-end' && cur !== undefined) {
        if ('cutter' in cur) {
          await cur.cutter.end();
          for (const r of cur.cutter.refs) refs.push(r);
        }
        cur = undefined;
      }
    }
  }
  parser.end();
  held.sort((a, b) => a.rank - b.rank || a.seq - b.seq);
  for (const f of held) {
    const cutter = new ChunkCutter(store, f.size);
    for (const part of f.parts.splice(0)) await cutter.write(part);
    await cutter.end();
    for (const r of cutter.refs) refs.push(r); // not a spread: a file can have 100,000s of chunks
  }
  await Promise.all(refs);
  opts.log.debug({ files, bytes }, 'prefetch files stored first');
  return { files, bytes };
}
