/**
 * The `localfs` backend (spec §7.3, §8): blobs as files in a directory (or NAS mount), found at
 * `dir/<id>`, then in `alt_dirs`, or one `blob_file` for every id. Open files are cached.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { join } from 'node:path';
import { BackendError, NotFoundError, isSysError } from '../../base/index.js';
import type { BlobBackend, ReadOptions } from './types.js';

export interface LocalFsConfig {
  dir?: string;
  altDirs?: string[];
  blobFile?: string;
  /** Explicit files for some blob ids (an image opened from a blob with an inlined bootstrap). */
  files?: ReadonlyMap<string, string>;
  /** Open files kept at once. */
  maxOpenFiles?: number;
}

export class LocalFsBackend implements BlobBackend {
  readonly kind = 'localfs';
  private readonly cfg: LocalFsConfig;
  private readonly handles = new Map<string, Promise<{ fh: FileHandle; size: number }>>();

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

  private async openBlob(id: string): Promise<{ fh: FileHandle; size: number }> {
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

  private handle(id: string): Promise<{ fh: FileHandle; size: number }> {
    let h = this.handles.get(id);
    if (h === undefined) {
      h = this.openBlob(id);
      h.catch(() => this.handles.delete(id));
      const max = this.cfg.maxOpenFiles ?? 256;
      if (this.handles.size >= max) {
        const [oldId, old] = this.handles.entries().next().value as [string, Promise<{ fh: FileHandle }>];
        this.handles.delete(oldId);
        void old.then((o) => o.fh.close()).catch(() => undefined);
      }
      this.handles.set(id, h);
    }
    return h;
  }

  async size(id: string): Promise<number> {
    return (await this.handle(id)).size;
  }

  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    const { fh, size } = await this.handle(id);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
      throw new BackendError(`localfs: range ${offset}+${length} lies outside blob ${id} (${size} bytes)`);
    }
    const buf = opts?.allocate?.(length) ?? Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw new BackendError(`localfs: short read of blob ${id} at ${offset + got}`);
      got += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    const all = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(all.map((h) => h.then((o) => o.fh.close()).catch(() => undefined)));
  }
}
