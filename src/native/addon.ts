/**
 * The one loader of the C++ addon (native/, built by cmake-js during `npm ci`) and its typed
 * interface. Nothing else in Damselfly calls `require` on the addon.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GzipPoint } from '../format/compression.js';

/** Codec numbers as in RAFS (spec §1.1). */
export type NativeCodec = 1 | 3;

export interface ZstdDecoder {
  /**
   * With `chunk`: takes the next compressed bytes (copied) and returns up to 1 MiB of output;
   * without: the next part of what the bytes taken give. Empty when all of them were consumed and
   * their output taken: only then may the next chunk be given (a frame expands some 32,000 times:
   * one chunk can hold gigabytes).
   */
  decode(chunk?: Uint8Array): Buffer;
  /** Throws when the stream stopped inside a frame (or output was left untaken). */
  finish(): void;
}

/** Inflates a whole gzip stream (any number of members), reporting its block boundaries. */
export interface ZranIndexer {
  /**
   * Inflates from `input` (the stream's next bytes): `consumed` of them were used (push the rest
   * again), giving `output` (at most 256 KiB a call) and passing the boundaries `points`;
   * `end` when the last member ended at the end of the input so far.
   */
  push(input: Uint8Array): { consumed: number; output: Buffer; points: Array<GzipPoint & { dict: Buffer }>; end: boolean };
  /** Throws unless the stream ended with a whole member. */
  finish(): void;
}

/** A uv_poll watcher: calls back with the ready events (1 readable, 2 writable) or a negative errno. */
export interface Poller {
  start(events: number): void;
  stop(): void;
  close(): void;
}

/** Guest memory regions mapped from the VMM's fds (native/src/guest_memory.cc). */
export interface MemoryRegionSpec {
  gpa: bigint | number;
  size: bigint | number;
  uaddr: bigint | number;
  offset: bigint | number;
}

export interface MemoryTable {
  /** Replaces the whole table (maps every region first; changes nothing on error). */
  setTable(regions: MemoryRegionSpec[], fds: number[]): void;
  addRegion(region: MemoryRegionSpec, fd: number): void;
  /** Removes the region with this gpa, size and uaddr; false if there is none. */
  removeRegion(region: Omit<MemoryRegionSpec, 'offset'>): boolean;
  regions(): Array<{ gpa: bigint; size: bigint; uaddr: bigint }>;
  /** Views of a guest-physical range (throws if any byte is outside guest memory). */
  gpaView(gpa: bigint | number, len: bigint | number): Uint8Array[];
  /** Every region's ArrayBuffer windows, in table order (what popInto's pieces index). */
  windows(): ArrayBuffer[];
}

/**
 * What `Virtqueue.popInto` fills: head, readBytes, writeBytes, the numbers of readable and of
 * writable pieces, whether the chain is usable (1; else 0 and `lastError()` says why), the memory
 * table's generation, then (window, offset, length) per piece, the readable ones first; `window`
 * indexes `MemoryTable.windows()` of that generation. See native/src/vring.cc.
 */
export type PopSlots = Float64Array;
/** `popInto` results. */
export const PopResult = { None: 0, Chain: 1, CorruptRing: 2, NeedRoom: 3 } as const;
export type PopResult = (typeof PopResult)[keyof typeof PopResult];


/** A split virtqueue over guest memory (native/src/vring.cc). */
export interface Virtqueue {
  setup(size: number, desc: bigint, avail: bigint, used: bigint, eventIdx: boolean): void;
  setBase(base: number): void;
  base(): number;
  /** Whether the ring is set up and wholly inside guest memory (resolved again after a memory table change). */
  mapped(): boolean;
  usedIndex(): number;
  /**
   * Takes the next available chain into `slots` (see PopSlots). NeedRoom: the chain has more
   * pieces than `slots` holds, `slots[0]` of them; nothing was taken.
   */
  popInto(slots: PopSlots): PopResult;
  /** Why the last chain taken is unusable, or why the ring is corrupt. */
  lastError(): string | undefined;
  push(head: number, len: number): void;
  shouldNotify(): boolean;
  /** Re-enables kicks; true when buffers arrived meanwhile. */
  enableNotify(): boolean;
  disableNotify(): void;
  reset(): void;
}

/** statx of a passthrough inode (native/src/passthrough.cc). */
export interface PtStat {
  ino: bigint;
  dev: number;
  /** Mount id (STATX_MNT_ID), 0 when the kernel does not report it. */
  mntId: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Device number in the FUSE (new_encode_dev) encoding. */
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
}

