/**
 * POSIX ACLs in their xattr form (`system.posix_acl_access` / `_default`, linux/posix_acl_xattr.h):
 * version 2, then per entry tag u16, perm u16, id u32, little-endian, sorted by tag and id.
 */
export const AclTag = { USER_OBJ: 0x01, USER: 0x02, GROUP_OBJ: 0x04, GROUP: 0x08, MASK: 0x10, OTHER: 0x20 } as const;

/** One entry: [tag, perm (rwx bits), id for USER and GROUP entries]. */
export type AclEntry = readonly [number, number, number?];

export function aclXattr(...entries: AclEntry[]): Buffer {
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    out.writeUInt16LE(tag, 4 + 8 * i);
    out.writeUInt16LE(perm, 6 + 8 * i);
    out.writeUInt32LE(id ?? 0xffff_ffff, 8 + 8 * i);
  });
  return out;
}
