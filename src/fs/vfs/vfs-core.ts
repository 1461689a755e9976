/**
 * The mount table of the Vfs and the translation of node ids between the kernel and the
 * backends: resolving an incoming node id to the pseudo tree or to (backend, inner id), mapping
 * the ids and `st_ino` of every entry a backend returns, counting the references the kernel
 * takes, and the INIT flags. The FUSE operations themselves are in `vfs.ts`.
 */
import { type Logger, silentLogger } from '../../base/index.js';
import { type EntryReply, Errno, type FileSystem, FsError, type RequestContext } from '../types.js';
import { MountPathError, type PseudoNode, PseudoTree, type PseudoTreeState, mountPathComponents } from './pseudo.js';
import { INNER_SPAN, MAX_SLOT, ROOT_ID, type Slot, SlotTable, type SlotTableState, nodeIdOf, splitNodeId } from './slots.js';

const NO_OPEN_SUPPORT = 1n << 17n;
const NO_OPENDIR_SUPPORT = 1n << 24n;
const SUBMOUNTS = 1n << 27n;
const FUSE_ATTR_SUBMOUNT = 1;
/**
 * Flags whose effect is connection-wide once a backend uses them (answering OPEN with ENOSYS
 * turns opens off for every file of the connection): offered only when one backend serves "/".
 */
const CONNECTION_WIDE = NO_OPEN_SUPPORT | NO_OPENDIR_SUPPORT;

export interface VfsOptions {
  log?: Logger;
  /** Flags wanted at INIT besides those of the backends mounted then (for backends mounted later). */
  initFlags?: bigint;
  /** Mark directories crossing into a backend FUSE_ATTR_SUBMOUNT (if the kernel agreed to SUBMOUNTS). */
  announceSubmounts?: boolean;
  /** Seconds the kernel may cache pseudo entries and attributes, and entries crossing into a backend. */
  pseudoTimeout?: number;
  /** Owner of the pseudo directories. */
  owner?: { uid: number; gid: number };
}

export type MountErrorKind = 'AlreadyExists' | 'NotFound' | 'Busy' | 'InvalidPath' | 'Full';

/** A mount table change that cannot be made; `kind` says why. */
export class MountError extends Error {
  constructor(
    readonly kind: MountErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'MountError';
  }
}

/**
 * What a daemon taking over this connection needs to go on serving the node ids the kernel holds
 * (nydusd's failover and live upgrade): the session, the pseudo directories and mount slots with
 * their ids and reference counts, and each mounted backend's own state (`FileSystem.saveState`).
 */
export interface VfsState {
  /** FUSE_INIT flags of the session (decimal), null between sessions. */
  session: string | null;
  transparent: boolean;
  pseudo: PseudoTreeState;
  slots: SlotTableState;
  /** `saveState()` of each mounted backend, by slot index. */
  backends: Record<string, unknown>;
}

/** A backend unmounted while the kernel still held ids in it: they answer ESTALE. */
const GONE: FileSystem = {};

export type PseudoTarget = { kind: 'pseudo'; node: PseudoNode };
export type BackendTarget = { kind: 'backend'; slot: Slot; inner: number };
export type Target = PseudoTarget | BackendTarget;

export interface MountInfo {
  path: string;
  index: number;
  fs: FileSystem;
}

export class VfsCore {
  protected readonly slots = new SlotTable();
  protected readonly tree: PseudoTree;
  protected readonly log: Logger;
  protected readonly timeout: number;
  /** The backend mounted on "/" (then the only one), serving node id 1 itself. */
  protected rootSlot: Slot | undefined;
  /** FUSE_INIT flags of the current session, undefined between sessions. */
  protected session: bigint | undefined;
  /** Set at INIT: one backend on "/", whose answers pass unchanged (ENOSYS included). */
  protected transparent = false;
  private readonly byPath = new Map<string, { slot: Slot; node: PseudoNode | undefined }>();

  constructor(protected readonly opts: VfsOptions = {}) {
    this.log = opts.log ?? silentLogger;
    this.timeout = opts.pseudoTimeout ?? 1;
    this.tree = new PseudoTree(opts.owner ?? { uid: 0, gid: 0 });
  }

