/**
 * Seeded fuzzing of the image documents a registry or an OCI layout hands us: the manifests, image
 * indexes and image configs that `mount --image` (and nydusd's mounts of a registry image) and
 * `convert` read before any chunk. A real source image and its conversion are served by a small
 * registry of the test's own (the Debian registry refuses to store a broken manifest) and from OCI
 * layouts, with one document mutated per case: values replaced by every JSON type and boundary,
 * keys removed, renamed and added, digests and sizes that lie, media types swapped (in the document
 * and in Content-Type), documents cut short or not JSON at all.
 *
 * Invariants: each case ends within a bound, either with the exact bytes the unmutated image gives
 * (the Nydus bootstrap; a conversion's bootstrap when the layers are the same) or with one of our
 * errors (`DamselflyError`: a FormatError, IntegrityError, NotFoundError, … naming what is wrong) —
 * never a TypeError from a field that was not what the code assumed, never a hang.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { DamselflyError, silentLogger } from '../../src/base/index.js';
import { Compressor } from '../../src/format/compression.js';
import { Digester } from '../../src/format/constants.js';
import { nativeCodecs } from '../../src/native/index.js';
import { fetchBootstrap } from '../../src/oci/convert/bootstrap-layer.js';
import { convertImage } from '../../src/oci/convert/convert.js';
import { MediaType } from '../../src/oci/media-types.js';
import { RegistryClient } from '../../src/oci/registry/client.js';
import { type ImageStore, OciLayoutStore, RegistryStore, hostArch, sha256Digest } from '../../src/oci/store.js';
import { withTempDir } from '../helpers/env.js';
import { AWKWARD_VALUES, type Json, mutateJson } from '../helpers/json-mutation.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { tarArchive, tarEntry } from '../helpers/tar.js';

const CASES = 400;
const CASE_LIMIT_MS = 20_000;
const REPO = 'fuzz/app';

interface Doc {
  mediaType: string;
  bytes: Buffer;
}

/** A registry of the test's own: manifests by tag or digest and blobs by digest, from maps. */
class DocRegistry {
  readonly server: Server;
  /** `manifests/<ref>` → document; Content-Type is `contentType` when set. */
  manifests = new Map<string, Doc>();
  contentType: string | undefined;
  blobs = new Map<string, Buffer>();

  constructor() {
    this.server = createServer((req, res) => this.answer(req, res));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '';
    if (url === '/v2/') return void res.writeHead(200).end('{}');
    const prefix = `/v2/${REPO}/`;
    const rest = url.startsWith(prefix) ? decodeURIComponent(url.slice(prefix.length)) : '';
    const doc = rest.startsWith('manifests/') ? this.manifests.get(rest.slice('manifests/'.length)) : undefined;
    const blob = rest.startsWith('blobs/') ? this.blobs.get(rest.slice('blobs/'.length)) : undefined;
    if (doc !== undefined) {
      res.writeHead(200, { 'content-type': this.contentType ?? doc.mediaType, 'content-length': doc.bytes.length });
      return void res.end(req.method === 'HEAD' ? undefined : doc.bytes);
    }
    if (blob !== undefined) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length });
      return void res.end(req.method === 'HEAD' ? undefined : blob);
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'unknown' }] }));
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

function json(o: unknown): Buffer {
  return Buffer.from(JSON.stringify(o));
}

/** The real images: a one-layer OCI image and its Nydus conversion, blobs and documents. */
interface Images {
  blobs: Map<string, Buffer>;
  source: { manifest: Json; config: Json };
  nydus: { manifest: Json };
  /** The Nydus image's bootstrap, and that of converting the source again. */
  bootstrap: string;
  layers: string[];
}

