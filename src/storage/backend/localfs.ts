/**
 * The `localfs` backend (spec §7.3, §8): blobs as files in a directory (or NAS mount), found at
 * `dir/<id>`, then in `alt_dirs`, or one `blob_file` for every id. Open files are cached.
 *
 * Large reads bypass the page cache (O_DIRECT) when the caller's allocator gives aligned buffers:
 * what is read is decompressed once and kept in the chunk cache, so a page-cache copy of the
 * compressed bytes is never read again, and filling it cost more CPU than anything else on a cold
 * sequential read (the kernel's copy out of freshly read pages: 0.34 of 1.18 s for 136 MB).
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { BackendError, NotFoundError, isSysError, readFully } from '../../base/index.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface LocalFsConfig {
  dir?: string;
  altDirs?: string[];
  blobFile?: string;
  /** Explicit files for some blob ids (an image opened from a blob with an inlined bootstrap). */
  files?: ReadonlyMap<string, string>;
  /** Open files kept at once. */
  maxOpenFiles?: number;
  /** Reads of at least this many bytes bypass the page cache where they can (default 256 KiB; 0: never). */
  directMin?: number;
}

interface OpenBlob {
  fh: FileHandle;
  size: number;
  /** The same file opened with O_DIRECT, on first use; undefined where that does not work. */
  direct?: Promise<FileHandle | undefined>;
  /** An O_DIRECT read failed: no more are tried on this file. */
  directOff?: boolean;
}

/** O_DIRECT alignment: file offsets, lengths and memory at 4096 bytes suit 512- and 4096-byte devices. */
const ALIGN = 4096;

export class LocalFsBackend implements BlobBackend {
  readonly kind = 'localfs';
  private readonly cfg: LocalFsConfig;
  private readonly handles = new Map<string, Promise<OpenBlob>>();

  constructor(cfg: LocalFsConfig) {
    if (!cfg.dir && !cfg.blobFile && (cfg.files?.size ?? 0) === 0) throw new Error('localfs needs a dir or a blob file');
    this.cfg = cfg;
  }

  private candidates(id: string): string[] {
    const explicit = this.cfg.files?.get(id);
    if (explicit !== undefined) return [explicit];
    if (this.cfg.blobFile) return [this.cfg.blobFile];
    const dirs = [this.cfg.dir, ...(this.cfg.altDirs ?? [])].filter((d): d is string => !!d);
    return dirs.map((d) => join(d, id));
  }

  private async openBlob(id: string): Promise<OpenBlob> {
    for (const path of this.candidates(id)) {
      let fh: FileHandle;
      try {
        fh = await open(path, 'r');
      } catch (e) {
        if (isSysError(e, 'ENOENT')) continue;
        throw new BackendError(`localfs: cannot open blob ${id}: ${(e as Error).message}`, { cause: e });
      }
      const { size } = await fh.stat();
      if (size === 0 && this.candidates(id).length > 1) {
        await fh.close(); // an empty file in `dir` defers to `alt_dirs`, as in nydus
        continue;
      }
      return { fh, size };
    }
    throw new NotFoundError(`blob ${id} not found (looked in ${this.candidates(id).join(', ')})`);
  }

  private handle(id: string): Promise<OpenBlob> {
    let h = this.handles.get(id);
    if (h === undefined) {
      h = this.openBlob(id);
      h.catch(() => this.handles.delete(id));
      const max = this.cfg.maxOpenFiles ?? 256;
      if (this.handles.size >= max) {
        const [oldId, old] = this.handles.entries().next().value as [string, Promise<OpenBlob>];
        this.handles.delete(oldId);
        void old.then(closeBlob).catch(() => undefined);
      }
      this.handles.set(id, h);
    }
    return h;
  }

  /** Opens the blobs' files (and their O_DIRECT handles) ahead of the first reads. */
  async prepare(ids: string[]): Promise<Array<{ id: string; err: string }>> {
    const failed: Array<{ id: string; err: string }> = [];
    await Promise.all(
      ids.map(async (id) => {
        try {
          const blob = await this.handle(id);
          if (blob.size >= (this.cfg.directMin ?? 256 << 10)) await this.directHandle(blob);
        } catch (e) {
          failed.push({ id, err: (e as Error).message });
        }
      }),
    );
    return failed;
  }

  async size(id: string): Promise<number> {
    return (await this.handle(id)).size;
  }

  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    const blob = await this.handle(id);
    const { fh, size } = blob;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new BackendError(`localfs: range ${offset}+${length} lies outside blob ${id} (${size} bytes)`);
    }
    const min = this.cfg.directMin ?? 256 << 10;
    if (opts?.allocate !== undefined && min > 0 && length >= min) {
      const direct = await this.readDirect(blob, id, offset, length, opts.allocate);
      if (direct !== undefined) return direct;
    }
    const buf = opts?.allocate?.(length) ?? Buffer.allocUnsafe(length);
    await readAll(fh, buf, 0, length, offset, id);
    return buf;
  }

  /**
   * Reads the aligned range around [offset, offset + length) with O_DIRECT into one buffer from
   * `allocate` and returns the wanted part of it; undefined when the file or the buffer does not
   * allow it (then O_DIRECT is not tried again on this file).
   */
  private async readDirect(blob: OpenBlob, id: string, offset: number, length: number, allocate: (n: number) => Buffer): Promise<Buffer | undefined> {
    if (blob.directOff) return undefined;
    const dfh = await this.directHandle(blob);
    if (dfh === undefined) return undefined;
    const start = offset - (offset % ALIGN);
    const end = Math.ceil((offset + length) / ALIGN) * ALIGN;
    const buf = allocate(end - start);
    const need = offset + length - start;
    let got = 0;
    try {
      // Past the end of the file a direct read is short; a short read elsewhere ends on a block boundary.
      while (got < need) {
        const { bytesRead } = await dfh.read(buf, got, end - start - got, start + got);
        got += bytesRead;
        if (bytesRead === 0 || bytesRead % ALIGN !== 0) break;
      }
    } catch {
      // EINVAL: unaligned memory, or a file system that refuses O_DIRECT reads; whatever the error,
      // the buffered read tells a real one apart (it fails too) from one O_DIRECT alone has.
      blob.directOff = true;
      return undefined;
    }
    if (got < need) await readAll(blob.fh, buf, got, need - got, start + got, id); // the rest through the page cache
    return buf.subarray(offset - start, offset - start + length);
  }

  private directHandle(blob: OpenBlob): Promise<FileHandle | undefined> {
    // The open file itself reopened, not its path: the same inode whatever happened to the name.
    blob.direct ??= open(`/proc/self/fd/${blob.fh.fd}`, constants.O_RDONLY | constants.O_DIRECT).catch(() => undefined);
    return blob.direct;
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((h) => h.then(closeBlob).catch(() => undefined)));
  }
}

async function closeBlob(b: OpenBlob): Promise<void> {
  const direct = await b.direct;
  await Promise.all([b.fh.close(), direct?.close()]);
}

/** Reads exactly `length` bytes at `position` into `buf` from `at`; a short file is a BackendError. */
async function readAll(fh: FileHandle, buf: Buffer, at: number, length: number, position: number, id: string): Promise<void> {
  const got = await readFully(fh, buf, at, length, position);
  if (got < length) throw new BackendError(`localfs: short read of blob ${id} at ${position + got}`);
}
