/**
 * The pseudo filesystem of the Vfs: read-only directories synthesised from the mount points
 * (`/containers`, `/rafs/<cid>/lowerdir` make `/`, `/rafs`, `/rafs/<cid>`), with node ids in slot
 * 0. A directory that no longer leads to a mount point is removed (its node id then answers
 * ESTALE), so a long-lived sandbox does not accumulate `/rafs/<cid>` of deleted containers.
 */
import { type Attr, Errno, FsError, type Timespec } from '../types.js';
import { INNER_SPAN, ROOT_ID, type Slot } from './slots.js';

export interface PseudoNode {
  readonly id: number;
  readonly name: Buffer;
  readonly parent: PseudoNode | undefined;
  readonly children: Map<string, PseudoNode>;
  /** The backend mounted on this directory. */
  slot: Slot | undefined;
  /** Lookups the kernel holds on this node id. */
  lookups: number;
  time: Timespec;
}

const S_IFDIR = 0o040000;

/** Splits and checks a mount path: absolute, no ".", "..", empty or over-long components. */
export function mountPathComponents(path: string): Buffer[] {
  if (typeof path !== 'string' || !path.startsWith('/')) throw new MountPathError(`mount point must be an absolute path, got ${JSON.stringify(path)}`);
  if (path.includes('\0')) throw new MountPathError('mount point contains a NUL byte');
  const parts = path.split('/').filter((p) => p !== '');
  for (const p of parts) {
    if (p === '.' || p === '..') throw new MountPathError(`mount point ${path} has a "${p}" component`);
    if (Buffer.byteLength(p) > 255) throw new MountPathError(`mount point ${path} has a component over 255 bytes`);
  }
  if (parts.length > 64) throw new MountPathError(`mount point ${path} is too deep`);
  return parts.map((p) => Buffer.from(p));
}

export function normalizeMountPath(path: string): string {
  return '/' + mountPathComponents(path).map((c) => c.toString()).join('/');
}

export class MountPathError extends Error {}

function key(name: Uint8Array): string {
  return Buffer.from(name.buffer, name.byteOffset, name.byteLength).toString('latin1');
}

