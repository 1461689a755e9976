/**
 * The FUSE server: decodes a request, dispatches it through the opcode table to the
 * `FileSystem`, and replies exactly once. Errors become errnos here and nowhere else. INIT
 * negotiates the protocol (a second INIT resets the session), DESTROY ends it, unknown opcodes get
 * ENOSYS, and a malformed request gets EINVAL when its `unique` can be read.
 */
import { constants } from 'node:os';
import { DamselflyError, ErrorCode, LogLimiter, type Logger, type Metrics, QuietTimer, iovLength, isSysError } from '../../base/index.js';
import { Errno, type FileSystem, FsError } from '../../fs/types.js';
import { FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, FUSE_MIN_MINOR, InitFlag, Opcode } from '../abi.js';
import { BadArguments, RequestError, decodeRequest } from '../codec/header.js';
import { decodeInitIn, decodeInterruptIn } from '../codec/in.js';
import { encodeInitOut } from '../codec/out.js';
import { Call, type Handler, type ReplyChannel, type Session } from './context.js';
import { dirHandlers } from './dir-ops.js';
import { entryHandlers } from './entry-ops.js';
import { fileHandlers } from './file-ops.js';
import { xattrHandlers } from './xattr-ops.js';

export interface FuseServerOptions {
  log: Logger;
  metrics: Metrics;
  /** Largest WRITE accepted (and READ the kernel will send), bytes. */
  maxWrite?: number;
  maxReadahead?: number;
  maxBackground?: number;
  /**
   * Called once the server has had no request for `restMs` (default 10 s), and again after each
   * later busy spell: where the filesystem has nothing of its own to drop at rest (the passthrough
   * share), the daemon collects the garbage the spell left, which V8 otherwise keeps resident for
   * as long as the daemon idles (`collectGarbageSoon`).
   */
  onRest?: () => void;
  restMs?: number;
}

/** Flags every session may use when the kernel offers them (as the Rust virtiofsd). */
const BASE_FLAGS =
  InitFlag.ASYNC_READ |
  InitFlag.PARALLEL_DIROPS |
  InitFlag.BIG_WRITES |
  InitFlag.AUTO_INVAL_DATA |
  InitFlag.ASYNC_DIO |
  InitFlag.HAS_IOCTL_DIR |
  InitFlag.ATOMIC_O_TRUNC |
  InitFlag.MAX_PAGES |
  InitFlag.INIT_EXT;

/** Requests the kernel expects no reply to. */
const NO_REPLY = new Set<number>([Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.INTERRUPT]);

const HANDLERS = new Map<number, Handler>([...entryHandlers, ...fileHandlers, ...dirHandlers, ...xattrHandlers]);

/** An opcode's name and request metric, made once per opcode rather than at every request. */
const OPCODE_NAMES = new Map<number, { name: string; metric: string }>();
function opcodeName(opcode: number): { name: string; metric: string } {
  let n = OPCODE_NAMES.get(opcode);
  if (n === undefined) {
    const known = Opcode[opcode];
    // Unknown opcodes come from the peer: named in logs, but remembered, and counted, only as one
    // metric, so that neither map grows with what a guest invents.
    n = known !== undefined ? { name: known, metric: `fuse.requests.${known}` } : { name: `OPCODE_${opcode}`, metric: 'fuse.requests.unknown' };
    if (known !== undefined) OPCODE_NAMES.set(opcode, n);
  }
  return n;
}

/** Maps anything thrown by a filesystem to a positive errno. */
export function errnoOf(e: unknown): number {
  if (e instanceof FsError) return e.errno;
  if (e instanceof BadArguments) return Errno.EINVAL;
  if (isSysError(e)) {
    const n = (constants.errno as Record<string, number>)[e.code];
    if (n !== undefined) return n;
  }
  if (e instanceof DamselflyError) {
    // A filesystem reports an absent name itself (FsError ENOENT); a NotFound from below it is a
    // blob its storage cannot find, which to a reader of the file is an I/O error, as in nydusd.
    switch (e.code) {
      case ErrorCode.Unsupported:
        return Errno.EOPNOTSUPP;
      case ErrorCode.Usage:
        return Errno.EINVAL;
      default:
        return Errno.EIO;
    }
  }
  return Errno.EIO;
}

