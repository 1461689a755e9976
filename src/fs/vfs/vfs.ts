/**
 * `Vfs`: one FileSystem made of a pseudo root and the backends mounted in it (nydusd's virtio-fs
 * root: `/containers` passthrough, `/rafs/<cid>/lowerdir` images; or one backend on `/`). Every
 * operation is routed by node id; the pseudo directories are read-only; an operation spanning
 * two backends (rename, link) answers EXDEV. Directory listings are in `vfs-readdir.ts`.
 */
import {
  type AttrReply,
  type DirEntry,
  type DirEntryPlus,
  type DirSink,
  type EntryReply,
  Errno,
  type FileSystem,
  FsError,
  type FsInit,
  type OpenReply,
  type RequestContext,
  type SetattrIn,
  type StatFs,
} from '../types.js';
import { ROOT_ID } from './slots.js';
import type { BackendTarget, Target } from './vfs-core.js';
import { VfsReaddir } from './vfs-readdir.js';

const W_OK = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const DOTDOT = Buffer.from('..');
const DOT = Buffer.from('.');

function fail(errno: number): never {
  throw new FsError(errno);
}

function same(a: Uint8Array, b: Buffer): boolean {
  return Buffer.compare(a, b) === 0;
}

export class Vfs extends VfsReaddir implements FileSystem {
  init(init: FsInit): void {
    this.startSession(init.flags);
  }

  destroy(): void {
    this.endSession();
  }

  /** The backend behind `nodeid`; a pseudo directory answers `pseudoErrno`. */
  private backend(nodeid: number, pseudoErrno: number): BackendTarget {
    const t = this.resolve(nodeid);
    if (t.kind === 'pseudo') fail(pseudoErrno);
    return t;
  }

  /** Two node ids of one operation (rename, link): both in the same backend. */
  private pair(a: number, b: number): [BackendTarget, BackendTarget] {
    const ta = this.resolve(a);
    const tb = this.resolve(b);
    if (ta.kind === 'pseudo' && tb.kind === 'pseudo') fail(Errno.EROFS);
    if (ta.kind === 'pseudo' || tb.kind === 'pseudo' || ta.slot !== tb.slot) fail(Errno.EXDEV);
    return [ta, tb];
  }

  async lookup(ctx: RequestContext, parent: number, name: Uint8Array): Promise<EntryReply> {
    if (name.length > 255) fail(Errno.ENAMETOOLONG);
    const t = this.resolve(parent);
    if (t.kind === 'pseudo') {
      const node = t.node;
      if (same(name, DOT)) return this.pseudoEntry(node);
      if (same(name, DOTDOT)) return this.pseudoEntry(node.parent ?? node);
      const child = this.tree.child(node, name);
      if (child === undefined) fail(Errno.ENOENT);
      return child.slot !== undefined ? this.crossEntry(ctx, child.slot) : this.pseudoEntry(child);
    }
    if (t.inner === ROOT_ID && t.slot !== this.rootSlot && same(name, DOTDOT)) {
      const node = this.nodeOfSlot(t.slot);
      return this.pseudoEntry(node?.parent ?? this.tree.root);
    }
    const fs = t.slot.fs;
    return this.mapEntry(t.slot, await this.call(t.slot, () => fs.lookup?.(ctx, t.inner, name)));
  }

  forget(nodeid: number, nlookup: number): void {
    this.forgetId(nodeid, nlookup);
  }

  async getattr(ctx: RequestContext, nodeid: number, fh?: bigint): Promise<AttrReply> {
    const t = this.resolve(nodeid);
    if (t.kind === 'pseudo') return { attr: this.tree.attr(t.node), timeout: this.timeout };
    const fs = t.slot.fs;
    const r = await this.call(t.slot, () => fs.getattr?.(ctx, t.inner, fh));
    return { attr: { ...r.attr, ino: this.inoOut(t.slot, r.attr.ino) }, timeout: r.timeout };
  }

