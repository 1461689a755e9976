/**
 * A small in-memory FileSystem for Vfs and API tests: a tree of directories and files with node
 * ids handed out by lookups (counted, released by FORGET), and a record of what the Vfs did to
 * it (init flags, destroys, forgets). Options leave methods out or make them answer ENOSYS.
 */
import { type Attr, type DirEntry, type DirEntryPlus, type DirSink, type EntryReply, Errno, type FileSystem, FsError, type FsInit, type OpenReply, type RequestContext, type StatFs } from '../../../src/fs/types.js';

export interface FakeNode {
  id: number;
  name: string;
  parent: number;
  dir: boolean;
  data: Buffer;
  children: Map<string, number>;
}

export interface FakeOptions {
  /** Files and directories (paths ending in "/") to create, with their contents. */
  files?: Record<string, string>;
  wanted?: bigint;
  /** Methods to leave out (as a backend without them). */
  without?: Array<keyof FileSystem>;
  /** Methods that answer ENOSYS. */
  nosys?: Array<keyof FileSystem>;
  /** First node id handed out after the root (to test large ids). */
  firstId?: number;
  /** Reported inode numbers are node id + this (as a passthrough reports host inode numbers). */
  inoOffset?: number;
}

export class FakeFs implements FileSystem {
  readonly nodes = new Map<number, FakeNode>();
  readonly lookups = new Map<number, number>();
  readonly forgets: Array<[number, number]> = [];
  readonly inits: bigint[] = [];
  destroyed = 0;
  readonly wantedInitFlags: bigint;
  private nextId: number;
  private readonly inoOffset: number;

  constructor(readonly label: string, opts: FakeOptions = {}) {
    this.wantedInitFlags = opts.wanted ?? 0n;
    this.nextId = opts.firstId ?? 2;
    this.inoOffset = opts.inoOffset ?? 0;
    this.nodes.set(1, { id: 1, name: '/', parent: 1, dir: true, data: Buffer.alloc(0), children: new Map() });
    for (const [path, content] of Object.entries(opts.files ?? {})) this.add(path, content);
    const self = this as unknown as Record<string, unknown>;
    for (const m of opts.without ?? []) self[m] = undefined;
    for (const m of opts.nosys ?? []) {
      self[m] = async () => {
        throw new FsError(Errno.ENOSYS);
      };
    }
  }

  add(path: string, content = ''): number {
    const dir = path.endsWith('/');
    const parts = path.split('/').filter((p) => p !== '');
    let cur = 1;
    parts.forEach((name, i) => {
      const parent = this.nodes.get(cur) as FakeNode;
      let id = parent.children.get(name);
      if (id === undefined) {
        id = this.nextId++;
        const isDir = dir || i < parts.length - 1;
        this.nodes.set(id, { id, name, parent: cur, dir: isDir, data: Buffer.from(isDir ? '' : content), children: new Map() });
        parent.children.set(name, id);
      }
      cur = id;
    });
    return cur;
  }

  private node(id: number): FakeNode {
    const n = this.nodes.get(id);
    if (n === undefined || (id !== 1 && !this.lookups.has(id))) throw new FsError(Errno.ESTALE, `${this.label}: node ${id} not looked up`);
    return n;
  }

  attr(n: FakeNode): Attr {
    const t = { sec: 1_700_000_000, nsec: 0 };
    return { ino: n.id + this.inoOffset, size: n.data.length, blocks: 0, atime: t, mtime: t, ctime: t, mode: n.dir ? 0o40755 : 0o100644, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096, flags: 0 };
  }

  private entry(n: FakeNode): EntryReply {
    this.lookups.set(n.id, (this.lookups.get(n.id) ?? 0) + 1);
    return { nodeid: n.id, generation: 0, attr: this.attr(n), entryTimeout: 5, attrTimeout: 5 };
  }

  init(init: FsInit): void {
    this.inits.push(init.flags);
  }

  destroy(): void {
    this.destroyed++;
    this.lookups.clear();
  }

  async lookup(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryReply> {
    const p = this.node(parent);
    const id = p.children.get(Buffer.from(name).toString());
    if (id === undefined) throw new FsError(Errno.ENOENT);
    return this.entry(this.nodes.get(id) as FakeNode);
  }

  forget(nodeid: number, nlookup: number): void {
    this.forgets.push([nodeid, nlookup]);
    const n = (this.lookups.get(nodeid) ?? 0) - nlookup;
    if (n <= 0) this.lookups.delete(nodeid);
    else this.lookups.set(nodeid, n);
  }

  async getattr(_ctx: RequestContext, nodeid: number): Promise<{ attr: Attr; timeout: number }> {
    return { attr: this.attr(this.node(nodeid)), timeout: 7 };
  }

  async open(_ctx: RequestContext, nodeid: number): Promise<OpenReply> {
    this.node(nodeid);
    return { fh: 42n, flags: 0 };
  }

  async read(_ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, size: number, dst: Uint8Array[]): Promise<number> {
    const d = this.node(nodeid).data.subarray(offset, offset + size);
    (dst[0] as Uint8Array).set(d);
    return d.length;
  }

  async opendir(): Promise<OpenReply> {
    return { fh: 7n, flags: 0 };
  }

  private *items(dirId: number, offset: number): Generator<{ n: FakeNode; name: string; offset: number }> {
    const dir = this.node(dirId);
    const all = [
      { n: dir, name: '.' },
      { n: this.nodes.get(dir.parent) as FakeNode, name: '..' },
      ...[...dir.children].map(([name, id]) => ({ n: this.nodes.get(id) as FakeNode, name })),
    ];
    for (let i = offset; i < all.length; i++) yield { ...(all[i] as { n: FakeNode; name: string }), offset: i + 1 };
  }

  async readdir(_ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, add: DirSink<DirEntry>): Promise<void> {
    for (const it of this.items(nodeid, offset)) if (!add({ ino: it.n.id + this.inoOffset, offset: it.offset, type: it.n.dir ? 4 : 8, name: Buffer.from(it.name) })) break;
  }

  async readdirplus(_ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    for (const it of this.items(nodeid, offset)) {
      const dot = it.name === '.' || it.name === '..';
      const entry = { nodeid: dot ? 0 : it.n.id, generation: 0, attr: this.attr(it.n), entryTimeout: 5, attrTimeout: 5 };
      if (!add({ ino: it.n.id + this.inoOffset, offset: it.offset, type: it.n.dir ? 4 : 8, name: Buffer.from(it.name), entry })) break;
      if (!dot) this.lookups.set(it.n.id, (this.lookups.get(it.n.id) ?? 0) + 1);
    }
  }

  async statfs(): Promise<StatFs> {
    return { blocks: 100, bfree: 50, bavail: 50, files: this.nodes.size, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
  }

  async getxattr(): Promise<Uint8Array> {
    throw new FsError(Errno.ENODATA);
  }

  async rename(): Promise<void> {}

  async flush(): Promise<void> {}
}
