/**
 * The builder's in-memory filesystem tree. Hardlinks are one `TreeNode` referenced from several
 * directories. Layers carry OCI whiteout information until they are merged (`merge.ts`).
 */
import { FormatError } from '../base/index.js';
import type { InodeKind } from '../format/constants.js';
import type { Xattr } from '../format/image.js';
import type { BootstrapNode } from '../format/v6/writer.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import type { BlobHandle, ChunkRef } from './chunk-store.js';

export class TreeNode {
  kind: InodeKind;
  mode: number;
  uid = 0;
  gid = 0;
  mtimeSec = 0;
  mtimeNsec = 0;
  rdev = 0;
  size = 0;
  xattrs: Xattr[] = [];
  symlink?: Buffer;
  /** Directories: children by name (latin1 key of the raw name bytes). */
  children?: Map<string, TreeNode>;
  /** Regular files: the chunks, once written; chunk `i` holds bytes from `i × chunk size`. */
  chunks?: ChunkRef[];
  /** Regular files from a directory source: where to read the content. */
  sourcePath?: Buffer;
  /** Layer merging: this directory hides everything below it in lower layers. */
  opaque = false;
  /** Layer merging: names whited out in lower layers. */
  whiteouts?: Set<string>;
  /** A directory created only because a tar entry needed a parent: keeps lower attributes. */
  implicit = false;

  constructor(kind: InodeKind, mode: number) {
    this.kind = kind;
    this.mode = mode & 0o7777;
    if (kind === 'dir') this.children = new Map();
  }

  static dir(mode = 0o755): TreeNode {
    return new TreeNode('dir', mode);
  }
}

/** OCI whiteouts (image-spec layer.md): `.wh.NAME` removes NAME below, this one hides all below. */
const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
/** Other names with this prefix are aufs metadata (`.wh..wh.plnk` and the like): not entries. */
const WHITEOUT_META = '.wh..wh.';

/**
 * Records an OCI whiteout named `name` in `parent` (a layer's directory) and says so; false for
 * any other name. Both layer sources, tars and directories, read them the same way.
 */
export function recordWhiteout(parent: TreeNode, name: string): boolean {
  if (name === OPAQUE) parent.opaque = true;
  else if (name.startsWith(WHITEOUT_META)) return true; // dropped
  else if (name.startsWith(WHITEOUT)) (parent.whiteouts ??= new Set()).add(name.slice(WHITEOUT.length));
  else return false;
  return true;
}

export function nameKey(name: Uint8Array): string {
  return Buffer.from(name.buffer, name.byteOffset, name.byteLength).toString('latin1');
}

export function keyName(key: string): Buffer {
  return Buffer.from(key, 'latin1');
}

/** Visits every node once (hardlinked nodes once), parents before children, names sorted. */
export function* walkTree(root: TreeNode): Generator<{ path: Buffer[]; node: TreeNode }> {
  const seen = new Set<TreeNode>();
  const stack: Array<{ path: Buffer[]; node: TreeNode }> = [{ path: [], node: root }];
  while (stack.length > 0) {
    const item = stack.pop() as { path: Buffer[]; node: TreeNode };
    if (seen.has(item.node)) continue;
    seen.add(item.node);
    yield item;
    if (item.node.children !== undefined) {
      const keys = [...item.node.children.keys()].sort((a, b) => Buffer.compare(keyName(a), keyName(b))).reverse();
      for (const k of keys) stack.push({ path: [...item.path, keyName(k)], node: item.node.children.get(k) as TreeNode });
    }
  }
}

/**
 * How deep an image's tree may be. Linux resolves at most PATH_MAX (4096) bytes at once, about
 * 2048 one-letter components; the conversion to a bootstrap tree and the bootstrap writers recurse
 * per level and ran out of stack near 2000 (an internal error instead of a clear refusal).
 */
export const MAX_TREE_DEPTH = 1024;

/** Refuses a tree deeper than `MAX_TREE_DEPTH`, naming the first entry too deep (no recursion). */
export function checkTreeDepth(root: TreeNode): void {
  const stack: Array<[TreeNode, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [TreeNode, number];
    if (node.children === undefined) continue;
    for (const [name, child] of node.children) {
      if (depth + 1 > MAX_TREE_DEPTH) throw new FormatError(`the entry ${JSON.stringify(keyName(name).toString())} lies ${depth + 1} components deep (at most ${MAX_TREE_DEPTH})`);
      stack.push([child, depth + 1]);
    }
  }
}

/** Looks up a slash-separated path (leading slash optional) in the tree. */
export function lookupPath(root: TreeNode, path: string | Buffer): TreeNode | undefined {
  const parts = (typeof path === 'string' ? Buffer.from(path, 'utf8') : path).toString('latin1').split('/').filter((p) => p !== '' && p !== '.');
  let node: TreeNode | undefined = root;
  for (const p of parts) {
    node = node?.children?.get(p);
    if (node === undefined) return undefined;
  }
  return node;
}

/** The nodes of `paths` in `root`, in list order, once each; `onMissing` hears of the others. */
export function resolvePrefetch(root: TreeNode, paths: readonly string[], onMissing?: (path: string) => void): Array<{ path: string; node: TreeNode }> {
  const out: Array<{ path: string; node: TreeNode }> = [];
  const seen = new Set<TreeNode>(); // a recorded pattern lists 100,000 paths: no scan of `out` per path
  for (const path of paths) {
    const node = lookupPath(root, path);
    if (node === undefined) onMissing?.(path);
    else if (!seen.has(node)) {
      seen.add(node);
      out.push({ path, node });
    }
  }
  return out;
}

/** Converts the tree to the writer's model, resolving blob handles to indexes. */
export function toBootstrapTree(root: TreeNode, chunkSize: number, blobIndex: (h: BlobHandle) => number): { root: BootstrapNode; map: Map<TreeNode, BootstrapNode> } {
  const map = new Map<TreeNode, BootstrapNode>();
  // One ChunkInfo per distinct stored chunk, shared by every file chunk that uses it.
  const infos = new Map<ChunkRef, ChunkInfo>();
  const info = (ref: ChunkRef, fileOffset: number): ChunkInfo => {
    let i = infos.get(ref);
    if (i === undefined) {
      const { blob, ...rest } = ref;
      i = { ...rest, blobIndex: blobIndex(blob), fileOffset };
      infos.set(ref, i);
    }
    return i;
  };
  const convert = (n: TreeNode): BootstrapNode => {
    const existing = map.get(n);
    if (existing !== undefined) return existing;
    const b: BootstrapNode = {
      kind: n.kind,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      mtimeSec: n.mtimeSec,
      mtimeNsec: n.mtimeNsec,
      rdev: n.rdev,
      size: n.kind === 'file' ? n.size : 0,
      xattrs: n.xattrs,
    };
    map.set(n, b);
    if (n.symlink !== undefined) b.symlink = n.symlink;
    if (n.kind === 'file') {
      b.chunks = (n.chunks ?? []).map((ref, i) => info(ref, i * chunkSize));
    }
    if (n.children !== undefined) {
      b.entries = [...n.children].map(([k, child]) => ({ name: keyName(k), node: convert(child) }));
    }
    return b;
  };
  return { root: convert(root), map };
}