async function makeImages(dir: string): Promise<Images> {
  const blobs = new Map<string, Buffer>();
  const put = (b: Buffer): { digest: string; size: number } => {
    const digest = sha256Digest(b);
    blobs.set(digest, b);
    return { digest, size: b.length };
  };
  const file = (path: string, data: Buffer) => ({ entry: tarEntry(path, 'file', { size: data.length }), data });
  const tar = tarArchive([
    { entry: tarEntry('bin/', 'dir') },
    file('bin/tool', Buffer.alloc(300_000, 7)),
    file('etc/os-release', Buffer.from('ID=fuzz\n')),
    { entry: tarEntry('etc/link', 'symlink', { linkpath: Buffer.from('os-release') }) },
  ]);
  const layer = { mediaType: MediaType.OCI_LAYER_GZIP, ...put(gzipSync(tar)) };
  const config = { architecture: hostArch(), os: 'linux', config: { Cmd: ['/bin/tool'] }, rootfs: { type: 'layers', diff_ids: [sha256Digest(tar)] }, history: [{ created_by: 'fuzz' }] };
  const manifest = { schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: { mediaType: MediaType.OCI_CONFIG, ...put(json(config)) }, layers: [layer] };
  // The conversion, through OCI layouts; its blobs join the registry's.
  const src = join(dir, 'src-layout');
  const srcStore = new OciLayoutStore({ kind: 'oci-layout', dir: src, tag: 'v1' }, silentLogger);
  for (const [d, b] of blobs) await srcStore.putBlob(d, b);
  await srcStore.putManifest(MediaType.OCI_MANIFEST, json(manifest));
  const out = join(dir, 'nydus-layout');
  const r = await convert(srcStore, new OciLayoutStore({ kind: 'oci-layout', dir: out, tag: 'v1' }, silentLogger));
  const outStore = new OciLayoutStore({ kind: 'oci-layout', dir: out, tag: 'v1' }, silentLogger);
  const resolved = await outStore.resolve();
  const { bootstrap } = await fetchBootstrap(outStore);
  for (const l of [resolved.manifest.config, ...resolved.manifest.layers]) {
    blobs.set(l.digest, readFileSync(join(out, 'blobs', 'sha256', l.digest.slice('sha256:'.length))));
  }
  assert.equal(r.manifestDigest, resolved.digest);
  return { blobs, source: { manifest, config }, nydus: { manifest: JSON.parse(resolved.bytes.toString()) as Json }, bootstrap: sha(bootstrap), layers: [layer.digest] };
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function convert(source: ImageStore, target: ImageStore): ReturnType<typeof convertImage> {
  return convertImage({ source, target, codecs: nativeCodecs, compressor: Compressor.Zstd, digester: Digester.Blake3, chunkSize: 0x10000, log: silentLogger });
}

/** Values that fit image documents besides the generic ones: digests, sizes and media types that lie. */
function docValue(images: Images, rng: Rng): Json | undefined {
  const digests = [...images.blobs.keys()];
  return rng.pick<() => Json | undefined>([
    () => rng.pick(AWKWARD_VALUES),
    () => rng.pick(digests),
    () => `sha256:${'0'.repeat(64)}`,
    () => `sha512:${'a'.repeat(128)}`,
    () => rng.pick(['sha256:', 'sha256:ABC', `sha256:${'0'.repeat(63)}`, 'sha256:../../../etc/passwd', `md5:${'0'.repeat(32)}`, 'sha256/abc']),
    () => rng.pick(Object.values(MediaType)),
    () => rng.pick([2, 1, 3, '2']),
    () => ({ architecture: rng.pick([hostArch(), 'arm64', 7]), os: rng.pick(['linux', 'windows', null]) }),
    () => ({ 'containerd.io/snapshot/nydus-bootstrap': rng.pick(['true', 'false', true]) }),
  ])();
}

/** The document bytes a mutation gives: most mutated as JSON, some as bytes. */
function mutatedBytes(images: Images, doc: Json, rng: Rng): Buffer {
  const r = rng.next();
  const text = json(doc);
  if (r < 0.06) return text.subarray(0, rng.int(text.length));
  if (r < 0.09) return Buffer.from(rng.pick(['null', '[]', '"manifest"', '2', '{', '', '\u0000', '{"schemaVersion":2}']));
  if (r < 0.12) {
    const b = Buffer.from(text);
    const at = rng.int(b.length);
    b[at] = (b[at] as number) ^ (1 << rng.int(8));
    return b;
  }
  return json(mutateJson(doc, rng, { value: (g) => docValue(images, g), keys: ['mediaType', 'digest', 'size', 'layers', 'manifests', 'config', 'platform', 'annotations', 'history', 'schemaVersion'] }));
}

type Target = 'nydus manifest' | 'nydus index' | 'source manifest' | 'source index' | 'source config';

/**
 * One case's documents: the image tagged `v1` (through an index or not), with `target` mutated
 * and the documents that name it updated to its new digest, so that the mutation is what is read.
 */
function caseDocs(images: Images, target: Target, rng: Rng): { tag: Doc; byDigest: Map<string, Doc>; blobs: Map<string, Buffer>; mutated: Json | undefined } {
  const byDigest = new Map<string, Doc>();
  const blobs = new Map(images.blobs);
  const add = (d: Doc): { digest: string; size: number; mediaType: string } => {
    const digest = sha256Digest(d.bytes);
    byDigest.set(digest, d);
    return { digest, size: d.bytes.length, mediaType: d.mediaType };
  };
  const nydus = target.startsWith('nydus');
  const manifest = structuredClone(nydus ? images.nydus.manifest : images.source.manifest) as { config: { digest: string; size: number } } & Record<string, Json>;
  let mutated: Json | undefined;
  if (target === 'source config') {
    const bytes = mutatedBytes(images, images.source.config, rng);
    blobs.set(sha256Digest(bytes), bytes);
    manifest.config = { ...manifest.config, digest: sha256Digest(bytes), size: bytes.length };
  }
  let manifestBytes = json(manifest);
  if (target.endsWith('manifest')) {
    manifestBytes = mutatedBytes(images, manifest, rng);
    mutated = (() => {
      try {
        return JSON.parse(manifestBytes.toString()) as Json;
      } catch {
        return undefined;
      }
    })();
  }
  const manifestDoc = { mediaType: MediaType.OCI_MANIFEST, bytes: manifestBytes };
  if (!target.endsWith('index') && rng.next() < 0.7) return { tag: manifestDoc, byDigest, blobs, mutated };
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests: [
      { ...add(manifestDoc), platform: { architecture: 'arm64', os: 'linux' } },
      { ...add(manifestDoc), platform: { architecture: hostArch(), os: 'linux' } },
    ],
  };
  const indexBytes = target.endsWith('index') ? mutatedBytes(images, index, rng) : json(index);
  return { tag: { mediaType: MediaType.OCI_INDEX, bytes: indexBytes }, byDigest, blobs, mutated };
}

