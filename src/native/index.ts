/**
 * native — the one loader of the C++ addon, its typed interface, and the services built directly
 * on it (codecs, file operations Node lacks).
 * May import: base, format (only the pure `Codecs` interface and algorithm numbers it implements).
 */
export { POP_HEADER, PopResult, native, popSlots, readNoWait } from './addon.js';
export type { MemoryRegionSpec, MemoryTable, NativeAddon, NoWaitFile, Poller, PopSlots, Virtqueue, ZstdDecoder } from './addon.js';
export { nativeCodecs } from './codecs.js';
export { LOCK_EX, LOCK_NB, LOCK_SH, flockWait } from './flock.js';
