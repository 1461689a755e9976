/**
 * transport — how FUSE requests reach the server: /dev/fuse on the host (`fusedev`), and
 * virtio-fs over vhost-user for guests. Mechanism only; all protocol policy is in `fuse`.
 * May import: base, native, fuse.
 */
export { FuseMount, type FuseMountOptions } from './fusedev/fusedev.js';
