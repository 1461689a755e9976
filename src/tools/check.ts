/**
 * `check`: verifies every structure of an image and every chunk digest. Problems are collected
 * (up to a limit) with the file, blob and chunk they concern, instead of stopping at the first.
 */
import { createHash } from 'node:crypto';
import { ByteReader, type Logger, bytesEqual, compareBytes, toHex } from '../base/index.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import type { Codecs } from '../format/compression.js';
import { BlobFeature } from '../format/constants.js';
import { createHasher, sha256 } from '../format/digest.js';
import { type BlobInfo, type InodeAttr, type RafsImage, pathToString } from '../format/image.js';
import { BLOB_META_HEADER_SIZE, type BlobChunkEntry, CiFlag, decodeCiArray } from '../format/blob/meta.js';
import { type ParsedToc, TocEntryName, parseTocFromTail } from '../format/blob/toc.js';
import { TAR_HEADER_SIZE } from '../format/blob/tar-header.js';
import { RafsV5Image } from '../format/v5/reader.js';
import { RafsV6Image } from '../format/v6/reader.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { loadBlobMeta, metaBlobId, metaHeaderAgrees, openStoredBlobMeta } from '../storage/blob-meta.js';
import { ToolChunkReader, WINDOW_BYTES } from './chunk-reader.js';
import { type WalkItem, walkImage } from './walk.js';

export interface Problem {
  path?: string;
  blob?: string;
  chunk?: number;
  message: string;
}

export interface CheckReport {
  ok: boolean;
  problems: Problem[];
  /** More problems were found than reported. */
  truncated: boolean;
  inodes: number;
  files: number;
  blobs: number;
  chunksVerified: number;
  bytesVerified: number;
}

interface ChunkUse {
  chunk: ChunkInfo;
  path: string;
  position: number;
}

export interface CheckOptions {
  codecs: Codecs;
  log: Logger;
  /** Blob ids read from explicit files (inlined bootstraps); their ids are not content hashes. */
  blobFiles?: ReadonlyMap<string, string>;
  maxProblems?: number;
  onProgress?: (done: number, total: number) => void;
}

