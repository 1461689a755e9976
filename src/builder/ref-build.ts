/**
 * "Ref" builds, as nydus-image `create --type targz-ref` and `--type tar-ref` (spec §5.1, §5.5): a
 * RAFS image of OCI layers whose data stays in those layers. Nothing of the data is copied: the
 * image is a bootstrap and a small "meta blob" per layer (the CI array and its header), and the
 * blob table names each layer itself (its sha256) with its meta blob's digest beside it. Layers
 * stack as in any build (whiteouts, hardlinks to lower layers); a chunk of several is kept in the
 * first that has it.
 *
 * - A gzip layer (.tar.gz, ZRan) is inflated once; its block boundaries become ZRan contexts
 *   (where inflation can start again: the compressed offset, the bits of the byte before it and
 *   the 32 KiB window), and each file chunk is located as a range of a context's output.
 * - A plain tar layer (tar-ref) holds each file's bytes as they are: a chunk is a range of the
 *   layer, stored uncompressed. As nydus-image, either type takes either kind of layer and picks
 *   by the layer's first bytes.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ByteWriter, FormatError, type Logger, UnsupportedError, UsageError, replaceFile } from '../base/index.js';
import { CI_V2_SIZE, CiFlag, type ZranContext, encodeBlobMetaHeader, encodeCiV2, encodeZranTable } from '../format/blob/meta.js';
import { type Codecs, Compressor, type GzipPoint, storeCompressed } from '../format/compression.js';
import { BlobFeature, ChunkFlag, Digester, Limits } from '../format/constants.js';
import { sha256 } from '../format/digest.js';
import { isTarHeader } from '../format/tar.js';
import type { BlobInfo } from '../format/image.js';
import { type BootstrapNode, writeV6Bootstrap } from '../format/v6/writer.js';
import { type BlobHandle, type ChunkRef, RefBlob } from './chunk-store.js';
import { checkFormatOptions } from './build.js';
import { applyLayer, emptyRoot, finishMerge } from './merge.js';
import { isGzip } from './sources/layer-stream.js';
import { type FileSink, readTarLayer } from './sources/tar.js';
import { checkTreeDepth, resolvePrefetch, toBootstrapTree } from './tree.js';

export interface RefBuildOptions {
  /** The OCI layers, bottom first: gzip-compressed tars (each of one member or several) or plain tars. */
  sources: string[];
  /** Where the meta blobs are written (named by their sha256, which the blob table records). */
  blobDir: string;
  bootstrapPath: string;
  chunkSize: number;
  /**
   * Paths (absolute inside the image) for the bootstrap's prefetch table, in order. Their data
   * stays where the layers hold it: a prefetch reads their chunks' ranges (or ZRan contexts).
   */
  prefetchFiles?: string[];
  codecs: Codecs;
  log: Logger;
  onProgress?: (done: number, total: number | undefined) => void;
}

export interface RefBuildResult {
  bootstrap: Buffer;
  /**
   * The blob table: a layer that holds data (as its sha256 names it), how it is indexed (`gzip`:
   * ZRan contexts; `tar`: tar-ref, chunks stored as they are), and its meta blob.
   */
  blobs: Array<{ id: string; kind: LayerKind; metaBlob: { id: string; path: string; size: number }; chunks: number; contexts: number }>;
  /** The prefetch table's paths (those of `prefetchFiles` the image has, once each). */
  prefetch: string[];
}

/**
 * Block boundaries kept as possible context starts: one at least every this many compressed
 * bytes, or uncompressed bytes (nydus-image cuts contexts at 512 KiB compressed, 2 MiB out). A
 * context's output runs from its boundary to the end of the last chunk that starts in it.
 */
const POINT_EVERY_IN = 512 << 10;
const POINT_EVERY_OUT = 1 << 20;
/** The largest context output a reader accepts (nydus `RAFS_MAX_CHUNK_SIZE`). */
const MAX_CONTEXT_OUT = 16 << 20;
/** Reads of the layer file. */
const READ_BYTES = 1 << 20;

interface Context {
  index: number;
  point: GzipPoint;
  inEnd: number;
  outEnd: number;
}

/**
 * A layer file read once, in order, hashed (its sha256 is the blob id) and counted as it streams.
 * A plain tar layer (tar-ref) is its own tar stream.
 */
class LayerFile {
  readonly hash = createHash('sha256');
  size = 0;