  /** Mounts `fs` at `path` (at any time, also while the guest runs); returns its slot index. */
  mount(path: string, fs: FileSystem): number {
    let components: Buffer[];
    try {
      components = mountPathComponents(path);
    } catch (e) {
      throw new MountError('InvalidPath', (e as MountPathError).message);
    }
    const norm = '/' + components.map((c) => c.toString()).join('/');
    if (this.byPath.has(norm)) throw new MountError('AlreadyExists', `${norm} is already mounted`);
    if (components.length === 0 && this.byPath.size > 0) throw new MountError('Busy', `cannot mount on / while ${[...this.byPath.keys()].join(', ')} is mounted`);
    if (this.rootSlot !== undefined) throw new MountError('Busy', `cannot mount ${norm}: a filesystem is mounted on /`);
    let node: PseudoNode | undefined;
    if (components.length > 0) {
      const existing = this.tree.find(components);
      if (existing !== undefined && this.tree.hasMountBelow(existing)) throw new MountError('Busy', `cannot mount ${norm}: a filesystem is mounted below it`);
      for (let n = existing ?? this.deepestExisting(components); n !== undefined; n = n.parent) {
        if (n.slot !== undefined) throw new MountError('Busy', `cannot mount ${norm} inside the mount ${this.tree.path(n)}`);
      }
    }
    const slot = this.slots.allocate(fs, norm);
    if (slot === undefined) throw new MountError('Full', `no free mount slot (${MAX_SLOT} in use)`);
    if (components.length === 0) this.rootSlot = slot;
    else {
      node = this.tree.ensure(components);
      node.slot = slot;
    }
    this.byPath.set(norm, { slot, node });
    if (this.session !== undefined) this.initSlot(slot);
    this.log.info({ mountpoint: norm, slot: slot.index }, 'vfs: mounted');
    return slot.index;
  }

  private deepestExisting(components: Buffer[]): PseudoNode | undefined {
    let n: PseudoNode = this.tree.root;
    for (const c of components) {
      const next = this.tree.child(n, c);
      if (next === undefined) break;
      n = next;
    }
    return n;
  }

  /** Unmounts the filesystem at `path` (its `destroy` is called); returns it. */
  umount(path: string): FileSystem {
    let norm: string;
    try {
      norm = '/' + mountPathComponents(path).map((c) => c.toString()).join('/');
    } catch (e) {
      throw new MountError('InvalidPath', (e as MountPathError).message);
    }
    const m = this.byPath.get(norm);
    if (m === undefined) throw new MountError('NotFound', `${norm} is not mounted`);
    this.byPath.delete(norm);
    if (m.node !== undefined) {
      m.node.slot = undefined;
      this.tree.prune(m.node);
    }
    if (this.rootSlot === m.slot) this.rootSlot = undefined;
    this.slots.detach(m.slot);
    try {
      m.slot.fs.destroy?.();
    } catch (e) {
      this.log.warn({ mountpoint: norm, err: String(e) }, 'vfs: destroy of an unmounted filesystem failed');
    }
    this.log.info({ mountpoint: norm, slot: m.slot.index, lingeringRefs: m.slot.refs }, 'vfs: unmounted');
    return m.slot.fs;
  }

  /** The state a daemon taking over the connection restores with `restoreMountTable`; throws when a backend cannot be handed over. */
  saveMountTable(): VfsState {
    const backends: Record<string, unknown> = {};
    for (const s of this.slots.mounted()) {
      if (s.fs.saveState === undefined) throw new MountError('Busy', `the filesystem mounted on ${s.path} cannot be handed over to another daemon`);
      backends[String(s.index)] = s.fs.saveState();
    }
    return { session: this.session === undefined ? null : this.session.toString(), transparent: this.transparent, pseudo: this.tree.save(), slots: this.slots.save(), backends };
  }

  /**
   * Continues where another daemon's `saveMountTable` left off, in a Vfs with nothing mounted yet:
   * `fsOf` gives the filesystem (opened again from the same source) of each mount path.
   */
  restoreMountTable(state: VfsState, fsOf: (path: string) => FileSystem): void {
    if (this.byPath.size > 0 || this.session !== undefined) throw new Error('Vfs.restoreMountTable into a Vfs in use');
    if (typeof state !== 'object' || state === null) throw new Error('the mount table state is not an object');
    if (state.session !== null && (typeof state.session !== 'string' || !/^[0-9]{1,20}$/.test(state.session))) throw new Error('bad session flags');
    const backends: Record<string, unknown> = typeof state.backends === 'object' && state.backends !== null ? state.backends : {};
    this.tree.restore(state.pseudo);
    const slots = this.slots.restore(state.slots, (s) => (s.mounted ? fsOf(s.path) : GONE));
    for (const slot of slots) {
      if (!slot.mounted) continue;
      const components = mountPathComponents(slot.path);
      const node = components.length === 0 ? undefined : this.tree.find(components);
      if ((components.length > 0 && node === undefined) || this.byPath.has(slot.path)) throw new Error(`mount ${slot.path}: no pseudo directory, or mounted twice`);
      if (node === undefined) this.rootSlot = slot;
      else node.slot = slot;
      this.byPath.set(slot.path, { slot, node });
    }
    if (this.rootSlot !== undefined && this.byPath.size > 1) throw new Error('a mount on / besides others');
    this.transparent = state.transparent === true;
    if (state.session === null) return;
    this.session = BigInt(state.session);
    for (const slot of slots) {
      if (!slot.mounted) continue;
      this.initSlot(slot);
      const saved = backends[String(slot.index)];
      if (saved !== undefined) slot.fs.restoreState?.(saved);
    }
  }

