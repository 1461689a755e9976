/**
 * What one RAFS v6 inode can hold of xattrs (spec §3.8): names of at most 255 bytes, values of at
 * most 65,535 (a 16-bit length; Linux allows 65,536), and an xattr area bounded by the inode's
 * 16-bit xattr_icount. Checked for every source, so that a file the format cannot express fails
 * the build with its path named, not the bootstrap writer with a RangeError.
 */
import { FormatError } from '../base/index.js';
import { Limits } from '../format/constants.js';
import type { Xattr } from '../format/image.js';
import { splitXattrName, xattrAreaSize } from '../format/v6/inode.js';

/** The xattr area of one v6 inode is bounded by its 16-bit xattr_icount. */
const MAX_XATTR_AREA = 12 + 4 * 0xfffe;

/** Throws a FormatError naming `where` if `xattrs` (names with a RAFS prefix) cannot be stored. */
export function checkXattrLimits(where: string, xattrs: readonly Xattr[]): void {
  for (const { name, value } of xattrs) {
    if (name.length > Limits.MAX_XATTR_NAME) throw new FormatError(`${where}: xattr name longer than ${Limits.MAX_XATTR_NAME} bytes`);
    if (value.length > Limits.MAX_XATTR_VALUE) throw new FormatError(`${where}: xattr ${Buffer.from(name).toString()} has a ${value.length}-byte value (RAFS stores at most ${Limits.MAX_XATTR_VALUE})`);
  }
  const area = xattrAreaSize(xattrs.map((x) => ({ suffix: (splitXattrName(x.name) as { suffix: Uint8Array }).suffix, value: x.value })));
  if (area > MAX_XATTR_AREA) throw new FormatError(`${where}: ${area} bytes of xattrs do not fit one inode (at most ${MAX_XATTR_AREA})`);
}