  constructor(protected readonly path: string) {}

  /** The layer's bytes. */
  protected async *pieces(onBytes: (n: number) => void): AsyncGenerator<Buffer> {
    for await (const piece of createReadStream(this.path, { highWaterMark: READ_BYTES }) as AsyncIterable<Buffer>) {
      this.hash.update(piece);
      this.size += piece.length;
      onBytes(piece.length);
      yield piece;
    }
  }

  /** The layer's tar stream. */
  tar(onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
    return this.pieces(onBytes);
  }
}

/** A gzip layer, inflated as it is read: its tar stream, and where each of its bytes came from. */
class IndexedLayer extends LayerFile {
  /** The block boundaries where contexts may start, in stream order. */
  readonly points: GzipPoint[] = [];
  /** After each inflate step: the output produced so far, and the input consumed for it. */
  private readonly marks: Array<{ out: number; in: number }> = [];

  constructor(
    path: string,
    private readonly codecs: Codecs,
  ) {
    super(path);
  }

  override async *tar(onBytes: (n: number) => void): AsyncGenerator<Uint8Array> {
    const ix = this.codecs.gzipIndexer({ in: POINT_EVERY_IN, out: POINT_EVERY_OUT });
    let inPos = 0;
    let outPos = 0;
    for await (const piece of this.pieces(onBytes)) {
      let rest: Uint8Array = piece;
      while (rest.length > 0) {
        const r = this.named(() => ix.push(rest));
        for (const p of r.points) this.points.push(p);
        inPos += r.consumed;
        outPos += r.output.length;
        this.marks.push({ out: outPos, in: inPos });
        rest = rest.subarray(r.consumed);
        if (r.output.length > 0) yield r.output;
        else if (r.consumed === 0) throw new FormatError(`${this.path}: the gzip stream does not advance at compressed byte ${inPos}`);
      }
    }
    this.named(() => ix.finish());
  }

  /** Runs `f`, naming the layer in the FormatError it may throw. */
  private named<T>(f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof FormatError) throw new FormatError(`${this.path}: ${e.message}`, { cause: e });
      throw e;
    }
  }

  /** The kept boundary a chunk starting at tar offset `out` is inflated from: the last at or before it. */
  pointBefore(out: number): GzipPoint {
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.points[mid] as GzipPoint).out <= out) lo = mid + 1;
      else hi = mid;
    }
    const p = this.points[lo - 1];
    if (p === undefined) throw new FormatError(`${this.path}: no deflate block boundary before tar offset ${out}`);
    return p;
  }

  /**
   * Input consumed around tar offset `out`: with `after`, by the end of the inflate step that
   * produced byte `out - 1` (inflating from a boundary before `out`, that much input suffices);
   * else before the step that produced byte `out` began.
   */
  inputAt(out: number, after: boolean): number {
    let lo = 0;
    let hi = this.marks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = this.marks[mid] as { out: number };
      if (after ? m.out < out : m.out <= out) lo = mid + 1;
      else hi = mid;
    }
    if (after) {
      const m = this.marks[lo];
      if (m === undefined) throw new Error(`tar offset ${out} not inflated yet`);
      return m.in;
    }
    return lo === 0 ? 0 : (this.marks[lo - 1] as { in: number }).in;
  }
}

/**
 * A chunk as the CI array records it: for a gzip layer its context, and where it is in that
 * context's output; for a plain tar its range of the layer (the chunk's own reference) says all.
 */
interface Located {
  ref: ChunkRef;
  ctx?: Context;
  offset: number;
}

/** Where a chunk is stored: its chunk-table flags and range, and (gzip) its context and place in it. */
interface Placement {
  flags: number;
  compressedOffset: number;
  compressedSize: number;
  ctx?: Context;
  offset: number;
}

/**
 * Cuts files' data into chunks located in the layer (in its contexts, if it is gzip); identical
 * chunks share one.
 */
class RefChunker {
  readonly located: Located[] = [];
  readonly contexts: Context[] = [];
  private readonly byPoint = new Map<GzipPoint, Context>();
  /** Next free 4 KiB slot of the uncompressed view. */
  slots = 0;

  constructor(
    private readonly layer: LayerFile,
    private readonly chunkSize: number,
    readonly blob: RefBlob,
    /** The chunks of the layers built so far, by digest: a chunk is stored in the first that has it. */
    private readonly byDigest: Map<string, ChunkRef>,
  ) {}

