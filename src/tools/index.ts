/**
 * tools — offline image operations behind `inspect`, `check` and `unpack`: walking an untrusted
 * tree, reading and verifying chunks straight from a backend, writing trees out.
 * May import: base, native, format, storage.
 */
export { checkImage, type CheckReport, type Problem } from './check.js';
export { ToolChunkReader } from './chunk-reader.js';
export { inspectImage, inspectPath, formatSummary } from './inspect.js';
export { unpackToDirectory, unpackToTar } from './unpack.js';
export { walkImage, resolvePath } from './walk.js';
export { exportBlobViews, exportBlockImage } from './export.js';
