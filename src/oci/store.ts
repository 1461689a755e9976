/**
 * Where images live: a registry repository or an OCI image layout directory, behind one
 * `ImageStore` interface (manifests, content-addressed blobs). Every blob read whole is verified
 * against its digest.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FormatError, IntegrityError, type Logger, NotFoundError, UsageError, replaceFile } from '../base/index.js';
import { LOCK_EX, flockWait } from '../native/index.js';
import { parseImageDocument, parseIndex } from './documents.js';
import { type Descriptor, type Index, MANIFEST_ACCEPT, type Manifest, MediaType } from './media-types.js';
import { type ImageRef, refToString } from './reference.js';
import { type RegistryClient, verifyDigest } from './registry/index.js';

export interface ResolvedManifest {
  manifest: Manifest;
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

export interface ImageStore {
  readonly name: string;
  /** The image manifest of the reference (the linux/<arch> one when the reference is an index). */
  resolve(): Promise<ResolvedManifest>;
  blobStream(digest: string): AsyncIterable<Buffer>;
  hasBlob(digest: string): Promise<boolean>;
  putBlob(digest: string, data: Buffer | { path: string; size: number }): Promise<void>;
  /** Stores a manifest under the reference's tag; returns its digest. */
  putManifest(mediaType: string, bytes: Buffer): Promise<string>;
}

export function sha256Digest(b: Uint8Array): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

function hexOf(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (m === null) throw new IntegrityError(`unsupported digest ${digest}`);
  return m[1] as string;
}

/** This host's OCI architecture name. */
export function hostArch(): string {
  return { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }[process.arch as string] ?? process.arch;
}

/** Picks the linux/<host arch> manifest of an index (Nydus manifests preferred only when asked). */
export function pickManifest(index: Index, preferNydus = false): Descriptor {
  const arch = hostArch();
  const candidates = index.manifests.filter((m) => (m.platform === undefined || (m.platform.os === 'linux' && m.platform.architecture === arch)));
  const nydus = (m: Descriptor): boolean => m.artifactType === 'application/vnd.nydus.image.manifest.v1+json' || (m.platform?.['os.features'] ?? []).includes('nydus.remoteimage.v1');
  const pick = candidates.find((m) => nydus(m) === preferNydus) ?? candidates[0];
  if (pick === undefined) throw new NotFoundError(`the image index has no linux/${arch} manifest`);
  return pick;
}

/** The manifest an index points to (an index there is refused: they do not nest in images we read). */
function manifestOf(bytes: Buffer, mediaType: string, what: string): Manifest {
  const doc = parseImageDocument(bytes, mediaType, what);
  if (doc.kind === 'index') throw new FormatError(`${what} is an image index inside an image index`);
  return doc.manifest;
}

/** The largest manifest or config read whole (the registry client's limit for manifests too). */
const MAX_DOCUMENT_BYTES = 32 << 20;

/**
 * A document blob (a manifest in an OCI layout, a config) read whole: never more bytes than its
 * descriptor gives, and those verified against its digest.
 */
export async function readDocument(store: ImageStore, d: Pick<Descriptor, 'digest' | 'size'>, what: string): Promise<Buffer> {
  if (d.size > MAX_DOCUMENT_BYTES) throw new FormatError(`${what}: ${d.size} bytes is more than the ${MAX_DOCUMENT_BYTES} a document may have`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const p of store.blobStream(d.digest)) {
    n += p.length;
    if (n > d.size) throw new IntegrityError(`${what} is longer than its descriptor's ${d.size} bytes`);
    parts.push(p);
  }
  if (n !== d.size) throw new IntegrityError(`${what} is ${n} bytes, its descriptor says ${d.size}`);
  const b = Buffer.concat(parts, n);
  verifyDigest(b, d.digest, what);
  return b;
}

export class RegistryStore implements ImageStore {
  readonly name: string;

  constructor(
    private readonly client: RegistryClient,
    private readonly ref: Extract<ImageRef, { kind: 'registry' }>,
    private readonly preferNydus = false,
  ) {
    this.name = `${ref.host}/${ref.repo}`;
  }

  async resolve(): Promise<ResolvedManifest> {
    const r = await this.client.getManifest(this.ref.repo, this.ref.digest ?? this.ref.tag ?? 'latest', MANIFEST_ACCEPT);
    const doc = parseImageDocument(r.bytes, r.mediaType, `manifest of ${this.name}`);
    if (doc.kind === 'manifest') return { manifest: doc.manifest, mediaType: r.mediaType, digest: r.digest, bytes: r.bytes };
    const d = pickManifest(doc.index, this.preferNydus);
    const m = await this.client.getManifest(this.ref.repo, d.digest, MANIFEST_ACCEPT);
    return { manifest: manifestOf(m.bytes, m.mediaType, `manifest ${d.digest} of ${this.name}`), mediaType: m.mediaType, digest: m.digest, bytes: m.bytes };
  }

