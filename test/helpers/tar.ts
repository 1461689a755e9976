/** Tar archives for tests, written as the builder's own encoder writes them. */
import { TAR_BLOCK, TAR_END, type TarEntry, encodeTarHeaders, tarPadding } from '../../src/format/tar.js';

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

/** Changes a header block in place and recomputes its checksum. */
export function patchHeader(block: Buffer, change: (b: Buffer) => void): Buffer {
  change(block);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += block[i] as number;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return block;
}

/** A PAX record "LEN KEY=VALUE\n" with LEN counting itself. */
export function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.isBuffer(value) ? value : Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** A raw header block of type `flag` (e.g. 'x', 'g', 'L') carrying `data`, then the data blocks. */
export function metaBlocks(flag: string, data: Buffer): Buffer {
  const h = encodeTarHeaders(tarEntry('././@meta', 'file', { size: data.length }));
  if (h.length !== TAR_BLOCK) throw new Error('test bug: a metadata header needs a PAX header');
  patchHeader(h, (b) => b.write(flag, 156, 'latin1'));
  return Buffer.concat([h, data, Buffer.alloc(tarPadding(data.length))]);
}

/**
 * An old GNU sparse file entry ('S', GNU tar's `oldgnu_header`): `stored` holds the bytes of
 * `runs` (offset, length) of a `realsize`-byte file; four runs sit in the header at 386, the rest
 * in extension blocks of 21 after it (the is-extended flags at 482 and 504), realsize at 483.
 */
export function oldGnuSparse(path: string, runs: Array<[number, number]>, realsize: number, stored: Buffer): Buffer {
  const octal12 = (v: number): string => v.toString(8).padStart(11, '0') + '\0';
  const put = (b: Buffer, at: number, some: Array<[number, number]>): void =>
    some.forEach(([o, l], i) => {
      b.write(octal12(o), at + 24 * i, 'latin1');
      b.write(octal12(l), at + 24 * i + 12, 'latin1');
    });
  const header = patchHeader(encodeTarHeaders(tarEntry(path, 'file', { size: stored.length })), (b) => {
    b.write('S', 156, 'latin1');
    b.write('ustar  \0', 257, 'latin1');
    b.fill(0, 345, TAR_BLOCK);
    put(b, 386, runs.slice(0, 4));
    b[482] = runs.length > 4 ? 1 : 0;
    b.write(octal12(realsize), 483, 'latin1');
  });
  const blocks = [header];
  for (let i = 4; i < runs.length; i += 21) {
    const ext = Buffer.alloc(TAR_BLOCK);
    put(ext, 0, runs.slice(i, i + 21));
    ext[504] = i + 21 < runs.length ? 1 : 0;
    blocks.push(ext);
  }
  return Buffer.concat([...blocks, stored, Buffer.alloc(tarPadding(stored.length))]);
}