  /** The sink of one file of `size` bytes. */
  sink(size: number): FileSink {
    const refs: Array<Promise<ChunkRef>> = [];
    let hash = createHash('sha256');
    let filled = 0;
    let start = 0;
    const cut = (): void => {
      refs.push(Promise.resolve(this.chunk(hash.digest(), start, filled)));
      hash = createHash('sha256');
      filled = 0;
    };
    return {
      refs,
      write: async (bytes, offset) => {
        while (bytes.length > 0) {
          if (filled === 0) start = offset;
          const n = Math.min(bytes.length, this.chunkSize - filled);
          hash.update(bytes.subarray(0, n));
          filled += n;
          bytes = bytes.subarray(n);
          offset += n;
          if (filled === this.chunkSize) cut();
        }
      },
      hole: async () => {
        // A chunk is a range of the layer's own bytes, and a sparse file's holes are not there.
        throw new UnsupportedError('a layer holding a sparse file cannot be referenced in place (--type *-ref); convert it into a blob instead');
      },
      end: async () => {
        if (filled > 0) cut();
        if (refs.length !== Math.ceil(size / this.chunkSize)) throw new FormatError(`a tar file of ${size} bytes gave ${refs.length} chunks`);
      },
    };
  }

  /** The chunk of tar bytes [start, start + size) with sha256 `digest`. */
  private chunk(digest: Buffer, start: number, size: number): ChunkRef {
    const known = this.byDigest.get(digest.toString('hex'));
    if (known !== undefined) return known;
    if (this.located.length >= Limits.MAX_CHUNKS_PER_BLOB) throw new FormatError(`the layer has more than ${Limits.MAX_CHUNKS_PER_BLOB} chunks`);
    // A plain tar holds the chunk's bytes as they are (nydus-image: not compressed, at the tar offset).
    const where: Placement = this.layer instanceof IndexedLayer ? this.inContext(this.layer, start, size) : { flags: 0, compressedOffset: start, compressedSize: size, offset: 0 };
    const ref: ChunkRef = {
      blob: this.blob,
      digest,
      flags: where.flags,
      compressedOffset: where.compressedOffset,
      compressedSize: where.compressedSize,
      uncompressedOffset: this.slots,
      uncompressedSize: size,
      index: this.located.length,
      crc32: 0,
    };
    this.slots += Math.ceil(size / 4096) * 4096;
    this.located.push({ ref, ...(where.ctx !== undefined ? { ctx: where.ctx } : {}), offset: where.offset });
    this.byDigest.set(digest.toString('hex'), ref);
    return ref;
  }

  /** Where the chunk of tar bytes [start, start + size) of a gzip layer is: its context, and its range in it. */
  private inContext(layer: IndexedLayer, start: number, size: number): Placement & { ctx: Context } {
    const point = layer.pointBefore(start);
    let ctx = this.byPoint.get(point);
    if (ctx === undefined) {
      ctx = { index: this.contexts.length, point, inEnd: 0, outEnd: 0 };
      this.byPoint.set(point, ctx);
      this.contexts.push(ctx);
    }
    const end = start + size;
    const inEnd = layer.inputAt(end, true);
    ctx.outEnd = Math.max(ctx.outEnd, end);
    ctx.inEnd = Math.max(ctx.inEnd, inEnd);
    if (ctx.outEnd - point.out > MAX_CONTEXT_OUT) {
      throw new FormatError(`a ${ctx.outEnd - point.out}-byte ZRan context (a deflate block longer than the chunk size allows): use a smaller chunk size`);
    }
    // The chunk's own compressed range, as nydus-image records it: about the input consumed
    // while it was inflated (readers fetch its context's whole range).
    const inStart = Math.max(point.in, layer.inputAt(start, false));
    return { flags: ChunkFlag.COMPRESSED, compressedOffset: inStart, compressedSize: inEnd - inStart, ctx, offset: start - point.out };
  }
}

/**
 * The meta blob: the CI array (v2 entries; for a gzip layer then the ZRan contexts and their
 * dictionaries) and its header.
 */