class Problems {
  readonly list: Problem[] = [];
  truncated = false;
  constructor(private readonly max: number) {}
  add(p: Problem): void {
    if (this.list.length < this.max) this.list.push(p);
    else this.truncated = true;
  }
}

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export async function checkImage(image: RafsImage, backend: BlobBackend, opts: CheckOptions): Promise<CheckReport> {
  const problems = new Problems(opts.maxProblems ?? 50);
  try {
    await loadBlobMeta(image, backend, opts.codecs, { log: opts.log });
  } catch (e) {
    problems.add({ message: `the chunks of batch blobs cannot be located: ${msg(e)}` });
  }
  const reader = new ToolChunkReader(image, backend, opts.codecs);
  const items: WalkItem[] = [];
  const uses = new Map<string, ChunkUse>();
  const links = new Map<number, number>();
  const dirInos = new Map<string, number>();
  let files = 0;

  // 1. The tree: every inode, entry, xattr, symlink and chunk list.
  try {
    for (const item of walkImage(image)) {
      items.push(item);
      const { attr, path } = item;
      try {
        if (attr.hasXattrs) image.xattrs(attr.ino);
        if (attr.kind === 'symlink') image.readlink(attr.ino);
        if (attr.kind === 'dir') {
          dirInos.set(path, attr.ino);
          const parentPath = pathToString(item.components.slice(0, -1));
          checkDirectory(image, attr.ino, dirInos.get(parentPath) ?? attr.ino, path, problems);
        }
        if (attr.kind === 'file') {
          links.set(attr.ino, (links.get(attr.ino) ?? 0) + 1);
          if ((links.get(attr.ino) as number) > 1) continue;
          files++;
          image.fileChunks(attr.ino).forEach((chunk, position) => {
            const key = `${chunk.blobIndex}:${chunk.index}`;
            if (!uses.has(key)) uses.set(key, { chunk, path, position });
          });
        }
      } catch (e) {
        problems.add({ path, message: msg(e) });
      }
    }
  } catch (e) {
    problems.add({ message: `tree walk stopped: ${msg(e)}` });
  }
  for (const item of items) {
    const n = links.get(item.attr.ino);
    if (item.attr.kind === 'file' && n !== undefined && n !== item.attr.nlink) {
      problems.add({ path: item.path, message: `nlink is ${item.attr.nlink} but ${n} entries link the inode` });
      links.delete(item.attr.ino);
    }
  }
  if (image instanceof RafsV5Image) checkV5Digests(image, items, problems);

  // 2. Blobs: size, blob meta, ToC, inlined digests (the blob id in step 3, from the same reads).
  const ciByBlob = new Map<number, BlobChunkEntry[]>();
  const idChecks = new Map<number, IdCheck>();
  for (const blob of image.blobs) {
    try {
      const { ci, idCheck } = await checkBlob(image, blob, backend, opts, problems, uses);
      if (ci !== undefined) ciByBlob.set(blob.index, ci);
      if (idCheck !== undefined) idChecks.set(blob.index, idCheck);
    } catch (e) {
      problems.add({ blob: blob.id, message: msg(e) });
    }
  }

  // 3. Every chunk: stored range, CI agreement, decompression and digest; blob by blob, in storage
  // order, the blob read once in the reader's windows, which also feed the blob id's hash.
  let chunksVerified = 0;
  let bytesVerified = 0;
  let done = 0;
  const all = [...uses.values()];
  const verify = async (u: ChunkUse): Promise<void> => {
    const { chunk, path, position } = u;
    const blob = image.blobs[chunk.blobIndex];
    if (blob === undefined) {
      problems.add({ path, chunk: position, message: `file ${path} chunk ${position} refers to the missing blob ${chunk.blobIndex}` });
      opts.onProgress?.(++done, all.length);
      return;
    }
    const ci = ciByBlob.get(chunk.blobIndex)?.[chunk.index];
    const where = { path, blob: blob.id, chunk: position };
    if (ciByBlob.has(chunk.blobIndex) && ci === undefined) {
      problems.add({ ...where, message: `chunk index ${chunk.index} is beyond the blob's ${blob.chunkCount} chunks` });
    } else if (ci !== undefined && !sameLocation(ci, chunk)) {
      problems.add({ ...where, message: `blob meta entry ${chunk.index} disagrees with the bootstrap about the chunk's location` });
    }
    try {
      const data = await reader.read(chunk);
      chunksVerified++;
      bytesVerified += data.length;
    } catch (e) {
      problems.add({ ...where, message: `file ${path} chunk ${position} (blob ${blob.id} chunk ${chunk.index}): ${msg(e)}` });
    }
    opts.onProgress?.(++done, all.length);
  };
  /** Verifies `list`, four chunks at a time. */
  const verifyAll = async (list: ChunkUse[]): Promise<void> => {
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < list.length) await verify(list[i++] as ChunkUse);
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  };
  const byBlob = new Map<number, ChunkUse[]>();
  for (const u of all) {
    let list = byBlob.get(u.chunk.blobIndex);
    if (list === undefined) byBlob.set(u.chunk.blobIndex, (list = []));
    list.push(u);
  }
  // Uses naming a blob the image does not have: their reads report it.
  for (const [index, list] of byBlob) if (image.blobs[index] === undefined) await verifyAll(list);
  for (const blob of image.blobs) {
    const mine = (byBlob.get(blob.index) ?? []).sort((a, b) => a.chunk.compressedOffset - b.chunk.compressedOffset);
    const idCheck = idChecks.get(blob.index);
    if (idCheck === undefined) {
      await verifyAll(mine);
      continue;
    }
    const hasher = new BlobIdHasher(idCheck.size, idCheck.skip);
    const windows = Math.ceil(idCheck.size / WINDOW_BYTES);
    let next = 0;
    let readable = true;
    for (let k = 0; k < windows; k++) {
      let data: Buffer;
      try {
        data = await reader.window(blob, k);
      } catch (e) {
        problems.add({ blob: blob.id, message: `the blob cannot be read at ${k * WINDOW_BYTES}: ${msg(e)}` });
        readable = false;
        break;
      }
      if (k + 1 < windows) reader.window(blob, k + 1).catch(() => undefined); // on its way meanwhile
      hasher.update(k * WINDOW_BYTES, data);
      // The chunks this window completes.
      const end = (k + 1) * WINDOW_BYTES;
      const first = next;
      while (next < mine.length && (mine[next] as ChunkUse).chunk.compressedOffset + (mine[next] as ChunkUse).chunk.compressedSize <= end) next++;
      await verifyAll(mine.slice(first, next));
    }
    await verifyAll(mine.slice(next));
    if (readable) reportBlobId(blob, hasher, problems);
  }

  return {
    ok: problems.list.length === 0,
    problems: problems.list,
    truncated: problems.truncated,
    inodes: items.length,
    files,
    blobs: image.blobs.length,
    chunksVerified,
    bytesVerified,
  };
}

