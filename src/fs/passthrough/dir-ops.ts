/**
 * Directories of the passthrough filesystem. READDIR offsets must stay below 2^53 (the codec's
 * limit) but host d_off cookies do not (ext4 hashes use 63 bits), so the offsets the guest sees are
 * entry positions in the stream ("cookies"), and each handle remembers the host d_off after the
 * recent positions. The kernel resumes at a cookie it was just given, which is in that window; any
 * other (a seekdir to an old telldir) counts from the nearest checkpoint below it, kept every
 * `CHECKPOINT` positions (counting from the start of the directory, each such READDIR rescanned
 * all of a large one on the event loop: 100,000 entries, half a second). Entries are read a batch
 * at a time.
 */
import type { PtDirent } from '../../native/addon.js';
import { native } from '../../native/index.js';
import {
  type DirEntry,
  type DirEntryPlus,
  type DirSink,
  type EntryReply,
  Errno,
  FsError,
  type OpenReply,
} from '../types.js';
import { FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE, O_DIRECTORY, isDir, isDot, isDotDot, sys, toFsError } from './common.js';
import type { Core } from './core.js';
import { Handle } from './handles.js';

const O_RDONLY = 0;
/** getdents64 buffer per batch: a READDIR reply holds at most a few KiB of entries. */
const BATCH_BYTES = 8192;
/** Cookies remembered per handle (a few replies' worth). */
const WINDOW = 4096;
/** Every this many positions, a cookie is kept for good (the handle's `checkpoints`). */
const CHECKPOINT = 1024;

export function opendir(core: Core, nodeid: number): OpenReply {
  const n = core.inodes.get(nodeid);
  if (!isDir(n.mode)) throw new FsError(Errno.ENOTDIR);
  const fd = sys(() => native.ptReopen(n.fd, O_RDONLY | O_DIRECTORY));
  const c = core.opts.cache;
  const flags = c === 'always' ? FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR : c === 'metadata' ? FOPEN_KEEP_CACHE : 0;
  return { fh: core.handles.add(new Handle(nodeid, fd, 'dir', O_RDONLY | O_DIRECTORY)), flags };
}

function remember(h: Handle, cookie: number, off: bigint): void {
  h.cookies.delete(cookie);
  h.cookies.set(cookie, off);
  if (h.cookies.size > WINDOW) h.cookies.delete(h.cookies.keys().next().value as number);
  if (cookie % CHECKPOINT === 0) h.checkpoints.set(cookie / CHECKPOINT, off);
}

/**
 * The host offset at which entry number `cookie` + 1 starts: remembered, or found by counting from
 * the nearest checkpoint below.
 */
function hostOffset(h: Handle, cookie: number): bigint {
  if (cookie === 0) return 0n;
  const known = h.cookies.get(cookie);
  if (known !== undefined) return known;
  // Counting only ever goes forward from the start or a checkpoint: they are 1 … size, no gaps.
  const k = Math.min(Math.floor(cookie / CHECKPOINT), h.checkpoints.size);
  let off = k > 0 ? (h.checkpoints.get(k) as bigint) : 0n;
  let seen = k * CHECKPOINT;
  for (;;) {
    const batch = sys(() => native.ptGetdents(h.fd, off, BATCH_BYTES));
    if (batch.length === 0) return off;
    for (const d of batch) {
      off = d.off;
      remember(h, ++seen, off);
      if (seen === cookie) return off;
    }
  }
}

/** Calls `emit` for each entry after position `cookie` until it declines or the directory ends. */
function walk(h: Handle, cookie: number, emit: (d: PtDirent, next: number) => boolean): void {
  if (!Number.isSafeInteger(cookie) || cookie < 0) throw new FsError(Errno.EINVAL);
  let off = hostOffset(h, cookie);
  let pos = cookie;
  for (;;) {
    const batch = sys(() => native.ptGetdents(h.fd, off, BATCH_BYTES));
    if (batch.length === 0) return;
    for (const d of batch) {
      remember(h, pos + 1, d.off);
      if (!emit(d, pos + 1)) return;
      pos++;
      off = d.off;
    }
  }
}

export function readdir(core: Core, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntry>): void {
  const h = core.handles.get(fh, nodeid, 'dir');
  walk(h, offset, (d, next) => add({ ino: d.ino, offset: next, type: d.type, name: d.name }));
}

/** An entry without attributes (node id 0): the kernel counts no lookup and looks the name up itself. */
function unlooked(d: PtDirent): EntryReply {
  const attr = { ino: d.ino, size: 0, blocks: 0, atime: { sec: 0, nsec: 0 }, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 }, mode: d.type << 12, nlink: 0, uid: 0, gid: 0, rdev: 0, blksize: 0, flags: 0 };
  return { nodeid: 0, generation: 0, attr, entryTimeout: 0, attrTimeout: 0 };
}

/**
 * The entry of one name for READDIRPLUS: "." and ".." are not looked up. A name removed since
 * getdents saw it is left out; one whose lookup fails otherwise goes out unlooked, so that one
 * name cannot fail the listing (the kernel's own LOOKUP of it meets the error).
 */
function plusEntry(core: Core, nodeid: number, d: PtDirent): EntryReply | undefined {
  if (isDot(d.name) || isDotDot(d.name)) return unlooked(d);
  try {
    return core.lookup(nodeid, d.name);
  } catch (e) {
    const err = toFsError(e);
    if (!(err instanceof FsError)) throw err;
    return err.errno === Errno.ENOENT ? undefined : unlooked(d);
  }
}

/**
 * READDIRPLUS: each entry is also a LOOKUP, counted only when the entry made it into the reply.
 * Counted entries always go out: an error after the first (a failing getdents) ends the reply
 * there, and the next READDIRPLUS, from where it ended, meets the error (an error reply would
 * leave those lookups counted with the kernel never told of them).
 */
export function readdirplus(core: Core, nodeid: number, fh: bigint, offset: number, add: DirSink<DirEntryPlus>): void {
  const h = core.handles.get(fh, nodeid, 'dir');
  let added = 0;
  try {
    walk(h, offset, (d, next) => {
      const entry = plusEntry(core, nodeid, d);
      if (entry === undefined) return true;
      // The entry's inode number and type, not getdents's: the name may hold another file by now.
      const looked = entry.nodeid !== 0;
      const ok = add({ ino: looked ? entry.attr.ino : d.ino, offset: next, type: looked ? (entry.attr.mode >> 12) & 0o17 : d.type, name: d.name, entry });
      if (!ok && entry.nodeid !== 0) core.inodes.forget(entry.nodeid, 1);
      if (ok) added++;
      return ok;
    });
  } catch (e) {
    if (added === 0) throw e;
  }
}

export function releasedir(core: Core, nodeid: number, fh: bigint): void {
  core.handles.release(fh, nodeid, 'dir');
}