function now(): Timespec {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

/** The pseudo directories as a daemon taking over the connection needs them. */
export interface PseudoTreeState {
  nextId: number;
  /** Every directory but the root, parents first; `path` as `mountPathComponents` splits it. */
  nodes: Array<{ id: number; path: string; lookups: number; time: Timespec }>;
  rootTime: Timespec;
}

function timeOf(t: unknown): Timespec {
  const v = t as Partial<Timespec> | null;
  if (v === null || typeof v !== 'object' || !Number.isSafeInteger(v.sec) || !Number.isInteger(v.nsec) || (v.nsec as number) < 0 || (v.nsec as number) >= 1e9) throw new Error(`bad time ${JSON.stringify(t)}`);
  return { sec: v.sec as number, nsec: v.nsec as number };
}

export class PseudoTree {
  readonly root: PseudoNode;
  private readonly byId = new Map<number, PseudoNode>();
  private nextId = ROOT_ID + 1;

  constructor(private readonly owner: { uid: number; gid: number }) {
    this.root = { id: ROOT_ID, name: Buffer.from('/'), parent: undefined, children: new Map(), slot: undefined, lookups: 0, time: now() };
    this.byId.set(ROOT_ID, this.root);
  }

  /** The node with this id; ESTALE when it was removed. */
  get(id: number): PseudoNode {
    const n = this.byId.get(id);
    if (n === undefined) throw new FsError(Errno.ESTALE, `pseudo node ${id} is gone`);
    return n;
  }

  child(dir: PseudoNode, name: Uint8Array): PseudoNode | undefined {
    return dir.children.get(key(name));
  }

  find(components: Buffer[]): PseudoNode | undefined {
    let n: PseudoNode | undefined = this.root;
    for (const c of components) {
      n = n.children.get(key(c));
      if (n === undefined) return undefined;
    }
    return n;
  }

  /** The directory for these components, created with its missing parents. */
  ensure(components: Buffer[]): PseudoNode {
    let n = this.root;
    for (const c of components) {
      let next = n.children.get(key(c));
      if (next === undefined) {
        if (this.nextId >= INNER_SPAN) throw new FsError(Errno.ENOSPC, 'pseudo node ids exhausted');
        next = { id: this.nextId++, name: c, parent: n, children: new Map(), slot: undefined, lookups: 0, time: now() };
        n.children.set(key(c), next);
        n.time = now();
        this.byId.set(next.id, next);
      }
      n = next;
    }
    return n;
  }

  /** Removes `node` and its ancestors while they lead to no mount point (never the root). */
  prune(node: PseudoNode): void {
    let n: PseudoNode | undefined = node;
    while (n !== undefined && n !== this.root && n.slot === undefined && n.children.size === 0) {
      const parent: PseudoNode = n.parent as PseudoNode;
      parent.children.delete(key(n.name));
      parent.time = now();
      this.byId.delete(n.id);
      n = parent;
    }
  }

  /** Whether a mount point lies strictly below `node`. */
  hasMountBelow(node: PseudoNode): boolean {
    for (const c of node.children.values()) if (c.slot !== undefined || this.hasMountBelow(c)) return true;
    return false;
  }

  /** A mount point at `node` or above it. */
  mountAtOrAbove(node: PseudoNode): PseudoNode | undefined {
    for (let n: PseudoNode | undefined = node; n !== undefined; n = n.parent) if (n.slot !== undefined) return n;
    return undefined;
  }

  path(node: PseudoNode): string {
    const parts: string[] = [];
    for (let n: PseudoNode | undefined = node; n !== undefined && n !== this.root; n = n.parent) parts.unshift(n.name.toString());
    return '/' + parts.join('/');
  }

  attr(node: PseudoNode): Attr {
    let subdirs = 0;
    for (const _ of node.children.values()) subdirs++;
    return {
      ino: node.id,
      size: 4096,
      blocks: 0,
      atime: node.time,
      mtime: node.time,
      ctime: node.time,
      mode: S_IFDIR | 0o755,
      nlink: 2 + subdirs,
      uid: this.owner.uid,
      gid: this.owner.gid,
      rdev: 0,
      blksize: 4096,
      flags: 0,
    };
  }

  /** The kernel took one more reference (the root is never counted). */
  ref(node: PseudoNode): void {
    if (node !== this.root) node.lookups++;
  }

  forget(id: number, nlookup: number): void {
    const n = this.byId.get(id);
    if (n !== undefined && n !== this.root) n.lookups = Math.max(0, n.lookups - nlookup);
  }

  save(): PseudoTreeState {
    const nodes: PseudoTreeState['nodes'] = [];
    const walk = (n: PseudoNode): void => {
      for (const c of n.children.values()) {
        nodes.push({ id: c.id, path: this.path(c), lookups: c.lookups, time: c.time });
        walk(c);
      }
    };
    walk(this.root);
    return { nextId: this.nextId, nodes, rootTime: this.root.time };
  }

  /** Puts saved directories back with their ids (into a tree holding only the root). */
  restore(state: PseudoTreeState): void {
    if (this.byId.size !== 1) throw new Error('PseudoTree.restore into a tree in use');
    if (typeof state !== 'object' || state === null || !Array.isArray(state.nodes)) throw new Error('no pseudo directories in the state');
    if (!Number.isSafeInteger(state.nextId) || state.nextId <= ROOT_ID || state.nextId > INNER_SPAN) throw new Error('bad pseudo node counter');
    for (const s of state.nodes as unknown[] as PseudoTreeState['nodes']) {
      if (typeof s !== 'object' || s === null) throw new Error(`bad pseudo directory ${JSON.stringify(s)}`);
      const components = mountPathComponents(s.path);
      const name = components.pop();
      const parent = this.find(components);
      if (name === undefined || parent === undefined || parent.children.has(key(name))) throw new Error(`pseudo directory ${s.path}: no parent, or twice`);
      if (!Number.isSafeInteger(s.id) || s.id <= ROOT_ID || s.id >= state.nextId || this.byId.has(s.id) || !Number.isSafeInteger(s.lookups) || s.lookups < 0) {
        throw new Error(`bad pseudo directory ${JSON.stringify(s)}`);
      }
      const node: PseudoNode = { id: s.id, name, parent, children: new Map(), slot: undefined, lookups: s.lookups, time: timeOf(s.time) };
      parent.children.set(key(name), node);
      this.byId.set(node.id, node);
    }
    this.nextId = state.nextId;
    this.root.time = timeOf(state.rootTime);
  }

  resetLookups(): void {
    for (const n of this.byId.values()) n.lookups = 0;
  }

  get size(): number {
    return this.byId.size;
  }
}