function checkDirectory(image: RafsImage, ino: number, parentIno: number, path: string, problems: Problems): void {
  let prev: Uint8Array | undefined;
  let subdirs = 0;
  for (const e of image.readdir(ino)) {
    if (prev !== undefined && compareBytes(prev, e.name) >= 0) {
      problems.add({ path, message: `entries are not in strictly increasing name order at ${JSON.stringify(Buffer.from(e.name).toString())}` });
    }
    prev = e.name;
    if (e.kind === 'dir') subdirs++;
    if (image.lookup(ino, e.name)?.ino !== e.ino) problems.add({ path, message: `lookup of ${Buffer.from(e.name).toString()} fails` });
  }
  const attr = image.getAttr(ino);
  if (attr.nlink !== 2 + subdirs) problems.add({ path, message: `directory nlink is ${attr.nlink}, expected ${2 + subdirs}` });
  if (image instanceof RafsV6Image) {
    const dots = image.dotEntries(ino);
    if (dots.self !== ino) problems.add({ path, message: `'.' points at nid ${dots.self}, not ${ino}` });
    if (dots.parent !== parentIno) problems.add({ path, message: `'..' points at nid ${dots.parent}, not the parent ${parentIno}` });
  }
}

/**
 * The v5 digest of an inode recomputed from its parts (spec §2.13): of its chunks' digests, its
 * symlink target, its children's digests. Hashed part by part, not spread into one call: a
 * directory of 200,000 entries would overflow the stack.
 */
export function v5InodeDigest(image: Pick<RafsV5Image, 'digester' | 'fileChunks' | 'readlink' | 'readdir' | 'inodeRecord'>, attr: InodeAttr): Buffer {
  const h = createHasher(image.digester);
  if (attr.kind === 'file') for (const c of image.fileChunks(attr.ino)) h.update(c.digest);
  else if (attr.kind === 'symlink') h.update(image.readlink(attr.ino));
  else if (attr.kind === 'dir') for (const e of image.readdir(attr.ino)) h.update(image.inodeRecord(e.ino).digest);
  return h.digest();
}

/** The v5 self-verifying tree (spec §2.13): every stored inode digest recomputed from its parts. */
function checkV5Digests(image: RafsV5Image, items: WalkItem[], problems: Problems): void {
  for (const { attr, path } of items) {
    try {
      const rec = image.inodeRecord(attr.ino);
      const expected = v5InodeDigest(image, attr);
      if (!bytesEqual(expected, rec.digest)) problems.add({ path, message: `inode digest ${toHex(rec.digest)} does not match its content (${toHex(expected)})` });
    } catch (e) {
      problems.add({ path, message: msg(e) });
    }
  }
}

/** Whether a CI entry and a bootstrap chunk agree on where the chunk is. */
function sameLocation(ci: BlobChunkEntry, chunk: ChunkInfo): boolean {
  if (ci.uncompressedOffset !== chunk.uncompressedOffset || ci.uncompressedSize !== chunk.uncompressedSize) return false;
  // A batch member or ZRan chunk is located at its unit's stored range (the batch, the context).
  return (ci.flags & (CiFlag.BATCH | CiFlag.ZRAN)) !== 0 || (ci.compressedOffset === chunk.compressedOffset && ci.compressedSize === chunk.compressedSize);
}