function metaBlob(codecs: Codecs, located: Located[], contexts: Context[], features: number): { bytes: Buffer; meta: BlobInfo['meta'] } {
  const table: ZranContext[] = contexts.map((c) => ({
    inOffset: c.point.in,
    inLen: c.inEnd - c.point.in,
    outOffset: c.point.out,
    outLen: c.outEnd - c.point.out,
    at: c.point,
  }));
  const zran = contexts.length > 0 ? encodeZranTable(table) : Buffer.alloc(0);
  const w = new ByteWriter(located.length * CI_V2_SIZE + zran.length);
  for (const { ref, ctx, offset } of located) {
    if (ref.compressedSize >= 1 << 24) throw new FormatError(`chunk ${ref.index} spans ${ref.compressedSize} compressed bytes (at most 16 MiB)`);
    // A tar-ref chunk: stored as it is, where its reference says (no flag, no data word).
    const flags = ctx !== undefined ? CiFlag.COMPRESSED | CiFlag.ZRAN : 0;
    encodeCiV2(w, { ...ref, flags, data: ctx !== undefined ? (BigInt(ctx.index) << 32n) | BigInt(offset) : 0n });
  }
  w.bytes(zran);
  const ci = w.finish();
  // nydus-image stores the CI data zstd-compressed (the blob's own compressor, gzip, is read-only).
  const stored = storeCompressed(codecs, Compressor.Zstd, ci);
  const meta = { compressor: stored.compressed ? Compressor.Zstd : Compressor.None, offset: 0, compressedSize: stored.data.length, uncompressedSize: ci.length };
  const header = encodeBlobMetaHeader({
    features,
    ciCompressor: meta.compressor,
    ciEntries: located.length,
    ciOffset: meta.offset,
    ciCompressedSize: meta.compressedSize,
    ciUncompressedSize: meta.uncompressedSize,
    zranOffset: contexts.length > 0 ? located.length * CI_V2_SIZE : 0,
    zranSize: zran.length,
    zranCount: contexts.length,
  });
  return { bytes: Buffer.concat([stored.data, header]), meta };
}

/** Options of other builds, set or not: a ZRan build stores no data of its own. */
export interface RefConflicts {
  inlineBootstrap?: boolean;
  chunkDict?: unknown;
  encrypt?: boolean;
  batchSize?: number;
  compressionLevel?: number;
  prefetchCompressionLevel?: number;
}

/** The options among `o` a ZRan build (`build --type targz-ref`, `convert --oci-ref`) cannot honour, as flags. */
export function refConflicts(o: RefConflicts): string[] {
  const set: Array<[string, boolean]> = [
    ['--inline-bootstrap', o.inlineBootstrap === true],
    ['--chunk-dict', o.chunkDict !== undefined],
    ['--encrypt', o.encrypt === true],
    ['--batch-size', (o.batchSize ?? 0) > 0],
    ['a compression level', o.compressionLevel !== undefined || o.prefetchCompressionLevel !== undefined],
  ];
  return set.filter(([, given]) => given).map(([flag]) => flag);
}

/** What a ref build makes of a layer, by its first bytes: ZRan for gzip, tar-ref for a plain tar. */
export type LayerKind = 'gzip' | 'tar';

/** The kind of the layer at `path`; a UsageError if it cannot be read or is neither. */
async function layerKind(path: string): Promise<LayerKind> {
  const head = Buffer.alloc(512);
  const fh = await open(path, 'r').catch((e: unknown) => {
    throw new UsageError(`source ${path} cannot be read: ${(e as Error).message}`);
  });
  let n: number;
  try {
    ({ bytesRead: n } = await fh.read(head, 0, head.length, 0));
  } finally {
    await fh.close();
  }
  if (isGzip(head.subarray(0, n))) return 'gzip';
  // A tar begins with a header whose checksum holds (as the tar reader checks it), or, empty, with
  // the end-of-archive zero blocks.
  if (n === 512 && (isTarHeader(head) || head.every((b) => b === 0))) return 'tar';
  throw new UsageError(`${path} is neither a gzip-compressed nor a plain tar layer (a ref image indexes one of these in place)`);
}

/** The blob features of a ref layer (nydus-image: CHUNK_INFO_V2 and SEPARATE for every ref type, ZRAN for gzip). */
function refFeatures(kind: LayerKind): number {
  return (kind === 'gzip' ? BlobFeature.ZRAN : 0) | BlobFeature.SEPARATE | BlobFeature.CHUNK_INFO_V2 | BlobFeature.ALIGNED;
}

