/**
 * Name and attribute operations of the passthrough filesystem: creating calls run as the guest
 * user (native credential thread), everything else as the daemon; each resolves exactly one
 * validated name relative to a parent's O_PATH fd.
 */
import { closeSync, ftruncateSync } from 'node:fs';
import { native } from '../../native/index.js';
import { type AttrReply, type EntryReply, Errno, FsError, type RequestContext, type SetattrIn, type StatFs } from '../types.js';
import {
  AT_REMOVEDIR,
  FATTR_KILL_SUIDGID,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  UTIME_NOW,
  component,
  isDir,
  isReg,
  sys,
} from './common.js';
import type { Core } from './core.js';
import { killPrivileges } from './file-ops.js';
import { type Inode, statFd } from './inodes.js';
import { labelNew } from './xattr-ops.js';

export function getattr(core: Core, nodeid: number): AttrReply {
  const n = core.inodes.get(nodeid);
  return { attr: core.entry(n, statFd(n.fd)).attr, timeout: core.timeout };
}

export function mkdir(core: Core, ctx: RequestContext, parent: number, name: Uint8Array, mode: number, umask: number): EntryReply {
  const p = core.inodes.get(parent);
  const n = component(name);
  sys(() => native.ptMkdirat(p.fd, n, mode & 0o7777, ...core.creds(ctx, umask)));
  labelNew(core, ctx, p, n, AT_REMOVEDIR);
  return core.lookupExpected(parent, n, (e) => isDir(e.attr.mode));
}

/** MKNOD: regular files, FIFOs, sockets, devices and overlayfs whiteouts (char 0:0). */
export function mknod(core: Core, ctx: RequestContext, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): EntryReply {
  const p = core.inodes.get(parent);
  const n = component(name);
  sys(() => native.ptMknodat(p.fd, n, mode, rdev, ...core.creds(ctx, umask)));
  labelNew(core, ctx, p, n, 0);
  return core.lookupExpected(parent, n, (e) => (e.attr.mode & S_IFMT) === (mode & S_IFMT || S_IFREG));
}

export function symlink(core: Core, ctx: RequestContext, parent: number, name: Uint8Array, target: Uint8Array): EntryReply {
  const p = core.inodes.get(parent);
  const n = component(name);
  sys(() => native.ptSymlinkat(Buffer.from(target), p.fd, n, ...core.creds(ctx)));
  labelNew(core, ctx, p, n, 0);
  return core.lookupExpected(parent, n, (e) => (e.attr.mode & S_IFMT) === S_IFLNK);
}

/**
 * Refuses to remove or replace a directory the kernel was never given. The kernel marks the inode
 * its entry names dead (S_DEAD) once an RMDIR, or a RENAME over a directory, succeeds; when a
 * process on the host moved that directory away and made another at its name, the call removes
 * the new one, while the old one, alive elsewhere on the host, stays dead to the kernel for as long
 * as it keeps that inode: through the mount its listing comes back empty and its names are not
 * there (a LOOKUP of its new name gets the same node id, so the kernel's dead inode again). A
 * directory with no node id here is one the kernel's entry cannot name: ESTALE, on which the VFS
 * looks the name up again and retries the call once. (A host swap with a directory the kernel
 * knows under another name still gets through.) Found by a review looking for what the concurrency
 * fuzz test (test/fuzz/passthrough-concurrency.test.ts) once saw.
 */
function checkKnownDir(core: Core, p: Inode, name: Buffer): void {
  let fd: number;
  try {
    fd = core.openChild(p, name);
  } catch (e) {
    if (e instanceof FsError && e.errno === Errno.ENOENT) return; // the call itself says so
    throw e;
  }
  try {
    const st = statFd(fd);
    if (isDir(st.mode) && core.inodes.find(st) === undefined) throw new FsError(Errno.ESTALE, 'a directory the kernel has not looked up is at that name');
  } finally {
    closeSync(fd);
  }
}

export function unlink(core: Core, parent: number, name: Uint8Array, dir: boolean): void {
  const p = core.inodes.get(parent);
  const n = component(name);
  if (dir) checkKnownDir(core, p, n);
  sys(() => native.ptUnlinkat(p.fd, n, dir ? AT_REMOVEDIR : 0));
}

export function rename(core: Core, ctx: RequestContext, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): void {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) !== 0) throw new FsError(Errno.EINVAL, `rename flags 0x${flags.toString(16)}`);
  const from = core.inodes.get(parent);
  const to = core.inodes.get(newParent);
  const a = component(name);
  const b = component(newName);
  if ((flags & (RENAME_NOREPLACE | RENAME_EXCHANGE)) === 0) checkKnownDir(core, to, b);
  // The whiteout left at the old name belongs to the renaming user, as one made by MKNOD does
  // (overlayfs in a guest makes its own as root; found by the differential fuzz test).
  if ((flags & RENAME_WHITEOUT) !== 0) sys(() => native.ptRenameat2As(from.fd, a, to.fd, b, flags, ...core.creds(ctx)));
  else sys(() => native.ptRenameat2(from.fd, a, to.fd, b, flags));
}

