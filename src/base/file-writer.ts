/**
 * Sequential writes to a file through one buffer, with every error an ordinary rejection. A
 * `fs.WriteStream` reports errors as events: unheard, an EEXIST at open or an ENOSPC mid-way ended
 * the process with a stack trace, and a writer waiting for 'drain' waited for ever.
 */
import { readSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { namingFile } from './errors.js';

const BUFFER = 1 << 20;

/**
 * Writes all of `b` (a write may take less), at `position` onwards, or at the file's current
 * position when it is undefined.
 */
export async function writeFully(fh: FileHandle, b: Uint8Array, position?: number): Promise<void> {
  for (let off = 0; off < b.length; ) off += (await fh.write(b, off, b.length - off, position === undefined ? null : position + off)).bytesWritten;
}

/**
 * Reads `length` bytes at `position` into `buf` from `at` (a read may return less); returns how
 * many it got: fewer only at the end of the file.
 */
export async function readFully(fh: FileHandle, buf: Uint8Array, at: number, length: number, position: number): Promise<number> {
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, at + got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** `readFully` on a file descriptor, synchronously. */
export function readFullySync(fd: number, buf: Uint8Array, at: number, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, at + got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

export class FileWriter {
  private readonly buf = Buffer.allocUnsafe(BUFFER);
  private used = 0;
  /** Bytes written so far (buffered ones included). */
  bytes = 0;

  private constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
  ) {}

  /** Opens `path` (`wx`: a new file; `w`: replaced). */
  static async create(path: string, flags: 'w' | 'wx' = 'wx', mode = 0o644): Promise<FileWriter> {
    return new FileWriter(await open(path, flags, mode), path);
  }

  /** Errors name the file (a write through a handle does not). */
  async write(b: Uint8Array): Promise<void> {
    if (this.used + b.length > this.buf.length) await this.flush();
    if (b.length >= this.buf.length) await this.writeOut(b);
    else {
      this.buf.set(b, this.used);
      this.used += b.length;
    }
    this.bytes += b.length;
  }

  private async flush(): Promise<void> {
    if (this.used === 0) return;
    const n = this.used;
    this.used = 0;
    await this.writeOut(this.buf.subarray(0, n));
  }

  private async writeOut(b: Uint8Array): Promise<void> {
    try {
      await writeFully(this.fh, b);
    } catch (e) {
      throw namingFile(e, this.path);
    }
  }

  /** Writes what is buffered and closes the file. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }

  /** Closes the file without writing what is buffered (after a failure; never throws). */
  async abort(): Promise<void> {
    await this.fh.close().catch(() => undefined);
  }
}
