/**
 * The build: sources (directories or OCI layer tars, bottom to top) → one blob per layer with new
 * chunks → merged tree → RAFS v6 bootstrap (optionally inlined into the top blob).
 */
import { stat, writeFile, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type Logger, UsageError, isPowerOfTwo, observed, replaceFile } from '../base/index.js';
import { type Codecs, Compressor, ZSTD_MAX_LEVEL } from '../format/compression.js';
import { type Digester, Limits } from '../format/constants.js';
import type { BlobInfo } from '../format/image.js';
import { type BootstrapNode, writeV6Bootstrap } from '../format/v6/writer.js';
import { ChunkDict } from './chunk-dict.js';
import { type BlobHandle, ChunkStore, type ChunkStats, DictBlob, type ChunkRef, type NewBlob } from './chunk-store.js';
import { applyLayer, emptyRoot, finishMerge } from './merge.js';
import { type WhiteoutSpec, readSmallFile, scanDirectory, storeFileFromDisk } from './sources/dir.js';
import { openLayerFile } from './sources/layer-stream.js';
import { readTarLayer, storeTarPrefetchFiles } from './sources/tar.js';
import { type TreeNode, checkTreeDepth, resolvePrefetch, toBootstrapTree, walkTree } from './tree.js';

export interface BuildOptions {
  /** Layers, bottom first: directories or OCI layer tars (tar, tar.gz, tar.zst). */
  sources: string[];
  blobDir: string;
  /** Where to write the bootstrap; optional with `inlineBootstrap`. */
  bootstrapPath?: string;
  codecs: Codecs;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  /**
   * Batch small files' chunks (nydus-image `--batch-size`, spec §5.6): 0 (the default) or a power
   * of two from 4 KiB to the chunk size.
   */
  batchSize?: number;
  /**
   * zstd's level for chunk data: 1 to 22 (default 3, as nydus-image). Higher levels build slower
   * and fetch fewer bytes; reads decompress as fast (zstd decodes every level at the same speed).
   */
  compressionLevel?: number;
  /**
   * zstd's level for the data of the prefetch files (the first 64 MiB of it): default 19, or
   * `compressionLevel` if higher. The bytes every cold start waits for are fetched from a smaller
   * blob range; the build spends more CPU on them once (`ChunkStore`, DEFAULT_PREFETCH_LEVEL).
   */
  prefetchCompressionLevel?: number;
  /**
   * Encrypt the new blobs (nydus-image `--encrypt`, spec §5.12): AES-128-XTS, a random key and
   * tweak per blob, kept in the bootstrap's blob table. It protects blobs stored or pushed apart
   * from their bootstrap; whoever has the bootstrap can read them.
   */
  encrypt?: boolean;
  chunkDictPath?: string;
  /** Paths (absolute inside the image) to prefetch first, in order. */
  prefetchFiles?: string[];
  inlineBootstrap?: boolean;
  /** How directory sources mark whiteouts (default `oci`; tar layers always use OCI's). */
  whiteoutSpec?: WhiteoutSpec;
  log: Logger;
  /** Called with the number of source bytes processed so far and the total when known. */
  onProgress?: (done: number, total: number | undefined) => void;
}

export interface BuiltBlob {
  id: string;
  path: string;
  size: number;
  chunks: number;
}

export interface BuildResult {
  bootstrap: Buffer;
  bootstrapPath?: string;
  /** Blobs written by this build, bottom layer first. */
  blobs: BuiltBlob[];
  /** The blob table of the bootstrap (including chunk-dictionary blobs). */
  blobTable: BlobInfo[];
  stats: ChunkStats;
  prefetch: string[];
}

async function sourceKind(path: string): Promise<'dir' | 'tar'> {
  let st;
  try {
    st = await stat(path);
  } catch {
    throw new UsageError(`source ${path} does not exist`);
  }
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'tar';
  throw new UsageError(`source ${path} is neither a directory nor a layer file`);
}

/**
 * Regular files of a tree in the order their data is stored: prefetch files first (`prefetched` of
 * them), then the tree order.
 */
function dataOrder(root: TreeNode, prefetch: TreeNode[]): { order: TreeNode[]; prefetched: number } {
  const order: TreeNode[] = [];
  const seen = new Set<TreeNode>();
  const add = (n: TreeNode): void => {
    for (const { node } of walkTree(n)) {
      if (node.kind === 'file' && node.sourcePath !== undefined && !seen.has(node)) {
        seen.add(node);
        order.push(node);
      }
    }
  };
  for (const p of prefetch) add(p);
  const prefetched = order.length;
  add(root);
  return { order, prefetched };
}

/** Small files read ahead of the one being stored (their chunks are still submitted in order). */
const READ_AHEAD_FILES = 32;

