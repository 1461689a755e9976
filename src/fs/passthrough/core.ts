/**
 * The state every passthrough operation shares: options, the inode and handle tables, the cache
 * policy's timeouts, what INIT agreed, and LOOKUP itself (the one place a name becomes a node).
 */
import type { Logger, Metrics } from '../../base/index.js';
import type { PtStat } from '../../native/addon.js';
import { native } from '../../native/index.js';
import { type EntryReply, Errno, FsError, type RequestContext } from '../types.js';
import { FUSE_ATTR_SUBMOUNT, O_NOFOLLOW, O_PATH, RESOLVE, component, isDir, isDotDot, sys, toAttr } from './common.js';
import { HandleTable } from './handles.js';
import { IdTranslation } from './id-map.js';
import type { XattrMap } from './xattr-map.js';
import { type Inode, InodeTable, ROOT_ID, statFd } from './inodes.js';

export type CachePolicy = 'never' | 'metadata' | 'auto' | 'always';

export interface PassthroughOptions {
  /** The shared host directory. */
  root: string;
  /** Serve extended attributes (else every xattr request answers ENOSYS, and the kernel stops asking). */
  xattr: boolean;
  /**
   * virtiofsd's cache policies. Entry and attribute timeouts: never 0, auto 1 s, metadata and always
   * 86400 s. Files open with FOPEN_DIRECT_IO under never and metadata, FOPEN_KEEP_CACHE under
   * always; directories keep their cache under metadata and always. Never also turns READDIRPLUS off.
   */
  cache: CachePolicy;
  /** Mark mount points inside the share with FUSE_ATTR_SUBMOUNT (when the kernel supports it). */
  announceSubmounts: boolean;
  /** Ask for FUSE_WRITEBACK_CACHE (only when the guest has the directory to itself). */
  writeback?: boolean;
  /** Pass O_DIRECT through to the host (default true; unaligned I/O falls back to a buffered fd). */
  allowDirectIo?: boolean;
  /**
   * Pass the guest's O_NOATIME on to the host's open (virtiofsd --preserve-noatime). By default it
   * is dropped, as virtiofsd drops it: an open with it fails with EPERM on the host unless the
   * daemon owns the file or has CAP_FOWNER, which the guest cannot know.
   */
  preserveNoatime?: boolean;
  /**
   * Offer FUSE_HANDLE_KILLPRIV_V2 (virtiofsd --killpriv-v2): the guest then leaves dropping setuid
   * and setgid on writes and truncates to the daemon, says when with a flag, and stops asking for
   * security.capability before every write.
   */
  killprivV2?: boolean;
  /** READDIRPLUS, unless false (virtiofsd --no-readdirplus); never offered under cache never. */
  readdirplus?: boolean;
  /** Let the guest mmap files opened for direct I/O (virtiofsd --allow-mmap; FUSE_DIRECT_IO_ALLOW_MMAP, FUSE 7.39). */
  allowMmap?: boolean;
  /** Extended attribute names mapped between guest and host (virtiofsd --xattrmap). */
  xattrmap?: XattrMap;
  /** User and group ids translated between guest and host (virtiofsd --translate-uid / --translate-gid). */
  translateUid?: IdTranslation;
  translateGid?: IdTranslation;
  /**
   * Serve POSIX ACLs (virtiofsd --posix-acl): ask for FUSE_POSIX_ACL, so that the guest's kernel
   * enforces ACLs (and caches them), with FUSE_DONT_MASK, so that a creating call gets the
   * caller's umask to apply on the host, where a parent's default ACL overrides it, and
   * FUSE_SETXATTR_EXT, so that an ACL set by a caller outside the file's group clears setgid.
   * system.posix_acl_* then pass through to the host; without it they are refused (EOPNOTSUPP).
   */
  posixAcl?: boolean;
  /**
   * Label what the guest creates (virtiofsd --security-label): ask for FUSE_SECURITY_CTX, so that
   * a creating call carries the security context the guest's LSM (SELinux) wants, and set it (the
   * xattr it names, through the xattr map) on the new node before answering; a node that cannot
   * be labelled is removed again and the call fails.
   */
  securityLabel?: boolean;
  /** Accepted for virtiofsd compatibility; locks stay in the guest (FUSE_POSIX_LOCKS is never agreed). */
  posixLocks?: boolean;
  log: Logger;
  metrics: Metrics;
}

const TIMEOUTS: Record<CachePolicy, number> = { never: 0, metadata: 86400, auto: 1, always: 86400 };

