/**
 * OCI image → Nydus image (RAFS v6), as nydusify does: pull every layer (verified against its
 * digest), build one blob per layer with new chunks and the merged bootstrap, then push the blobs,
 * a bootstrap layer (gzip tar holding `image/image.boot`), the config and a manifest with the media
 * types and annotations nydus-snapshotter expects (anchors.md §5.1).
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { FileWriter, FormatError, IntegrityError, type Logger, UsageError, fileSha256 } from '../../base/index.js';
import { build, checkFormatOptions } from '../../builder/build.js';
import { buildRefImage, refConflicts } from '../../builder/ref-build.js';
import type { Codecs, Compressor } from '../../format/compression.js';
import type { Digester } from '../../format/constants.js';
import { TAR_END, encodeTarHeaders, tarPadding } from '../../format/tar.js';
import { renameBlobs } from '../../format/v6/writer.js';
import { Annotation, type Descriptor, type Manifest, MediaType } from '../media-types.js';
import { parseImageConfig } from '../documents.js';
import { type ImageStore, readDocument, sha256Digest } from '../store.js';
import { StreamDigest } from '../registry/index.js';
import { fetchBootstrap } from './bootstrap-layer.js';

export interface ConvertOptions {
  source: ImageStore;
  target: ImageStore;
  /** A Nydus image whose chunks are reused (its blobs must be readable from `chunkDictStore`). */
  chunkDict?: ImageStore;
  codecs: Codecs;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  /** Batch small files' chunks (`BuildOptions.batchSize`). */
  batchSize?: number;
  /** zstd's level for chunk data (`BuildOptions.compressionLevel`). */
  compressionLevel?: number;
  /** zstd's level for the prefetch files' data (`BuildOptions.prefetchCompressionLevel`). */
  prefetchCompressionLevel?: number;
  prefetchFiles?: string[];
  /** Encrypt the new blobs (`BuildOptions.encrypt`). */
  encrypt?: boolean;
  /**
   * Index the layers in place (nydusify `--oci-ref`; gzip through ZRan, plain tars as tar-ref): the image is a bootstrap and a
   * meta blob per layer, its data the original layers, which must stay in the target repository.
   */
  ociRef?: boolean;
  workDir?: string;
  log: Logger;
  onProgress?: (phase: string, done: number, total: number | undefined) => void;
}

export interface ConvertResult {
  manifestDigest: string;
  blobs: string[];
  bootstrapDigest: string;
  layers: number;
  bytesPulled: number;
  bytesPushed: number;
}

/**
 * Streams a layer to a file, checked against its descriptor as it comes: never more bytes than its
 * size (a server sending without end stops at once, not when the disk is full), then its size and
 * digest. Returns its size.
 */
async function download(store: ImageStore, layer: Pick<Descriptor, 'digest' | 'size'>, path: string, onBytes: (n: number) => void): Promise<number> {
  const { digest } = layer;
  const what = `layer ${digest} from ${store.name}`;
  const hash = new StreamDigest(digest, what);
  const out = await FileWriter.create(path, 'w');
  let size = 0;
  try {
    for await (const chunk of store.blobStream(digest)) {
      size += chunk.length;
      if (size > layer.size) throw new IntegrityError(`${what} is longer than its descriptor's ${layer.size} bytes`);
      hash.update(chunk);
      onBytes(chunk.length);
      await out.write(chunk);
    }
    if (size !== layer.size) throw new IntegrityError(`${what} is ${size} bytes, not its descriptor's ${layer.size}`);
    hash.check();
  } catch (e) {
    await out.abort();
    throw e;
  }
  await out.close();
  return size;
}

