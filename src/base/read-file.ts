/**
 * Reading a whole file named by someone else (a mount request's bootstrap, a configuration's CA
 * file): only a regular file, and only up to a size. `readFile` would wait for ever on a FIFO with
 * no writer (holding a thread-pool thread, or the event loop when synchronous) and read
 * /dev/zero until memory runs out. Opened with O_NONBLOCK, which a regular file ignores and which
 * keeps the open of a FIFO or a device from blocking, so that fstat can refuse it.
 */
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { UsageError } from './errors.js';
import { readFully, readFullySync } from './file-writer.js';

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

function check(what: string, st: { isFile(): boolean; size: number }, maxBytes: number): void {
  if (!st.isFile()) throw new UsageError(`${what}: not a regular file`);
  if (st.size > maxBytes) throw new UsageError(`${what}: ${st.size} bytes, more than the ${maxBytes} allowed`);
}

/** The file's bytes, as many as fstat gave its size (a file cut meanwhile: what is left). */
export async function readRegularFile(path: string, maxBytes: number, what = path): Promise<Buffer> {
  const fh = await open(path, FLAGS);
  try {
    const st = await fh.stat();
    check(what, st, maxBytes);
    const out = Buffer.allocUnsafe(st.size);
    return out.subarray(0, await readFully(fh, out, 0, out.length, 0));
  } finally {
    await fh.close();
  }
}

/** `readRegularFile`, synchronous: for small files read at start-up (a CA file, a configuration). */
export function readRegularFileSync(path: string, maxBytes: number, what = path): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    const st = fstatSync(fd);
    check(what, st, maxBytes);
    const out = Buffer.allocUnsafe(st.size);
    return out.subarray(0, readFullySync(fd, out, 0, out.length, 0));
  } finally {
    closeSync(fd);
  }
}
