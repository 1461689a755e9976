/**
 * The /dev/fuse transport: mounts a FUSE filesystem on the host through mount(2) (via the addon),
 * reads requests from the device when it becomes readable (many in flight at once; replies are
 * written as each completes, in any order) and unmounts cleanly.
 */
import { closeSync, constants as fsc, readFileSync, realpathSync, statSync, writeFileSync, writevSync, writeSync } from 'node:fs';
import { constants as osc } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { type Logger, UsageError, isSysError } from '../../base/index.js';
import { type FuseServer, FuseNotifyCode, type ReplyChannel } from '../../fuse/index.js';
import { native } from '../../native/index.js';

const MS_RDONLY = 1;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOATIME = 1024;
const MNT_DETACH = 2;
const UV_READABLE = 1;
const { EAGAIN, EINTR, ENOENT, ENODEV } = osc.errno;
/** The kernel needs room for the largest request: a WRITE of max_write plus headers. */
const READ_BUFFER = (1 << 20) + 8192;

export interface FuseMountOptions {
  mountpoint: string;
  server: FuseServer;
  log: Logger;
  readOnly?: boolean;
  /** fsname shown in /proc/mounts. */
  fsname?: string;
  /** The type is `fuse.<subtype>` (default `damselfly`); plain `fuse` when it is empty, as nydusd mounts. */
  subtype?: string;
  /** Mount with noatime (nydusd does). */
  noatime?: boolean;
}

/**
 * Reply buffers are reused: a fresh megabyte per READ costs page faults and garbage collection
 * that show in a profile as much as the copy into the kernel does.
 */
class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(b: Buffer): void {
    if (this.free.length < this.keep) this.free.push(b);
  }
}

/**
 * The bdi ("MAJOR:MINOR" under /sys/class/bdi) of the newest FUSE mount on `mountpoint` (a
 * resolved path), from /proc/self/mountinfo: asking the mount itself (stat) would be a request.
 */
function fuseBdi(mountpoint: string): string | undefined {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let found: string | undefined;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    // id parent MAJOR:MINOR root mountpoint options [optional...] - fstype source super-options
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 0 || f[4] === undefined || unescape(f[4]) !== mountpoint) continue;
    if (f[dash + 1]?.startsWith('fuse')) found = f[2];
  }
  return found;
}

/**
 * Raises the mount's read-ahead to `bytes`. The kernel offers its bdi default (128 KiB) at INIT
 * and keeps the smaller of that and the answer, so a sequential reader's READs come as 128-256 KiB
 * whatever the daemon asks for; with the bdi raised after INIT they come as up to max_pages
 * (1 MiB). fuse.sh, 336 MB read cold with an empty chunk cache: 1286 READs; 0.40 s and 0.48 s of
 * daemon CPU before, 0.34-0.37 s and 0.41-0.45 s with 1 MiB (2 and 4 MiB were slower again).
 * Root only (sysfs); without it the kernel's default stays.
 */
function raiseReadahead(mountpoint: string, bytes: number, log: Logger): void {
  try {
    const bdi = fuseBdi(mountpoint);
    if (bdi === undefined) throw new Error('the mount is not in /proc/self/mountinfo');
    writeFileSync(`/sys/class/bdi/${bdi}/read_ahead_kb`, `${Math.floor(bytes / 1024)}\n`);
  } catch (e) {
    log.debug({ mountpoint, err: (e as Error).message }, 'cannot raise the read-ahead; the kernel default stays');
  }
}

/** Reply buffers kept for reuse (as many as READs usually in flight). */
const POOLED_REPLIES = 16;

/** The device fd, shared by the replies; `open` turns false before the fd is closed. */
interface Connection {
  readonly fd: number;
  open: boolean;
}

class DevFuseReply implements ReplyChannel {
  readonly capacity = READ_BUFFER;
  private buf: Buffer | undefined;

  constructor(
    private readonly conn: Connection,
    private readonly log: Logger,
    private readonly pool: BufferPool,
  ) {}

