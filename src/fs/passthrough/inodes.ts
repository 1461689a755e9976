/**
 * The inode table of the passthrough filesystem: each FUSE node id holds one O_PATH fd of a host
 * inode, found again by its identity (st_dev, st_ino, mount id) so that one host inode has one
 * node id, with the kernel's lookup count; FORGET to zero closes the fd. The root (FUSE_ROOT_ID)
 * is the shared directory itself and lives as long as the table.
 */
import { close, closeSync } from 'node:fs';
import type { PtStat } from '../../native/addon.js';
import { native } from '../../native/index.js';
import { Errno, FsError } from '../types.js';
import { AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, O_DIRECTORY, O_PATH, isDir, sys } from './common.js';

export const ROOT_ID = 1;

/** close(2) of an O_PATH fd fails only for a bad fd, which would be a bug logged elsewhere. */
function ignore(): void {}

export interface Inode {
  readonly id: number;
  /** O_PATH fd of the host inode (never used for I/O directly). */
  readonly fd: number;
  readonly key: string;
  /** File type and permission bits when first seen (the type never changes). */
  readonly mode: number;
  readonly dev: number;
  readonly mntId: number;
  refs: number;
}

function identity(st: PtStat): string {
  return `${st.dev}:${st.ino}:${st.mntId}`;
}

/** statx of an O_PATH fd itself (never following a symlink). */
export function statFd(fd: number): PtStat {
  return sys(() => native.ptStatx(fd, '', AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
}

/** statx of `fd`, which is closed if that fails (it was opened for the caller to keep). */
function statOrClose(fd: number): PtStat {
  try {
    return statFd(fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** Unlinked files up to this size close at once (freeing a few extents is quick). */
const BACKGROUND_CLOSE = 8 << 20;

/** Whether closing `fd` may free a file's blocks: its last name is gone and it has many. */
function freesBlocks(fd: number): boolean {
  try {
    const st = native.ptStatx(fd, '', AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    return st.nlink === 0 && st.blocks * 512 > BACKGROUND_CLOSE;
  } catch {
    return true; // unknown: the safe side
  }
}

export class InodeTable {
  readonly root: Inode;
  private readonly byId = new Map<number, Inode>();
  private readonly byKey = new Map<string, Inode>();
  private nextId = ROOT_ID + 1;

  /** Opens the shared directory (the configured path may itself go through symlinks). */
  constructor(rootPath: string) {
    const fd = sys(() => native.openFd(rootPath, O_PATH | O_DIRECTORY));
    const st = statOrClose(fd);
    this.root = { id: ROOT_ID, fd, key: identity(st), mode: st.mode, dev: st.dev, mntId: st.mntId, refs: 1 };
    this.byId.set(ROOT_ID, this.root);
    this.byKey.set(this.root.key, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  /** The inode of a node id the kernel holds; EBADF for any other (as virtiofsd). */
  get(id: number): Inode {
    const n = this.byId.get(id);
    if (n === undefined) throw new FsError(Errno.EBADF, `node id ${id} is not known`);
    return n;
  }

  /** The node of the host inode `st` describes, if the kernel holds one (nothing is counted). */
  find(st: PtStat): Inode | undefined {
    return this.byKey.get(identity(st));
  }

  /** `adopt` of an fd whose attributes are read here; the fd is closed if they cannot be. */
  adoptFd(fd: number): { node: Inode; st: PtStat } {
    const st = statOrClose(fd);
    return { node: this.adopt(fd, st), st };
  }

  /**
   * Takes an O_PATH fd just opened for `st` and counts one lookup: a known inode keeps its node
   * id (the new fd is closed), a new one gets the next id. Closes `fd` on every path but adoption.
   */
  adopt(fd: number, st: PtStat): Inode {
    const key = identity(st);
    const known = this.byKey.get(key);
    if (known !== undefined) {
      closeSync(fd);
      if (known.id !== ROOT_ID) known.refs++;
      return known;
    }
    const n: Inode = { id: this.nextId++, fd, key, mode: st.mode, dev: st.dev, mntId: st.mntId, refs: 1 };
    this.byId.set(n.id, n);
    this.byKey.set(key, n);
    return n;
  }

  /** Counts one more lookup of a node handed out again (READDIRPLUS, CREATE). */
  ref(n: Inode): void {
    if (n.id !== ROOT_ID) n.refs++;
  }

  /**
   * Drops `count` lookups; the fd closes at zero. Unknown ids and the root are ignored. The fd
   * closes at once, unless it is the last of an unlinked file with more than BACKGROUND_CLOSE
   * bytes: that close frees the file's blocks, which can take longer than the request it ends (the
   * C virtiofsd has FORGETs on a thread of their own for the same reason), so it goes to the thread
   * pool. Not every close: the pool's completion wakes the event loop once more per FORGET, which
   * cost a deleted small file 15 % more daemon CPU (`rm -r` of 2,000 files through a FUSE mount).
   */
  forget(id: number, count: number): void {
    if (id === ROOT_ID) return;
    const n = this.byId.get(id);
    if (n === undefined) return;
    n.refs -= count;
    if (n.refs > 0) return;
    this.byId.delete(id);
    if (this.byKey.get(n.key) === n) this.byKey.delete(n.key);
    if (isDir(n.mode) || !freesBlocks(n.fd)) closeSync(n.fd);
    else close(n.fd, ignore);
  }

  /** The session ended: every node but the root is released. */
  clear(): void {
    for (const n of this.byId.values()) if (n.id !== ROOT_ID) closeSync(n.fd);
    this.byId.clear();
    this.byKey.clear();
    this.byId.set(ROOT_ID, this.root);
    this.byKey.set(this.root.key, this.root);
  }

  /** Closes everything, the root included; the table is unusable afterwards. */
  close(): void {
    this.clear();
    closeSync(this.root.fd);
    this.byId.clear();
    this.byKey.clear();
  }
}