async function checkBlob(
  image: RafsImage,
  blob: BlobInfo,
  backend: BlobBackend,
  opts: CheckOptions,
  problems: Problems,
  uses: Map<string, ChunkUse>,
): Promise<{ ci: BlobChunkEntry[] | undefined; idCheck: IdCheck | undefined }> {
  const size = await backend.size(blob.id);
  const fromFile = opts.blobFiles?.has(blob.id) === true;
  if (blob.compressedSize > 0 && !fromFile && size !== blob.compressedSize) {
    problems.add({ blob: blob.id, message: `blob has ${size} bytes, the blob table says ${blob.compressedSize}` });
  }
  // A ZRan blob is an original gzip layer: its blob meta and ToC are in its meta blob.
  const metaId = metaBlobId(blob);
  const metaSize = metaId === blob.id ? size : await backend.size(metaId);
  let toc: ParsedToc | undefined;
  if (blob.features & BlobFeature.HAS_TOC) {
    const n = Math.min(metaSize, 0x10000 + TAR_HEADER_SIZE);
    toc = parseTocFromTail(await backend.read(metaId, metaSize - n, n), metaSize);
    if (!fromFile && blob.tocSize > 0 && (toc.size !== blob.tocSize || !bytesEqual(toc.digest, blob.tocDigest))) {
      problems.add({ blob: blob.id, message: 'the ToC does not match the digest and size in the blob table' });
    }
  }
  let ci: BlobChunkEntry[] | undefined;
  if (image.version === 6 && blob.meta.uncompressedSize > 0) {
    const m = blob.meta;
    const stored = await backend.read(metaId, m.offset, m.compressedSize + BLOB_META_HEADER_SIZE);
    const { header, ci: data } = openStoredBlobMeta(opts.codecs, blob, stored);
    if (!metaHeaderAgrees(blob, header)) {
      problems.add({ blob: blob.id, message: 'the blob meta header disagrees with the blob table' });
    }
    ci = decodeCiArray(data, blob.chunkCount, blob.features, `blob ${blob.id} chunk info`);
    let prevEnd = 0;
    ci.forEach((e, i) => {
      if (e.uncompressedOffset < prevEnd) problems.add({ blob: blob.id, chunk: i, message: 'chunk info entries overlap in the uncompressed view' });
      prevEnd = e.uncompressedOffset + e.uncompressedSize;
      if (e.compressedOffset + e.compressedSize > size) problems.add({ blob: blob.id, chunk: i, message: 'chunk lies past the end of the blob' });
    });
    if (blob.features & BlobFeature.INLINED_CHUNK_DIGEST && toc !== undefined) {
      const entry = toc.entries.find((e) => e.name === TocEntryName.BLOB_DIGEST);
      if (entry === undefined) {
        problems.add({ blob: blob.id, message: 'INLINED_CHUNK_DIGEST without a blob.digest ToC entry' });
      } else {
        const digests = new ByteReader(await backend.read(metaId, entry.compressedOffset, entry.compressedSize), 'blob.digest');
        if (!sha256(digests.bytes).equals(entry.digest)) problems.add({ blob: blob.id, message: 'blob.digest fails its ToC digest' });
        for (const u of uses.values()) {
          if (u.chunk.blobIndex !== blob.index || !digests.has(u.chunk.index * 32, 32)) continue;
          if (!bytesEqual(digests.slice(u.chunk.index * 32, 32), u.chunk.digest)) {
            problems.add({ path: u.path, blob: blob.id, chunk: u.position, message: `the inlined digest of chunk ${u.chunk.index} differs from the chunk table` });
          }
        }
      }
    }
  }
  let idCheck: IdCheck | undefined;
  // A blob with a separate blob meta (ZRan, tar-ref) is the original layer, named by the hash of
  // all of it (its ToC, if any, is its meta blob's).
  const separate = (blob.features & BlobFeature.SEPARATE) !== 0;
  if (!fromFile && /^[0-9a-f]{64}$/.test(blob.id)) {
    // The RAFS rule leaves the chunk-digest array out (spec §5.10); a blob renamed for a registry
    // (`merge --blob-digests`) is named by the hash of its whole content.
    const skip = separate ? undefined : toc?.entries.find((e) => e.name === TocEntryName.BLOB_DIGEST);
    idCheck = { size, ...(skip ? { skip } : {}) };
    if (size !== blob.compressedSize) {
      // Not read through the chunk reader's windows (which its table's size bounds): here, alone.
      const h = new BlobIdHasher(size, skip);
      for (let off = 0; off < size; off += WINDOW_BYTES) h.update(off, await backend.read(blob.id, off, Math.min(WINDOW_BYTES, size - off)));
      reportBlobId(blob, h, problems);
      idCheck = undefined;
    }
  }
  return { ci, idCheck };
}

/** A blob whose id is to be checked against its content, which step 3 reads anyway. */
interface IdCheck {
  size: number;
  skip?: { compressedOffset: number; compressedSize: number };
}

function reportBlobId(blob: BlobInfo, h: BlobIdHasher, problems: Problems): void {
  const ids = h.digests();
  if (ids.rafs !== blob.id && ids.whole !== blob.id) problems.add({ blob: blob.id, message: `blob content hashes to ${ids.rafs}, not to its id` });
}

/**
 * SHA-256 of a blob without the chunk-digest array payload (the blob id rule, spec §5.10), and of
 * its whole content, fed its bytes in order.
 */
class BlobIdHasher {
  private readonly rafs = createHash('sha256');
  private readonly whole = createHash('sha256');
  private readonly from: number;
  private readonly to: number;

  constructor(size: number, skip?: { compressedOffset: number; compressedSize: number }) {
    [this.from, this.to] = skip === undefined ? [size, size] : [skip.compressedOffset, skip.compressedOffset + skip.compressedSize];
  }

  /** The blob's bytes at `off` (each call continuing where the last one ended). */
  update(off: number, data: Uint8Array): void {
    this.whole.update(data);
    const end = off + data.length;
    if (off < this.from) this.rafs.update(data.subarray(0, Math.min(end, this.from) - off));
    if (end > this.to) this.rafs.update(data.subarray(Math.max(off, this.to) - off));
  }

  digests(): { rafs: string; whole: string } {
    return { rafs: this.rafs.digest('hex'), whole: this.whole.digest('hex') };
  }
}
