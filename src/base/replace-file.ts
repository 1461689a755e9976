/** Writing a file whole or not at all. */
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isSysError } from './errors.js';

/**
 * Has `write` fill a temporary file next to `path` (same directory, so same file system), then
 * renames it over `path`. If `write` fails, the temporary file is removed and `path` is left as it
 * was: a reader never finds a half-written file under the real name.
 */
export async function replaceFile<T>(path: string, write: (temp: string) => Promise<T>): Promise<T> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const result = await write(temp);
    await rename(temp, path);
    return result;
  } catch (e) {
    await rm(temp, { force: true });
    // "ENOSPC: no space left on device, write" names no file, and the temporary name means
    // nothing to the user: the error names the file being written.
    if (isSysError(e) && (e.path === undefined || e.path === temp)) e.path = path;
    throw e;
  }
}