/** One getdents64 record; `off` is the host's cookie of the position after it. */
export interface PtDirent {
  ino: number;
  off: bigint;
  type: number;
  name: Buffer;
}

export interface PtStatvfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namemax: number;
}

/**
 * The passthrough filesystem's primitives (native/src/passthrough*.cc): one name relative to a
 * directory fd, O_PATH fds addressed through /proc/self/fd/N. Errors are SysErrors.
 */
export interface PassthroughOps {
  /** openat2 (O_CLOEXEC added); `resolve` is RESOLVE_* bits. */
  ptOpenat2(dirfd: number, name: string | Buffer, flags: number, mode: number, resolve: number): number;
  /** With `errnoResult`: a failure is returned as -errno instead of thrown (hot negative lookups). */
  ptOpenat2(dirfd: number, name: string | Buffer, flags: number, mode: number, resolve: number, errnoResult: true): number;
  /** Opens the inode of `fd` anew with `flags` through /proc/self/fd/N. */
  ptReopen(fd: number, flags: number): number;
  ptStatx(fd: number, name: string | Buffer, flags: number): PtStat;
  /** ptStatx's raw form: fills 17 slots of `out` (slot 0: the inode number's 64 bits). */
  ptStatxInto(fd: number, name: string | Buffer, flags: number, out: Float64Array): void;
  /** O_PATH fd of the parent of directory `fd`, or -1 when it is not at or below `rootfd`. */
  ptOpenParentBeneath(fd: number, rootfd: number): number;
  ptReadlink(fd: number): Buffer;
  ptUnlinkat(dirfd: number, name: string | Buffer, flags: number): void;
  ptRenameat2(olddirfd: number, oldname: string | Buffer, newdirfd: number, newname: string | Buffer, flags: number): void;
  /** A new name for the inode of `fd` (linkat through /proc/self/fd/N, AT_SYMLINK_FOLLOW). */
  ptLinkat(fd: number, newdirfd: number, newname: string | Buffer): void;
  /** fchownat(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW); -1 keeps an id. */
  ptFchown(fd: number, uid: number, gid: number): void;
  ptChmod(fd: number, mode: number): void;
  /** Nanoseconds may be UTIME_NOW (2^30 - 1) or UTIME_OMIT (2^30 - 2). */
  ptUtimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /** truncate(2) of the inode of an O_PATH fd, without opening it. */
  ptTruncate(fd: number, size: number): void;
  ptFallocate(fd: number, mode: number, offset: number, length: number): void;
  ptLseek(fd: number, offset: number, whence: number): number;
  ptFstatvfs(fd: number): PtStatvfs;
  /** dup + close: the host sees a close(2) of the file. */
  ptDupClose(fd: number): void;
  /** One batch of entries from host cookie `offset` (0n: the start); [] at the end. */
  ptGetdents(fd: number, offset: bigint, maxBytes: number): PtDirent[];
  ptSyncfs(fd: number): Promise<void>;
  /** copy_file_range(2) of up to `len` bytes, on the thread pool; resolves with the bytes copied. */
  ptCopyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<number>;
  ptGetxattr(fd: number, name: string | Buffer): Buffer;
  /** With `errnoResult`: a missing attribute is returned as -ENODATA instead of thrown. */
  ptGetxattr(fd: number, name: string | Buffer, errnoResult: true): Buffer | number;
  /** NUL-terminated names as the kernel lists them. */
  ptListxattr(fd: number): Buffer;
  ptSetxattr(fd: number, name: string | Buffer, value: Uint8Array, flags: number): void;
  ptRemovexattr(fd: number, name: string | Buffer): void;
  // Run as the guest user (setfsuid/setfsgid on a thread with its own umask): see passthrough_create.cc.
  ptMkdirat(dirfd: number, name: string | Buffer, mode: number, uid: number, gid: number, umask: number, groups?: number[]): void;
  ptMknodat(dirfd: number, name: string | Buffer, mode: number, rdev: number, uid: number, gid: number, umask: number, groups?: number[]): void;
  ptSymlinkat(target: string | Buffer, dirfd: number, name: string | Buffer, uid: number, gid: number, umask: number, groups?: number[]): void;
  /** renameat2 as the request's user (for RENAME_WHITEOUT: the whiteout is theirs). */
  ptRenameat2As(olddirfd: number, oldname: string | Buffer, newdirfd: number, newname: string | Buffer, flags: number, uid: number, gid: number, umask: number, groups?: number[]): void;
  /** openat2 with O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC added; returns the fd. */
  ptCreate(dirfd: number, name: string | Buffer, flags: number, mode: number, resolve: number, uid: number, gid: number, umask: number, groups?: number[]): number;
  /** openat2 of "." with O_TMPFILE | O_CLOEXEC added: an unnamed file in the directory; returns the fd. */
  ptTmpfile(dirfd: number, flags: number, mode: number, uid: number, gid: number, umask: number, groups?: number[]): number;
}