  /** The pseudo directory a backend is mounted on (undefined for "/"). */
  protected nodeOfSlot(slot: Slot): PseudoNode | undefined {
    const m = this.byPath.get(slot.path);
    return m?.slot === slot ? m.node : undefined;
  }

  mounts(): MountInfo[] {
    return [...this.byPath].map(([path, m]) => ({ path, index: m.slot.index, fs: m.slot.fs }));
  }

  /** The filesystem mounted at `path`, if any. */
  mounted(path: string): FileSystem | undefined {
    try {
      return this.byPath.get('/' + mountPathComponents(path).map((c) => c.toString()).join('/'))?.slot.fs;
    } catch {
      return undefined;
    }
  }

  /** The union of the backends' wanted flags (and `initFlags`), as FUSE_INIT should offer. */
  get wantedInitFlags(): bigint {
    let f = this.opts.initFlags ?? 0n;
    const mounted = this.slots.mounted();
    for (const s of mounted) f |= s.fs.wantedInitFlags ?? 0n;
    if (!(this.rootSlot !== undefined && mounted.length === 1)) f &= ~CONNECTION_WIDE;
    if (this.opts.announceSubmounts) f |= SUBMOUNTS;
    return f;
  }

  protected startSession(flags: bigint): void {
    this.session = flags;
    this.transparent = this.rootSlot !== undefined && this.slots.mounted().length === 1;
    for (const s of this.slots.mounted()) this.initSlot(s);
  }

  protected endSession(): void {
    for (const s of this.slots.mounted()) {
      try {
        s.fs.destroy?.();
      } catch (e) {
        this.log.warn({ mountpoint: s.path, err: String(e) }, 'vfs: destroy failed');
      }
    }
    this.slots.resetSession();
    this.tree.resetLookups();
    this.session = undefined;
  }

  private initSlot(slot: Slot): void {
    const flags = this.session as bigint;
    slot.fs.init?.({ flags: this.transparent ? flags : flags & ~CONNECTION_WIDE });
    slot.initialized = true;
  }

  /** Where a node id of the kernel leads. */
  protected resolve(nodeid: number): Target {
    if (nodeid === ROOT_ID) return this.rootSlot !== undefined ? { kind: 'backend', slot: this.rootSlot, inner: ROOT_ID } : { kind: 'pseudo', node: this.tree.root };
    const { index, inner } = splitNodeId(nodeid);
    if (index === 0) return { kind: 'pseudo', node: this.tree.get(inner) };
    const slot = this.slots.get(index);
    if (slot === undefined) throw new FsError(Errno.ESTALE, `node id ${nodeid}: no such mount`);
    if (!slot.mounted) throw new FsError(Errno.ESTALE, `node id ${nodeid}: ${slot.path} was unmounted`);
    if (inner === 0) throw new FsError(Errno.EINVAL, 'node id 0');
    return { kind: 'backend', slot, inner };
  }

  /**
   * A backend's node id as the kernel sees it. A reply that arrives after its backend was
   * unmounted (a request waiting in the backend while the API unmounted it) hands out no id: the
   * slot may be gone already, and its index, once used again, would name another mount.
   */
  protected out(slot: Slot, inner: number): number {
    if (inner === 0) return 0;
    if (!slot.mounted) throw this.goneError(slot, 'an entry reply');
    if (inner === ROOT_ID && slot === this.rootSlot) return ROOT_ID;
    if (!Number.isSafeInteger(inner) || inner < 0 || inner >= INNER_SPAN) {
      this.log.error({ mountpoint: slot.path, inner }, 'vfs: a backend returned a node id of 2^40 or more');
      throw new FsError(Errno.EIO, `node id ${inner} of ${slot.path} is out of range`);
    }
    return nodeIdOf(slot.index, inner);
  }

