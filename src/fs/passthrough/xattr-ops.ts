/**
 * Extended attributes of the passthrough filesystem, on the node's O_PATH fd through
 * /proc/self/fd/N (native/src/passthrough_xattr.cc): trusted.* (overlayfs upper layers) needs
 * CAP_SYS_ADMIN, which the daemon has as root; security.capability passes through. POSIX ACL names
 * are hidden unless ACLs were negotiated, which this filesystem never asks for (as virtiofsd).
 * With xattrs off, every call answers ENOSYS so the kernel stops asking. With an xattr map
 * (`--xattrmap`), the guest's names are mapped to the host's and back (xattr-map.ts); the ACL
 * names are refused and hidden as the guest names them.
 */
import { native } from '../../native/index.js';
import { Errno, FsError } from '../types.js';
import { sys } from './common.js';
import type { Core } from './core.js';

const ACL_NAMES = [Buffer.from('system.posix_acl_access'), Buffer.from('system.posix_acl_default')];

function enabled(core: Core): void {
  if (!core.opts.xattr) throw new FsError(Errno.ENOSYS, 'xattrs are off');
}

function blocked(name: Uint8Array): boolean {
  return ACL_NAMES.some((acl) => Buffer.compare(acl, name) === 0);
}

/** The host's name for a name the guest gives. */
function checked(core: Core, name: Uint8Array): Buffer {
  if (blocked(name)) throw new FsError(Errno.EOPNOTSUPP, 'POSIX ACLs are not served');
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
      if (name !== undefined && !blocked(name)) names.push(name);
    }
    start = i + 1;
  }
  return names;
}

/** SETXATTR; flags XATTR_CREATE (1) and XATTR_REPLACE (2) as the guest gave them. */
export function setxattr(core: Core, nodeid: number, name: Uint8Array, value: Uint8Array, flags: number): void {
  enabled(core);
  const n = core.inodes.get(nodeid);
  const key = checked(core, name);
  sys(() => native.ptSetxattr(n.fd, key, value, flags));
}

export function removexattr(core: Core, nodeid: number, name: Uint8Array): void {
  enabled(core);
  const n = core.inodes.get(nodeid);
  const key = checked(core, name);
  sys(() => native.ptRemovexattr(n.fd, key));
}
