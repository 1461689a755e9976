/**
 * `unpack`: writes an image's tree to a directory (content, type, mode, owner, mtime with
 * nanoseconds, xattrs, hardlinks, device numbers) or to a tar archive.
 */
import { chmodSync, closeSync, ftruncateSync, lchownSync, linkSync, mkdirSync, openSync, rmSync, symlinkSync, writeSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { FileWriter, FormatError, type Logger, UsageError, bytesEqual, isSysError, namingFile } from '../base/index.js';
import { ChunkFlag, S_IFBLK, S_IFCHR, S_IFIFO, S_IFSOCK, decodeDev } from '../format/constants.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import { zerosDigest } from '../format/digest.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import { TAR_BLOCK, TAR_END, type TarEntry, encodeSparseTarHeaders, encodeTarHeaders, sparseDataBytes, tarPadding } from '../format/tar.js';
import { native } from '../native/index.js';
import type { ToolChunkReader } from './chunk-reader.js';
import { type WalkItem, walkImage } from './walk.js';

const ZEROS = Buffer.alloc(1 << 16);

function isZero(data: Uint8Array): boolean {
  for (let off = 0; off < data.length; off += ZEROS.length) {
    const n = Math.min(ZEROS.length, data.length - off);
    if (Buffer.compare(data.subarray(off, off + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

function hostPath(root: Buffer, components: Uint8Array[]): Buffer {
  return Buffer.concat([root, ...components.flatMap((c) => [Buffer.from('/'), Buffer.from(c)])]);
}

async function ensureEmptyDir(dir: string): Promise<void> {
  try {
    const names = await readdir(dir);
    if (names.length > 0) throw new UsageError(`output directory ${dir} is not empty`);
  } catch (e) {
    if (!isSysError(e, 'ENOENT')) throw e;
    await mkdir(dir, { recursive: true });
  }
}

/**
 * Owner, xattrs, mode and mtime of one unpacked entry. The file system calls of `unpack` are
 * synchronous: a few microseconds each, where a promise through the thread pool cost several
 * times that (five round trips a file: a directory of 200,000 empty files unpacked in 43-45 s,
 * now 7-10 s; the 165 MB Debian tree of cold-start.sh in 3.2-3.3 s, now 1.9 s).
 */
function setMetadata(path: Buffer, item: WalkItem, image: RafsImage, log: Logger): void {
  const { attr } = item;
  // Owner first: chown clears security.capability and the setuid/setgid bits. Only root can give
  // files away: anyone else keeps them, as tar does for a user (--no-same-owner).
  if (process.geteuid?.() === 0) lchownSync(path, attr.uid, attr.gid);
  for (const x of attr.hasXattrs ? image.xattrs(attr.ino) : []) {
    try {
      native.lsetxattr(path, Buffer.from(x.name), Buffer.from(x.value));
    } catch (e) {
      log.warn({ path: item.path, xattr: Buffer.from(x.name).toString(), err: (e as Error).message }, 'cannot set xattr');
    }
  }
  if (attr.kind !== 'symlink') chmodSync(path, attr.mode & 0o7777);
  native.lutimens(path, attr.mtimeSec, attr.mtimeNsec, attr.mtimeSec, attr.mtimeNsec);
}

function writeFullySync(fd: number, b: Uint8Array, position: number): void {
  for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off, position + off);
}

/**
 * Whether an inode may have more names in the tree, each after the first written as a hard link to
 * it: any kind but a directory (a build links what its source linked); regular files whatever
 * their nlink says, as unpack always had it.
 */
function mayBeLinked(attr: { kind: string; nlink: number }): boolean {
  return attr.kind !== 'dir' && (attr.kind === 'file' || attr.nlink > 1);
}

export async function unpackToDirectory(image: RafsImage, reader: ToolChunkReader, out: string, log: Logger): Promise<{ files: number; bytes: number }> {
  await ensureEmptyDir(out);
  const root = Buffer.from(out);
  const firstLink = new Map<number, Buffer>();
  const dirs: Array<{ path: Buffer; item: WalkItem }> = [];
  let files = 0;
  let bytes = 0;
  for (const item of walkImage(image)) {
    const path = hostPath(root, item.components);
    const { attr } = item;
    if (item.entry === undefined) {
      dirs.push({ path, item });
      continue;
    }
    if (mayBeLinked(attr)) {
      const first = firstLink.get(attr.ino);
      if (first !== undefined) {
        linkSync(first, path);
        continue;
      }
      firstLink.set(attr.ino, path);
    }
    switch (attr.kind) {
      case 'dir':
        mkdirSync(path, { mode: 0o700 });
        dirs.push({ path, item });
        continue;
      case 'file': {
        const fd = openSync(path, 'wx', 0o600);
        try {
          for await (const { offset, data } of reader.readFile(attr.ino)) {
            // Zero chunks stay holes (the final truncate sizes the file), as in a sparse source.
            // All of it: a write cut short by a full disk must not pass (the truncate below would
            // then fill the rest with zeros).
            if (!isZero(data)) writeFullySync(fd, data, offset);
            bytes += data.length;
          }
          ftruncateSync(fd, attr.size);
        } catch (e) {
          // A chunk that cannot be read (or fails its digest), a full disk: no file with a hole
          // in its place, and the error names it.
          try {
            closeSync(fd);
          } catch {
            // the error below is the one to report
          }
          rmSync(path, { force: true });
          throw namingFile(e, path);
        }
        closeSync(fd);
        files++;
        break;
      }
      case 'symlink':
        symlinkSync(Buffer.from(image.readlink(attr.ino)), path);
        break;
      case 'char':
      case 'block': {
        const { major, minor } = decodeDev(attr.rdev);
        native.mknod(path, (attr.kind === 'char' ? S_IFCHR : S_IFBLK) | 0o600, major, minor);
        break;
      }
      case 'fifo':
        native.mknod(path, S_IFIFO | 0o600, 0, 0);
        break;
      case 'socket':
        native.mknod(path, S_IFSOCK | 0o600, 0, 0);
        break;
    }
    setMetadata(path, item, image, log);
  }
  // Directories last, deepest first, so that creating their entries does not move their mtimes.
  for (let i = dirs.length - 1; i >= 0; i--) {
    const d = dirs[i] as { path: Buffer; item: WalkItem };
    setMetadata(d.path, d.item, image, log);
  }
  return { files, bytes };
}

/**
 * Which chunks of an image are all zeros, known from their digests without reading them (a chunk
 * checked only by CRC-32C is never taken for one: a CRC does not say what the bytes are).
 */
class ZeroChunks {
  constructor(private readonly image: RafsImage) {}

  has(c: ChunkInfo): boolean {
    if ((c.flags & ChunkFlag.HAS_CRC32) !== 0) return false;
    return bytesEqual(zerosDigest((this.image.blobs[c.blobIndex] as BlobInfo).digester, c.uncompressedSize), c.digest);
  }

  /**
   * A file's data runs (offset, length pairs): its chunks but those of zeros, adjacent ones joined;
   * undefined when it has no hole, neither a chunk of zeros nor a gap between chunks, or when a
   * run but the last is not whole tar blocks (`encodeSparseTarHeaders`: chunks are 4 KiB and more,
   * so only an odd bootstrap has such runs, and its file is written out whole).
   */
  runs(ino: number, size: number): number[] | undefined {
    const runs: number[] = [];
    let holes = false;
    let end = 0;
    for (const c of this.image.fileChunks(ino)) {
      if (c.fileOffset > end) holes = true;
      end = Math.max(end, c.fileOffset + c.uncompressedSize);
      if (this.has(c)) {
        holes = true;
        continue;
      }
      const last = runs.length - 2;
      if (last >= 0 && (runs[last] as number) + (runs[last + 1] as number) === c.fileOffset) runs[last + 1] = (runs[last + 1] as number) + c.uncompressedSize;
      else runs.push(c.fileOffset, c.uncompressedSize);
    }
    for (let i = 1; i < runs.length - 1; i += 2) if ((runs[i] as number) % TAR_BLOCK !== 0) return undefined;
    return holes || end < size ? runs : undefined;
  }
}

export interface UnpackTarOptions {
  /**
   * Files with holes (chunks of zeros, gaps) as GNU tar's `--sparse` writes them (PAX 1.0): the
   * archive holds their data alone. Without it their holes are written out as zeros.
   */
  sparse?: boolean;
}

export async function unpackToTar(image: RafsImage, reader: ToolChunkReader, out: string, log: Logger, opts: UnpackTarOptions = {}): Promise<{ files: number; bytes: number }> {
  const file = await FileWriter.create(out, 'wx');
  const write = (b: Uint8Array): Promise<void> => file.write(b);
  const zeros = Buffer.alloc(1 << 20);
  const writeZeros = async (n: number): Promise<number> => {
    for (let left = n; left > 0; left -= zeros.length) await write(left >= zeros.length ? zeros : zeros.subarray(0, left));
    return n;
  };
  const firstLink = new Map<number, Buffer>();
  const zeroChunks = opts.sparse === true ? new ZeroChunks(image) : undefined;
  let files = 0;
  let bytes = 0;
  try {
    for (const item of walkImage(image, { order: 'tar' })) {
      const { attr } = item;
      const rel = Buffer.from(item.components.length === 0 ? '.' : item.components.map((c) => Buffer.from(c).toString('latin1')).join('/'), 'latin1');
      const base: TarEntry = {
        path: attr.kind === 'dir' ? Buffer.concat([rel, Buffer.from('/')]) : rel,
        type: 'file',
        mode: attr.mode & 0o7777,
        uid: attr.uid,
        gid: attr.gid,
        size: 0,
        mtimeSec: attr.mtimeSec,
        mtimeNsec: attr.mtimeNsec,
        linkpath: Buffer.alloc(0),
        devmajor: 0,
        devminor: 0,
        xattrs: attr.hasXattrs ? image.xattrs(attr.ino).map((x) => [Buffer.from(x.name), Buffer.from(x.value)]) : [],
      };
      // (Not to a socket, which the archive leaves out.)
      if (mayBeLinked(attr) && attr.kind !== 'socket') {
        const first = firstLink.get(attr.ino);
        if (first !== undefined) {
          await write(encodeTarHeaders({ ...base, type: 'hardlink', linkpath: first }));
          continue;
        }
        firstLink.set(attr.ino, rel);
      }
      switch (attr.kind) {
        case 'dir':
          await write(encodeTarHeaders({ ...base, type: 'dir' }));
          break;
        case 'file': {
          // With --sparse a file with holes is its data alone, placed by the map in its header;
          // otherwise all of it, holes written as zeros.
          const runs = zeroChunks?.runs(attr.ino, attr.size);
          const skip = runs === undefined ? undefined : (c: ChunkInfo): boolean => zeroChunks?.has(c) === true;
          await write(runs === undefined ? encodeTarHeaders({ ...base, size: attr.size }) : encodeSparseTarHeaders({ ...base, size: attr.size }, runs));
          let stored = 0;
          let pos = 0;
          for await (const { offset, data } of reader.readFile(attr.ino, skip)) {
            // The archive is framed by the header's size: a byte past it would be read as the
            // next header (the readers check this already; this keeps the frame whatever comes).
            if (offset < pos || offset + data.length > attr.size) throw new FormatError(`${rel.toString('latin1')}: data at ${offset}+${data.length} outside the file's ${attr.size} bytes`);
            if (runs === undefined && offset > pos) stored += await writeZeros(offset - pos);
            await write(data);
            stored += data.length;
            pos = offset + data.length;
          }
          if (runs === undefined && attr.size > pos) stored += await writeZeros(attr.size - pos);
          const framed = runs === undefined ? attr.size : sparseDataBytes(runs);
          if (stored !== framed) throw new FormatError(`${rel.toString('latin1')}: ${stored} bytes of data where its header has ${framed}`);
          await write(Buffer.alloc(tarPadding(stored)));
          bytes += attr.size;
          files++;
          break;
        }
        case 'symlink':
          await write(encodeTarHeaders({ ...base, type: 'symlink', linkpath: Buffer.from(image.readlink(attr.ino)) }));
          break;
        case 'char':
        case 'block': {
          const { major, minor } = decodeDev(attr.rdev);
          await write(encodeTarHeaders({ ...base, type: attr.kind, devmajor: major, devminor: minor }));
          break;
        }
        case 'fifo':
          await write(encodeTarHeaders({ ...base, type: 'fifo' }));
          break;
        case 'socket':
          log.warn({ path: item.path }, 'tar cannot hold a socket; skipped');
          break;
      }
    }
    await write(TAR_END);
  } catch (e) {
    // The archive is ours ('wx'): no truncated one is left behind.
    await file.abort();
    await rm(out, { force: true });
    throw e;
  }
  await file.close();
  return { files, bytes };
}
