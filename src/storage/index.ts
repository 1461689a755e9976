/**
 * storage — blob backends (`BlobBackend`: localfs, later registry, S3, proxy), the chunk path
 * (fetch, decompress, verify, cache) and image loading (bootstrap file or inlined in a blob).
 * May import: base, config, format, native, oci/registry.
 */
export type { BlobBackend, ReadOptions } from './backend/types.js';
export { LocalFsBackend, type LocalFsConfig } from './backend/localfs.js';
export { decodeChunk, decodeChunkAsync, verifyChunk, describeChunk } from './chunk/decode.js';
export { loadImage, readInlinedBootstrap, type LoadedImage } from './open-image.js';
