/**
 * `PassthroughFs`: a host directory served read-write with the semantics of virtiofsd (the
 * shared directory of Kata guests, overlayfs upper layers included). Node ids map to O_PATH fds,
 * names resolve one component at a time beneath their parent (never following a symlink or leaving
 * the share), creating calls run as the guest user. Metadata calls are synchronous; reads, writes
 * and syncs run on the libuv pool.
 */
import { closeSync } from 'node:fs';
import { native } from '../../native/index.js';
import type {
  AttrReply,
  DirEntry,
  DirEntryPlus,
  DirSink,
  EntryReply,
  FileSystem,
  FsInit,
  OpenReply,
  RequestContext,
  SetattrIn,
  StatFs,
} from '../types.js';
import { Errno, FsError } from '../types.js';
import { InitBits, O_DIRECTORY, O_NONBLOCK, isDir, isReg, sys, sysAsync } from './common.js';
import { Core, type PassthroughOptions } from './core.js';
import * as dirs from './dir-ops.js';
import * as files from './file-ops.js';
import * as names from './namespace-ops.js';
import * as xattrs from './xattr-ops.js';

export type { CachePolicy, PassthroughOptions } from './core.js';

/** What POSIX ACLs take (as virtiofsd asks for them): see `PassthroughOptions.posixAcl`. */
const ACL_FLAGS = InitBits.POSIX_ACL | InitBits.DONT_MASK | InitBits.SETXATTR_EXT;

export class PassthroughFs implements FileSystem {
  readonly wantedInitFlags: bigint;
  private readonly core: Core;

  constructor(opts: PassthroughOptions) {
    this.core = new Core(opts);
    const plus = opts.cache === 'never' || opts.readdirplus === false ? 0n : InitBits.DO_READDIRPLUS | InitBits.READDIRPLUS_AUTO;
    // CREATE_SUPP_GROUP always: a caller creating in a directory it may write through a
    // supplementary group (the directory's) is then let in by the host too.
    this.wantedInitFlags =
      plus |
      InitBits.CREATE_SUPP_GROUP |
      (opts.announceSubmounts ? InitBits.SUBMOUNTS : 0n) |
      (opts.writeback === true ? InitBits.WRITEBACK_CACHE : 0n) |
      (opts.allowMmap === true ? InitBits.DIRECT_IO_ALLOW_MMAP : 0n) |
      (opts.killprivV2 === true ? InitBits.HANDLE_KILLPRIV_V2 : 0n) |
      (opts.posixAcl === true ? ACL_FLAGS : 0n) |
      (opts.securityLabel === true ? InitBits.SECURITY_CTX : 0n);
    if (opts.posixLocks === true) opts.log.warn('posix locks are not served: they stay local to the guest');
  }

  /** Node ids and open handles held (for tests and metrics). */
  get counts(): { inodes: number; handles: number } {
    return { inodes: this.core.inodes.size, handles: this.core.handles.size };
  }

  init(init: FsInit): void {
    this.core.writeback = this.core.opts.writeback === true && (init.flags & InitBits.WRITEBACK_CACHE) !== 0n;
    this.core.announce = this.core.opts.announceSubmounts && (init.flags & InitBits.SUBMOUNTS) !== 0n;
    this.core.dontMask = (init.flags & InitBits.DONT_MASK) !== 0n;
    this.core.killprivV2 = this.core.opts.killprivV2 === true && (init.flags & InitBits.HANDLE_KILLPRIV_V2) !== 0n;
    this.core.posixAcl = this.core.opts.posixAcl === true && (init.flags & InitBits.POSIX_ACL) !== 0n;
    this.core.securityLabel = this.core.opts.securityLabel === true && (init.flags & InitBits.SECURITY_CTX) !== 0n;
    if (this.core.opts.securityLabel === true && !this.core.securityLabel) this.core.opts.log.warn('the kernel does not send security contexts (FUSE_SECURITY_CTX): new nodes are not labelled');
    if (this.core.opts.posixAcl === true) {
      const missing = ACL_FLAGS & ~init.flags;
      // An older kernel has POSIX_ACL without SETXATTR_EXT (FUSE 7.33): ACLs work, but an ACL set
      // by a caller outside the file's group cannot say that setgid must go.
      if (missing !== 0n) this.core.opts.log.warn({ missing: `0x${missing.toString(16)}` }, this.core.posixAcl ? 'the kernel lacks FUSE_DONT_MASK or FUSE_SETXATTR_EXT: POSIX ACLs served without them' : 'the kernel does not support POSIX ACLs: not serving them');
    }
    if (this.core.opts.announceSubmounts && !this.core.announce) this.core.opts.log.info('the kernel does not support submounts: not announcing them');
  }

  destroy(): void {
    this.core.handles.clear();
    this.core.inodes.clear();
  }

  /** Releases everything, the shared directory's fd included. */
  close(): void {
    this.core.handles.clear();
    this.core.inodes.close();
  }

