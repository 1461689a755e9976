/**
 * transport — how FUSE requests reach the server: /dev/fuse on the host (`fusedev`), and
 * virtio-fs over vhost-user for guests (`vhost-user` rings and memory, `virtio-fs` device).
 * Mechanism only; all protocol policy is in `fuse`. May import: base, native, fuse.
 */
export { FuseMount, type FuseMountOptions } from './fusedev/fusedev.js';
export { VhostUserBackend, type VirtioDevice, type QueueHandle, type Chain } from './vhost-user/backend.js';
export { VhostListener } from './vhost-user/listener.js';
export { VirtioFsDevice, type VirtioFsDeviceOptions } from './virtio-fs/device.js';