async function storeDirectory(root: TreeNode, prefetch: TreeNode[], store: ChunkStore, onBytes: (n: number) => void): Promise<void> {
  const { order: files, prefetched } = dataOrder(root, prefetch);
  const chunkSize = store.opts.chunkSize;
  const small = (n: TreeNode): boolean => n.size > 0 && n.size <= chunkSize;
  // Reading one small file at a time waits on a disk round trip per file; reading a window of them
  // concurrently keeps the disk busy, and submission order (hence the blob layout) is unchanged.
  const reads = new Map<number, Promise<Buffer>>();
  const startRead = (i: number): void => {
    const n = files[i];
    if (n !== undefined && small(n) && !reads.has(i)) {
      const p = readSmallFile(n);
      p.catch(() => undefined); // observed when its turn comes
      reads.set(i, p);
    }
  };
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < files.length; i++) {
    for (let k = i; k < Math.min(files.length, i + READ_AHEAD_FILES); k++) startRead(k);
    const node = files[i] as TreeNode;
    store.prefetchPhase(i < prefetched);
    let chunks: Promise<ChunkRef[]>;
    const read = reads.get(i);
    if (node.size === 0) {
      chunks = Promise.resolve([]); // nothing to read: no open and close through the thread pool
    } else if (read !== undefined) {
      reads.delete(i);
      const data = await read;
      const wait = store.ready();
      if (wait !== undefined) await wait;
      chunks = store.submit(data, true).then((ref) => [ref]);
      onBytes(data.length);
    } else {
      chunks = (await storeFileFromDisk(node, store, onBytes)).chunks;
    }
    pending.push(
      observed(
        chunks.then((c: ChunkRef[]) => {
          node.chunks = c;
        }),
      ),
    );
  }
  store.prefetchPhase(false);
  await Promise.all(pending);
}

/** How the chunks of an image are cut and stored: what `checkFormatOptions` checks. */
export type FormatOptions = Pick<BuildOptions, 'compressor' | 'chunkSize' | 'batchSize' | 'compressionLevel' | 'prefetchCompressionLevel' | 'encrypt'>;

/**
 * Rejects (UsageError) a chunk layout RAFS cannot express or a level that does not apply; `build`
 * checks first, and so can a caller with work to do before it (convert pulls the layers first).
 */
