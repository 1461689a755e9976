import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormatError } from '../../../src/base/index.js';
import { parseImageConfig, parseImageDocument, parseIndex, parseManifest } from '../../../src/oci/documents.js';
import { MediaType } from '../../../src/oci/media-types.js';

const D = { mediaType: MediaType.OCI_LAYER_GZIP, digest: `sha256:${'a'.repeat(64)}`, size: 10 };
const MANIFEST = { schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: { ...D, mediaType: MediaType.OCI_CONFIG }, layers: [D], annotations: { a: 'b' } };
const INDEX = { schemaVersion: 2, manifests: [{ ...D, mediaType: MediaType.OCI_MANIFEST, platform: { architecture: 'amd64', os: 'linux', 'os.features': ['x'] } }] };
const j = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

function refused(f: () => unknown, message: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof FormatError && message.test(e.message), String(message));
}

test('manifests and indexes parse with their unknown fields kept, told apart by media type, then by their fields', () => {
  const m = parseManifest(j({ ...MANIFEST, subject: { x: 1 } }), 'm');
  assert.deepEqual((m as unknown as { subject: unknown }).subject, { x: 1 });
  assert.equal(parseIndex(j(INDEX), 'i').manifests.length, 1);
  assert.equal(parseImageDocument(j(INDEX), 'application/json', 'd').kind, 'index');
  assert.equal(parseImageDocument(j(MANIFEST), 'application/json', 'd').kind, 'manifest');
  assert.equal(parseImageDocument(j({ ...INDEX, mediaType: MediaType.DOCKER_LIST }), '', 'd').kind, 'index');
  // The registry's Content-Type decides over the document's fields.
  refused(() => parseImageDocument(j(MANIFEST), MediaType.OCI_INDEX, 'd'), /^d: manifests is not an array$/);
  assert.equal(parseImageDocument(j({ ...MANIFEST, manifests: [] }), MediaType.OCI_MANIFEST, 'd').kind, 'manifest');
  assert.deepEqual(parseImageConfig(j({ history: [{ created_by: 'x' }] }), 'c').history, [{ created_by: 'x' }]);
});

test('a document that does not fit is a FormatError naming the document and the field', () => {
  refused(() => parseManifest(Buffer.from('{"schemaVersion": 2,'), 'm'), /^m is not valid JSON$/);
  for (const doc of ['null', '[]', '"x"', '2']) refused(() => parseManifest(Buffer.from(doc), 'm'), /^m is not a JSON object$/);
  refused(() => parseManifest(j({ ...MANIFEST, schemaVersion: '2' }), 'm'), /^m: schemaVersion "2" is not 2$/);
  refused(() => parseManifest(j({ ...MANIFEST, layers: {} }), 'm'), /^m: layers is not an array$/);
  refused(() => parseManifest(j({ ...MANIFEST, config: null }), 'm'), /^m: config is not a descriptor$/);
  refused(() => parseManifest(j({ ...MANIFEST, layers: [D, { ...D, size: -1 }] }), 'm'), /^m: layer 1: size -1 is not a byte count$/);
  refused(() => parseManifest(j({ ...MANIFEST, layers: [{ ...D, size: 2 ** 53 }] }), 'm'), /size 9007199254740992 is not a byte count/);
  for (const digest of ['sha256:../../etc/passwd', `sha256:${'A'.repeat(64)}`, `md5:${'0'.repeat(32)}`, 7]) {
    refused(() => parseManifest(j({ ...MANIFEST, layers: [{ ...D, digest }] }), 'm'), /^m: layer 0: digest .* is not sha256:<64 hex> or sha512:<128 hex>$/);
  }
  refused(() => parseManifest(j({ ...MANIFEST, layers: [{ ...D, mediaType: undefined }] }), 'm'), /^m: layer 0: mediaType is not a string$/);
  refused(() => parseManifest(j({ ...MANIFEST, layers: [{ ...D, annotations: { k: true } }] }), 'm'), /^m: layer 0: annotations is not a map of strings$/);
  refused(() => parseManifest(j({ ...MANIFEST, annotations: [] }), 'm'), /^m: annotations is not a map of strings$/);
  refused(() => parseIndex(j({ ...INDEX, manifests: [{ ...INDEX.manifests[0], platform: null }] }), 'i'), /^i: manifest 0: platform lacks os and architecture$/);
  refused(() => parseIndex(j({ ...INDEX, manifests: [{ ...INDEX.manifests[0], platform: { os: 'linux', architecture: 'amd64', 'os.features': 'x' } }] }), 'i'), /os.features is not an array of strings$/);
  refused(() => parseImageConfig(j({ history: 'a string would spread into letters' }), 'c'), /^c: history is not an array$/);
});