  async lookup(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryReply> {
    return this.core.lookup(parent, name);
  }
  forget(nodeid: number, nlookup: number): void {
    this.core.inodes.forget(nodeid, nlookup);
  }
  async getattr(_ctx: RequestContext, nodeid: number): Promise<AttrReply> {
    return names.getattr(this.core, nodeid);
  }
  async setattr(_ctx: RequestContext, nodeid: number, set: SetattrIn): Promise<AttrReply> {
    return names.setattr(this.core, nodeid, set);
  }
  async readlink(_ctx: RequestContext, nodeid: number): Promise<Uint8Array> {
    return names.readlink(this.core, nodeid);
  }
  async symlink(ctx: RequestContext, parent: number, name: Uint8Array, target: Uint8Array): Promise<EntryReply> {
    return names.symlink(this.core, ctx, parent, name, target);
  }
  /** `umask` applies only under FUSE_DONT_MASK; otherwise the kernel already masked `mode`. */
  async mknod(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<EntryReply> {
    return names.mknod(this.core, ctx, parent, name, mode, rdev, umask);
  }
  async mkdir(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, umask: number): Promise<EntryReply> {
    return names.mkdir(this.core, ctx, parent, name, mode, umask);
  }
  async unlink(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<void> {
    names.unlink(this.core, parent, name, false);
  }
  async rmdir(_ctx: RequestContext, parent: number, name: Uint8Array): Promise<void> {
    names.unlink(this.core, parent, name, true);
  }
  async rename(ctx: RequestContext, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    names.rename(this.core, ctx, parent, name, newParent, newName, flags);
  }
  async link(_ctx: RequestContext, nodeid: number, newParent: number, newName: Uint8Array): Promise<EntryReply> {
    return names.link(this.core, nodeid, newParent, newName);
  }
  async statfs(_ctx: RequestContext, nodeid: number): Promise<StatFs> {
    return names.statfs(this.core, nodeid);
  }
  async access(ctx: RequestContext, nodeid: number, mask: number): Promise<void> {
    names.access(this.core, ctx, nodeid, mask);
  }

  async open(ctx: RequestContext, nodeid: number, flags: number, openFlags = 0): Promise<OpenReply> {
    return files.open(this.core, ctx, nodeid, flags, openFlags);
  }
  async create(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, flags: number, umask: number, openFlags = 0): Promise<{ entry: EntryReply; open: OpenReply }> {
    return files.create(this.core, ctx, parent, name, mode, flags, umask, openFlags);
  }

  copyFileRange(ctx: RequestContext, nodeIn: number, fhIn: bigint, offsetIn: number, nodeOut: number, fhOut: bigint, offsetOut: number, length: number, flags: number): Promise<number> {
    return files.copyFileRange(this.core, ctx, nodeIn, fhIn, offsetIn, nodeOut, fhOut, offsetOut, length, flags);
  }

  async tmpfile(ctx: RequestContext, parent: number, mode: number, flags: number, umask: number): Promise<{ entry: EntryReply; open: OpenReply }> {
    return files.tmpfile(this.core, ctx, parent, mode, flags, umask);
  }
  read(_ctx: RequestContext, nodeid: number, fh: bigint, offset: number, size: number, dst: Uint8Array[]): Promise<number> {
    return files.read(this.core, nodeid, fh, offset, size, dst);
  }
  write(_ctx: RequestContext, nodeid: number, fh: bigint, offset: number, data: Uint8Array[], flags: number): Promise<number> {
    return files.write(this.core, nodeid, fh, offset, data, flags);
  }
  async flush(_ctx: RequestContext, nodeid: number, fh: bigint): Promise<void> {
    files.flush(this.core, nodeid, fh);
  }
  async release(_ctx: RequestContext, nodeid: number, fh: bigint, _flags: number): Promise<void> {
    this.core.handles.release(fh, nodeid, 'file');
  }
  fsync(_ctx: RequestContext, nodeid: number, fh: bigint, datasync: boolean): Promise<void> {
    return files.fsyncHandle(this.core, nodeid, fh, datasync, 'file');
  }
  async fallocate(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, length: number, mode: number): Promise<void> {
    files.fallocate(this.core, ctx, nodeid, fh, offset, length, mode);
  }
  async lseek(_ctx: RequestContext, nodeid: number, fh: bigint, offset: number, whence: number): Promise<number> {
    return files.lseek(this.core, nodeid, fh, offset, whence);
  }
  async ioctl(): Promise<{ result: number; output: Uint8Array }> {
    throw new FsError(Errno.ENOTTY);
  }

  async opendir(_ctx: RequestContext, nodeid: number, _flags: number): Promise<OpenReply> {
    return dirs.opendir(this.core, nodeid);
  }
  async readdir(_ctx: RequestContext, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntry>): Promise<void> {
    dirs.readdir(this.core, nodeid, fh, offset, add);
  }
  async readdirplus(_ctx: RequestContext, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    dirs.readdirplus(this.core, nodeid, fh, offset, add);
  }
  async releasedir(_ctx: RequestContext, nodeid: number, fh: bigint): Promise<void> {
    dirs.releasedir(this.core, nodeid, fh);
  }
  fsyncdir(_ctx: RequestContext, nodeid: number, fh: bigint, datasync: boolean): Promise<void> {
    return files.fsyncHandle(this.core, nodeid, fh, datasync, 'dir');
  }

  async getxattr(_ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array> {
    return xattrs.getxattr(this.core, nodeid, name);
  }
  async listxattr(_ctx: RequestContext, nodeid: number): Promise<Uint8Array[]> {
    return xattrs.listxattr(this.core, nodeid);
  }
  async setxattr(_ctx: RequestContext, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number, setxattrFlags = 0): Promise<void> {
    xattrs.setxattr(this.core, nodeid, name, value, flags, setxattrFlags);
  }
  async removexattr(_ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<void> {
    xattrs.removexattr(this.core, nodeid, name);
  }

  /** SYNCFS of the filesystem holding the node (a submount's own, when announced). */
  async syncfs(_ctx: RequestContext, nodeid: number): Promise<void> {
    const n = this.core.inodes.get(nodeid);
    const target = isDir(n.mode) || isReg(n.mode) ? n : this.core.inodes.root;
    const fd = sys(() => native.ptReopen(target.fd, O_NONBLOCK | (isDir(target.mode) ? O_DIRECTORY : 0)));
    try {
      await sysAsync(() => native.ptSyncfs(fd));
    } finally {
      closeSync(fd);
    }
  }
}
