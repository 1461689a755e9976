/** Tar archives for tests, written as the builder's own encoder writes them. */
import { TAR_END, type TarEntry, encodeTarHeaders, tarPadding } from '../../src/format/tar.js';

/** An entry with everyday defaults (root-owned, mode 0755 for a directory and 0644 otherwise). */
export function tarEntry(path: string | Buffer, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return {
    path: Buffer.isBuffer(path) ? path : Buffer.from(path),
    type,
    mode: type === 'dir' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtimeSec: 1_600_000_000,
    mtimeNsec: 0,
    linkpath: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    ...extra,
  };
}

/** A whole archive from entries and file contents, with the end marker. */
export function tarArchive(items: Array<{ entry: TarEntry; data?: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const { entry: e, data } of items) {
    const d = data ?? Buffer.alloc(0);
    if ((e.type === 'file' ? e.size : 0) !== d.length) throw new Error(`test bug: ${e.path.toString()} has size ${e.size} and ${d.length} bytes of data`);
    parts.push(encodeTarHeaders(e), d, Buffer.alloc(tarPadding(d.length)));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}
