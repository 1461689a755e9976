/**
 * Image documents read from a registry or an OCI layout — manifests, image indexes, image configs
 * — are untrusted bytes: each is parsed here and every field Damselfly uses is checked (OCI
 * image-spec: descriptor, manifest, index, config) before any code relies on its type. A document
 * that does not fit is a `FormatError` naming it and the field; unknown fields are kept as they
 * are (an OCI layout's index is written back with them).
 */
import { FormatError } from '../base/index.js';
import { type Descriptor, type Index, type Manifest, MediaType } from './media-types.js';
import { parseDigest } from './registry/index.js';

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJsonObject(bytes: Buffer, what: string): Obj {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new FormatError(`${what} is not valid JSON`, { cause: e });
  }
  if (!isObject(doc)) throw new FormatError(`${what} is not a JSON object`);
  return doc;
}

function optionalString(o: Obj, key: string, what: string): void {
  if (o[key] !== undefined && typeof o[key] !== 'string') throw new FormatError(`${what}: ${key} is not a string`);
}

function checkStringMap(v: unknown, what: string): void {
  if (v === undefined) return;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string')) throw new FormatError(`${what} is not a map of strings`);
}

function checkStringArray(v: unknown, what: string): void {
  if (v === undefined) return;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new FormatError(`${what} is not an array of strings`);
}

/** A content descriptor: media type, a digest Damselfly can verify (sha256, sha512), a size. */
function checkDescriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v)) throw new FormatError(`${what} is not a descriptor`);
  if (typeof v.mediaType !== 'string') throw new FormatError(`${what}: mediaType is not a string`);
  if (typeof v.digest !== 'string' || parseDigest(v.digest) === undefined) {
    throw new FormatError(`${what}: digest ${JSON.stringify(v.digest)?.slice(0, 200)} is not sha256:<64 hex> or sha512:<128 hex>`);
  }
  if (!Number.isSafeInteger(v.size) || (v.size as number) < 0) throw new FormatError(`${what}: size ${JSON.stringify(v.size)?.slice(0, 50)} is not a byte count`);
  checkStringMap(v.annotations, `${what}: annotations`);
  optionalString(v, 'artifactType', what);
  if (v.platform !== undefined) {
    const p = v.platform;
    if (!isObject(p) || typeof p.architecture !== 'string' || typeof p.os !== 'string') throw new FormatError(`${what}: platform lacks os and architecture`);
    optionalString(p, 'variant', `${what}: platform`);
    optionalString(p, 'os.version', `${what}: platform`);
    checkStringArray(p['os.features'], `${what}: platform os.features`);
  }
  return v as unknown as Descriptor;
}

function checkSchemaVersion(o: Obj, what: string): void {
  if (o.schemaVersion !== 2) throw new FormatError(`${what}: schemaVersion ${JSON.stringify(o.schemaVersion)?.slice(0, 50)} is not 2`);
  optionalString(o, 'mediaType', what);
  checkStringMap(o.annotations, `${what}: annotations`);
}

function checkManifest(o: Obj, what: string): Manifest {
  checkSchemaVersion(o, what);
  checkDescriptor(o.config, `${what}: config`);
  if (!Array.isArray(o.layers)) throw new FormatError(`${what}: layers is not an array`);
  o.layers.forEach((l, i) => checkDescriptor(l, `${what}: layer ${i}`));
  return o as unknown as Manifest;
}

function checkIndex(o: Obj, what: string): Index {
  checkSchemaVersion(o, what);
  if (!Array.isArray(o.manifests)) throw new FormatError(`${what}: manifests is not an array`);
  o.manifests.forEach((m, i) => checkDescriptor(m, `${what}: manifest ${i}`));
  return o as unknown as Index;
}

const INDEX_TYPES = new Set<string>([MediaType.OCI_INDEX, MediaType.DOCKER_LIST]);
const MANIFEST_TYPES = new Set<string>([MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST]);

/**
 * A manifest or an index, told apart by `mediaType` (the registry's Content-Type or the
 * descriptor's) and, when that is neither, by the document's own fields.
 */
export function parseImageDocument(bytes: Buffer, mediaType: string, what: string): { kind: 'index'; index: Index } | { kind: 'manifest'; manifest: Manifest } {
  const o = parseJsonObject(bytes, what);
  const own = typeof o.mediaType === 'string' ? o.mediaType : undefined;
  const index = INDEX_TYPES.has(mediaType) || (!MANIFEST_TYPES.has(mediaType) && (own !== undefined ? INDEX_TYPES.has(own) : Array.isArray(o.manifests)));
  return index ? { kind: 'index', index: checkIndex(o, what) } : { kind: 'manifest', manifest: checkManifest(o, what) };
}

/** An image manifest (one reached through an index must be one: indexes do not nest here). */
export function parseManifest(bytes: Buffer, what: string): Manifest {
  return checkManifest(parseJsonObject(bytes, what), what);
}

/** An image index (an OCI layout's `index.json`). */
export function parseIndex(bytes: Buffer, what: string): Index {
  return checkIndex(parseJsonObject(bytes, what), what);
}

/** An image config: an object whose `history`, when there, is an array (the converter extends it). */
export function parseImageConfig(bytes: Buffer, what: string): Obj & { history?: unknown[] } {
  const o = parseJsonObject(bytes, what);
  if (o.history !== undefined && !Array.isArray(o.history)) throw new FormatError(`${what}: history is not an array`);
  return o as Obj & { history?: unknown[] };
}