/** LINK: a new name for the node's inode, through /proc/self/fd (as virtiofsd). */
export function link(core: Core, nodeid: number, newParent: number, newName: Uint8Array): EntryReply {
  const n = core.inodes.get(nodeid);
  const p = core.inodes.get(newParent);
  const name = component(newName);
  sys(() => native.ptLinkat(n.fd, p.fd, name));
  return core.lookupExpected(newParent, name, (e) => e.nodeid === nodeid);
}

/** READLINK: the host's answer (ENOENT for a non-symlink, as virtiofsd's readlinkat(fd, "")). */
export function readlink(core: Core, nodeid: number): Uint8Array {
  const n = core.inodes.get(nodeid);
  return sys(() => native.ptReadlink(n.fd));
}

function seconds(t: SetattrIn['atime']): [number, number] {
  if (t === undefined) return [0, UTIME_NOW - 1]; // UTIME_OMIT
  if (t === 'now') return [0, UTIME_NOW];
  return [t.sec, t.nsec];
}

/** SETATTR in virtiofsd's order: mode, owner, size, times; then the new attributes. */
export function setattr(core: Core, nodeid: number, set: SetattrIn): AttrReply {
  const n = core.inodes.get(nodeid);
  const h = set.fh !== undefined && !isDir(n.mode) ? core.handles.get(set.fh, nodeid, 'file') : undefined;
  // The ids translated before anything changes: one the guest may not give (forbid-guest) changes nothing.
  const uid = set.uid === undefined ? -1 : core.uids.toHost(set.uid);
  const gid = set.gid === undefined ? -1 : core.gids.toHost(set.gid);
  if (set.mode !== undefined) {
    const mode = set.mode & 0o7777;
    if ((n.mode & S_IFMT) === S_IFLNK) throw new FsError(Errno.EOPNOTSUPP, 'a symlink has no mode to change');
    sys(() => native.ptChmod(n.fd, mode));
  }
  if (set.uid !== undefined || set.gid !== undefined) sys(() => native.ptFchown(n.fd, uid, gid));
  if (set.size !== undefined) {
    const size = set.size;
    if (h !== undefined) sys(() => ftruncateSync(h.fd, size));
    else if (isReg(n.mode)) sys(() => native.ptTruncate(n.fd, size));
    else throw new FsError(isDir(n.mode) ? Errno.EISDIR : Errno.EBADF, 'only a regular file has a size to set'); // as virtiofsd
  }
  // Under KILLPRIV_V2: a truncate or chown by a caller without CAP_FSETID (the guest's kernel judged).
  if (core.killprivV2 && (set.valid & FATTR_KILL_SUIDGID) !== 0 && isReg(n.mode)) killPrivileges(n.fd);
  if (set.atime !== undefined || set.mtime !== undefined) {
    const [as, an] = seconds(set.atime);
    const [ms, mn] = seconds(set.mtime);
    sys(() => native.ptUtimens(n.fd, as, an, ms, mn));
  }
  return getattr(core, nodeid);
}

export function statfs(core: Core, nodeid: number): StatFs {
  const s = sys(() => native.ptFstatvfs(core.inodes.get(nodeid).fd));
  return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: s.namemax, frsize: s.frsize };
}

/** ACCESS with virtiofsd's rules (the guest mounts with default_permissions and rarely asks). */
export function access(core: Core, ctx: RequestContext, nodeid: number, mask: number): void {
  const st = statFd(core.inodes.get(nodeid).fd);
  const m = st.mode;
  // Owner and group as the guest sees them (--translate-uid/--translate-gid).
  const uid = core.uids.toGuest(st.uid);
  const gid = core.gids.toGuest(st.gid);
  const allowed = (bit: number): boolean => (uid === ctx.uid && (m & (bit << 6)) !== 0) || (gid === ctx.gid && (m & (bit << 3)) !== 0) || (m & bit) !== 0;
  if (mask & 4 && ctx.uid !== 0 && !allowed(4)) throw new FsError(Errno.EACCES);
  if (mask & 2 && ctx.uid !== 0 && !allowed(2)) throw new FsError(Errno.EACCES);
  // root executes only what some execute bit allows (directories included).
  if (mask & 1 && !(ctx.uid === 0 ? (m & 0o111) !== 0 : allowed(1))) throw new FsError(Errno.EACCES);
}
