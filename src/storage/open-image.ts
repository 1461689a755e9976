/**
 * Loading an image's bootstrap: from a bootstrap file, or from a data blob that inlines it in its
 * ToC (spec §5.9). For an inlined bootstrap the blob ids that name the blob itself (the "x"×64
 * placeholder, INLINED_FS_META blobs, or a pre-2.2 single blob) are mapped to that file.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { FormatError, UsageError, readFully, readRegularFile } from '../base/index.js';
import type { Codecs } from '../format/compression.js';
import { BlobFeature } from '../format/constants.js';
import type { RafsImage } from '../format/image.js';
import { openBootstrap } from '../format/open.js';
import { TocEntryName, extractTocItem, parseTocFromTail } from '../format/blob/toc.js';
import { TAR_HEADER_SIZE, decodeTarHeader } from '../format/blob/tar-header.js';
import { LocalFsBackend } from './backend/localfs.js';

export interface LoadedImage {
  image: RafsImage;
  bootstrap: Buffer;
  /** Blob ids of the image that must be read from a given file (inlined-bootstrap images). */
  blobFiles: Map<string, string>;
}

/** The largest bootstrap Damselfly loads (2 GiB, the v5 direct-mode limit). */
const MAX_BOOTSTRAP = 0x8000_0000;
const MAX_TOC_TAIL = 0x10000 + TAR_HEADER_SIZE;

/** Fills `b` from `position`, or fails: a file that ends early (cut meanwhile) is no bootstrap. */
async function readExactly(fh: FileHandle, b: Buffer, position: number, path: string): Promise<void> {
  if ((await readFully(fh, b, 0, b.length, position)) < b.length) throw new FormatError(`${path}: ends inside its bootstrap (${b.length} bytes at ${position})`);
}

async function readTail(path: string, n: number): Promise<{ tail: Buffer; size: number }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const len = Math.min(n, size);
    const tail = Buffer.alloc(len);
    await readExactly(fh, tail, size - len, path);
    return { tail, size };
  } finally {
    await fh.close();
  }
}

/** Extracts the bootstrap stored inside a data blob file. */
export async function readInlinedBootstrap(codecs: Codecs, blobPath: string): Promise<Buffer> {
  const { tail, size } = await readTail(blobPath, MAX_TOC_TAIL);
  if (size < TAR_HEADER_SIZE) throw new FormatError(`${blobPath}: too small to hold a bootstrap`);
  const last = decodeTarHeader(tail.subarray(tail.length - TAR_HEADER_SIZE), `${blobPath} last tar header`);
  if (last.name === TocEntryName.BOOTSTRAP) {
    // No ToC: the raw bootstrap precedes the trailing `image.boot` header.
    if (last.size > MAX_BOOTSTRAP || last.size + TAR_HEADER_SIZE > size) throw new FormatError(`${blobPath}: bad image.boot size`);
    const fh = await open(blobPath, 'r');
    try {
      const b = Buffer.alloc(last.size);
      await readExactly(fh, b, size - TAR_HEADER_SIZE - last.size, blobPath);
      return b;
    } finally {
      await fh.close();
    }
  }
  const toc = parseTocFromTail(tail, size);
  const entry = toc.entries.find((e) => e.name === TocEntryName.BOOTSTRAP);
  if (entry === undefined) throw new UsageError(`${blobPath}: this blob does not inline a bootstrap`);
  if (entry.compressedSize > MAX_BOOTSTRAP || entry.uncompressedSize > MAX_BOOTSTRAP) throw new FormatError(`${blobPath}: bootstrap too large`);
  const fh = await open(blobPath, 'r');
  try {
    const stored = Buffer.alloc(entry.compressedSize);
    await readExactly(fh, stored, entry.compressedOffset, blobPath);
    const local = { ...entry, compressedOffset: 0 };
    return Buffer.from(extractTocItem(codecs, stored, local));
  } finally {
    await fh.close();
  }
}

export async function loadImage(codecs: Codecs, src: { bootstrap?: string; blob?: string }): Promise<LoadedImage> {
  if ((src.bootstrap === undefined) === (src.blob === undefined)) throw new UsageError('give exactly one of --bootstrap and --blob');
  if (src.bootstrap !== undefined) {
    const bootstrap = await readRegularFile(src.bootstrap, MAX_BOOTSTRAP, `bootstrap ${src.bootstrap}`);
    return { image: openBootstrap(bootstrap), bootstrap, blobFiles: new Map() };
  }
  const blobPath = src.blob as string;
  const bootstrap = await readInlinedBootstrap(codecs, blobPath);
  const image = openBootstrap(bootstrap);
  const blobFiles = new Map<string, string>();
  const self = basename(blobPath);
  for (const b of image.blobs) {
    const inlined = (b.features & BlobFeature.INLINED_FS_META) !== 0 || b.id === 'x'.repeat(64);
    const legacy = image.blobs.length === 1 && (b.features & BlobFeature.CAP_TAR_TOC) === 0;
    if (inlined || legacy || b.id === self) blobFiles.set(b.id, blobPath);
  }
  return { image, bootstrap, blobFiles };
}

/**
 * The blobs of an image opened from files: its blob directory (else the folder of the blob it was
 * opened from) and the blobs an inlined bootstrap maps to that blob's file. Undefined when neither
 * says where they are: the caller tells the user what to give.
 */
export function localBlobs(loaded: LoadedImage, where: { blobDir?: string; blob?: string }): LocalFsBackend | undefined {
  const dir = where.blobDir ?? (where.blob !== undefined ? dirname(where.blob) : undefined);
  if (dir === undefined && loaded.blobFiles.size === 0) return undefined;
  return new LocalFsBackend({ ...(dir !== undefined ? { dir } : {}), files: loaded.blobFiles });
}