  reserve(size: number): Uint8Array[] {
    if (this.buf === undefined) this.buf = this.pool.take();
    return [this.buf.subarray(16, 16 + Math.min(size, this.capacity))];
  }

  send(header: Uint8Array, payload: Uint8Array[] | number): void {
    // A request that completes after the unmount has nobody to answer; its fd number may already
    // name another file.
    if (!this.conn.open) return this.release();
    const fd = this.conn.fd;
    try {
      if (typeof payload === 'number') {
        const buf = this.buf as Buffer;
        buf.set(header, 0);
        writeSync(fd, buf, 0, 16 + payload);
      } else {
        // Empty parts left out: libuv would write them in a call of their own (a 0-byte write,
        // which /dev/fuse refuses with EINVAL after the reply itself went through).
        const parts = [header];
        for (const p of payload) if (p.length > 0) parts.push(p);
        writevSync(fd, parts);
      }
    } catch (e) {
      // ENOENT: the request was interrupted and the kernel no longer waits for it.
      if (!isSysError(e, 'ENOENT')) this.log.warn({ err: (e as Error).message }, 'writing a FUSE reply failed');
    }
    this.release();
  }

  drop(): void {
    this.release();
  }

  private release(): void {
    if (this.buf !== undefined) this.pool.give(this.buf);
    this.buf = undefined;
  }
}

export class FuseMount {
  private readonly fd: number;
  private readonly conn: Connection;
  private readonly poller;
  private readonly buf = Buffer.allocUnsafe(READ_BUFFER);
  private readonly replies = new BufferPool(16 + READ_BUFFER, POOLED_REPLIES);
  private readonly opts: FuseMountOptions;
  private mounted = true;
  private resolveEnded!: () => void;
  /** Resolves when the filesystem is unmounted (by `unmount` or from outside). */
  readonly ended: Promise<void>;
  private inflight = 0;
  /** The resolved mountpoint (as /proc/self/mountinfo shows it). */
  private readonly resolved: string;
  private readaheadRaised = false;

  private serving = false;
  private idle: (() => void) | undefined;

  private constructor(fd: number, opts: FuseMountOptions, resolved: string, serve: boolean) {
    this.fd = fd;
    this.resolved = resolved;
    this.conn = { fd, open: true };
    this.opts = opts;
    this.ended = new Promise((r) => (this.resolveEnded = r));
    this.poller = new native.Poller(fd, (events) => this.onReadable(events));
    if (serve) this.serve();
  }

  private static checkMountpoint(mountpoint: string): string {
    let st;
    try {
      st = statSync(mountpoint);
    } catch (e) {
      throw new UsageError(`mountpoint ${mountpoint} does not exist`, { cause: e });
    }
    if (!st.isDirectory()) throw new UsageError(`mountpoint ${mountpoint} is not a directory`);
    return realpathSync(mountpoint);
  }

  /**
   * The connection of a mount another daemon made (its /dev/fuse fd, handed over through the
   * supervisor): no mount(2), no INIT (the server continues the session); requests are read from
   * `serve()` on. The mountpoint is where it is mounted, for the unmount and the read-ahead.
   */
  static adopt(fd: number, opts: FuseMountOptions): FuseMount {
    // Not stat(2) nor realpath(3): the mountpoint is this very connection, which nobody serves
    // until `serve()` (a GETATTR of it would wait for this process).
    const resolved = resolvePath(opts.mountpoint);
    native.setNonBlocking(fd);
    const m = new FuseMount(fd, opts, resolved, false);
    m.readaheadRaised = true;
    return m;
  }

  /** The /dev/fuse fd (what a supervisor keeps for the next daemon). */
  get deviceFd(): number {
    return this.fd;
  }

  /** Starts (or resumes) reading requests. */
  serve(): void {
    if (!this.mounted || this.serving) return;
    this.serving = true;
    this.poller.start(UV_READABLE);
  }