/** The bootstrap layer: a tar holding `image/image.boot`, gzip-compressed; deterministic bytes. */
export function bootstrapLayer(bootstrap: Buffer): { tar: Buffer; gz: Buffer } {
  const entry = (path: string, type: 'dir' | 'file', size: number): Buffer =>
    encodeTarHeaders({ path: Buffer.from(path), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, mtimeSec: 0, mtimeNsec: 0, linkpath: Buffer.alloc(0), devmajor: 0, devminor: 0, xattrs: [] });
  const tar = Buffer.concat([entry('image/', 'dir', 0), entry('image/image.boot', 'file', bootstrap.length), bootstrap, Buffer.alloc(tarPadding(bootstrap.length)), TAR_END]);
  return { tar, gz: gzipSync(tar, { level: 6 }) };
}

/** Refuses what an `--oci-ref` conversion cannot honour: it stores no data of its own. */
function checkOciRef(opts: ConvertOptions): void {
  const given = refConflicts(opts);
  if (given.length > 0) throw new UsageError(`--oci-ref keeps the layers as they are: ${given.join(', ')} cannot apply`);
}

export async function convertImage(opts: ConvertOptions): Promise<ConvertResult> {
  const { log } = opts;
  // Before pulling anything.
  if (opts.ociRef) checkOciRef(opts);
  else checkFormatOptions(opts);
  const work = opts.workDir ?? (await mkdtemp(join(tmpdir(), 'damselfly-convert-')));
  const ownsWork = opts.workDir === undefined;
  let bytesPulled = 0;
  let bytesPushed = 0;
  try {
    const src = await opts.source.resolve();
    if (src.manifest.layers.some((l) => l.annotations?.[Annotation.NYDUS_BOOTSTRAP] === 'true')) {
      throw new UsageError(`${opts.source.name} is already a Nydus image`);
    }
    const configWhat = `config ${src.manifest.config.digest} of ${opts.source.name}`;
    const config = parseImageConfig(await readDocument(opts.source, src.manifest.config, configWhat), configWhat);
    if (opts.ociRef) {
      // ZRan for gzip layers, tar-ref for plain ones (as nydusify and nydus-image pick them).
      const indexable: string[] = [MediaType.OCI_LAYER_GZIP, MediaType.DOCKER_LAYER_GZIP, MediaType.OCI_LAYER];
      const other = src.manifest.layers.find((l) => !indexable.includes(l.mediaType));
      if (other !== undefined) throw new UsageError(`--oci-ref needs gzip or plain tar layers; ${other.digest} of ${opts.source.name} is ${other.mediaType}`);
    }
    await mkdir(join(work, 'layers'), { recursive: true });
    const total = src.manifest.layers.reduce((n, l) => n + l.size, 0);
    const layerFiles: string[] = [];
    let progress = 0;
    for (const [i, layer] of src.manifest.layers.entries()) {
      const path = join(work, 'layers', `${i}`);
      bytesPulled += await download(opts.source, layer, path, (n) => opts.onProgress?.('pull', (progress += n), total));
      layerFiles.push(path);
      log.info({ layer: layer.digest, size: layer.size }, 'layer pulled');
    }
    if (opts.ociRef) {
      // Pulled and checked against their digests: the ids the ZRan build gives the layers.
      const pulled = new Map(src.manifest.layers.map((l, i) => [l.digest.slice('sha256:'.length), layerFiles[i] as string]));
      const r = await convertRef(opts, layerFiles, pulled, work);
      bytesPushed += r.bytesPushed;
      const pushed = await publish(opts, src.mediaType === MediaType.DOCKER_MANIFEST, config, r.layers, r.bootstrap, {});
      bytesPushed += pushed.bytesPushed;
      return { manifestDigest: pushed.manifestDigest, blobs: r.ids, bootstrapDigest: pushed.bootstrapDigest, layers: src.manifest.layers.length, bytesPulled, bytesPushed };
    }
    let dictPath: string | undefined;
    /** The dictionary image's layers by digest: the size each of its blobs may have. */
    const dictLayers = new Map<string, Descriptor>();
    if (opts.chunkDict !== undefined) {
      dictPath = join(work, 'dict.boot');
      const dict = await fetchBootstrap(opts.chunkDict);
      for (const l of dict.resolved.manifest.layers) dictLayers.set(l.digest, l);
      await writeFile(dictPath, dict.bootstrap);
    }
    const result = await build({
      sources: layerFiles,
      blobDir: join(work, 'blobs'),
      bootstrapPath: join(work, 'image.boot'),
      codecs: opts.codecs,
      compressor: opts.compressor,
      digester: opts.digester,
      chunkSize: opts.chunkSize,
      ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
      ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
      ...(opts.prefetchCompressionLevel !== undefined ? { prefetchCompressionLevel: opts.prefetchCompressionLevel } : {}),
      ...(dictPath ? { chunkDictPath: dictPath } : {}),
      ...(opts.prefetchFiles ? { prefetchFiles: opts.prefetchFiles } : {}),
      ...(opts.encrypt === true ? { encrypt: true } : {}),
      log,
      onProgress: (d, t) => opts.onProgress?.('build', d, t),
    });
    // Registries address blobs by the SHA-256 of their whole content, which for RAFS v6 blobs
    // differs from the blob id (that leaves out the chunk-digest array): rename them in the
    // bootstrap, as nydus-snapshotter does with `nydus-image merge --blob-digests`.
    const renames = new Map<string, string>();
    for (const b of result.blobs) renames.set(b.id, await fileSha256(b.path));
    const bootstrap = renameBlobs(await readFile(join(work, 'image.boot')), renames);
    const ids = result.blobTable.map((b) => renames.get(b.id) ?? b.id);
    // Push data blobs: new ones from disk, dictionary ones copied when the target lacks them.
    const newIds = new Set(result.blobs.map((b) => b.id));
    const layers: Descriptor[] = [];
    for (const blob of result.blobTable) {
      const digest = `sha256:${renames.get(blob.id) ?? blob.id}`;
      let size: number;
      if (newIds.has(blob.id)) {
        const path = join(work, 'blobs', blob.id);
        size = (await stat(path)).size;
        if (!(await opts.target.hasBlob(digest))) {
          await opts.target.putBlob(digest, { path, size });
          bytesPushed += size;
        }
      } else {
        const layer = dictLayers.get(digest);
        size = layer?.size ?? blob.compressedSize;
        if (!(await opts.target.hasBlob(digest))) {
          // Through a file, as the layers: a dictionary blob may be far larger than memory.
          const path = join(work, 'dict-blobs', digest.slice('sha256:'.length));
          await mkdir(join(work, 'dict-blobs'), { recursive: true });
          if (layer === undefined) throw new FormatError(`blob ${digest} of the chunk dictionary ${(opts.chunkDict as ImageStore).name} is not one of its image's layers`);
          size = await download(opts.chunkDict as ImageStore, layer, path, () => undefined);
          await opts.target.putBlob(digest, { path, size });
          await rm(path);
          bytesPushed += size;
        }
      }
      layers.push({ mediaType: MediaType.NYDUS_BLOB, digest, size, annotations: { [Annotation.NYDUS_BLOB]: 'true' } });
      log.info({ blob: blob.id, size }, 'blob pushed');
    }
    const annotations: Record<string, string> = newIds.size < result.blobTable.length ? { [Annotation.NYDUS_REFERENCE_BLOB_IDS]: JSON.stringify(ids) } : {};
    const pushed = await publish(opts, src.mediaType === MediaType.DOCKER_MANIFEST, config, layers, bootstrap, annotations);
    bytesPushed += pushed.bytesPushed;
    return { manifestDigest: pushed.manifestDigest, blobs: ids, bootstrapDigest: pushed.bootstrapDigest, layers: src.manifest.layers.length, bytesPulled, bytesPushed };
  } finally {
    if (ownsWork) await rm(work, { recursive: true, force: true });
  }
}