/** A negotiated session as `saveSession` gives it (flags as a decimal string: JSON has no bigint). */
export interface SessionState {
  flags: string;
  minor: number;
  maxWrite: number;
}

export class FuseServer {
  private readonly fs: FileSystem;
  private readonly opts: Required<Omit<FuseServerOptions, 'log' | 'metrics' | 'onRest' | 'restMs'>> & FuseServerOptions;
  private session: Session | undefined;
  private readonly logLimiter = new LogLimiter();
  private readonly rest: QuietTimer | undefined;

  constructor(fs: FileSystem, opts: FuseServerOptions) {
    this.fs = fs;
    this.opts = { maxWrite: 1 << 20, maxReadahead: 1 << 20, maxBackground: 256, ...opts };
    this.rest = opts.onRest === undefined ? undefined : new QuietTimer(opts.restMs ?? 10_000, opts.onRest);
  }

  get initialized(): boolean {
    return this.session !== undefined;
  }

  /**
   * The negotiated session, for a daemon taking over this connection (nydusd's failover and live
   * upgrade): the kernel negotiates once per mount, so the next server starts from these.
   */
  saveSession(): SessionState | undefined {
    const s = this.session;
    return s === undefined ? undefined : { flags: s.flags.toString(), minor: s.minor, maxWrite: s.maxWrite };
  }

  /** Continues a session another server negotiated (`saveSession`); the filesystem is restored apart. */
  restoreSession(state: SessionState): void {
    if (this.session !== undefined) throw new Error('restoreSession on a live session');
    if (typeof state !== 'object' || state === null || typeof state.flags !== 'string' || !/^[0-9]{1,20}$/.test(state.flags) || !Number.isInteger(state.minor) || state.minor < FUSE_MIN_MINOR || state.maxWrite !== this.opts.maxWrite) {
      throw new Error(`a FUSE session this server cannot continue: ${JSON.stringify(state)}`);
    }
    this.session = { flags: BigInt(state.flags), minor: state.minor, maxWrite: state.maxWrite };
  }

  /** The read-ahead this server asks for at INIT, bytes (the kernel may offer less). */
  get maxReadahead(): number {
    return this.opts.maxReadahead;
  }

  /**
   * Handles one request (the bytes of its readable part); never throws, always completes `channel`.
   * `tail`: the request's last bytes, left in place by the transport (only a WRITE's data, from
   * `inPlaceDataAt`); they may change while they are used, which can only change the data written.
   */
  async handle(bytes: Uint8Array, channel: ReplyChannel, tail?: Uint8Array[]): Promise<void> {
    this.rest?.touch();
    let req;
    try {
      req = decodeRequest(bytes, tail === undefined ? 0 : iovLength(tail));
      if (tail !== undefined && req.header.opcode !== Opcode.WRITE) throw new RequestError(req.header.unique, 'only a WRITE leaves its data in place');
    } catch (e) {
      this.opts.metrics.inc('fuse.malformed');
      this.opts.log.warn({ err: (e as Error).message }, 'malformed FUSE request');
      if (e instanceof RequestError) {
        new Call(this.fs, { len: 0, opcode: 0, unique: e.unique, nodeid: 0, uid: 0, gid: 0, pid: 0, totalExtlen: 0 }, undefined as never, channel, this.sessionOrDefault()).error(Errno.EINVAL);
      } else {
        channel.drop();
      }
      return;
    }
    const { header, body, extensions } = req;
    const { name, metric } = opcodeName(header.opcode);
    this.opts.metrics.inc(metric);
    const call = new Call(this.fs, header, body, channel, this.sessionOrDefault(), tail, extensions);
    try {
      if (header.opcode === Opcode.INIT) return this.init(call);
      if (this.session === undefined) {
        // The peer's mistake, not a failure here: EIO (as virtiofsd answers), logged once a minute.
        this.opts.metrics.inc('fuse.errors');
        this.logLimiter.log(this.opts.log, 'warn', 'before INIT', { op: name }, 'request before FUSE_INIT');
        return NO_REPLY.has(header.opcode) ? call.none() : call.error(Errno.EIO);
      }
      if (header.opcode === Opcode.DESTROY) return this.destroy(call);
      if (header.opcode === Opcode.INTERRUPT) {
        // Requests complete promptly and on their own; the interrupted one still gets its reply.
        decodeInterruptIn(body);
        return call.none();
      }
      const handler = HANDLERS.get(header.opcode);
      if (handler === undefined) throw new FsError(Errno.ENOSYS, `unknown opcode ${header.opcode}`);
      if (header.nodeid < 0) throw new FsError(Errno.ENOENT, 'node id out of range');
      await handler(call);
      if (!call.replied) throw new Error(`${name} handler finished without a reply`);
    } catch (e) {
      const errno = errnoOf(e);
      this.opts.metrics.inc('fuse.errors');
      if (e instanceof DamselflyError && e.code === ErrorCode.Aborted) {
        // Given up on purpose (the filesystem is closing, e.g. the daemon stops): EIO, no alarm.
        this.opts.log.info({ op: name, nodeid: header.nodeid, err: e.message }, 'request aborted');
      } else if (errno === Errno.EIO || !(e instanceof FsError || isSysError(e) || e instanceof DamselflyError)) {
        // A guest may repeat a failing read in a loop: one line per operation a minute.
        this.logLimiter.log(this.opts.log, 'error', name, { op: name, nodeid: header.nodeid, err: e instanceof Error ? e.message : String(e) }, 'request failed');
      } else {
        this.opts.log.debug({ op: name, nodeid: header.nodeid, errno }, 'request failed');
      }
      if (NO_REPLY.has(header.opcode)) call.none();
      else call.error(errno);
    }
  }

