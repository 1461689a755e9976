/**
 * The read-only RAFS filesystem: answers FUSE operations from the bootstrap (metadata never
 * touches a blob) and reads file data through the `BlobDevice` chunk path. FUSE node ids are image
 * inode numbers with the root swapped to FUSE_ROOT_ID; hardlinks share one node id. Every node id
 * the kernel uses must have been handed out by a lookup (counted, released by FORGET).
 */
import type { Logger, Metrics } from '../../base/index.js';
import { DamselflyError, LogLimiter, allSettledOrThrow, bytesEqual } from '../../base/index.js';
import type { ChunkInfo } from '../../format/chunk-info.js';
import { ChunkFlag, Limits, S_IFMT, SuperFlags } from '../../format/constants.js';
import { digest } from '../../format/digest.js';
import type { InodeAttr, RafsImage } from '../../format/image.js';
import { type BlobDevice, type ChunkSegment, sliceViews } from '../../storage/device.js';
import {
  type Attr,
  type AttrReply,
  type DirEntry,
  type DirEntryPlus,
  type DirSink,
  type EntryReply,
  Errno,
  type FileSystem,
  type FsInit,
  FsError,
  type OpenReply,
  type RequestContext,
  type StatFs,
  direntType,
} from '../types.js';

const ROOT = 1;
const DO_READDIRPLUS = 1n << 13n;
const READDIRPLUS_AUTO = 1n << 14n;
const NO_OPEN_SUPPORT = 1n << 17n;
const CACHE_SYMLINKS = 1n << 23n;
const NO_OPENDIR_SUPPORT = 1n << 24n;
const O_ACCMODE = 3;
const O_TRUNC = 0o1000;
const O_CREAT = 0o100;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const W_OK = 2;
const FOPEN_KEEP_CACHE = 1 << 1;
const FOPEN_CACHE_DIR = 1 << 3;
/**
 * No FLUSH at close (FUSE 7.35): nothing of a read-only image needs it. Behind the mount table a
 * FLUSH's ENOSYS cannot switch FLUSH off (it would for every mount of the connection), so without
 * this every close of an image file is one more request; and a close never waits on the daemon
 * (a process forked while the daemon is away closes its inherited fds at exec without blocking).
 */
const FOPEN_NOFLUSH = 1 << 5;
/** The attributes of a negative entry (the kernel ignores them). */
const NO_ATTR: Attr = Object.freeze({
  ino: 0,
  size: 0,
  blocks: 0,
  atime: Object.freeze({ sec: 0, nsec: 0 }),
  mtime: Object.freeze({ sec: 0, nsec: 0 }),
  ctime: Object.freeze({ sec: 0, nsec: 0 }),
  mode: 0,
  nlink: 0,
  uid: 0,
  gid: 0,
  rdev: 0,
  blksize: 0,
  flags: 0,
});
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');

export interface ImageFsOptions {
  image: RafsImage;
  device: BlobDevice;
  metrics: Metrics;
  log: Logger;
  /** Seconds the kernel may cache names and attributes (the image never changes). */
  entryTimeout?: number;
  attrTimeout?: number;
  /** Reported for every inode when the image does not store owners (no EXPLICIT_UID_GID). */
  defaultOwner?: { uid: number; gid: number };
  /** Time reported for inodes with mtime 0 (nydus reports the mount time). */
  mountTime?: number;
  /** Bytes fetched ahead of a sequential reader (nydus `amplify_io`); 0 disables. */
  readahead?: number;
  /**
   * Serve xattrs even if the superblock says no inode has any (nydus `enable_xattr`). Otherwise
   * GETXATTR and LISTXATTR of such an image answer ENOSYS, as nydusd's do, and the kernel stops
   * sending them: `ls -l` asks two xattrs (ACL, SELinux) of every file it lists.
   */
  enableXattr?: boolean;
}

/** `ImageFs.saveState`: the kernel's lookup counts by node id. */
export interface ImageFsState {
  mountTime: number;
  lookups: Array<[number, number]>;
}