/**
 * `--oci-ref`: the pulled layers indexed in place (`buildRefImage`: gzip through ZRan, plain tars as tar-ref). Pushed: each layer that
 * holds data, where the target lacks it (it is the image's data), and its meta blob, which the
 * manifest lists as a Nydus blob layer naming the layer it indexes (as nydus-snapshotter does).
 */
async function convertRef(opts: ConvertOptions, layerFiles: string[], pulled: ReadonlyMap<string, string>, work: string): Promise<{ layers: Descriptor[]; ids: string[]; bootstrap: Buffer; bytesPushed: number }> {
  const r = await buildRefImage({
    sources: layerFiles,
    blobDir: join(work, 'blobs'),
    bootstrapPath: join(work, 'image.boot'),
    chunkSize: opts.chunkSize,
    ...(opts.prefetchFiles !== undefined ? { prefetchFiles: opts.prefetchFiles } : {}),
    codecs: opts.codecs,
    log: opts.log,
    onProgress: (d, t) => opts.onProgress?.('build', d, t),
  });
  let bytesPushed = 0;
  const push = async (digest: string, path: string): Promise<number> => {
    const size = (await stat(path)).size;
    if (!(await opts.target.hasBlob(digest))) {
      await opts.target.putBlob(digest, { path, size });
      bytesPushed += size;
    }
    return size;
  };
  const layers: Descriptor[] = [];
  for (const b of r.blobs) {
    const path = pulled.get(b.id);
    if (path === undefined) throw new Error(`ZRan blob ${b.id} is none of the pulled layers`);
    await push(`sha256:${b.id}`, path);
    const digest = `sha256:${b.metaBlob.id}`;
    const size = await push(digest, b.metaBlob.path);
    layers.push({ mediaType: MediaType.NYDUS_BLOB, digest, size, annotations: { [Annotation.NYDUS_BLOB]: 'true', [Annotation.NYDUS_REF]: `sha256:${b.id}` } });
    opts.log.info({ layer: b.id, metaBlob: b.metaBlob.id }, 'meta blob pushed');
  }
  return { layers, ids: r.blobs.map((b) => b.id), bootstrap: r.bootstrap, bytesPushed };
}

