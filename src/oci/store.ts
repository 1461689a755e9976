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
import { IntegrityError, type Logger, NotFoundError, UsageError, replaceFile } from '../base/index.js';
import { LOCK_EX, flockWait } from '../native/index.js';
import { type Descriptor, type Index, MANIFEST_ACCEPT, type Manifest, MediaType, isIndex } from './media-types.js';
import type { ImageRef } from './reference.js';
import type { RegistryClient } from './registry/index.js';

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

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (e) {
    throw new IntegrityError(`${what} is not valid JSON`, { cause: e });
  }
}

async function readAllVerified(stream: AsyncIterable<Buffer>, digest: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p);
  const b = Buffer.concat(parts);
  if (sha256Digest(b) !== digest) throw new IntegrityError(`blob ${digest} does not match its digest`);
  return b;
}

export async function readBlob(store: ImageStore, digest: string): Promise<Buffer> {
  return readAllVerified(store.blobStream(digest), digest);
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
    let r = await this.client.getManifest(this.ref.repo, this.ref.digest ?? this.ref.tag ?? 'latest', MANIFEST_ACCEPT);
    let doc = parseJson<Manifest | Index>(r.bytes, `manifest of ${this.name}`);
    if (isIndex(r.mediaType, doc)) {
      const d = pickManifest(doc, this.preferNydus);
      r = await this.client.getManifest(this.ref.repo, d.digest, MANIFEST_ACCEPT);
      doc = parseJson<Manifest>(r.bytes, `manifest ${d.digest}`);
    }
    return { manifest: doc as Manifest, mediaType: r.mediaType, digest: r.digest, bytes: r.bytes };
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
    return this.client.putManifest(this.ref.repo, this.ref.tag ?? 'latest', mediaType, bytes);
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
      return parseJson<Index>(await readFile(join(this.ref.dir, 'index.json')), `${this.name}/index.json`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { schemaVersion: 2, manifests: [] };
      throw e;
    }
  }

  async resolve(): Promise<ResolvedManifest> {
    const index = await this.index();
    const tagged = this.ref.tag === undefined ? index.manifests : index.manifests.filter((m) => m.annotations?.[REF_NAME] === this.ref.tag);
    if (tagged.length === 0) throw new NotFoundError(`${this.name}: no manifest${this.ref.tag ? ` tagged ${this.ref.tag}` : ''}`);
    let d = tagged.length === 1 ? (tagged[0] as Descriptor) : pickManifest({ schemaVersion: 2, manifests: tagged });
    let bytes = await readBlob(this, d.digest);
    let doc = parseJson<Manifest | Index>(bytes, `manifest ${d.digest}`);
    if (isIndex(d.mediaType, doc)) {
      d = pickManifest(doc);
      bytes = await readBlob(this, d.digest);
      doc = parseJson<Manifest>(bytes, `manifest ${d.digest}`);
    }
    return { manifest: doc as Manifest, mediaType: d.mediaType, digest: d.digest, bytes };
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

/** Checks the config media type a manifest may use. */
export function assertManifest(m: Manifest, what: string): void {
  if (m.schemaVersion !== 2 || m.config === undefined || !Array.isArray(m.layers)) throw new UsageError(`${what} is not an image manifest`);
}