async function layoutStore(dir: string, docs: { tag: Doc; byDigest: Map<string, Doc>; blobs: Map<string, Buffer> }, shared: string): Promise<ImageStore> {
  await mkdir(dir);
  await symlink(shared, join(dir, 'blobs'));
  for (const [d, doc] of [...docs.byDigest, [sha256Digest(docs.tag.bytes), docs.tag] as const]) {
    await writeFile(join(shared, 'sha256', d.slice('sha256:'.length)), doc.bytes);
  }
  for (const [d, b] of docs.blobs) await writeFile(join(shared, 'sha256', d.slice('sha256:'.length)), b, { flag: 'wx' }).catch(() => undefined);
  const tagged = { mediaType: docs.tag.mediaType, digest: sha256Digest(docs.tag.bytes), size: docs.tag.bytes.length, annotations: { 'org.opencontainers.image.ref.name': 'v1' } };
  await writeFile(join(dir, 'index.json'), json({ schemaVersion: 2, manifests: [tagged] }));
  return new OciLayoutStore({ kind: 'oci-layout', dir, tag: 'v1' }, silentLogger);
}

test(`image documents (${CASES} mutants): the right bytes or one of our errors, never another exception or a hang`, async (t) => {
  await withTempDir('damselfly-fuzz-docs-', async (dir) => {
    const images = await makeImages(dir);
    const registry = new DocRegistry();
    const host = await registry.listen();
    const shared = join(dir, 'blobs');
    await mkdir(join(shared, 'sha256'), { recursive: true });
    const counts = new Map<string, number>();
    try {
      for (let i = 0; i < CASES; i++) {
        const rng = caseRng('image-documents', i);
        const target = rng.pick<Target>(['nydus manifest', 'nydus index', 'source manifest', 'source index', 'source config']);
        const docs = caseDocs(images, target, rng);
        const viaRegistry = rng.next() < 0.6;
        const client = new RegistryClient({ host, scheme: 'http', log: silentLogger, timeoutMs: 2000, retryLimit: 0 });
        let store: ImageStore;
        if (viaRegistry) {
          registry.manifests = new Map([['v1', docs.tag], ...[...docs.byDigest].map(([d, doc]) => [d, doc] as const)]);
          registry.blobs = docs.blobs;
          registry.contentType = rng.next() < 0.15 ? rng.pick(['application/json', 'text/plain', MediaType.OCI_INDEX, MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST, '']) : undefined;
          store = new RegistryStore(client, { kind: 'registry', host, repo: REPO, tag: 'v1' }, target.startsWith('nydus'));
        } else {
          store = await layoutStore(join(dir, `case-${i}`), docs, shared);
        }
        const what = `case ${i} (${target}, ${viaRegistry ? 'registry' : 'OCI layout'}): ${docs.tag.bytes.toString().slice(0, 300)} / ${JSON.stringify(docs.mutated)?.slice(0, 300)}`;
        const started = Date.now();
        let outcome: string;
        try {
          if (target.startsWith('nydus')) {
            const { bootstrap } = await fetchBootstrap(store);
            assert.equal(sha(bootstrap), images.bootstrap, `${what}: a bootstrap other than the image's`);
          } else {
            const out = join(dir, `out-${i}`);
            const targetStore = new OciLayoutStore({ kind: 'oci-layout', dir: out, tag: 'v1' }, silentLogger);
            await convert(store, targetStore);
            const { bootstrap, resolved } = await fetchBootstrap(targetStore);
            const layers = (docs.mutated as { layers?: Array<{ digest?: unknown }> } | undefined)?.layers?.map((l) => l.digest);
            if (target !== 'source manifest' || JSON.stringify(layers) === JSON.stringify(images.layers)) {
              assert.equal(sha(bootstrap), images.bootstrap, `${what}: the same layers converted to another bootstrap`);
            }
            assert.equal(resolved.manifest.layers.length, 2, what);
            await rm(out, { recursive: true, force: true });
          }
          outcome = 'ok';
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          assert.ok(e instanceof DamselflyError, `${what}: threw ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
          assert.ok(e.message.length > 0, `${what}: an empty message`);
          outcome = e.constructor.name;
        } finally {
          await client.close();
        }
        assert.ok(Date.now() - started < CASE_LIMIT_MS, `${what}: took ${Date.now() - started} ms`);
        counts.set(`${target}: ${outcome}`, (counts.get(`${target}: ${outcome}`) ?? 0) + 1);
      }
    } finally {
      await new Promise((r) => registry.server.close(r));
    }
    t.diagnostic([...counts].sort().map(([k, n]) => `${k} ${n}`).join(', '));
    for (const target of ['nydus', 'source']) {
      assert.ok([...counts].some(([k]) => k.startsWith(target) && k.endsWith(': ok')), `no ${target} case succeeded: the mutations leave nothing readable`);
    }
  });
});