export async function buildRefImage(opts: RefBuildOptions): Promise<RefBuildResult> {
  const { log } = opts;
  if (opts.sources.length === 0) throw new UsageError('no layer given');
  checkFormatOptions({ compressor: Compressor.Gzip, chunkSize: opts.chunkSize });
  // The contexts' output must hold a whole chunk; nydus-image builds these with 1 MiB chunks.
  if (opts.chunkSize > 4 << 20) throw new UsageError(`a ref image needs a chunk size of at most 4 MiB, not ${opts.chunkSize}`);
  const kinds: LayerKind[] = [];
  for (const source of opts.sources) kinds.push(await layerKind(source));

  const byDigest = new Map<string, ChunkRef>();
  const merged = emptyRoot();
  const built: Array<{ handle: RefBlob; kind: LayerKind; info: BlobInfo; meta: Buffer; metaPath: string; contexts: number }> = [];
  let done = 0;
  for (const [i, source] of opts.sources.entries()) {
    const kind = kinds[i] as LayerKind;
    const features = refFeatures(kind);
    const layerIn = kind === 'gzip' ? new IndexedLayer(source, opts.codecs) : new LayerFile(source);
    const chunker = new RefChunker(layerIn, opts.chunkSize, new RefBlob(), byDigest);
    const layer = await readTarLayer(layerIn.tar((n) => opts.onProgress?.((done += n), undefined)), { files: (size) => chunker.sink(size), lower: merged, log });
    applyLayer(merged, layer);
    const blobId = layerIn.hash.digest('hex');
    if (chunker.located.length === 0) {
      log.info({ layer: blobId }, 'layer holds no new data: no blob');
      continue;
    }
    if (built.length >= Limits.MAX_V6_BLOBS) throw new UsageError(`more than ${Limits.MAX_V6_BLOBS} layers hold data: a RAFS v6 image has at most ${Limits.MAX_V6_BLOBS} data blobs`);
    const { bytes, meta } = metaBlob(opts.codecs, chunker.located, chunker.contexts, features);
    const metaDigest = sha256(bytes);
    built.push({
      handle: chunker.blob,
      kind,
      meta: bytes,
      metaPath: join(opts.blobDir, metaDigest.toString('hex')),
      contexts: chunker.contexts.length,
      info: {
        index: built.length,
        id: blobId,
        chunkSize: opts.chunkSize,
        chunkCount: chunker.located.length,
        compressor: Compressor.Gzip,
        digester: Digester.Sha256,
        features,
        compressedSize: layerIn.size,
        uncompressedSize: chunker.slots,
        meta,
        tocSize: 0,
        tocDigest: new Uint8Array(32),
        readahead: { offset: 0, size: 0 },
        separateMeta: { digest: metaDigest, size: bytes.length },
      },
    });
    log.info({ layer: blobId, kind, chunks: chunker.located.length, contexts: chunker.contexts.length, metaBlob: metaDigest.toString('hex') }, 'layer indexed');
  }
  const root = finishMerge(merged);
  checkTreeDepth(root);
  // Written once every layer is indexed: a layer that fails leaves nothing behind.
  await mkdir(opts.blobDir, { recursive: true });
  for (const b of built) await replaceFile(b.metaPath, (temp) => writeFile(temp, b.meta));
  const index = new Map<BlobHandle, number>(built.map((b, i) => [b.handle, i]));
  const prefetch = resolvePrefetch(root, opts.prefetchFiles ?? [], (path) => log.warn({ path }, 'prefetch path is not in the image; skipped'));
  const { root: broot, map } = toBootstrapTree(root, opts.chunkSize, (h) => index.get(h) as number);
  const blobs = built.map((b) => b.info);
  const bootstrap = writeV6Bootstrap({
    root: broot,
    chunkSize: opts.chunkSize,
    compressor: Compressor.Gzip,
    digester: Digester.Sha256,
    explicitUidGid: true,
    blobs,
    prefetch: prefetch.map((p) => map.get(p.node) as BootstrapNode),
  });
  await mkdir(dirname(opts.bootstrapPath), { recursive: true });
  await replaceFile(opts.bootstrapPath, (temp) => writeFile(temp, bootstrap));
  return {
    bootstrap,
    blobs: built.map((b) => ({ id: b.info.id, kind: b.kind, metaBlob: { id: basename(b.metaPath), path: b.metaPath, size: b.info.separateMeta?.size ?? 0 }, chunks: b.info.chunkCount, contexts: b.contexts })),
    prefetch: prefetch.map((p) => p.path),
  };
}
