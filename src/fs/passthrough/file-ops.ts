/**
 * Open files of the passthrough filesystem: OPEN reopens the node's O_PATH fd through
 * /proc/self/fd with the guest's flags (kernel-internal bits masked), CREATE makes a new file as
 * the guest user; data moves with preadv/pwritev on the handle's fd: on the JavaScript thread when
 * it is quick (page-cache hits, small writes), else on the thread pool.
 */
import { closeSync, fdatasync, fsync, readv, writev, writevSync } from 'node:fs';
import { iovLength, sliceViews } from '../../base/index.js';
import { native, readNoWait } from '../../native/index.js';
import { type EntryReply, Errno, FsError, type OpenReply, type RequestContext } from '../types.js';
import {
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FUSE_OPEN_KILL_SUIDGID,
  FUSE_WRITE_CACHE,
  FUSE_WRITE_KILL_SUIDGID,
  O_ACCMODE,
  O_APPEND,
  O_CREAT,
  O_DIRECT,
  O_EXCL,
  O_NOATIME,
  O_PATH,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  OPEN_FLAGS_KEPT,
  RESOLVE,
  S_ISGID,
  S_ISUID,
  S_IXGRP,
  component,
  isDir,
  isReg,
  sys,
  sysAsync,
} from './common.js';
import type { Core } from './core.js';
import { Handle } from './handles.js';
import { statFd } from './inodes.js';
import { labelNew } from './xattr-ops.js';

