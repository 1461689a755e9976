/**
 * fs/vfs — the mount table served to one guest: a pseudo root whose directories are synthesised
 * from mount points (`/containers`, `/rafs/<cid>/lowerdir`, or a single backend on `/`), each
 * backend any `FileSystem`, mounted and unmounted while the guest runs. Node ids carry the
 * backend's slot in their high bits.
 * May import: base, fs/types (the backends are given to it, never imported).
 * Implements: ../shared/spec/virtio-fs-interop.md §2.3 (the virtio-fs root as nydusd's pseudo
 * filesystem), §2.6 (its VFS), §1.4 items 2–3 (submounts, stale mounts).
 */
export { Vfs } from './vfs.js';
export { MountError, type MountErrorKind, type MountInfo, type VfsOptions, type VfsState } from './vfs-core.js';
export { normalizeMountPath } from './pseudo.js';
export { INNER_BITS, INNER_SPAN, MAX_SLOT, nodeIdOf, splitNodeId } from './slots.js';
