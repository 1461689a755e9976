/**
 * base — the bottom layer: errors with stable codes, byte cursors, small utilities.
 * May import: nothing of Damselfly (Node built-ins only).
 */
export * from './errors.js';
export * from './bytes.js';
export * from './log.js';
export * from './metrics.js';
export * from './iovec.js';
export * from './promise.js';
export * from './file-writer.js';
export * from './buffer-pool.js';
export * from './quiet-timer.js';
export * from './replace-file.js';
export * from './gc.js';
export * from './file-digest.js';
export * from './read-file.js';