  /**
   * `st_ino` / `d_ino` of a backend's inode as the guest sees it: unchanged for a backend on "/";
   * otherwise put in the slot's range (folded when 2^40 or more), so that inode numbers stay
   * stable (they are the backend's, not node ids that change after a FORGET) and distinct
   * between backends.
   */
  protected inoOut(slot: Slot, ino: number): number {
    if (slot === this.rootSlot) return ino;
    return nodeIdOf(slot.index, ino >= 0 && ino < INNER_SPAN ? ino : Math.abs(ino) % INNER_SPAN);
  }

  /** A backend's entry with its ids mapped; counts the reference the kernel takes. */
  protected mapEntry(slot: Slot, e: EntryReply, count = true): EntryReply {
    const nodeid = this.out(slot, e.nodeid);
    if (nodeid !== 0 && count) this.slots.addRef(slot);
    return { ...e, nodeid, attr: { ...e.attr, ino: this.inoOut(slot, e.attr.ino) } };
  }

  protected countRef(slot: Slot, n = 1): void {
    if (n > 0) this.slots.addRef(slot, n);
  }

  /** The entry of a pseudo directory; counts the reference. */
  protected pseudoEntry(node: PseudoNode): EntryReply {
    this.tree.ref(node);
    return { nodeid: node.id, generation: 0, attr: this.tree.attr(node), entryTimeout: this.timeout, attrTimeout: this.timeout };
  }

  /** The entry of a mount point: the backend root's attributes under the mapped root id. */
  protected async crossEntry(ctx: RequestContext, slot: Slot, count = true): Promise<EntryReply> {
    const fs = slot.fs;
    if (fs.getattr === undefined) throw new FsError(Errno.ENOSYS);
    const r = await fs.getattr(ctx, ROOT_ID);
    const nodeid = this.out(slot, ROOT_ID);
    const submount = this.opts.announceSubmounts === true && this.session !== undefined && (this.session & SUBMOUNTS) !== 0n;
    if (count) this.slots.addRef(slot);
    return { nodeid, generation: 0, attr: { ...r.attr, ino: this.inoOut(slot, r.attr.ino), flags: r.attr.flags | (submount ? FUSE_ATTR_SUBMOUNT : 0) }, entryTimeout: this.timeout, attrTimeout: r.timeout };
  }

  protected forgetId(nodeid: number, nlookup: number): void {
    // FORGET of the root (the guest unmounting) is tolerated and ignored.
    if (nodeid === ROOT_ID) return;
    const { index, inner } = splitNodeId(nodeid);
    if (index === 0) return this.tree.forget(inner, nlookup);
    const slot = this.slots.get(index);
    if (slot === undefined) return;
    // The backend never handed out its root through a lookup: a FORGET of it stays here.
    if (slot.mounted && inner !== ROOT_ID) slot.fs.forget?.(inner, nlookup);
    this.slots.dropRefs(slot, nlookup);
  }

  /**
   * Runs a backend operation. With several backends, an ENOSYS (or a missing method) would turn
   * the operation off for the whole connection in the kernel: `nosys` then answers instead. An
   * operation that fails after its backend was unmounted under it (a read whose fetch the unmount
   * aborted) answers ESTALE, as one arriving after the unmount does.
   */
  protected async call<T>(slot: Slot, run: () => Promise<T> | undefined, nosys?: () => T | Promise<T>): Promise<T> {
    try {
      const p = run();
      if (p === undefined) throw new FsError(Errno.ENOSYS);
      return await p;
    } catch (e) {
      if (!slot.mounted) throw this.goneError(slot, e);
      if (nosys !== undefined && !this.transparent && e instanceof FsError && e.errno === Errno.ENOSYS) return nosys();
      throw e;
    }
  }

  /** ESTALE for a backend operation that failed because the backend was unmounted meanwhile. */
  protected goneError(slot: Slot, cause: unknown): FsError {
    this.log.debug({ mountpoint: slot.path, err: String(cause) }, 'vfs: a request failed after its mount was removed');
    return new FsError(Errno.ESTALE, `${slot.path} was unmounted during the request`);
  }

  /** Mount slots still referenced by the kernel after their unmount (for metrics and tests). */
  get lingeringSlots(): number {
    return this.slots.lingering;
  }

  get pseudoNodes(): number {
    return this.tree.size;
  }
}
