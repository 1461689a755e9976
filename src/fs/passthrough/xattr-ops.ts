/**
 * Extended attributes of the passthrough filesystem, on the node's O_PATH fd through
 * /proc/self/fd/N (native/src/passthrough_xattr.cc): trusted.* (overlayfs upper layers) needs
 * CAP_SYS_ADMIN, which the daemon has as root; security.capability passes through. POSIX ACL names
 * are refused and hidden unless ACLs were asked for and agreed (`posixAcl`, as virtiofsd); then
 * they pass through and the host applies them (and rewrites the mode's group bits, as a local
 * setfacl does), while the guest's kernel enforces them. With xattrs off, every call answers
 * ENOSYS so the kernel stops asking. With an xattr map (`--xattrmap`), the guest's names are
 * mapped to the host's and back (xattr-map.ts); without ACLs, the ACL names are refused and
 * hidden as the guest names them. New nodes get their security label here too (`labelNew`).
 */
import { closeSync } from 'node:fs';
import { native } from '../../native/index.js';
import { Errno, FsError, type RequestContext } from '../types.js';
import { FUSE_SETXATTR_ACL_KILL_SGID, S_ISGID, sys } from './common.js';
import type { Core } from './core.js';
import { type Inode, statFd } from './inodes.js';

const ACL_ACCESS = Buffer.from('system.posix_acl_access');
const ACL_NAMES = [ACL_ACCESS, Buffer.from('system.posix_acl_default')];

function enabled(core: Core): void {
  if (!core.opts.xattr) throw new FsError(Errno.ENOSYS, 'xattrs are off');
}

function blocked(core: Core, name: Uint8Array): boolean {
  return !core.posixAcl && ACL_NAMES.some((acl) => Buffer.compare(acl, name) === 0);
}

/** The host's name for a name the guest gives. */
function checked(core: Core, name: Uint8Array): Buffer {
  if (blocked(core, name)) throw new FsError(Errno.EOPNOTSUPP, 'POSIX ACLs are not served');
  return core.opts.xattrmap?.toHost(name) ?? Buffer.from(name.buffer, name.byteOffset, name.byteLength);
}

export function getxattr(core: Core, nodeid: number, name: Uint8Array): Uint8Array {
  enabled(core);
  const n = core.inodes.get(nodeid);
  const key = checked(core, name);
  const r = sys(() => native.ptGetxattr(n.fd, key, true));
  if (typeof r === 'number') throw new FsError(-r, 'no such attribute');
  return r;
}

export function listxattr(core: Core, nodeid: number): Uint8Array[] {
  enabled(core);
  const list = sys(() => native.ptListxattr(core.inodes.get(nodeid).fd));
  const map = core.opts.xattrmap;
  const names: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] !== 0) continue;
    if (i > start) {
      const host = list.subarray(start, i);
      const name = map === undefined ? host : map.toGuest(host);
      if (name !== undefined && !blocked(core, name)) names.push(name);
    }
    start = i + 1;
  }
  return names;
}

/**
 * SETXATTR; flags XATTR_CREATE (1) and XATTR_REPLACE (2) as the guest gave them. An access ACL
 * flagged FUSE_SETXATTR_ACL_KILL_SGID (the caller is outside the file's group and lacks
 * CAP_FSETID) also clears setgid, which the host, for the daemon that has CAP_FSETID, keeps.
 */
export function setxattr(core: Core, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number, setxattrFlags: number): void {
  enabled(core);
  const n = core.inodes.get(nodeid);
  const key = checked(core, name);
  sys(() => native.ptSetxattr(n.fd, key, value, flags));
  if (core.posixAcl && (setxattrFlags & FUSE_SETXATTR_ACL_KILL_SGID) !== 0 && Buffer.compare(name, ACL_ACCESS) === 0) {
    const mode = statFd(n.fd).mode;
    if ((mode & S_ISGID) !== 0) sys(() => native.ptChmod(n.fd, mode & 0o7777 & ~S_ISGID));
  }
}

export function removexattr(core: Core, nodeid: number, name: Uint8Array): void {
  enabled(core);
  const n = core.inodes.get(nodeid);
  const key = checked(core, name);
  sys(() => native.ptRemovexattr(n.fd, key));
}

/**
 * Labels a node just made (virtiofsd --security-label): the security context the creating
 * request carried is set on it, the xattr it names mapped as any other. `node` is the node's open
 * fd (CREATE, TMPFILE), else `name` below `parent` is opened (O_PATH, not following a symlink).
 * When it cannot be labelled, the name is removed again (`unlinkFlags`: AT_REMOVEDIR for a
 * directory) and the error thrown: the guest never gets an unlabelled node.
 */
export function labelNew(core: Core, ctx: RequestContext, parent: Inode, name: Buffer | undefined, unlinkFlags: number, node?: number): void {
  const sc = ctx.securityContext;
  if (sc === undefined || !core.securityLabel) return;
  try {
    const key = checked(core, sc.name);
    if (node !== undefined) return sys(() => native.ptSetxattr(node, key, sc.value, 0));
    const fd = core.openChild(parent, name as Buffer);
    try {
      sys(() => native.ptSetxattr(fd, key, sc.value, 0));
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if (name !== undefined) {
      try {
        native.ptUnlinkat(parent.fd, name, unlinkFlags);
      } catch {
        // Already gone (the guest raced us): nothing to undo.
      }
    }
    throw e;
  }
}
