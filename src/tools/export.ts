/**
 * Uncompressed views of data blobs (spec §5.2, §10): each chunk decoded at its uncompressed
 * offset, 4 KiB slots, the layout the EROFS kernel driver reads as an extra device and the
 * layout of the local cache file. Also the flattened single block device of spec §3.14.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, alignUp, namingFile, replaceFile, writeFully } from '../base/index.js';
import type { Codecs } from '../format/compression.js';
import type { ChunkInfo } from '../format/chunk-info.js';
import type { BlobInfo, RafsImage } from '../format/image.js';
import type { BlobBackend } from '../storage/backend/types.js';
import { ToolChunkReader } from './chunk-reader.js';
import { walkImage } from './walk.js';

/** Every distinct chunk of every file, per blob. */
function chunksByBlob(image: RafsImage): Map<number, Map<number, ChunkInfo>> {
  const out = new Map<number, Map<number, ChunkInfo>>();
  const seen = new Set<number>();
  for (const { attr } of walkImage(image)) {
    if (attr.kind !== 'file' || seen.has(attr.ino)) continue;
    seen.add(attr.ino);
    for (const c of image.fileChunks(attr.ino)) {
      let m = out.get(c.blobIndex);
      if (m === undefined) out.set(c.blobIndex, (m = new Map()));
      m.set(c.index, c);
    }
  }
  return out;
}

/** Writes the uncompressed view of `blob` into `path` at byte `base` (sparse where unused). */
async function writeView(reader: ToolChunkReader, blob: BlobInfo, chunks: Iterable<ChunkInfo>, path: string, base: number, flags: string): Promise<void> {
  // In view order, each chunk after the end of the one before: chunks that overlap would leave
  // whichever came last in the shared bytes, one of them wrong in the view (`check` says so too).
  const ordered = [...chunks].sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
  let end = 0;
  for (const c of ordered) {
    if (c.uncompressedOffset + c.uncompressedSize > alignUp(blob.uncompressedSize, 4096)) {
      throw new FormatError(`chunk ${c.index} lies outside the uncompressed view of blob ${blob.id}`);
    }
    if (c.uncompressedOffset < end) throw new FormatError(`chunk ${c.index} of blob ${blob.id} overlaps another in the uncompressed view`);
    end = c.uncompressedOffset + c.uncompressedSize;
  }
  const fh = await open(path, flags);
  try {
    for (const c of ordered) {
      const data = await reader.read(c);
      await writeFully(fh, data, base + c.uncompressedOffset); // all of it, or an error (a full disk)
    }
    const { size } = await fh.stat();
    // As long as its device slot says (at least a block: a blob without chunks has one).
    const end = base + Math.max(alignUp(blob.uncompressedSize, 4096), (blob.device?.blocks ?? 0) * 4096);
    if (size < end) await fh.truncate(end);
  } catch (e) {
    throw namingFile(e, path); // a full disk: which file
  } finally {
    await fh.close();
  }
}

/**
 * Writes `<dir>/<blob id>.blob.data` for every blob; returns the paths in blob-table order. Each
 * file appears whole or not at all: a chunk that cannot be read (or fails its digest) leaves no
 * view with zeros in its place.
 */
export async function exportBlobViews(image: RafsImage, backend: BlobBackend, codecs: Codecs, dir: string): Promise<string[]> {
  const reader = await ToolChunkReader.open(image, backend, codecs);
  const chunks = chunksByBlob(image);
  const paths: string[] = [];
  for (const blob of image.blobs) {
    const path = join(dir, `${blob.id}.blob.data`);
    await replaceFile(path, (temp) => writeView(reader, blob, chunks.get(blob.index)?.values() ?? [], temp, 0, 'w'));
    paths.push(path);
  }
  return paths;
}

/**
 * Writes one flattened block image: the bootstrap, then each blob view at its mapped_blkaddr;
 * whole or not at all, as the views.
 */
export async function exportBlockImage(image: RafsImage, bootstrap: Uint8Array, backend: BlobBackend, codecs: Codecs, path: string): Promise<void> {
  const reader = await ToolChunkReader.open(image, backend, codecs);
  const chunks = chunksByBlob(image);
  const mapped = image.blobs.map((blob) => {
    const blkaddr = blob.device?.mappedBlkaddr ?? 0;
    if (blkaddr === 0) throw new FormatError(`blob ${blob.id} has no mapped block address (an image older than nydus 2.2)`);
    return blkaddr;
  });
  await replaceFile(path, async (temp) => {
    const fh = await open(temp, 'w');
    try {
      await writeFully(fh, bootstrap, 0);
    } finally {
      await fh.close();
    }
    for (const [i, blob] of image.blobs.entries()) {
      await writeView(reader, blob, chunks.get(blob.index)?.values() ?? [], temp, (mapped[i] as number) * 4096, 'r+');
    }
  });
}