/**
 * The `…Async` codec calls read and write their buffers on a thread-pool thread after they
 * return: until the promise settles, their memory must stay where it is. A reference keeps the
 * typed arrays alive, not their memory: a buffer whose ArrayBuffer is transferred (postMessage,
 * structuredClone with `transfer`) may be freed under the thread (shown with the ASan build).
 * Damselfly passes only buffers it allocated and never transfers; keep it so.
 */
export interface NativeAddon extends PassthroughOps {
  compress(codec: NativeCodec, src: Uint8Array, level?: number): Buffer;
  decompressInto(codec: NativeCodec, src: Uint8Array, dst: Uint8Array): number;
  compressAsync(codec: NativeCodec, src: Uint8Array, level?: number): Promise<Buffer>;
  decompressIntoAsync(codec: NativeCodec, src: Uint8Array, dst: Uint8Array): Promise<number>;
  ZstdDecoder: new () => ZstdDecoder;
  /** Fills `dst` with the output of the ZRan context starting at `src[0]` (spec §5.5); throws when `src` ends first. */
  zranInflate(src: Uint8Array, dict: Uint8Array, bits: number, byte: number, dst: Uint8Array): void;
  zranInflateAsync(src: Uint8Array, dict: Uint8Array, bits: number, byte: number, dst: Uint8Array): Promise<void>;
  /** Reports the boundaries at least `minIn` compressed or `minOut` uncompressed bytes apart. */
  ZranIndexer: new (minIn?: number, minOut?: number) => ZranIndexer;

