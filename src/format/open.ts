/**
 * Opening a bootstrap: detects RAFS v5 or v6 (spec §4.1) and returns the matching reader.
 */
import { ByteReader, FormatError } from '../base/index.js';
import type { RafsImage } from './image.js';
import { isV5 } from './v5/layout.js';
import { RafsV5Image } from './v5/reader.js';
import { isV6 } from './v6/layout.js';
import { RafsV6Image } from './v6/reader.js';

export function isBootstrap(bytes: Uint8Array): boolean {
  const r = new ByteReader(bytes, 'bootstrap');
  return isV5(r) || isV6(r);
}

/** Opens an untrusted bootstrap; throws a FormatError naming the first problem found. */
export function openBootstrap(bytes: Uint8Array): RafsV5Image | RafsV6Image {
  const r = new ByteReader(bytes, 'bootstrap');
  if (isV5(r)) return new RafsV5Image(bytes);
  if (isV6(r)) return new RafsV6Image(bytes);
  throw new FormatError('not a RAFS bootstrap (neither the v5 nor the v6 magic is present)');
}

export type { RafsImage };