  blobStream(digest: string): AsyncIterable<Buffer> {
    return this.client.blobStream(this.ref.repo, digest);
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await this.client.statBlob(this.ref.repo, digest)) !== undefined;
  }

  putBlob(digest: string, data: Buffer | { path: string; size: number }): Promise<void> {
    return this.client.pushBlob(this.ref.repo, digest, data);
  }

  putManifest(mediaType: string, bytes: Buffer): Promise<string> {
    // A reference by digest names an image that exists: a new manifest cannot have that digest,
    // and pushing it to a tag the reference never named would overwrite someone else's.
    if (this.ref.tag === undefined || this.ref.digest !== undefined) return Promise.reject(new UsageError(`${refToString(this.ref)}: a push needs a tag, not a digest`));
    return this.client.putManifest(this.ref.repo, this.ref.tag, mediaType, bytes);
  }
}

const REF_NAME = 'org.opencontainers.image.ref.name';

/** How long tagging waits for another writer of the same OCI layout's index (moments, normally). */
const INDEX_LOCK_WAIT_MS = 60_000;

export class OciLayoutStore implements ImageStore {
  readonly name: string;

  constructor(
    private readonly ref: Extract<ImageRef, { kind: 'oci-layout' }>,
    private readonly log: Logger,
  ) {
    this.name = `oci:${ref.dir}`;
  }

  private blobPath(digest: string): string {
    return join(this.ref.dir, 'blobs', 'sha256', hexOf(digest));
  }

  private async index(): Promise<Index> {
    try {
      return parseIndex(await readFile(join(this.ref.dir, 'index.json')), `${this.name}/index.json`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { schemaVersion: 2, manifests: [] };
      throw e;
    }
  }

  async resolve(): Promise<ResolvedManifest> {
    const index = await this.index();
    const tagged = this.ref.tag === undefined ? index.manifests : index.manifests.filter((m) => m.annotations?.[REF_NAME] === this.ref.tag);
    if (tagged.length === 0) throw new NotFoundError(`${this.name}: no manifest${this.ref.tag ? ` tagged ${this.ref.tag}` : ''}`);
    const d = tagged.length === 1 ? (tagged[0] as Descriptor) : pickManifest({ schemaVersion: 2, manifests: tagged });
    const bytes = await readDocument(this, d, `manifest ${d.digest} of ${this.name}`);
    const doc = parseImageDocument(bytes, d.mediaType, `manifest ${d.digest} of ${this.name}`);
    if (doc.kind === 'manifest') return { manifest: doc.manifest, mediaType: d.mediaType, digest: d.digest, bytes };
    const m = pickManifest(doc.index);
    const mBytes = await readDocument(this, m, `manifest ${m.digest} of ${this.name}`);
    return { manifest: manifestOf(mBytes, m.mediaType, `manifest ${m.digest} of ${this.name}`), mediaType: m.mediaType, digest: m.digest, bytes: mBytes };
  }

  async *blobStream(digest: string): AsyncIterable<Buffer> {
    try {
      for await (const chunk of createReadStream(this.blobPath(digest), { highWaterMark: 1 << 20 })) yield chunk as Buffer;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${this.name}: blob ${digest} is missing`);
      throw e;
    }
  }

  async hasBlob(digest: string): Promise<boolean> {
    return stat(this.blobPath(digest)).then(
      () => true,
      () => false,
    );
  }

  async putBlob(digest: string, data: Buffer | { path: string; size: number }): Promise<void> {
    const path = this.blobPath(digest);
    // Content-addressed: a file of the right size is this blob (reads verify its digest); one of
    // another size (cut short by an earlier writer) is replaced.
    const there = await stat(path).catch(() => undefined);
    if (there?.size === (Buffer.isBuffer(data) ? data.length : data.size)) return;
    await mkdir(join(this.ref.dir, 'blobs', 'sha256'), { recursive: true });
    await replaceFile(path, (temp) => (Buffer.isBuffer(data) ? writeFile(temp, data) : pipeline(createReadStream(data.path), createWriteStream(temp))));
  }

  async putManifest(mediaType: string, bytes: Buffer): Promise<string> {
    const digest = sha256Digest(bytes);
    await this.putBlob(digest, bytes);
    await replaceFile(join(this.ref.dir, 'oci-layout'), (temp) => writeFile(temp, JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    const tag = this.ref.tag ?? 'latest';
    // Read, change, replace the index under an exclusive lock on the layout directory: two
    // writers tagging at once would each write back the index they read, and one tag be lost.
    const dir = await open(this.ref.dir, 'r');
    try {
      await flockWait(dir.fd, LOCK_EX, `${this.name}: the index is held by another writer`, INDEX_LOCK_WAIT_MS);
      const index = await this.index();
      index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
      index.manifests.push({ mediaType, digest, size: bytes.length, annotations: { [REF_NAME]: tag } });
      index.mediaType = MediaType.OCI_INDEX;
      // Whole or not at all: a half-written index would lose every tag of the layout.
      await replaceFile(join(this.ref.dir, 'index.json'), (temp) => writeFile(temp, JSON.stringify(index, null, 2)));
    } finally {
      await dir.close(); // releases the lock
    }
    this.log.debug({ store: this.name, tag, digest }, 'manifest stored');
    return digest;
  }
}