export function checkFormatOptions(opts: FormatOptions): void {
  const size = opts.chunkSize;
  if (!isPowerOfTwo(size) || size < Limits.MIN_CHUNK_SIZE || size > Limits.MAX_CHUNK_SIZE) {
    throw new UsageError(`the chunk size must be a power of two from ${Limits.MIN_CHUNK_SIZE} to ${Limits.MAX_CHUNK_SIZE}, not ${size}`);
  }
  const batch = opts.batchSize ?? 0;
  if (batch !== 0 && (!isPowerOfTwo(batch) || batch < Limits.MIN_CHUNK_SIZE || batch > size)) {
    throw new UsageError(`the batch size must be 0 or a power of two from ${Limits.MIN_CHUNK_SIZE} to the chunk size (${size}), not ${batch}`);
  }
  // Batches and encryption need the v2 chunk-info array, which stores a stored size in 24 bits: a
  // 16 MiB chunk (or batch) that does not compress is one byte too many for it.
  if ((batch !== 0 || opts.encrypt === true) && size >= 1 << 24) {
    throw new UsageError(`with ${batch !== 0 ? '--batch-size' : '--encrypt'} the chunk size is at most 8 MiB (the chunk-info array stores a stored size in 24 bits), not ${size}`);
  }
  for (const [what, level] of [['compression level', opts.compressionLevel], ['prefetch compression level', opts.prefetchCompressionLevel]] as const) {
    if (level === undefined) continue;
    if (opts.compressor !== Compressor.Zstd) throw new UsageError(`a ${what} applies to zstd only`);
    if (!Number.isInteger(level) || level < 1 || level > ZSTD_MAX_LEVEL) throw new UsageError(`the zstd ${what} must be 1 to ${ZSTD_MAX_LEVEL}, not ${level}`);
  }
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const { log } = opts;
  if (opts.sources.length === 0) throw new UsageError('no source given');
  if (opts.bootstrapPath === undefined && !opts.inlineBootstrap) throw new UsageError('give --bootstrap, or --inline-bootstrap');
  checkFormatOptions(opts);
  // Every input is checked before anything is written: a wrong argument leaves no blob directory.
  const kinds = await Promise.all(opts.sources.map(sourceKind));
  const dict = opts.chunkDictPath === undefined ? undefined : await ChunkDict.load(opts.chunkDictPath, opts);
  if (dict !== undefined) log.info({ chunks: dict.size, blobs: dict.blobs.length }, 'chunk dictionary loaded');
  await mkdir(opts.blobDir, { recursive: true });
  const store = new ChunkStore({ ...opts, ...(dict ? { dict } : {}) });
  let total: number | undefined = 0;
  let done = 0;
  const onBytes = (n: number): void => {
    done += n;
    opts.onProgress?.(done, total);
  };

  const newBlobs: NewBlob[] = [];
  const merged = emptyRoot();
  let prefetch: Array<{ path: string; node: TreeNode }> = [];
  try {
    for (let i = 0; i < opts.sources.length; i++) {
      const source = opts.sources[i] as string;
      const top = i === opts.sources.length - 1;
      await store.openBlob();
      let layer: TreeNode;
      if (kinds[i] === 'dir') {
        layer = await scanDirectory(source, log, opts.whiteoutSpec);
        let bytes = 0;
        for (const { node } of walkTree(layer)) if (node.kind === 'file') bytes += node.size;
        total = total === undefined ? undefined : total + bytes;
        // The prefetch files a layer holds go first in its blob (spec §5.2), in every layer: in an
        // image of several layers most of what a container reads at start sits in the lower ones.
        const pf = resolvePrefetch(layer, opts.prefetchFiles ?? []);
        await storeDirectory(layer, pf.map((p) => p.node), store, onBytes);
      } else {
        total = undefined;
        // The same for a tar layer: a first pass stores the listed files it holds.
        if (opts.prefetchFiles !== undefined && opts.prefetchFiles.length > 0) {
          store.prefetchPhase(true);
          try {
            await storeTarPrefetchFiles(openLayerFile(source), opts.prefetchFiles, { store, log });
          } finally {
            store.prefetchPhase(false);
          }
        }
        layer = await readTarLayer(openLayerFile(source), { store, log, onBytes, lower: merged });
      }
      const blob = await store.closeBlob(top && opts.inlineBootstrap === true);
      if (blob !== undefined) newBlobs.push(blob);
      // Refused as soon as it is known, before the remaining layers are read.
      if (newBlobs.length > Limits.MAX_V6_BLOBS) throw new UsageError(`more than ${Limits.MAX_V6_BLOBS} layers hold data (${source} is the ${newBlobs.length}th): a RAFS v6 image has at most ${Limits.MAX_V6_BLOBS} data blobs`);
      log.info({ source, chunks: blob?.assembler.chunkCount ?? 0 }, 'layer stored');
      applyLayer(merged, layer);
    }
    const root = finishMerge(merged);
    checkTreeDepth(root);
    prefetch = resolvePrefetch(root, opts.prefetchFiles ?? [], (path) => log.warn({ path }, 'prefetch path is not in the image; skipped'));

    // Blob table: this build's blobs bottom to top, then dictionary blobs in first-use order.
    const handles: BlobHandle[] = [...newBlobs, ...store.referencedDictBlobs];
    if (handles.length > Limits.MAX_V6_BLOBS) {
      throw new UsageError(`the image would use ${newBlobs.length} blobs of its layers and ${handles.length - newBlobs.length} of the chunk dictionary: a RAFS v6 image has at most ${Limits.MAX_V6_BLOBS}`);
    }
    const index = new Map<BlobHandle, number>(handles.map((h, i) => [h, i]));
    const inlined = opts.inlineBootstrap ? newBlobs[newBlobs.length - 1] : undefined;
    if (inlined !== undefined) inlined.assembler.markInlineBootstrap();
    // Every blob but the inlined one is complete before the bootstrap is written.
    for (const b of newBlobs) if (b !== inlined) await b.finalize(opts.blobDir);
    const blobTable = handles.map((h, i) => (h instanceof DictBlob ? { ...h.info, index: i } : (h as NewBlob).info(i)));
    const { root: broot, map } = toBootstrapTree(root, opts.chunkSize, (h) => index.get(h) as number);
    const bootstrap = writeV6Bootstrap({
      root: broot,
      chunkSize: opts.chunkSize,
      compressor: opts.compressor,
      digester: opts.digester,
      explicitUidGid: true,
      blobs: blobTable,
      prefetch: prefetch.map((p) => map.get(p.node) as BootstrapNode),
    });
    if (inlined !== undefined) {
      await inlined.write(inlined.assembler.inlineBootstrap(opts.codecs, bootstrap));
      await inlined.finalize(opts.blobDir);
    }
    let bootstrapPath: string | undefined;
    if (opts.bootstrapPath !== undefined) {
      bootstrapPath = opts.bootstrapPath;
      await mkdir(dirname(bootstrapPath), { recursive: true });
      await replaceFile(bootstrapPath, (temp) => writeFile(temp, bootstrap));
    }
    return {
      bootstrap,
      ...(bootstrapPath ? { bootstrapPath } : {}),
      blobs: newBlobs.map((b) => ({ id: b.id as string, path: b.path as string, size: b.size, chunks: b.assembler.chunkCount })),
      blobTable,
      stats: store.stats,
      prefetch: prefetch.map((p) => p.path),
    };
  } catch (e) {
    await store.abort(); // the blob of the layer being read, if any
    await Promise.all(newBlobs.filter((b) => b.id === undefined).map((b) => b.discard()));
    throw e;
  }
}
