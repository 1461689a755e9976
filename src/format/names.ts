/**
 * Validation of names and ids read from untrusted images: a name is one path component, a blob
 * id becomes a file name in blob directories and caches.
 */
import { FormatError } from '../base/index.js';
import { Limits } from './constants.js';

/** Throws unless `name` is a valid single path component (no `/`, no NUL, not `.` or `..`). */
export function checkName(name: Uint8Array, where: string): void {
  if (name.length === 0 || name.length > Limits.MAX_NAME + 1) {
    throw new FormatError(`${where}: invalid name length ${name.length}`);
  }
  if (name.includes(0x2f) || name.includes(0)) {
    throw new FormatError(`${where}: name ${JSON.stringify(Buffer.from(name).toString('latin1'))} contains '/' or NUL`);
  }
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) {
    throw new FormatError(`${where}: '.' or '..' used as an entry name`);
  }
}

const BLOB_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

/** Blob ids name files on disk and URL path segments: allow only a safe character set. */
export function checkBlobId(id: string, where: string): string {
  if (!BLOB_ID.test(id) || id.includes('..')) {
    throw new FormatError(`${where}: invalid blob id ${JSON.stringify(id)}`);
  }
  return id;
}