  async setattr(ctx: RequestContext, nodeid: number, set: SetattrIn): Promise<AttrReply> {
    const t = this.backend(nodeid, Errno.EROFS);
    const r = await this.call(t.slot, () => t.slot.fs.setattr?.(ctx, t.inner, set));
    return { attr: { ...r.attr, ino: this.inoOut(t.slot, r.attr.ino) }, timeout: r.timeout };
  }

  async readlink(ctx: RequestContext, nodeid: number): Promise<Uint8Array> {
    const t = this.backend(nodeid, Errno.EINVAL);
    return this.call(t.slot, () => t.slot.fs.readlink?.(ctx, t.inner));
  }

  async symlink(ctx: RequestContext, parent: number, name: Uint8Array, target: Uint8Array): Promise<EntryReply> {
    const t = this.backend(parent, Errno.EROFS);
    return this.mapEntry(t.slot, await this.call(t.slot, () => t.slot.fs.symlink?.(ctx, t.inner, name, target)));
  }

  async mknod(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<EntryReply> {
    const t = this.backend(parent, Errno.EROFS);
    return this.mapEntry(t.slot, await this.call(t.slot, () => t.slot.fs.mknod?.(ctx, t.inner, name, mode, rdev, umask)));
  }

  async mkdir(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, umask: number): Promise<EntryReply> {
    const t = this.backend(parent, Errno.EROFS);
    return this.mapEntry(t.slot, await this.call(t.slot, () => t.slot.fs.mkdir?.(ctx, t.inner, name, mode, umask)));
  }

  async unlink(ctx: RequestContext, parent: number, name: Uint8Array): Promise<void> {
    const t = this.backend(parent, Errno.EROFS);
    return this.call(t.slot, () => t.slot.fs.unlink?.(ctx, t.inner, name));
  }

  async rmdir(ctx: RequestContext, parent: number, name: Uint8Array): Promise<void> {
    const t = this.backend(parent, Errno.EROFS);
    return this.call(t.slot, () => t.slot.fs.rmdir?.(ctx, t.inner, name));
  }

  async rename(ctx: RequestContext, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    const [a, b] = this.pair(parent, newParent);
    // ENOSYS to RENAME2 (flags) turns it off for the connection; EINVAL is what it then answers.
    return this.call(
      a.slot,
      () => a.slot.fs.rename?.(ctx, a.inner, name, b.inner, newName, flags),
      flags !== 0 ? () => fail(Errno.EINVAL) : undefined,
    );
  }

  async link(ctx: RequestContext, nodeid: number, newParent: number, newName: Uint8Array): Promise<EntryReply> {
    const [a, b] = this.pair(nodeid, newParent);
    return this.mapEntry(a.slot, await this.call(a.slot, () => a.slot.fs.link?.(ctx, a.inner, b.inner, newName), () => fail(Errno.EPERM)));
  }

  async open(ctx: RequestContext, nodeid: number, flags: number, openFlags = 0): Promise<OpenReply> {
    const t = this.backend(nodeid, Errno.EISDIR);
    return this.call(t.slot, () => t.slot.fs.open?.(ctx, t.inner, flags, openFlags), () => ({ fh: 0n, flags: 0 }));
  }

  async create(ctx: RequestContext, parent: number, name: Uint8Array, mode: number, flags: number, umask: number, openFlags = 0): Promise<{ entry: EntryReply; open: OpenReply }> {
    const t = this.backend(parent, Errno.EROFS);
    const r = await this.call(t.slot, () => t.slot.fs.create?.(ctx, t.inner, name, mode, flags, umask, openFlags), () => fail(Errno.EOPNOTSUPP));
    return { entry: this.mapEntry(t.slot, r.entry), open: r.open };
  }

  async copyFileRange(ctx: RequestContext, nodeIn: number, fhIn: bigint, offsetIn: number, nodeOut: number, fhOut: bigint, offsetOut: number, length: number, flags: number): Promise<number> {
    // Across mounts: EXDEV, and the kernel copies through itself.
    const [a, b] = this.pair(nodeIn, nodeOut);
    return this.call(a.slot, () => a.slot.fs.copyFileRange?.(ctx, a.inner, fhIn, offsetIn, b.inner, fhOut, offsetOut, length, flags), () => fail(Errno.EXDEV));
  }

  async tmpfile(ctx: RequestContext, parent: number, mode: number, flags: number, umask: number): Promise<{ entry: EntryReply; open: OpenReply }> {
    const t = this.backend(parent, Errno.EROFS);
    const r = await this.call(t.slot, () => t.slot.fs.tmpfile?.(ctx, t.inner, mode, flags, umask), () => fail(Errno.EOPNOTSUPP));
    return { entry: this.mapEntry(t.slot, r.entry), open: r.open };
  }

  async read(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, size: number, dst: Uint8Array[]): Promise<number> {
    const t = this.backend(nodeid, Errno.EISDIR);
    return this.call(t.slot, () => t.slot.fs.read?.(ctx, t.inner, fh, offset, size, dst));
  }

  async write(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, data: Uint8Array[], flags: number): Promise<number> {
    const t = this.backend(nodeid, Errno.EISDIR);
    return this.call(t.slot, () => t.slot.fs.write?.(ctx, t.inner, fh, offset, data, flags));
  }

  async flush(ctx: RequestContext, nodeid: number, fh: bigint): Promise<void> {
    const t = this.resolve(nodeid);
    if (t.kind === 'backend') return this.call(t.slot, () => t.slot.fs.flush?.(ctx, t.inner, fh), () => undefined);
  }

  async release(ctx: RequestContext, nodeid: number, fh: bigint, flags: number): Promise<void> {
    const t = this.resolve(nodeid);
    if (t.kind === 'backend') return this.call(t.slot, () => t.slot.fs.release?.(ctx, t.inner, fh, flags), () => undefined);
  }

  async fsync(ctx: RequestContext, nodeid: number, fh: bigint, datasync: boolean): Promise<void> {
    const t = this.resolve(nodeid);
    if (t.kind === 'backend') return this.call(t.slot, () => t.slot.fs.fsync?.(ctx, t.inner, fh, datasync), () => undefined);
  }

  async opendir(ctx: RequestContext, nodeid: number, flags: number): Promise<OpenReply> {
    const t = this.resolve(nodeid);
    if (t.kind === 'pseudo') return { fh: 0n, flags: 0 };
    return this.call(t.slot, () => t.slot.fs.opendir?.(ctx, t.inner, flags), () => ({ fh: 0n, flags: 0 }));
  }

  async readdir(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntry>): Promise<void> {
    return this.listDir(ctx, this.resolve(nodeid), fh, offset, add);
  }

  async readdirplus(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    return this.listDirPlus(ctx, this.resolve(nodeid), fh, offset, add);
  }

  async releasedir(ctx: RequestContext, nodeid: number, fh: bigint): Promise<void> {
    const t = this.resolve(nodeid);
    if (t.kind === 'backend') return this.call(t.slot, () => t.slot.fs.releasedir?.(ctx, t.inner, fh), () => undefined);
  }

  async fsyncdir(ctx: RequestContext, nodeid: number, fh: bigint, datasync: boolean): Promise<void> {
    const t = this.resolve(nodeid);
    if (t.kind === 'backend') return this.call(t.slot, () => t.slot.fs.fsyncdir?.(ctx, t.inner, fh, datasync), () => undefined);
  }

  async statfs(ctx: RequestContext, nodeid: number): Promise<StatFs> {
    const t = this.resolve(nodeid);
    const pseudo = (): StatFs => ({ blocks: 0, bfree: 0, bavail: 0, files: this.tree.size, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 });
    if (t.kind === 'pseudo') return pseudo();
    return this.call(t.slot, () => t.slot.fs.statfs?.(ctx, t.inner), pseudo);
  }

  async setxattr(ctx: RequestContext, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number, setxattrFlags: number): Promise<void> {
    const t = this.backend(nodeid, Errno.EROFS);
    return this.call(t.slot, () => t.slot.fs.setxattr?.(ctx, t.inner, name, value, flags, setxattrFlags), () => fail(Errno.EOPNOTSUPP));
  }

  async getxattr(ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<Uint8Array> {
    const t = this.backend(nodeid, Errno.ENODATA);
    return this.call(t.slot, () => t.slot.fs.getxattr?.(ctx, t.inner, name), () => fail(Errno.EOPNOTSUPP));
  }

  async listxattr(ctx: RequestContext, nodeid: number): Promise<Uint8Array[]> {
    const t = this.resolve(nodeid);
    if (t.kind === 'pseudo') return [];
    return this.call(t.slot, () => t.slot.fs.listxattr?.(ctx, t.inner), () => []);
  }

  async removexattr(ctx: RequestContext, nodeid: number, name: Uint8Array): Promise<void> {
    const t = this.backend(nodeid, Errno.EROFS);
    return this.call(t.slot, () => t.slot.fs.removexattr?.(ctx, t.inner, name), () => fail(Errno.EOPNOTSUPP));
  }

  async access(ctx: RequestContext, nodeid: number, mask: number): Promise<void> {
    const t = this.resolve(nodeid);
    if (t.kind === 'pseudo') {
      if (mask & W_OK) fail(Errno.EROFS);
      return;
    }
    return this.call(t.slot, () => t.slot.fs.access?.(ctx, t.inner, mask), () => undefined);
  }

  async fallocate(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, length: number, mode: number): Promise<void> {
    const t = this.backend(nodeid, Errno.EISDIR);
    return this.call(t.slot, () => t.slot.fs.fallocate?.(ctx, t.inner, fh, offset, length, mode), () => fail(Errno.EOPNOTSUPP));
  }

  async lseek(ctx: RequestContext, nodeid: number, fh: bigint, offset: number, whence: number): Promise<number> {
    const t = this.backend(nodeid, Errno.EINVAL);
    return this.call(
      t.slot,
      () => t.slot.fs.lseek?.(ctx, t.inner, fh, offset, whence),
      // Without SEEK_DATA/SEEK_HOLE support, a file is all data (what the kernel's fallback says).
      async () => {
        if (whence !== SEEK_DATA && whence !== SEEK_HOLE) fail(Errno.EINVAL);
        const { attr } = await this.getattr(ctx, nodeid, fh);
        if (offset >= attr.size) fail(Errno.ENXIO);
        return whence === SEEK_DATA ? offset : attr.size;
      },
    );
  }

  async syncfs(ctx: RequestContext, nodeid: number): Promise<void> {
    const t = this.resolve(nodeid);
    const targets: Target[] = t.kind === 'backend' ? [t] : this.slots.mounted().map((slot) => ({ kind: 'backend', slot, inner: ROOT_ID }));
    await Promise.all(
      targets.map(async (x) => {
        if (x.kind !== 'backend') return;
        try {
          await this.call(x.slot, () => x.slot.fs.syncfs?.(ctx, x.inner), () => undefined);
        } catch (e) {
          if (t.kind === 'backend') throw e;
          this.log.warn({ mountpoint: x.slot.path, err: String(e) }, 'vfs: syncfs of a backend failed');
        }
      }),
    );
  }

  async ioctl(ctx: RequestContext, nodeid: number, fh: bigint, cmd: number, arg: bigint, input: Uint8Array, outSize: number): Promise<{ result: number; output: Uint8Array }> {
    const t = this.backend(nodeid, Errno.ENOTTY);
    return this.call(t.slot, () => t.slot.fs.ioctl?.(ctx, t.inner, fh, cmd, arg, input, outSize), () => fail(Errno.ENOTTY));
  }
}
