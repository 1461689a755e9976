/**
 * What a request handler works with: the decoded request, the filesystem, and reply helpers
 * that write the `fuse_out_header` (len, error, unique) exactly once.
 */
import type { ByteReader } from '../../base/index.js';
import type { FileSystem, RequestContext } from '../../fs/types.js';
import { InitFlag, Size } from '../abi.js';
import { type InHeader, encodeOutHeader } from '../codec/header.js';
import { type Extensions, decodeExtensions, decodeSecctx } from '../codec/in.js';

/** The transport side of one reply (a /dev/fuse write, or the guest's writable descriptors). */
export interface ReplyChannel {
  /** Payload bytes this reply can carry after the 16-byte header. */
  readonly capacity: number;
  /** Views into which `size` payload bytes are written in place (READ); they sum to `size`. */
  reserve(size: number): Uint8Array[];
  /** Sends the header with `payload` copied after it, or with `payload` bytes already reserved. */
  send(header: Uint8Array, payload: Uint8Array[] | number): void;
  /** Completes a request that gets no reply (FORGET, BATCH_FORGET, INTERRUPT). */
  drop(): void;
  /** Fires when the request is abandoned (its virtqueue stopped): see `RequestContext.signal`. */
  readonly signal?: AbortSignal;
}

export interface Session {
  /** FUSE_INIT flags both sides agreed on. */
  flags: bigint;
  /** Minor protocol version of the kernel. */
  minor: number;
  maxWrite: number;
}

export class Call {
  private done = false;

  constructor(
    readonly fs: FileSystem,
    readonly header: InHeader,
    readonly body: ByteReader,
    readonly channel: ReplyChannel,
    readonly session: Session,
    /** A WRITE's data left in place by the transport (see `inPlaceDataAt`); else in `body`. */
    readonly tail?: Uint8Array[],
    /** The request's extension headers (total_extlen). */
    readonly extensions: Uint8Array = new Uint8Array(0),
  ) {}

  get ctx(): RequestContext {
    const signal = this.channel.signal;
    return signal === undefined ? { uid: this.header.uid, gid: this.header.gid, pid: this.header.pid } : { uid: this.header.uid, gid: this.header.gid, pid: this.header.pid, signal };
  }

  /**
   * The context of a creating request (CREATE, TMPFILE, MKNOD, MKDIR, SYMLINK) whose arguments
   * end where `argsEnd` says: under FUSE_SECURITY_CTX with the security context the kernel sent,
   * among the extensions (FUSE 7.38+) or, from a 7.36 or 7.37 kernel, after the arguments; under
   * FUSE_CREATE_SUPP_GROUP with the supplementary groups among the extensions.
   */
  creatingCtx(argsEnd: () => number): RequestContext {
    const ctx: RequestContext = this.ctx;
    const flags = this.session.flags;
    const secctx = (flags & InitFlag.SECURITY_CTX) !== 0n;
    if (!secctx && (flags & InitFlag.CREATE_SUPP_GROUP) === 0n) return ctx;
    const ext: Extensions = this.extensions.length > 0 ? decodeExtensions(this.extensions) : {};
    if (secctx) {
      let block = ext.secctx;
      if (block === undefined && this.extensions.length === 0 && this.session.minor < 38) {
        const end = argsEnd();
        if (end < this.body.length) block = this.body.slice(end, this.body.length - end, 'security context');
      }
      const securityContext = block === undefined ? undefined : decodeSecctx(block);
      if (securityContext !== undefined) ctx.securityContext = securityContext;
    }
    if ((flags & InitFlag.CREATE_SUPP_GROUP) !== 0n && ext.groups !== undefined) ctx.groups = ext.groups;
    return ctx;
  }

  get nodeid(): number {
    return this.header.nodeid;
  }

  get replied(): boolean {
    return this.done;
  }

  private finish(): boolean {
    if (this.done) return false;
    this.done = true;
    return true;
  }

  private header16(payloadLen: number, error: number): Uint8Array {
    const h = new Uint8Array(Size.OUT_HEADER);
    encodeOutHeader(h, Size.OUT_HEADER + payloadLen, error, this.header.unique);
    return h;
  }

  /** A successful reply with these payload bytes (possibly none). */
  ok(...parts: Uint8Array[]): void {
    if (!this.finish()) return;
    const len = parts.reduce((n, p) => n + p.length, 0);
    this.channel.send(this.header16(len, 0), parts);
  }

  /** A successful reply whose `n` payload bytes were written into `reserve()`d views. */
  okInPlace(n: number): void {
    if (!this.finish()) return;
    this.channel.send(this.header16(n, 0), n);
  }

  error(errno: number): void {
    if (!this.finish()) return;
    this.channel.send(this.header16(0, -Math.abs(errno)), []);
  }

  none(): void {
    if (!this.finish()) return;
    this.channel.drop();
  }
}

export type Handler = (call: Call) => Promise<void> | void;