function readvAt(fd: number, views: Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => readv(fd, views, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function writevAt(fd: number, views: Uint8Array[], position: number): Promise<number> {
  return new Promise((resolve, reject) => writev(fd, views, position, (e, n) => (e ? reject(e) : resolve(n))));
}

function syncFd(fd: number, datasync: boolean): Promise<void> {
  return new Promise((resolve, reject) => (datasync ? fdatasync : fsync)(fd, (e) => (e ? reject(e) : resolve())));
}

/** The guest's open flags as the host open gets them. */
export function hostOpenFlags(core: Core, flags: number): number {
  let f = flags & OPEN_FLAGS_KEPT;
  if (core.opts.allowDirectIo === false) f &= ~O_DIRECT;
  if (core.opts.preserveNoatime !== true) f &= ~O_NOATIME;
  if (core.writeback) {
    // The kernel reads pages of write-only files and handles O_APPEND itself (as virtiofsd).
    if ((f & O_ACCMODE) === O_WRONLY) f = (f & ~O_ACCMODE) | O_RDWR;
    f &= ~O_APPEND;
  }
  return f;
}

export function fileOpenFlags(core: Core): number {
  const c = core.opts.cache;
  return c === 'never' || c === 'metadata' ? FOPEN_DIRECT_IO : c === 'always' ? FOPEN_KEEP_CACHE : 0;
}

export function open(core: Core, ctx: RequestContext, nodeid: number, flags: number, openFlags = 0): OpenReply {
  const n = core.inodes.get(nodeid);
  // Only regular files and directories are opened on the host: never a device, FIFO or symlink (as virtiofsd).
  if (!isReg(n.mode) && !isDir(n.mode)) throw new FsError(Errno.EBADF, 'only regular files and directories can be opened');
  const f = hostOpenFlags(core, flags);
  const fd = sys(() => native.ptReopen(n.fd, f));
  if ((f & O_TRUNC) !== 0 && isReg(n.mode) && truncaterLacksFsetid(core, ctx, openFlags)) killPrivileges(n.fd);
  return { fh: core.handles.add(new Handle(nodeid, fd, 'file', f)), flags: fileOpenFlags(core) };
}

/**
 * Whether a truncating OPEN's caller lacks CAP_FSETID. Under KILLPRIV_V2 the guest's kernel says so
 * (FUSE_OPEN_KILL_SUIDGID), also for root without the capability (a container whose capabilities
 * were dropped) and for a user with it. Without, the kernel drops its own mode change when O_TRUNC
 * travels in the OPEN (FUSE_ATOMIC_O_TRUNC), so the daemon judges: anyone but root lacks it.
 */
function truncaterLacksFsetid(core: Core, ctx: RequestContext, openFlags: number): boolean {
  return core.killprivV2 ? (openFlags & FUSE_OPEN_KILL_SUIDGID) !== 0 : ctx.uid !== 0;
}

/**
 * Drops setuid, and setgid with group execute, as the host's own write or truncate does for a
 * caller without CAP_FSETID (should_remove_suid); the daemon's own, with CAP_FSETID, keeps them
 * (file capabilities the host drops for any caller). For a truncating open by such a caller
 * (`truncaterLacksFsetid`; found by test/fuzz/passthrough-differential.test.ts), for the
 * writes the guest's kernel flags, and under KILLPRIV_V2 for the SETATTRs it flags and for
 * COPY_FILE_RANGE and FALLOCATE.
 */
export function killPrivileges(fd: number): void {
  const mode = statFd(fd).mode;
  const kill = (mode & S_ISUID) | ((mode & S_ISGID) !== 0 && (mode & S_IXGRP) !== 0 ? S_ISGID : 0);
  if (kill !== 0) sys(() => native.ptChmod(fd, mode & 0o7777 & ~kill));
}

/**
 * TMPFILE: an unnamed file in directory `parent`, made as the guest user and opened (open(2) with
 * O_TMPFILE); a LINK of its node id may name it later, unless O_EXCL said it never will.
 */
export function tmpfile(core: Core, ctx: RequestContext, parent: number, mode: number, flags: number, umask: number): { entry: EntryReply; open: OpenReply } {
  const p = core.inodes.get(parent);
  if (!isDir(p.mode)) throw new FsError(Errno.ENOTDIR);
  const f = hostOpenFlags(core, flags) | (flags & O_EXCL);
  const fd = sys(() => native.ptTmpfile(p.fd, f, mode & 0o7777, ...core.creds(ctx, umask)));
  let entry: EntryReply;
  try {
    labelNew(core, ctx, p, undefined, 0, fd);
    const { node, st } = core.inodes.adoptFd(sys(() => native.ptReopen(fd, O_PATH)));
    entry = core.entry(node, st);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return { entry, open: { fh: core.handles.add(new Handle(entry.nodeid, fd, 'file', f & ~O_EXCL)), flags: fileOpenFlags(core) } };
}

/**
 * CREATE: a new file as the guest user; an existing one is opened unless O_EXCL (as virtiofsd).
 * The entry is the file the new fd opened, not whatever the name means a moment later (a process
 * on the host may rename something over it).
 */
export function create(core: Core, ctx: RequestContext, parent: number, name: Uint8Array, mode: number, flags: number, umask: number, openFlags = 0): { entry: EntryReply; open: OpenReply } {
  const p = core.inodes.get(parent);
  const n = component(name);
  const f = hostOpenFlags(core, flags & ~(O_CREAT | O_EXCL));
  let fd: number;
  try {
    fd = sys(() => native.ptCreate(p.fd, n, f, mode & 0o7777, RESOLVE, ...core.creds(ctx, umask)));
  } catch (e) {
    if (!(e instanceof FsError) || e.errno !== Errno.EEXIST || (flags & O_EXCL) !== 0) throw e;
    return openExisting(core, ctx, parent, n, flags, openFlags);
  }
  let entry: EntryReply;
  try {
    labelNew(core, ctx, p, n, 0, fd);
    const { node, st } = core.inodes.adoptFd(sys(() => native.ptReopen(fd, O_PATH)));
    entry = core.entry(node, st);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return { entry, open: { fh: core.handles.add(new Handle(entry.nodeid, fd, 'file', f)), flags: fileOpenFlags(core) } };
}

/**
 * CREATE of a name that exists (without O_EXCL): a regular file is opened as OPEN opens it. The
 * kernel sent CREATE because it saw no such name, so anything else there (a symlink, a directory),
 * or nothing any more, came after it looked: ESTALE (`lookupExpected`), and the kernel redoes the
 * open by the VFS's own rules (a symlink followed, or ELOOP with O_NOFOLLOW; EISDIR for a
 * directory; a gone name created).
 */
function openExisting(core: Core, ctx: RequestContext, parent: number, name: Buffer, flags: number, openFlags: number): { entry: EntryReply; open: OpenReply } {
  const entry = core.lookupExpected(parent, name, (e) => isReg(e.attr.mode));
  try {
    return { entry, open: open(core, ctx, entry.nodeid, flags, openFlags) };
  } catch (err) {
    core.inodes.forget(entry.nodeid, 1);
    throw err;
  }
}

/** The first `size` bytes of a scatter list, as views. */
function firstBytes(views: Uint8Array[], size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = size;
  for (const v of views) {
    if (left <= 0) break;
    const part = v.length <= left ? v : v.subarray(0, left);
    out.push(part);
    left -= part.length;
  }
  return out;
}

/** Runs an I/O call on the handle's fd; an O_DIRECT handle retries misaligned I/O (EINVAL) buffered. */
async function io(h: Handle, fd: number, call: (fd: number) => Promise<number>): Promise<number> {
  try {
    return await call(fd);
  } catch (e) {
    if (h.direct && (e as { code?: string }).code === 'EINVAL') return call(h.plainFd());
    throw e;
  }
}

/**
 * READ into the guest's buffers. What the host page cache holds is copied on the event loop thread
 * (preadv2 RWF_NOWAIT: a thread-pool round trip costs more than the copy); the rest, if any, is
 * read on the thread pool. O_DIRECT handles always take the thread pool.
 */
export async function read(core: Core, nodeid: number, fh: bigint, offset: number, size: number, dst: Uint8Array[]): Promise<number> {
  const h = core.handles.get(fh, nodeid, 'file');
  let views = firstBytes(dst, size);
  // 0 is the end of the file; -1: nothing could be read without waiting.
  const fast = h.direct ? -1 : sys(() => readNoWait(h, views, offset));
  let n = Math.max(fast, 0);
  if (fast !== 0 && n < size) {
    const done = n;
    if (done > 0) views = sliceViews(views, done, size - done);
    n = done + (await sysAsync(() => h.use((h) => io(h, h.fd, (fd) => readvAt(fd, views, offset + done)))));
  }
  core.opts.metrics.inc('passthrough.read_bytes', n);
  return n;
}

/**
 * Writes up to this size go to the page cache from the event loop thread: a thread-pool round trip
 * (two wake-ups) costs more than such a copy, and a guest writing many small files makes one each
 * (the C virtiofsd writes on its queue thread too). Larger writes, and O_DIRECT ones, which wait
 * for the disk, take the thread pool.
 */
const SYNC_WRITE_MAX = 64 << 10;

export async function write(core: Core, nodeid: number, fh: bigint, offset: number, data: Uint8Array[], writeFlags: number): Promise<number> {
  const h = core.handles.get(fh, nodeid, 'file');
  // Page-cache writes (writeback, mmap) go where the kernel says even on an O_APPEND handle.
  const fdFor = (h: Handle): number => ((writeFlags & FUSE_WRITE_CACHE) !== 0 && h.append ? h.plainFd() : h.fd);
  const n =
    !h.direct && iovLength(data) <= SYNC_WRITE_MAX
      ? sys(() => writevSync(fdFor(h), data, offset))
      : await sysAsync(() => h.use((h) => io(h, fdFor(h), (fd) => writevAt(fd, data, offset))));
  core.opts.metrics.inc('passthrough.write_bytes', n);
  // The guest's kernel asks the daemon to do what a write by a caller without CAP_FSETID does on a
  // local file (the daemon's own write, with CAP_FSETID, would keep the bits): under KILLPRIV_V2,
  // and on a direct I/O write always (`--cache never`/`metadata`; found by the differential fuzz
  // test), as the C virtiofsd honours it.
  if ((writeFlags & FUSE_WRITE_KILL_SUIDGID) !== 0) killPrivileges(core.inodes.get(nodeid).fd);
  return n;
}

/**
 * Under KILLPRIV_V2 the guest's kernel leaves dropping setuid and setgid to the daemon on every
 * change of a file's data, but only a WRITE says whether its caller has CAP_FSETID. After a
 * COPY_FILE_RANGE or FALLOCATE that changed `nodeid`: any caller but root is taken to lack it, as
 * for a truncating OPEN (found by test/fuzz/passthrough-differential.test.ts; virtiofsd keeps the
 * bits, where the host drops them for such a caller).
 */
function killPrivilegesUnflagged(core: Core, ctx: RequestContext, nodeid: number): void {
  if (core.killprivV2 && ctx.uid !== 0) killPrivileges(core.inodes.get(nodeid).fd);
}

/**
 * COPY_FILE_RANGE: copy_file_range(2) between two open files of the share, on the thread pool
 * (the host copies, maybe without reading the data, as virtiofsd has it); no flags are defined.
 */
export async function copyFileRange(core: Core, ctx: RequestContext, nodeIn: number, fhIn: bigint, offsetIn: number, nodeOut: number, fhOut: bigint, offsetOut: number, length: number, flags: number): Promise<number> {
  if (flags !== 0) throw new FsError(Errno.EINVAL, 'copy_file_range takes no flags');
  const src = core.handles.get(fhIn, nodeIn, 'file');
  const dst = core.handles.get(fhOut, nodeOut, 'file');
  const n = await sysAsync(() => src.use((s) => dst.use((d) => native.ptCopyFileRange(s.fd, offsetIn, d.fd, offsetOut, length))));
  core.opts.metrics.inc('passthrough.write_bytes', n);
  if (n > 0) killPrivilegesUnflagged(core, ctx, nodeOut);
  return n;
}

/** FLUSH: the host sees a close(2) (releases POSIX locks, flushes network filesystems). */
export function flush(core: Core, nodeid: number, fh: bigint): void {
  const h = core.handles.get(fh, nodeid, 'file');
  sys(() => native.ptDupClose(h.fd));
}

export async function fsyncHandle(core: Core, nodeid: number, fh: bigint, datasync: boolean, kind: 'file' | 'dir'): Promise<void> {
  const h = core.handles.get(fh, nodeid, kind);
  await sysAsync(() => h.use((h) => syncFd(h.fd, datasync)));
}

export function fallocate(core: Core, ctx: RequestContext, nodeid: number, fh: bigint, offset: number, length: number, mode: number): void {
  const h = core.handles.get(fh, nodeid, 'file');
  sys(() => native.ptFallocate(h.fd, mode, offset, length));
  killPrivilegesUnflagged(core, ctx, nodeid);
}

/** LSEEK (the kernel sends SEEK_DATA and SEEK_HOLE): the host's answer, ENXIO included. */
export function lseek(core: Core, nodeid: number, fh: bigint, offset: number, whence: number): number {
  const h = core.handles.get(fh, nodeid, 'file');
  return sys(() => native.ptLseek(h.fd, offset, whence));
}
