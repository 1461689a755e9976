/**
 * format — RAFS v5/v6 bootstraps, data blob layout, blob meta, ToC, digests, compression
 * numbers and the tar codec of OCI layers (../shared/spec/rafs-format.md §1–6). Pure: bytes in,
 * bytes out; codecs are injected (`Codecs`). May import: base.
 */
export * from './chunk-info.js';
export * from './compression.js';
export * from './constants.js';
export * from './digest.js';
export * from './image.js';
export * from './open.js';
export * from './prefetch.js';
export { RafsV5Image } from './v5/reader.js';
export { RafsV6Image } from './v6/reader.js';
export { writeV6Bootstrap, type BootstrapNode, type BootstrapSpec } from './v6/writer.js';
