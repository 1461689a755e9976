/**
 * Open file and directory handles of the passthrough filesystem: each FUSE `fh` owns a real fd
 * (reopened from the node's O_PATH fd), belongs to one node id, and is closed by RELEASE only when
 * no read or write still uses it. Directory handles also keep the window of readdir cookies.
 */
import { closeSync } from 'node:fs';
import { native } from '../../native/index.js';
import { Errno, FsError } from '../types.js';
import { O_APPEND, O_DIRECT, O_TRUNC, sys } from './common.js';

export type HandleKind = 'file' | 'dir';

export class Handle {
  private inflight = 0;
  private closing = false;
  /** Lazily opened companion fd without O_APPEND / O_DIRECT (page-cache writes, unaligned I/O). */
  private plain: number | undefined;
  /** Its file system keeps files in memory (tmpfs), found by the first read (`readNoWait`). */
  inMemory?: boolean;
  /** READDIR cookie (entry position) -> host d_off after that entry, for recent positions. */
  readonly cookies = new Map<number, bigint>();
  /** The same for every 1024th position seen (by position / 1024): where a far seek starts counting. */
  readonly checkpoints = new Map<number, bigint>();

  constructor(
    readonly node: number,
    readonly fd: number,
    readonly kind: HandleKind,
    /** Flags the host fd was opened with. */
    readonly flags: number,
  ) {}

  get append(): boolean {
    return (this.flags & O_APPEND) !== 0;
  }

  get direct(): boolean {
    return (this.flags & O_DIRECT) !== 0;
  }

  /** An fd of the same file without O_APPEND, O_DIRECT and O_TRUNC, opened on first need. */
  plainFd(): number {
    // Not O_TRUNC either: the open it came with truncated the file once; a second open with it
    // (the first unaligned O_DIRECT read or write, the first page-cache write of an O_APPEND handle)
    // destroyed what was written since.
    this.plain ??= sys(() => native.ptReopen(this.fd, this.flags & ~(O_APPEND | O_DIRECT | O_TRUNC)));
    return this.plain;
  }

  /** Runs an operation on the handle; RELEASE waits for it before the fds close. */
  async use<T>(op: (h: Handle) => Promise<T>): Promise<T> {
    if (this.closing) throw new FsError(Errno.EBADF, 'handle released');
    this.inflight++;
    try {
      return await op(this);
    } finally {
      this.inflight--;
      if (this.closing && this.inflight === 0) this.closeNow();
    }
  }

  /** Closes now, or after the last operation in flight. */
  release(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.inflight === 0) this.closeNow();
  }

  private closeNow(): void {
    closeSync(this.fd);
    if (this.plain !== undefined) closeSync(this.plain);
    this.plain = undefined;
    this.cookies.clear();
    this.checkpoints.clear();
  }
}

export class HandleTable {
  private readonly handles = new Map<bigint, Handle>();
  private next = 1n;

  get size(): number {
    return this.handles.size;
  }

  add(h: Handle): bigint {
    const fh = this.next++;
    this.handles.set(fh, h);
    return fh;
  }

  /** The handle `fh` of node `node` and kind `kind`; EBADF otherwise (as virtiofsd). */
  get(fh: bigint, node: number, kind: HandleKind): Handle {
    const h = this.handles.get(fh);
    if (h === undefined || h.node !== node || h.kind !== kind) throw new FsError(Errno.EBADF, `no ${kind} handle ${fh} for node ${node}`);
    return h;
  }

  release(fh: bigint, node: number, kind: HandleKind): void {
    const h = this.get(fh, node, kind);
    this.handles.delete(fh);
    h.release();
  }

  clear(): void {
    for (const h of this.handles.values()) h.release();
    this.handles.clear();
  }
}
