/**
 * storage — blob backends (`BlobBackend`: localfs, registry, S3, proxy; early reads in front of
 * one), the chunk path (fetch, decompress, verify, cache) and image loading (bootstrap file or
 * inlined in a blob).
 * May import: base, config, format, native, oci/registry.
 */
export type { BlobBackend, BlobRange, ReadOptions } from './backend/types.js';
export { EarlyReadsBackend } from './backend/early-reads.js';
export { LocalFsBackend, type LocalFsConfig } from './backend/localfs.js';
export { decodeChunk, decodeChunkAsync, verifyChunk, describeChunk } from './chunk/decode.js';
export { loadImage, readInlinedBootstrap, type LoadedImage } from './open-image.js';