export class ImageFs implements FileSystem {
  /**
   * READDIRPLUS and symlink caching suit an immutable tree; so do zero-message opens: when the
   * kernel supports them, OPEN and OPENDIR answer ENOSYS once and the kernel stops sending them
   * (and FLUSH/RELEASE) — three round trips less per opened file, page cache kept.
   */
  readonly wantedInitFlags = DO_READDIRPLUS | READDIRPLUS_AUTO | CACHE_SYMLINKS | NO_OPEN_SUPPORT | NO_OPENDIR_SUPPORT;
  private noOpen = false;
  private noOpendir = false;
  /** Whether GETXATTR and LISTXATTR are answered (else ENOSYS): see `enableXattr`. */
  private readonly xattrsServed: boolean;
  private readonly opts: Required<Omit<ImageFsOptions, 'defaultOwner'>> & Pick<ImageFsOptions, 'defaultOwner'>;
  private readonly image: RafsImage;
  /** A guest can touch a malformed inode in a loop: one line a minute. */
  private readonly logLimiter = new LogLimiter();
  /** Lookup counts of the node ids the kernel holds (the root is always valid). */
  private readonly lookups = new Map<number, number>();
  /** Restored from another daemon's state: node ids it handed out later are accepted (`adopt`). */
  private restored = false;
  private readonly chunkCache = new Map<number, ChunkInfo[]>();
  /** The digest of a chunk of that many zero bytes (a few sizes: the chunk size, files' tails). */
  private readonly zeroDigests = new Map<number, Uint8Array>();
  /** End offset of the last read per node id, to detect sequential readers. */
  private readonly lastEnd = new Map<number, number>();
  /**
   * Per node id, the index of the last chunk already handed to the read-ahead: each chunk is
   * asked for once per sequential pass, not again by every READ that falls short of it.
   */
  private readonly aheadUpTo = new Map<number, number>();

  constructor(opts: ImageFsOptions) {
    this.image = opts.image;
    this.opts = { entryTimeout: 3600, attrTimeout: 3600, mountTime: Math.floor(Date.now() / 1000), readahead: 4 << 20, enableXattr: false, ...opts };
    this.xattrsServed = this.opts.enableXattr || (opts.image.flags & SuperFlags.HAS_XATTR) !== 0n;
  }

  // Node ids: the image root is FUSE_ROOT_ID; the image inode that is 1 (if not the root) takes the root's number.
  private toNode(ino: number): number {
    if (ino === this.image.rootIno) return ROOT;
    return ino === ROOT ? this.image.rootIno : ino;
  }

  private toIno(nodeid: number): number {
    if (nodeid === ROOT) return this.image.rootIno;
    if (!this.lookups.has(nodeid)) {
      if (!this.restored) throw new FsError(Errno.ESTALE, `node id ${nodeid} was never looked up`);
      this.adopt(nodeid);
    }
    return nodeid === this.image.rootIno ? ROOT : nodeid;
  }

  /**
   * A node id a restored filesystem's state does not list: the previous daemon handed it out
   * after it saved the state (the supervisor is sent one at mounts, not at every lookup). Any
   * inode of the image is one; it is counted as one lookup, which the kernel's FORGET returns.
   */
  private adopt(nodeid: number): void {
    const ino = nodeid === this.image.rootIno ? ROOT : nodeid;
    if (!Number.isSafeInteger(nodeid) || nodeid < 1) throw new FsError(Errno.ESTALE, `node id ${nodeid} is no inode of this image`);
    try {
      this.image.getAttr(ino);
    } catch {
      throw new FsError(Errno.ESTALE, `node id ${nodeid} is no inode of this image`);
    }
    this.lookups.set(nodeid, 1);
  }

  private attr(a: InodeAttr, nodeid: number): Attr {
    const t = a.mtimeSec === 0 && a.mtimeNsec === 0 ? { sec: this.opts.mountTime, nsec: 0 } : { sec: a.mtimeSec, nsec: a.mtimeNsec };
    const owner = this.opts.defaultOwner ?? { uid: a.uid, gid: a.gid };
    return {
      ino: nodeid,
      size: a.size,
      blocks: a.blocks,
      atime: t,
      mtime: t,
      ctime: t,
      mode: a.mode,
      nlink: a.nlink,
      uid: owner.uid,
      gid: owner.gid,
      rdev: a.rdev,
      blksize: 4096,
      flags: 0,
    };
  }

  /** Decodes an inode; a malformed image part is an I/O error for the caller, logged here (one line a minute). */
  private getAttr(ino: number): InodeAttr {
    try {
      return this.image.getAttr(ino);
    } catch (e) {
      throw this.imageError(e, ino);
    }
  }

  private imageError(e: unknown, ino: number): unknown {
    if (e instanceof DamselflyError) {
      this.logLimiter.log(this.opts.log, 'error', 'malformed', { ino, err: e.message }, 'image inode is malformed');
      return new FsError(Errno.EIO, e.message);
    }
    return e;
  }