  mknod(path: string | Buffer, mode: number, major: number, minor: number): void;
  lutimens(path: string | Buffer, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  llistxattr(path: string | Buffer): Buffer[];
  lgetxattr(path: string | Buffer, name: string | Buffer): Buffer | null;
  lsetxattr(path: string | Buffer, name: string | Buffer, value: Buffer): void;
  /** lseek with SEEK_DATA (3) or SEEK_HOLE (4); -1 when no data follows. */
  seekData(fd: number, offset: number, whence: 3 | 4): number;
  /** flock(2): LOCK_SH 1, LOCK_EX 2, LOCK_UN 8, | LOCK_NB 4; false when a non-blocking lock is taken. */
  flock(fd: number, operation: number): boolean;
  /** getrlimit(RLIMIT_NOFILE): [soft, hard], -1 for unlimited. */
  getNofileLimit(): [number, number];
  /** setrlimit(RLIMIT_NOFILE); raising the hard limit needs CAP_SYS_RESOURCE (else EPERM). */
  setNofileLimit(soft: number, hard: number): void;
  /**
   * preadv2(RWF_NOWAIT) into a scatter list: bytes read (short at end of file or past 1024 views),
   * or -1 when nothing is in the page cache or the file system cannot say (then read
   * asynchronously), or -2 when the file system keeps its files in memory but refuses RWF_NOWAIT
   * (tmpfs): then call again with `inMemory` true, a plain preadv. See `readNoWait`.
   */
  preadvNoWait(fd: number, views: Uint8Array[], position: number, inMemory?: boolean): number;
  /** posix_fadvise(WILLNEED): start reading a range into the page cache; a hint, never fails. */
  fadviseWillNeed(fd: number, offset: number, length: number): void;
  /** read(2) into `buffer`: the bytes read (0 at end of file), or -errno (no exception). */
  readNoThrow(fd: number, buffer: Uint8Array): number;
  /** `size` bytes at a 4096-byte boundary (for O_DIRECT reads), freed when collected. */
  allocAligned(size: number): ArrayBuffer;
  /** Gives an idle `allocAligned` buffer's pages back to the kernel now (they read as zeros when touched again). */
  discardPages(buffer: ArrayBuffer): boolean;

  /** `drainEventfd`: the fd is an eventfd, read (reset) before each readable callback. */
  Poller: new (fd: number, callback: (events: number) => void, drainEventfd?: boolean) => Poller;
  mount(source: string, target: string | Buffer, fstype: string, flags: number, data: string): void;
  umount2(target: string | Buffer, flags: number): void;
  /** open(2) with O_CLOEXEC added. */
  openFd(path: string, flags: number): number;

  listenUnix(path: string, backlog?: number): number;
  /** A connected socket (stream, or datagram: the syslog socket), non-blocking once connected. */
  /** -1 (with `noWait`) when the listener's queue is full: try again later. */
  connectUnix(path: string, datagram?: boolean, noWait?: boolean): number;
  /** A non-blocking datagram socket bound at `path` (a syslog daemon's end, for tests). */
  bindUnixDatagram(path: string): number;
  /** A new connection, or -1 when none is pending. */
  accept(listenFd: number): number;
  /** Bytes and fds received (empty data: end of stream), or null when nothing is available. */
  recvMsg(fd: number, maxBytes: number): { data: Buffer; fds: number[]; truncatedFds: boolean } | null;
  /** Bytes sent (0 when the socket is full). */
  sendMsg(fd: number, data: Buffer, fds?: number[]): number;
  setNonBlocking(fd: number): void;
  eventfd(initval?: number): number;
  /** Adds 1 to an eventfd's counter: 0, or -errno (-EAGAIN: full, the peer is signalled anyway). */
  eventfdSignal(fd: number): number;
  memfd(name: string, size: number): number;
  closeFd(fd: number): void;

  MemoryTable: new () => MemoryTable;
  Virtqueue: new (table: MemoryTable) => Virtqueue;
  /** Slots of `PopSlots` before the pieces (native/src/vring.cc's kPopHeader). */
  popHeader: number;
}

/**
 * The addon `npm ci` builds; `DAMSELFLY_ADDON` names another build of it instead (scripts/asan.sh:
 * the same sources under AddressSanitizer and UBSan).
 */
const ADDON_PATH = process.env.DAMSELFLY_ADDON || fileURLToPath(new URL('../../build/native/Release/damselfly.node', import.meta.url));

function load(): NativeAddon {
  if (!existsSync(ADDON_PATH)) {
    throw new Error(
      `the native addon is not built (${ADDON_PATH} is missing): run scripts/setup.sh, or npm run build:native`,
    );
  }
  const addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  addon.ptStatx = statxFrom(addon);
  return addon;
}

/** `ptStatx` over `ptStatxInto`: the object is built here, where it is cheap. */
function statxFrom(addon: NativeAddon): NativeAddon['ptStatx'] {
  const slots = new Float64Array(17);
  const ino = new BigUint64Array(slots.buffer, 0, 1);
  return (fd, name, flags) => {
    addon.ptStatxInto(fd, name, flags, slots);
    return {
      ino: ino[0] as bigint,
      dev: slots[1] as number,
      mntId: slots[2] as number,
      mode: slots[3] as number,
      nlink: slots[4] as number,
      uid: slots[5] as number,
      gid: slots[6] as number,
      rdev: slots[7] as number,
      size: slots[8] as number,
      blocks: slots[9] as number,
      blksize: slots[10] as number,
      atimeSec: slots[11] as number,
      atimeNsec: slots[12] as number,
      mtimeSec: slots[13] as number,
      mtimeNsec: slots[14] as number,
      ctimeSec: slots[15] as number,
      ctimeNsec: slots[16] as number,
    };
  };
}

export const native: NativeAddon = load();

/** Slots of `PopSlots` before the pieces, as the addon says. */
export const POP_HEADER = native.popHeader;

/** Slots for `popInto` with room for `pieces` pieces (grown when a chain needs more: NeedRoom). */
export function popSlots(pieces = 64): PopSlots {
  return new Float64Array(POP_HEADER + 3 * pieces);
}

/** An open file read with `readNoWait`: whether its file system was found to keep files in memory. */
export interface NoWaitFile {
  readonly fd: number;
  inMemory?: boolean;
}

/**
 * `preadvNoWait` for a file read many times: a tmpfs file is found out by its first read (an
 * fstatfs), and later reads are one plain preadv each instead of a refused preadv2, an fstatfs
 * and the read.
 */
export function readNoWait(file: NoWaitFile, views: Uint8Array[], position: number): number {
  let n = native.preadvNoWait(file.fd, views, position, file.inMemory === true);
  if (n === -2) {
    file.inMemory = true;
    n = native.preadvNoWait(file.fd, views, position, true);
  }
  return n;
}