export class Core {
  readonly inodes: InodeTable;
  readonly handles = new HandleTable();
  readonly timeout: number;
  /** Agreed at INIT. */
  writeback = false;
  announce = false;
  /** FUSE_DONT_MASK: the kernel leaves the umask to us (asked for with POSIX ACLs). */
  dontMask = false;
  /** FUSE_POSIX_ACL was agreed: the ACL names pass through. */
  posixAcl = false;
  /** FUSE_SECURITY_CTX was agreed: new nodes get the security context their request carries. */
  securityLabel = false;
  /** FUSE_HANDLE_KILLPRIV_V2 was agreed. */
  killprivV2 = false;

  /** The id translations (identity unless asked for). */
  readonly uids: IdTranslation;
  readonly gids: IdTranslation;

  constructor(readonly opts: PassthroughOptions) {
    this.inodes = new InodeTable(opts.root);
    this.timeout = TIMEOUTS[opts.cache];
    this.uids = opts.translateUid ?? IdTranslation.IDENTITY;
    this.gids = opts.translateGid ?? IdTranslation.IDENTITY;
  }

  /**
   * The (fsuid, fsgid, umask, supplementary groups) a creating call runs with: the guest's ids;
   * the request's umask only under FUSE_DONT_MASK (otherwise the kernel already applied it to the
   * mode it sent); the groups the kernel vouched for (FUSE_CREATE_SUPP_GROUP), if any.
   */
  creds(ctx: RequestContext, umask = 0): [number, number, number, number[] | undefined] {
    const groups = ctx.groups === undefined || ctx.groups.length === 0 ? undefined : ctx.groups.map((g) => this.gids.toHost(g));
    return [this.uids.toHost(ctx.uid), this.gids.toHost(ctx.gid), this.dontMask ? umask & 0o777 : 0, groups];
  }

  entry(n: Inode, st: PtStat, flags = 0): EntryReply {
    const attr = toAttr(st, flags);
    attr.uid = this.uids.toGuest(attr.uid);
    attr.gid = this.gids.toGuest(attr.gid);
    return { nodeid: n.id, generation: 0, attr, entryTimeout: this.timeout, attrTimeout: this.timeout };
  }

  /**
   * LOOKUP: one name below `parent`, opened O_PATH without following a final symlink and without
   * leaving the parent (openat2 RESOLVE_BENEATH). ".." of the root is the root (as the C
   * virtiofsd); ".." elsewhere must still lie inside the shared directory (ENOENT otherwise).
   */
  lookup(parent: number, rawName: Uint8Array): EntryReply {
    const p = this.inodes.get(parent);
    const name = component(rawName, true);
    if (isDotDot(name) && p.id === ROOT_ID) return this.entry(p, statFd(p.fd));
    const fd = isDotDot(name) ? this.openParent(p) : this.openChild(p, name);
    const { node: n, st } = this.inodes.adoptFd(fd);
    const submount = this.announce && !isDotDot(name) && isDir(st.mode) && (st.dev !== p.dev || st.mntId !== p.mntId);
    return this.entry(n, st, submount ? FUSE_ATTR_SUBMOUNT : 0);
  }

  /**
   * LOOKUP of a name a call just made or found there (CREATE, MKDIR, MKNOD, SYMLINK, LINK), which
   * must still be what `expected` says. A process on the host may have removed it, or put
   * something else there, in between: ESTALE then, counting nothing, on which the VFS looks the
   * name up again and retries the call once. An entry of another type would do harm: the kernel
   * takes it for EIO and never forgets it (`create_new_entry`), and a CREATE answered with a
   * non-regular file also leaks its handle. Found by test/fuzz/passthrough-concurrency.test.ts.
   */
  lookupExpected(parent: number, name: Buffer, expected: (e: EntryReply) => boolean): EntryReply {
    let entry: EntryReply;
    try {
      entry = this.lookup(parent, name);
    } catch (e) {
      if (e instanceof FsError && e.errno === Errno.ENOENT) throw new FsError(Errno.ESTALE, 'the name went before it was looked up');
      throw e;
    }
    if (expected(entry)) return entry;
    this.inodes.forget(entry.nodeid, 1);
    throw new FsError(Errno.ESTALE, 'the name changed before it was looked up');
  }

  /** `name` below `p`, opened O_PATH without following a final symlink or leaving `p`. */
  openChild(p: Inode, name: Buffer): number {
    const fd = sys(() => native.ptOpenat2(p.fd, name, O_PATH | O_NOFOLLOW, 0, RESOLVE, true));
    if (fd >= 0) return fd;
    // EXDEV: the name was renamed out of the parent while it resolved, so it is not there.
    if (-fd === Errno.EXDEV) throw new FsError(Errno.ENOENT, 'renamed away during lookup');
    throw new FsError(-fd, 'lookup');
  }

  private openParent(p: Inode): number {
    const fd = sys(() => native.ptOpenParentBeneath(p.fd, this.inodes.root.fd));
    if (fd < 0) throw new FsError(Errno.ENOENT, 'the parent is outside the shared directory');
    return fd;
  }
}