  private sessionOrDefault(): Session {
    return this.session ?? { flags: 0n, minor: FUSE_KERNEL_MINOR_VERSION, maxWrite: this.opts.maxWrite };
  }

  private init(call: Call): void {
    const init = decodeInitIn(call.body);
    if (this.session !== undefined) {
      this.opts.log.info('FUSE_INIT on a live session: resetting it');
      this.fs.destroy?.();
      this.session = undefined;
    }
    if (init.major > FUSE_KERNEL_VERSION) {
      // Answer with our major only; the kernel retries INIT with it.
      return call.ok(encodeInitOut({ major: FUSE_KERNEL_VERSION, minor: FUSE_KERNEL_MINOR_VERSION, maxReadahead: 0, flags: 0n, maxBackground: 0, congestionThreshold: 0, maxWrite: 0, timeGran: 0, maxPages: 0 }));
    }
    if (init.major < FUSE_KERNEL_VERSION || init.minor < FUSE_MIN_MINOR) throw new FsError(Errno.EPROTO, `FUSE ${init.major}.${init.minor} is too old`);
    let offered = init.flags;
    if (!(offered & InitFlag.INIT_EXT)) offered &= 0xffffffffn;
    let flags = offered & (BASE_FLAGS | (this.fs.wantedInitFlags ?? 0n));
    // With zero-message opens an OPEN stops reaching the filesystem after its first ENOSYS, and
    // under ATOMIC_O_TRUNC the kernel would then truncate its own view of a file opened O_TRUNC
    // (fuse_finish_open) without asking anyone: a read-only image's file would read as empty.
    // Without it, the kernel sends a SETATTR, which the filesystem judges (EROFS).
    if (flags & InitFlag.NO_OPEN_SUPPORT) flags &= ~InitFlag.ATOMIC_O_TRUNC;
    const maxPages = Math.min(256, Math.ceil(this.opts.maxWrite / 4096));
    this.session = { flags, minor: init.minor, maxWrite: this.opts.maxWrite };
    this.fs.init?.({ flags });
    this.opts.log.debug({ kernel: `${init.major}.${init.minor}`, offered: `0x${init.flags.toString(16)}`, agreed: `0x${flags.toString(16)}` }, 'FUSE_INIT');
    call.ok(
      encodeInitOut({
        major: FUSE_KERNEL_VERSION,
        minor: FUSE_KERNEL_MINOR_VERSION,
        maxReadahead: Math.min(init.maxReadahead, this.opts.maxReadahead),
        flags,
        maxBackground: this.opts.maxBackground,
        congestionThreshold: Math.floor((this.opts.maxBackground * 3) / 4),
        maxWrite: this.opts.maxWrite,
        timeGran: 1,
        maxPages,
      }),
    );
  }

  private destroy(call: Call): void {
    this.fs.destroy?.();
    this.session = undefined;
    call.ok();
  }
}
