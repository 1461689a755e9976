/**
 * builder — sources (directories, OCI layer tars with whiteouts), merging, chunking with dedup
 * across files, layers and a chunk dictionary, blob and bootstrap writing (spec §9.2).
 * May import: base, config, format, native.
 */
export { build, type BuildOptions, type BuildResult, type BuiltBlob } from './build.js';
export { ChunkDict } from './chunk-dict.js';