  private entry(ino: number): EntryReply {
    const nodeid = this.toNode(ino);
    const attr = this.attr(this.getAttr(ino), nodeid);
    if (nodeid !== ROOT) this.lookups.set(nodeid, (this.lookups.get(nodeid) ?? 0) + 1);
    return { nodeid, generation: 0, attr, entryTimeout: this.opts.entryTimeout, attrTimeout: this.opts.attrTimeout };
  }

  /**
   * A name the image does not have: node id 0 with the entry timeout, which the kernel keeps as a
   * negative dentry (an ENOENT reply would be asked again at the next lookup of the name). The
   * image never changes, so the answer holds as long as a positive one; programs probe many
   * absent names (python's imports try several per module).
   */
  private negativeEntry(): EntryReply {
    return { nodeid: 0, generation: 0, attr: NO_ATTR, entryTimeout: this.opts.entryTimeout, attrTimeout: 0 };
  }

  init(init: FsInit): void {
    this.noOpen = (init.flags & NO_OPEN_SUPPORT) !== 0n;
    this.noOpendir = (init.flags & NO_OPENDIR_SUPPORT) !== 0n;
  }

  /** The lookup counts the kernel holds, and the time inodes without one show. */
  saveState(): ImageFsState {
    return { mountTime: this.opts.mountTime, lookups: [...this.lookups] };
  }

  restoreState(state: unknown): void {
    const st = state as Partial<ImageFsState> | null;
    if (st === null || typeof st !== 'object' || !Number.isSafeInteger(st.mountTime) || !Array.isArray(st.lookups)) throw new Error('not the state of an image filesystem');
    const lookups = new Map<number, number>();
    for (const e of st.lookups as unknown[]) {
      const [nodeid, n] = Array.isArray(e) ? (e as unknown[]) : [];
      if (!Number.isSafeInteger(nodeid) || !Number.isSafeInteger(n) || (n as number) < 1 || nodeid === ROOT) throw new Error(`bad lookup count ${JSON.stringify(e)}`);
      const ino = nodeid === this.image.rootIno ? ROOT : (nodeid as number);
      try {
        this.getAttr(ino);
      } catch (err) {
        throw new Error(`node id ${String(nodeid)} is no inode of this image`, { cause: err });
      }
      lookups.set(nodeid as number, n as number);
    }
    this.opts.mountTime = st.mountTime as number;
    this.restored = true;
    this.lookups.clear();
    for (const [k, v] of lookups) this.lookups.set(k, v);
  }

  destroy(): void {
    this.lookups.clear();
    this.restored = false;
    this.chunkCache.clear();
    this.lastEnd.clear();
    this.aheadUpTo.clear();
  }