  /**
   * Stops reading requests and waits (up to `timeoutMs`) for those already read to be answered:
   * the connection stays, for the daemon that takes it over (nydusd's exit during a live upgrade).
   */
  async stopServing(timeoutMs = 10_000): Promise<boolean> {
    if (this.serving) this.poller.stop();
    this.serving = false;
    if (this.inflight === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idle = undefined;
        resolve(false);
      }, timeoutMs);
      this.idle = () => {
        clearTimeout(timer);
        this.idle = undefined;
        resolve(true);
      };
    });
  }

  /**
   * Asks the kernel to queue again every request a daemon read but did not answer
   * (FUSE_NOTIFY_RESEND, Linux 6.9): those a daemon that died was serving. Throws when the kernel
   * does not know the notification.
   */
  notifyResend(): void {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(16, 0);
    h.writeInt32LE(FuseNotifyCode.RESEND, 4);
    writeSync(this.fd, h);
  }

  static mount(opts: FuseMountOptions): FuseMount {
    const resolved = FuseMount.checkMountpoint(opts.mountpoint);
    const fd = native.openFd('/dev/fuse', fsc.O_RDWR | fsc.O_NONBLOCK);
    const data = `fd=${fd},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions`;
    const flags = MS_NOSUID | MS_NODEV | (opts.readOnly === false ? 0 : MS_RDONLY) | (opts.noatime === true ? MS_NOATIME : 0);
    try {
      const subtype = opts.subtype ?? 'damselfly';
      native.mount(opts.fsname ?? 'damselfly', opts.mountpoint, subtype === '' ? 'fuse' : `fuse.${subtype}`, flags, data);
    } catch (e) {
      closeSync(fd);
      if (isSysError(e, 'EBUSY')) throw new UsageError(`mountpoint ${opts.mountpoint} is busy`, { cause: e });
      if (isSysError(e, 'EPERM')) throw new UsageError('mounting needs root (CAP_SYS_ADMIN)', { cause: e });
      throw e;
    }
    return new FuseMount(fd, opts, resolved, true);
  }

  private onReadable(events: number): void {
    if (events < 0) {
      // The connection is gone (unmounted or aborted): the poll reports an error instead of data.
      this.opts.log.info({ mountpoint: this.opts.mountpoint, errno: events }, 'FUSE connection closed');
      this.finish();
      return;
    }
    for (;;) {
      if (!this.serving) return;
      // -errno instead of an exception: every wake-up ends with EAGAIN.
      const n = native.readNoThrow(this.fd, this.buf);
      if (n < 0) {
        if (n === -EAGAIN || n === -EINTR) return;
        if (n === -ENOENT) continue; // an interrupted request vanished
        if (n === -ENODEV) {
          this.opts.log.info({ mountpoint: this.opts.mountpoint }, 'filesystem unmounted');
          this.finish();
          return;
        }
        this.opts.log.error({ errno: -n }, 'reading /dev/fuse failed');
        this.finish();
        return;
      }
      if (n === 0) {
        this.finish();
        return;
      }
      const request = Buffer.from(this.buf.subarray(0, n));
      this.inflight++;
      void this.opts.server.handle(request, new DevFuseReply(this.conn, this.opts.log, this.replies)).finally(() => {
        this.inflight--;
        if (this.inflight === 0) this.idle?.();
        // Once INIT is answered: the kernel sets the read-ahead as it reads the answer.
        if (!this.readaheadRaised && this.opts.server.initialized) {
          this.readaheadRaised = true;
          raiseReadahead(this.resolved, this.opts.server.maxReadahead, this.opts.log);
        }
      });
    }
  }

  private finish(): void {
    if (!this.mounted) return;
    this.mounted = false;
    this.conn.open = false;
    this.poller.close();
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.resolveEnded();
  }

  /** Unmounts (lazily, so a busy mount still goes away) and stops serving. */
  async unmount(): Promise<void> {
    if (this.mounted) {
      try {
        native.umount2(this.opts.mountpoint, MNT_DETACH);
      } catch (e) {
        if (!isSysError(e, 'EINVAL')) this.opts.log.warn({ err: (e as Error).message }, 'umount failed');
      }
      this.finish();
    }
    await this.ended;
  }
}
