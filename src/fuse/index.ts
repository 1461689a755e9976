/**
 * fuse — the FUSE protocol (fuse_kernel.h 7.38): ABI tables, a codec that never trusts a
 * length, and the server that dispatches requests to a `FileSystem`. Transport-agnostic: the
 * /dev/fuse and virtio-fs transports feed it request bytes and a `ReplyChannel`.
 * May import: base, fs/types.
 */
export * from './abi.js';
export { FuseServer, errnoOf, type FuseServerOptions, type SessionState } from './server/server.js';
export type { ReplyChannel } from './server/context.js';
export { decodeRequest, encodeOutHeader, inPlaceDataAt, type InHeader } from './codec/header.js';