  async lookup(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryReply> {
    const dir = this.toIno(parent);
    if (this.getAttr(dir).kind !== 'dir') throw new FsError(Errno.ENOTDIR);
    if (name.length > 255) throw new FsError(Errno.ENAMETOOLONG);
    let ino: number;
    if (Buffer.compare(name, DOT) === 0) ino = dir;
    else if (Buffer.compare(name, DOTDOT) === 0) ino = this.image.parent(dir);
    else {
      const e = this.image.lookup(dir, name);
      if (e === undefined) return this.negativeEntry();
      ino = e.ino;
    }
    return this.entry(ino);
  }

  forget(nodeid: number, nlookup: number): void {
    const n = this.lookups.get(nodeid);
    if (n === undefined) return;
    if (n <= nlookup) this.lookups.delete(nodeid);
    else this.lookups.set(nodeid, n - nlookup);
  }

  async getattr(_ctx: RequestContext, nodeid: number): Promise<AttrReply> {
    return { attr: this.attr(this.getAttr(this.toIno(nodeid)), nodeid), timeout: this.opts.attrTimeout };
  }

  async readlink(_ctx: RequestContext, nodeid: number): Promise<Uint8Array> {
    const ino = this.toIno(nodeid);
    if (this.getAttr(ino).kind !== 'symlink') throw new FsError(Errno.EINVAL);
    let target: Uint8Array;
    try {
      target = this.image.readlink(ino);
    } catch (e) {
      throw this.imageError(e, ino);
    }
    // A target Linux cannot read back (4096 bytes: RAFS v6 allows it): the kernel would refuse the
    // reply (EIO over /dev/fuse), so it is refused here, as the host's symlink(2) refuses one.
    if (target.length > Limits.MAX_LINUX_SYMLINK) throw new FsError(Errno.ENAMETOOLONG);
    return target;
  }

  async open(_ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply> {
    const a = this.getAttr(this.toIno(nodeid));
    if (a.kind === 'dir') throw new FsError(Errno.EISDIR);
    if ((flags & O_ACCMODE) !== 0 || flags & (O_TRUNC | O_CREAT)) throw new FsError(Errno.EROFS);
    // Without an open handle the kernel still keeps the page cache (and writes fail with EROFS).
    if (this.noOpen) throw new FsError(Errno.ENOSYS);
    return { fh: 0n, flags: FOPEN_KEEP_CACHE | FOPEN_NOFLUSH };
  }

  private chunks(ino: number): ChunkInfo[] {
    let c = this.chunkCache.get(ino);
    if (c === undefined) {
      try {
        c = this.image.fileChunks(ino);
      } catch (e) {
        throw this.imageError(e, ino);
      }
      if (this.chunkCache.size >= 1024) this.chunkCache.delete(this.chunkCache.keys().next().value as number);
      this.chunkCache.set(ino, c);
    }
    return c;
  }

  async read(ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, size: number, dst: Uint8Array[]): Promise<number> {
    const ino = this.toIno(nodeid);
    const a = this.getAttr(ino);
    if (a.kind !== 'file') throw new FsError(a.kind === 'dir' ? Errno.EISDIR : Errno.EINVAL);
    const end = Math.min(a.size, offset + size);
    if (offset >= end) return 0;
    const chunks = this.chunks(ino);
    const cs = this.image.chunkSize;
    // Chunks normally sit at index = offset / chunk size; holes (missing chunks) read as zeros.
    const segments: ChunkSegment[] = [];
    const layout: Array<{ zeros: number } | { segment: number }> = [];
    let pos = offset;
    let i = chunkIndexAtOrAfter(chunks, offset, cs);
    while (pos < end) {
      const c = chunks[i];
      if (c === undefined || c.fileOffset > pos) {
        const stop = Math.min(end, c?.fileOffset ?? end);
        layout.push({ zeros: stop - pos });
        pos = stop;
        continue;
      }
      const from = pos - c.fileOffset;
      const length = Math.min(end, c.fileOffset + c.uncompressedSize) - pos;
      if (length <= 0) {
        i++;
        continue;
      }
      layout.push({ segment: segments.length });
      segments.push({ chunk: c, from, length });
      pos += length;
      i++;
    }
    if (layout.every((l) => 'segment' in l)) {
      await this.opts.device.read(segments, dst, ctx.signal);
    } else {
      // Some zero ranges: read the chunk ranges into place, zero the rest.
      let at = 0;
      const jobs: Array<Promise<void>> = [];
      for (const l of layout) {
        if ('zeros' in l) {
          for (const v of sliceViews(dst, at, l.zeros)) v.fill(0);
          at += l.zeros;
        } else {
          const s = segments[l.segment] as ChunkSegment;
          jobs.push(this.opts.device.read([s], sliceViews(dst, at, s.length), ctx.signal));
          at += s.length;
        }
      }
      await allSettledOrThrow(jobs); // none may write into `dst` after the read failed
    }
    this.readAhead(nodeid, offset, end, chunks, i);
    this.opts.metrics.inc('fs.read_bytes', end - offset);
    return end - offset;
  }

  /** A sequential reader gets the next chunks fetched in the background while it reads these. */
  private readAhead(nodeid: number, offset: number, end: number, chunks: ChunkInfo[], next: number): void {
    const sequential = this.lastEnd.get(nodeid) === offset;
    if (this.lastEnd.size >= 4096) {
      this.lastEnd.clear();
      this.aheadUpTo.clear();
    }
    this.lastEnd.set(nodeid, end);
    if (!sequential) {
      this.aheadUpTo.delete(nodeid); // a new pass (or a random reader) starts afresh
      return;
    }
    if (this.opts.readahead <= 0) return;
    const done = this.aheadUpTo.get(nodeid) ?? -1;
    const ahead: ChunkInfo[] = [];
    let last = done;
    for (let k = next, bytes = 0; k < chunks.length && bytes < this.opts.readahead; k++) {
      const c = chunks[k] as ChunkInfo;
      bytes += c.uncompressedSize;
      if (k <= done) continue;
      ahead.push(c);
      last = k;
    }
    if (ahead.length > 0) {
      this.aheadUpTo.set(nodeid, last);
      this.opts.device.prefetch(ahead, { hintCached: true }).catch((e: unknown) => this.opts.log.debug({ err: String(e) }, 'readahead failed'));
    }
  }

  async release(): Promise<void> {}
  async flush(): Promise<void> {
    throw new FsError(Errno.ENOSYS); // nothing to flush: the kernel stops asking
  }
  async fsync(): Promise<void> {}
  async fsyncdir(): Promise<void> {}
  async releasedir(): Promise<void> {}
  async syncfs(): Promise<void> {}

  async opendir(_ctx: RequestContext, nodeid: number): Promise<OpenReply> {
    if (this.getAttr(this.toIno(nodeid)).kind !== 'dir') throw new FsError(Errno.ENOTDIR);
    if (this.noOpendir) throw new FsError(Errno.ENOSYS);
    return { fh: 0n, flags: FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR };
  }

  /** Entries from stable offset `offset`: 0 ".", 1 "..", then child k at k + 2; each carries the next offset. */
  private *entries(dir: number, offset: number): Generator<{ ino: number; name: Uint8Array; offset: number; mode?: number }> {
    if (offset < 0) throw new FsError(Errno.EINVAL);
    const count = this.image.childCount(dir);
    if (offset > count + 2) return;
    if (offset === 0) yield { ino: dir, name: DOT, offset: 1 };
    if (offset <= 1) yield { ino: this.image.parent(dir), name: DOTDOT, offset: 2 };
    let next = Math.max(offset, 2);
    for (const e of this.image.readdir(dir, next - 2)) yield { ino: e.ino, name: e.name, offset: ++next };
  }

  async readdir(_ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, add: DirSink<DirEntry>): Promise<void> {
    const dir = this.toIno(nodeid);
    if (this.getAttr(dir).kind !== 'dir') throw new FsError(Errno.ENOTDIR);
    try {
      for (const e of this.entries(dir, offset)) {
        const mode = this.image.getAttr(e.ino).mode;
        if (!add({ ino: this.toNode(e.ino), offset: e.offset, type: direntType(mode & S_IFMT), name: e.name })) break;
      }
    } catch (e) {
      throw this.imageError(e, dir);
    }
  }

  async readdirplus(_ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    const dir = this.toIno(nodeid);
    if (this.getAttr(dir).kind !== 'dir') throw new FsError(Errno.ENOTDIR);
    try {
      for (const e of this.entries(dir, offset)) {
        const dot = e.name === DOT || e.name === DOTDOT;
        const node = this.toNode(e.ino);
        const attr = this.attr(this.image.getAttr(e.ino), node);
        // "." and ".." are not looked up by the kernel: a zero node id marks them.
        const entry: EntryReply = { nodeid: dot ? 0 : node, generation: 0, attr, entryTimeout: this.opts.entryTimeout, attrTimeout: this.opts.attrTimeout };
        if (!add({ ino: node, offset: e.offset, type: direntType(attr.mode), name: e.name, entry })) break;
        if (!dot && node !== ROOT) this.lookups.set(node, (this.lookups.get(node) ?? 0) + 1);
      }
    } catch (e) {
      throw this.imageError(e, dir);
    }
  }

  async statfs(): Promise<StatFs> {
    const blocks = this.image.blobs.reduce((n, b) => n + Math.ceil(b.uncompressedSize / 4096), Math.ceil(this.image.size / 4096));
    return { blocks, bfree: 0, bavail: 0, files: this.image.inodeCount, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
  }

  async getxattr(_ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array> {
    if (!this.xattrsServed) throw new FsError(Errno.ENOSYS);
    const ino = this.toIno(nodeid);
    if (!this.getAttr(ino).hasXattrs) throw new FsError(Errno.ENODATA);
    const x = this.xattrs(ino).find((x) => Buffer.compare(x.name, name) === 0);
    if (x === undefined) throw new FsError(Errno.ENODATA);
    return x.value;
  }

  async listxattr(_ctx: RequestContext, nodeid: number): Promise<Uint8Array[]> {
    if (!this.xattrsServed) throw new FsError(Errno.ENOSYS);
    const ino = this.toIno(nodeid);
    return this.getAttr(ino).hasXattrs ? this.xattrs(ino).map((x) => x.name) : [];
  }

  private xattrs(ino: number): Array<{ name: Uint8Array; value: Uint8Array }> {
    try {
      return this.image.xattrs(ino);
    } catch (e) {
      throw this.imageError(e, ino);
    }
  }

  async access(ctx: RequestContext, nodeid: number, mask: number): Promise<void> {
    const a = this.getAttr(this.toIno(nodeid));
    if (mask & W_OK) throw new FsError(Errno.EROFS);
    if (ctx.uid === 0) {
      // root may read anything, and execute what has any execute bit (or is a directory).
      if (mask & 1 && a.kind !== 'dir' && (a.mode & 0o111) === 0) throw new FsError(Errno.EACCES);
      return;
    }
    const owner = this.opts.defaultOwner ?? { uid: a.uid, gid: a.gid };
    const shift = ctx.uid === owner.uid ? 6 : ctx.gid === owner.gid ? 3 : 0;
    const granted = (a.mode >> shift) & 7;
    if ((mask & 7 & ~granted) !== 0) throw new FsError(Errno.EACCES);
  }

  async lseek(_ctx: RequestContext, nodeid: number, _fh: bigint, offset: number, whence: number): Promise<number> {
    const ino = this.toIno(nodeid);
    const a = this.getAttr(ino);
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError(Errno.EINVAL);
    if (offset >= a.size) throw new FsError(Errno.ENXIO);
    // A chunk of zeros is a hole too: builders store a sparse file's holes so (as the one chunk
    // of zeros of each size), and a reader that keeps holes (cp, tar --sparse) keeps them then.
    const chunks = a.kind === 'file' ? this.chunks(ino).filter((c) => !this.isZeroChunk(c)) : [];
    if (whence === SEEK_DATA) {
      const c = chunks.find((c) => c.fileOffset + c.uncompressedSize > offset);
      if (c === undefined) throw new FsError(Errno.ENXIO);
      return Math.max(offset, c.fileOffset);
    }
    // SEEK_HOLE: the end of the run of chunks covering `offset`, or the file size.
    let pos = offset;
    for (const c of chunks) {
      if (c.fileOffset + c.uncompressedSize <= pos) continue;
      if (c.fileOffset > pos) return pos;
      pos = c.fileOffset + c.uncompressedSize;
    }
    return Math.min(pos, a.size);
  }

  private isZeroChunk(c: ChunkInfo): boolean {
    if (c.flags & ChunkFlag.HOLECHUNK) return true;
    let zero = this.zeroDigests.get(c.uncompressedSize);
    if (zero === undefined) {
      if (this.zeroDigests.size >= 64) this.zeroDigests.clear();
      zero = digest(this.image.digester, Buffer.alloc(c.uncompressedSize));
      this.zeroDigests.set(c.uncompressedSize, zero);
    }
    return bytesEqual(zero, c.digest);
  }

  async ioctl(): Promise<{ result: number; output: Uint8Array }> {
    throw new FsError(Errno.ENOTTY);
  }

  // Every modifying operation: a RAFS image is read-only.
  async setattr(): Promise<AttrReply> {
    throw new FsError(Errno.EROFS);
  }
  async symlink(): Promise<EntryReply> {
    throw new FsError(Errno.EROFS);
  }
  async mknod(): Promise<EntryReply> {
    throw new FsError(Errno.EROFS);
  }
  async mkdir(): Promise<EntryReply> {
    throw new FsError(Errno.EROFS);
  }
  async unlink(): Promise<void> {
    throw new FsError(Errno.EROFS);
  }
  async rmdir(): Promise<void> {
    throw new FsError(Errno.EROFS);
  }
  async rename(): Promise<void> {
    throw new FsError(Errno.EROFS);
  }
  async link(): Promise<EntryReply> {
    throw new FsError(Errno.EROFS);
  }
  async tmpfile(): Promise<{ entry: EntryReply; open: OpenReply }> {
    throw new FsError(Errno.EROFS);
  }
  async create(): Promise<{ entry: EntryReply; open: OpenReply }> {
    throw new FsError(Errno.EROFS);
  }
  async write(): Promise<number> {
    throw new FsError(Errno.EROFS);
  }
  async setxattr(): Promise<void> {
    throw new FsError(Errno.EROFS);
  }
  async removexattr(): Promise<void> {
    throw new FsError(Errno.EROFS);
  }
  async fallocate(): Promise<void> {
    throw new FsError(Errno.EROFS);
  }
}

/** Position in `chunks` of the first chunk ending after `offset`. */
function chunkIndexAtOrAfter(chunks: ChunkInfo[], offset: number, chunkSize: number): number {
  const guess = Math.floor(offset / chunkSize);
  const g = chunks[guess];
  if (g !== undefined && g.fileOffset <= offset && offset < g.fileOffset + g.uncompressedSize) return guess;
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = chunks[mid] as ChunkInfo;
    if (c.fileOffset + c.uncompressedSize <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
