/**
 * OCI layers for tests: tar layers written from items (plain, gzip, zstd), and the reference they
 * are checked against — OCI layer application ("Applying changesets": whiteouts and opaque
 * markers hide lower content only) on a small in-memory model, written out as a directory.
 */
import { chmod, lchown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TAR_END, type TarEntry, encodeTarHeaders, tarPadding } from '../../src/format/tar.js';
import { native } from '../../src/native/index.js';
import { sh } from './env.js';

export interface Item {
  entry: TarEntry;
  data?: Buffer;
}

export function item(path: string, type: TarEntry['type'], extra: Partial<TarEntry> & { data?: Buffer | string; time?: number } = {}): Item {
  const { data, time, ...rest } = extra;
  const bytes = data === undefined ? undefined : Buffer.isBuffer(data) ? data : Buffer.from(data);
  return {
    entry: {
      path: Buffer.from(path),
      type,
      mode: type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644,
      uid: 0,
      gid: 0,
      size: type === 'file' ? (bytes?.length ?? 0) : 0,
      mtimeSec: time ?? 1_600_000_000,
      mtimeNsec: 0,
      linkpath: Buffer.alloc(0),
      devmajor: 0,
      devminor: 0,
      xattrs: [],
      ...rest,
    },
    ...(bytes !== undefined ? { data: bytes } : {}),
  };
}

export function tarBytes(items: Item[]): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, data } of items) {
    const d = data ?? Buffer.alloc(0);
    parts.push(encodeTarHeaders(entry), d, Buffer.alloc(tarPadding(d.length)));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

export type Compression = 'tar' | 'tar.gz' | 'tar.zst';

/** Writes a layer file; compressed layers go through the gzip and zstd command-line tools. */
export async function writeLayer(dir: string, name: string, items: Item[], compression: Compression): Promise<string> {
  const plain = join(dir, `${name}.tar`);
  await writeFile(plain, tarBytes(items));
  if (compression === 'tar') return plain;
  const out = join(dir, `${name}.${compression}`);
  if (compression === 'tar.gz') sh(`gzip -n -c '${plain}' > '${out}'`);
  else sh(`zstd -q -f -c '${plain}' > '${out}'`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// The reference: OCI layer application ("Applying changesets") on a small in-memory model

export interface MNode {
  kind: Exclude<TarEntry['type'], 'hardlink'>;
  entry: TarEntry;
  data?: Buffer;
  children?: Map<string, MNode>;
}

export function components(path: Buffer): string[] {
  return path.toString().split('/').filter((p) => p !== '' && p !== '.');
}

/** Applies layers bottom to top: whiteouts and opaque markers hide lower content only. */
export function referenceMerge(layers: Item[][]): MNode {
  const root: MNode = { kind: 'dir', entry: item('./', 'dir', { time: 0 }).entry, children: new Map() };
  const dirAt = (parts: string[]): MNode => {
    let n = root;
    for (const p of parts) {
      const c = n.children?.get(p);
      if (c === undefined || c.kind !== 'dir') throw new Error(`test bug: no directory /${parts.join('/')}`);
      n = c;
    }
    return n;
  };
  for (const layer of layers) {
    for (const { entry } of layer) {
      const parts = components(entry.path);
      const name = parts.pop();
      if (name === undefined) continue;
      if (name === '.wh..wh..opq') dirAt(parts).children?.clear();
      else if (name.startsWith('.wh.')) dirAt(parts).children?.delete(name.slice(4));
    }
    for (const { entry, data } of layer) {
      const parts = components(entry.path);
      if (parts.length === 0) {
        root.entry = entry;
        continue;
      }
      const name = parts.pop() as string;
      if (name.startsWith('.wh.')) continue;
      const parent = dirAt(parts).children as Map<string, MNode>;
      const existing = parent.get(name);
      if (entry.type === 'hardlink') {
        const targetParts = components(entry.linkpath);
        const target = dirAt(targetParts.slice(0, -1)).children?.get(targetParts[targetParts.length - 1] as string);
        if (target === undefined || target.kind === 'dir') throw new Error(`test bug: bad hardlink ${entry.path.toString()}`);
        parent.set(name, target);
      } else if (entry.type === 'dir' && existing?.kind === 'dir') {
        existing.entry = entry;
      } else {
        parent.set(name, { kind: entry.type, entry, ...(data ? { data } : {}), ...(entry.type === 'dir' ? { children: new Map() } : {}) });
      }
    }
  }
  return root;
}

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

/** Writes the model to `dir` (which must exist): contents, then owners, modes and xattrs, then times. */
export async function materialize(root: MNode, dir: string): Promise<void> {
  const first = new Map<MNode, string>();
  const order: Array<[MNode, string]> = [];
  const create = async (node: MNode, abs: string, isRoot: boolean): Promise<void> => {
    const seen = first.get(node);
    if (seen !== undefined) {
      await link(seen, abs);
      return;
    }
    first.set(node, abs);
    order.push([node, abs]);
    const e = node.entry;
    switch (node.kind) {
      case 'dir':
        if (!isRoot) await mkdir(abs);
        for (const [name, child] of [...(node.children ?? [])].sort(([a], [b]) => (a < b ? -1 : 1))) await create(child, join(abs, name), false);
        break;
      case 'file':
        await writeFile(abs, node.data ?? Buffer.alloc(0));
        break;
      case 'symlink':
        await symlink(e.linkpath.toString(), abs);
        break;
      case 'char':
      case 'block':
        native.mknod(abs, (node.kind === 'char' ? S_IFCHR : S_IFBLK) | e.mode, e.devmajor, e.devminor);
        break;
      case 'fifo':
        native.mknod(abs, S_IFIFO | e.mode, 0, 0);
        break;
    }
  };
  await create(root, dir, true);
  for (const [node, abs] of order) {
    const e = node.entry;
    await lchown(abs, e.uid, e.gid);
    if (node.kind !== 'symlink') await chmod(abs, e.mode);
    for (const [name, value] of e.xattrs) native.lsetxattr(abs, name, value);
  }
  for (const [node, abs] of order.reverse()) native.lutimens(abs, node.entry.mtimeSec, node.entry.mtimeNsec, node.entry.mtimeSec, node.entry.mtimeNsec);
}