/**
 * Pushes the bootstrap layer, the config and the manifest of a converted image whose blob layers
 * (`layers`) are pushed: diff_ids are the blob digests (nydus blobs are not compressed as a whole)
 * and the bootstrap tar's digest; one history entry for the bootstrap layer.
 */
async function publish(
  opts: ConvertOptions,
  docker: boolean,
  config: ReturnType<typeof parseImageConfig>,
  blobLayers: Descriptor[],
  bootstrap: Buffer,
  annotations: Record<string, string>,
): Promise<{ manifestDigest: string; bootstrapDigest: string; bytesPushed: number }> {
  const boot = bootstrapLayer(bootstrap);
  const bootDigest = sha256Digest(boot.gz);
  await opts.target.putBlob(bootDigest, boot.gz);
  const layers: Descriptor[] = [
    ...blobLayers,
    {
      mediaType: docker ? MediaType.DOCKER_LAYER_GZIP : MediaType.OCI_LAYER_GZIP,
      digest: bootDigest,
      size: boot.gz.length,
      annotations: { [Annotation.NYDUS_BOOTSTRAP]: 'true', [Annotation.NYDUS_FS_VERSION]: '6', ...annotations },
    },
  ];
  const rootfs = { type: 'layers', diff_ids: [...blobLayers.map((l) => l.digest), sha256Digest(boot.tar)] };
  const history = [...(config.history ?? []), { created_by: 'Nydus Converter', comment: 'Nydus Bootstrap Layer' }];
  const configBytes = Buffer.from(JSON.stringify({ ...config, rootfs, history }));
  const configDigest = sha256Digest(configBytes);
  await opts.target.putBlob(configDigest, configBytes);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: { mediaType: docker ? MediaType.DOCKER_CONFIG : MediaType.OCI_CONFIG, digest: configDigest, size: configBytes.length },
    layers,
  };
  const manifestDigest = await opts.target.putManifest(MediaType.OCI_MANIFEST, Buffer.from(JSON.stringify(manifest, null, 2)));
  opts.log.info({ manifest: manifestDigest, target: opts.target.name }, 'Nydus image pushed');
  return { manifestDigest, bootstrapDigest: bootDigest, bytesPushed: boot.gz.length };
}
